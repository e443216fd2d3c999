/**
 * The toolstack daemon (`wv boot`): one hypervisor in a long-lived process,
 * driven through a Unix socket in its state directory:
 *
 *   STATE/wv.sock   control socket, mode 0600 (protocol.ts)
 *   STATE/wv.pid    the daemon's pid
 *   STATE/wv.log    the kernel log, appended as it is written
 *   STATE/vd/       virtual disks (`wv vd`): images and their database, vd.db
 *
 * It refuses to start over a live daemon's socket, removes a stale one, and
 * refuses a state directory another user owns.
 */
import net from 'node:net';
import { appendFileSync, chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WvError } from '../../kernel/errors.ts';
import { formatLogEntry } from '../../kernel/klog.ts';
import { Hypervisor, type HypervisorOptions } from '../hypervisor.ts';
import { Controller, parseAction } from './controller.ts';
import { PROTOCOL_VERSION, type Request, type Response } from './protocol.ts';
import { DaemonRunningError, pidPath, prepareStateDir, readPid, socketPath } from './paths.ts';

export { DaemonRunningError, StateDirError, defaultStateDir, prepareStateDir, socketPath } from './paths.ts';


function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export interface DaemonOptions {
  stateDir: string;
  /** Boot line (nosmp, watchdog, ...). */
  boot?: string;
  hypervisor?: Omit<HypervisorOptions, 'boot'>;
}

export interface Daemon {
  readonly controller: Controller;
  readonly socket: string;
  /** Resolves when the daemon has stopped (after `stop()` or a `shutdown-host` action). */
  readonly stopped: Promise<void>;
  stop(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const dir = opts.stateDir;
  prepareStateDir(dir);
  const sock = socketPath(dir);
  const pidFile = pidPath(dir);
  const logFile = join(dir, 'wv.log');
  if (existsSync(sock)) {
    if (await probe(sock)) {
      throw new DaemonRunningError(sock, readPid(dir));
    }
    rmSync(sock, { force: true }); // stale: its daemon died
  }
  const hv = new Hypervisor({ ...(opts.boot !== undefined ? { boot: opts.boot } : {}), ...opts.hypervisor });
  const controller = new Controller(hv, { stateDir: dir });
  writeFileSync(logFile, '');
  const log = (line: string): void => { try { appendFileSync(logFile, `${line}\n`); } catch { /* a full disk must not stop the daemon */ } };
  for (const l of hv.dmesg()) log(l);
  hv.kernel.log.onEntry = (e) => log(formatLogEntry(e));

  const conns = new Set<net.Socket>();
  const server = net.createServer((conn) => {
    conns.add(conn);
    conn.on('close', () => conns.delete(conn));
    conn.on('error', () => {});
    serve(controller, conn);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const old = process.umask(0o177);
    try {
      server.listen(sock, () => resolve());
    } finally {
      process.umask(old);
    }
  });
  chmodSync(sock, 0o600);
  if (hv.migrateListen) {
    try {
      await hv.listenForMigrations(hv.migrateListen);
    } catch (err) {
      server.close();
      await hv.close();
      rmSync(sock, { force: true });
      throw err;
    }
  }
  writeFileSync(pidFile, `${process.pid}\n`);
  hv.kernel.log.info(`toolstack daemon listening on ${sock} (pid ${process.pid}, protocol ${PROTOCOL_VERSION})`);

  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => { resolveStopped = r; });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      server.close();
      for (const c of conns) c.destroy();
      await hv.close();
      await controller.close();
      rmSync(sock, { force: true });
      rmSync(pidFile, { force: true });
      resolveStopped();
    })();
    return stopping;
  };
  controller.onHostShutdown = () => { setImmediate(() => { void stop(); }); };
  return { controller, socket: sock, stopped, stop };
}

function errorOf(err: unknown): { code: string; message: string } {
  if (err instanceof WvError) return { code: err.code, message: err.message };
  return { code: 'WV_ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
}

/** One client connection: requests line by line; a console request turns it into a byte stream. */
function serve(controller: Controller, conn: net.Socket): void {
  let buf = '';
  let streaming = false;
  const send = (r: Response): void => { if (!conn.destroyed) conn.write(`${JSON.stringify(r)}\n`); };
  const onData = (chunk: Buffer): void => {
    if (streaming) return;
    buf += chunk.toString('utf8');
    if (buf.length > 1 << 20) { send({ v: PROTOCOL_VERSION, id: 0, ok: false, error: { code: 'WV_ERR_INVALID_ARGUMENT', message: 'request line longer than 1 MiB' } }); conn.destroy(); return; }
    for (let nl = buf.indexOf('\n'); nl >= 0 && !streaming; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() === '') continue;
      let req: Request;
      try {
        req = JSON.parse(line) as Request;
      } catch {
        send({ v: PROTOCOL_VERSION, id: 0, ok: false, error: { code: 'WV_ERR_INVALID_ARGUMENT', message: 'the request is not JSON' } });
        continue;
      }
      const id = typeof req?.id === 'number' ? req.id : 0;
      if (req?.v !== PROTOCOL_VERSION) {
        send({ v: PROTOCOL_VERSION, id, ok: false, error: { code: 'WV_ERR_PROTOCOL', message: `protocol version ${JSON.stringify(req?.v)} is not this daemon's (${PROTOCOL_VERSION}): use the wv that matches the running daemon, or restart it` } });
        continue;
      }
      let action;
      try {
        action = parseAction(req.action);
      } catch (err) {
        send({ v: PROTOCOL_VERSION, id, ok: false, error: errorOf(err) });
        continue;
      }
      if (action.op === 'console') {
        streaming = true;
        conn.off('data', onData);
        void attachConsole(controller, conn, id, action.dom, buf);
        return;
      }
      if (action.op === 'consoles') {
        streaming = true;
        conn.off('data', onData);
        followConsoles(controller, conn, id);
        return;
      }
      controller.handle(action, (progress) => { if (!conn.destroyed) conn.write(`${JSON.stringify({ v: PROTOCOL_VERSION, id, progress })}\n`); }).then(
        (result) => send({ v: PROTOCOL_VERSION, id, ok: true, result }),
        (err: unknown) => send({ v: PROTOCOL_VERSION, id, ok: false, error: errorOf(err) }),
      );
    }
  };
  conn.on('data', onData);
}

async function attachConsole(controller: Controller, conn: net.Socket, id: number, ref: number | string, pending: string): Promise<void> {
  let dom;
  try {
    dom = controller.hv.domain(ref);
  } catch (err) {
    conn.end(`${JSON.stringify({ v: PROTOCOL_VERSION, id, ok: false, error: errorOf(err) })}\n`);
    return;
  }
  conn.write(`${JSON.stringify({ v: PROTOCOL_VERSION, id, ok: true, result: { id: dom.id, name: dom.name } })}\n`);
  // Replay what the console holds, then follow it.
  conn.write(dom.consoleText());
  const off = dom.onConsole((bytes) => { if (!conn.destroyed) conn.write(bytes); });
  const input = (bytes: Uint8Array): void => {
    try { controller.hv.consoleInput(dom.id, bytes); } catch { /* the domain is gone */ }
  };
  if (pending) input(new TextEncoder().encode(pending));
  conn.on('data', (b: Buffer) => input(new Uint8Array(b)));
  conn.on('close', off);
  dom.waitForExit().then(() => { off(); conn.end(); }, () => conn.end());
}

/** Every domain's console, line by line, prefixed `[name] ` (what the CD's xen_read_console showed). */
function followConsoles(controller: Controller, conn: net.Socket, id: number): void {
  const hv = controller.hv;
  conn.write(`${JSON.stringify({ v: PROTOCOL_VERSION, id, ok: true, result: { domains: hv.list().length - 1 } })}\n`);
  const partial = new Map<number, string>();
  const decoders = new Map<number, TextDecoder>();
  const off = hv.kernel.events.on('console', ({ domain, bytes }) => {
    if (conn.destroyed) return;
    let dec = decoders.get(domain.id);
    if (!dec) decoders.set(domain.id, (dec = new TextDecoder()));
    const parts = ((partial.get(domain.id) ?? '') + dec.decode(bytes, { stream: true })).split('\n');
    partial.set(domain.id, parts.pop()!);
    if (parts.length) conn.write(parts.map((p) => `[${domain.name}] ${p}\n`).join(''));
  });
  const offGone = hv.kernel.events.on('destroyed', ({ domain }) => {
    const rest = partial.get(domain.id);
    if (rest && !conn.destroyed) conn.write(`[${domain.name}] ${rest}\n`);
    partial.delete(domain.id);
    decoders.delete(domain.id);
  });
  conn.on('close', () => { off(); offGone(); });
}
