/**
 * The domain-0 commands that talk to the toolstack daemon (`wv boot`): each
 * is one action of runtime/toolstack/protocol.ts sent over the control
 * socket. `--json` prints the daemon's result as JSON.
 */
import { Command } from 'commander';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, WvError } from '../kernel/errors.ts';
import type { DomainInfo } from '../runtime/hypervisor.ts';
import { ToolstackClient, NoDaemonError } from '../runtime/toolstack/client.ts';
import { DaemonRunningError, defaultStateDir, prepareStateDir, readPid, socketPath } from '../runtime/toolstack/paths.ts';
import { describeDomain, loadDomainConfig, parseDefines, toDomainConfig } from '../runtime/toolstack/domain-config.ts';
import type { Action, CreateSpec, Results } from '../runtime/toolstack/protocol.ts';
import { formatList } from './format.ts';
import { formatTop, topRows } from './top.ts';

const MiB = 1024 * 1024;

/** The config `create` reads when given neither an image nor -f (like the CD's /etc/xc/defaults). */
export function defaultConfigPath(): string {
  return process.env.WV_DEFAULT_CONFIG ?? '/etc/wv/defaults';
}

/** The state directory a command talks to (`--state-dir`, else the default). */
export function stateDir(cmd: Command): string {
  const g = cmd.optsWithGlobals() as { stateDir?: string };
  return resolve(g.stateDir ?? defaultStateDir());
}

/** Send one action to the daemon and return its result. */
export async function call<A extends Action>(cmd: Command, action: A, progress?: (p: { what: string; done: number; total?: number }) => void): Promise<Results[A['op']]> {
  const client = await ToolstackClient.connect(stateDir(cmd));
  try {
    return await client.request(action, progress);
  } finally {
    client.close();
  }
}

/**
 * Progress of long work on stderr, at most a line a second (work that ends
 * within a second prints none): `wv save: memory written 512/1024 MiB (50%)`.
 */
function progressLine(command: string): (p: { what: string; done: number; total?: number }) => void {
  let last = performance.now();
  return (p) => {
    const now = performance.now();
    if (now - last < 1000) return;
    last = now;
    const mib = (n: number): string => (n / (1024 * 1024)).toFixed(0);
    const amount = p.what.includes('pages') ? `${p.done}` : p.total ? `${mib(p.done)}/${mib(p.total)} MiB (${Math.floor((p.done / p.total) * 100)}%)` : `${mib(p.done)} MiB`;
    process.stderr.write(`wv ${command}: ${p.what} ${amount}\n`);
  };
}

function out(json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : text());
}

function domArg(s: string): number | string {
  return /^\d+$/.test(s) ? Number(s) : s;
}

function longList(rows: readonly DomainInfo[]): string {
  return rows.map((r) => [
    `${r.name} (id ${r.id})`,
    `  phase      ${r.phase}${r.shutdownReason ? ` (${r.shutdownReason})` : ''}`,
    `  memory     ${r.memoryBytes / MiB} MiB`,
    `  cpu        ${r.cpu ?? '-'}${r.pinned !== undefined ? ` (pinned to ${r.pinned})` : ''}`,
    `  cpu time   ${(r.cpuTimeNs / 1e9).toFixed(3)} s`,
    `  image      ${r.image}`,
    ...(r.sched ? [`  bvt        mcuadv ${r.sched.mcuadv} warp ${r.sched.warp} warpl ${r.sched.warpl} warpu ${r.sched.warpu}`] : []),
  ].join('\n')).join('\n\n') + '\n';
}

/** Start the daemon: in this process (--foreground), or as a detached child, returning once its socket answers. */
async function boot(opts: { foreground?: boolean; boot?: string }, dir: string): Promise<void> {
  if (opts.foreground) {
    const { startDaemon } = await import('../runtime/toolstack/daemon.ts');
    const d = await startDaemon({ stateDir: dir, ...(opts.boot !== undefined ? { boot: opts.boot } : {}) });
    process.stderr.write(`wv: daemon running (pid ${process.pid}), socket ${d.socket}\n`);
    const stop = (): void => { void d.stop(); };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    await d.stopped;
    return;
  }
  // Refuse at once over a live daemon (the child would, but less visibly).
  try {
    const c = await ToolstackClient.connect(dir);
    c.close();
    throw new DaemonRunningError(socketPath(dir), readPid(dir));
  } catch (err) {
    if (!(err instanceof NoDaemonError)) throw err;
  }
  prepareStateDir(dir);
  const errFile = join(dir, 'wv.boot.err');
  const errFd = openSync(errFile, 'w');
  const self = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './wv.ts' : './wv.js', import.meta.url));
  const args = [self, '--state-dir', dir, 'boot', '--foreground', ...(opts.boot !== undefined ? ['--boot', opts.boot] : [])];
  const child = spawn(process.execPath, [...process.execArgv, ...args], { detached: true, stdio: ['ignore', 'ignore', errFd] });
  closeSync(errFd);
  let exited: number | null | undefined;
  child.once('exit', (code) => { exited = code; });
  child.unref();
  const deadline = Date.now() + 15_000;
  process.stderr.write('wv: starting the daemon');
  for (;;) {
    try {
      const c = await ToolstackClient.connect(dir);
      const info = await c.request({ op: 'info' });
      c.close();
      process.stderr.write(`\nwv: daemon running (pid ${info.pid}), socket ${socketPath(dir)}\n`);
      return;
    } catch (err) {
      if (!(err instanceof NoDaemonError)) throw err;
    }
    if (exited !== undefined || Date.now() > deadline) {
      const why = (existsSync(errFile) ? readFileSync(errFile, 'utf8').trim().split('\n').at(-1) ?? '' : '').replace(/^wv: /, '');
      process.stderr.write('\n');
      // The daemon's own error keeps its code (printed once, not again as the code of this one).
      const coded = /^(.*?)\s*\[(WV_ERR_[A-Z_]+)\]$/.exec(why);
      if (coded) throw new WvError(coded[2]!, `the daemon did not start: ${coded[1]}`);
      throw new InvalidArgumentError('boot', `the daemon did not start${why ? `: ${why}` : ''}`);
    }
    process.stderr.write('.');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Register the toolstack commands on `program`. `resolveImage` maps a reference guest name to its path. */
export function addToolstackCommands(program: Command, resolveImage: (s: string) => string, isGuestName: (s: string) => boolean): void {
  program.option('--state-dir <dir>', 'the daemon\'s state directory (socket, pid file, log); default $WV_STATE_DIR or a per-user directory');

  program.command('boot')
    .description('start the toolstack daemon: a hypervisor in the background, driven through a control socket')
    .option('--foreground', 'run in this process instead of detaching')
    .option('-b, --boot <options>', 'hypervisor boot line: nosmp, maxcpus=N, dom0_mem=SIZE, watchdog, watchdog_timeout=S, slice=MS, nat, nat_allow=LIST, migrate_listen=[ADDR:]PORT')
    .action(async (opts: { foreground?: boolean; boot?: string }, cmd: Command) => boot(opts, stateDir(cmd)));

  program.command('shutdown-host')
    .description('shut every domain down (destroying those that do not stop in time) and stop the daemon')
    .option('-t, --timeout <seconds>', 'how long each domain may take', '10')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { timeout: string; json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'shutdown-host', timeoutMs: Number(opts.timeout) * 1000 });
      out(opts.json, r, () => `wv: ${r.domains} domain(s) stopped; the daemon is exiting\n`);
    });

  program.command('create')
    .description('create a domain on the daemon from a config file (xl.cfg syntax, docs/config.md) or an image')
    .argument('[image]', 'a guest image (path or reference guest name) instead of a config file')
    .option('-f, --config <file>', `the domain config file (default ${defaultConfigPath()})`)
    .option('-D, --define <var=value>', 'set a config variable (several joined by ":", or repeat -D)', (v: string, prev: string[] = []) => [...prev, v])
    .option('-n, --dry-run', 'print the resolved domain and create nothing')
    .option('--name <name>', 'domain name (overrides the config)')
    .option('-m, --memory <MiB>', 'memory in MiB (overrides the config)')
    .option('-c, --cmdline <text>', 'guest command line (overrides the config)')
    .option('-p, --paused', 'create it paused')
    .option('--json', 'print the created domain (or the dry run) as JSON')
    .action(async (image: string | undefined, opts: { config?: string; define?: string[]; dryRun?: boolean; name?: string; memory?: string; cmdline?: string; paused?: boolean; json?: boolean }, cmd: Command) => {
      let spec: CreateSpec;
      if (image !== undefined && opts.config !== undefined) throw new InvalidArgumentError('arguments', 'give an image or -f, not both');
      if (image === undefined) {
        const file = resolve(opts.config ?? defaultConfigPath());
        const d = loadDomainConfig(file, parseDefines(opts.define ?? []), isGuestName);
        if (opts.dryRun) { out(opts.json, d, () => describeDomain(d)); return; }
        spec = toDomainConfig(d, resolveImage);
      } else {
        if (opts.dryRun) throw new InvalidArgumentError('arguments', '--dry-run needs a config file');
        spec = { image: resolve(resolveImage(image)) };
      }
      if (opts.name !== undefined) spec.name = opts.name;
      if (opts.memory !== undefined) spec.memory = Number(opts.memory);
      if (opts.cmdline !== undefined) spec.cmdline = opts.cmdline;
      if (opts.paused) spec.paused = true;
      spec.image = resolve(spec.image);
      const r = await call(cmd, { op: 'create', spec });
      out(opts.json, r, () => `wv: created domain ${r.id} (${r.name})\n`);
    });

  program.command('list')
    .description('list the domains, like xl list')
    .option('-l, --long', 'full detail for each domain')
    .option('--json', 'print the rows as JSON')
    .action(async (opts: { long?: boolean; json?: boolean }, cmd: Command) => {
      const rows = await call(cmd, { op: 'list' });
      out(opts.json, rows, () => (opts.long ? longList(rows) : `${formatList(rows)}\n`));
    });

  program.command('info')
    .description('the host: version, CPUs, memory, domains, uptime')
    .option('--json', 'print it as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const i = await call(cmd, { op: 'info' });
      out(opts.json, i, () => [
        `version         : ${i.version} (protocol ${i.protocol}, node ${i.node})`,
        `daemon pid      : ${i.pid}`,
        `nr_cpus         : ${i.cpus}`,
        `total_memory    : ${Math.round(i.memoryTotalBytes / MiB)} MiB`,
        `free_memory     : ${Math.round(i.memoryFreeBytes / MiB)} MiB`,
        `dom0_memory     : ${Math.round(i.dom0MemoryBytes / MiB)} MiB`,
        `domains         : ${i.domains}`,
        `bvt slice       : ${i.sliceMs} ms`,
        `watchdog        : ${i.watchdogMs === undefined ? 'off' : `${i.watchdogMs / 1000} s`}`,
        `uptime          : ${i.uptimeS.toFixed(1)} s`,
      ].join('\n') + '\n');
    });

  program.command('dmesg')
    .description('the kernel log')
    .option('--json', 'print the lines as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const lines = await call(cmd, { op: 'dmesg' });
      out(opts.json, lines, () => `${lines.join('\n')}\n`);
    });

  for (const [name, desc] of [['pause', 'pause a domain (it keeps its memory, uses no CPU)'], ['unpause', 'resume a paused domain where it stopped']] as const) {
    program.command(name).description(desc).argument('<domain>', 'id or name').option('--json', 'print the domain as JSON')
      .action(async (dom: string, opts: { json?: boolean }, cmd: Command) => {
        const r = await call(cmd, { op: name, dom: domArg(dom) });
        out(opts.json, r, () => `wv: domain ${r.id} (${r.name}) ${r.phase}\n`);
      });
  }

  for (const [name, reason] of [['shutdown', 'poweroff'], ['reboot', 'reboot']] as const) {
    program.command(name)
      .description(`ask a domain to ${reason === 'poweroff' ? 'shut down' : 'reboot'} (virq 2); it is destroyed if it has not stopped after the timeout`)
      .argument('<domain>', 'id or name')
      .option('-w, --wait', 'wait until it has stopped')
      .option('-t, --timeout <seconds>', 'destroy it if it has not stopped by then', '30')
      .option('--json', 'print the result as JSON')
      .action(async (dom: string, opts: { wait?: boolean; timeout: string; json?: boolean }, cmd: Command) => {
        const r = await call(cmd, { op: 'shutdown', dom: domArg(dom), reason, wait: opts.wait ?? false, timeoutMs: Number(opts.timeout) * 1000 });
        out(opts.json, r, () => (r.waited ? `wv: domain ${r.id} (${r.name}) stopped: ${r.reason}\n` : `wv: ${reason} requested for domain ${r.id} (${r.name})\n`));
      });
  }

  program.command('save').description('save a running domain to a file and destroy it (xl save); docs/save-format.md')
    .argument('<domain>', 'id or name').argument('<file>', 'the save file (written atomically)')
    .option('-c, --checkpoint', 'keep the domain running after the save')
    .option('-f, --force', 'if it does not suspend in time, capture it at its next block or yield')
    .option('-t, --timeout <seconds>', 'how long the guest may take to suspend', '10')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, file: string, opts: { checkpoint?: boolean; force?: boolean; timeout: string; json?: boolean }, cmd: Command) => {
      const secs = Number(opts.timeout);
      if (!(secs > 0)) throw new InvalidArgumentError(`timeout "${opts.timeout}"`, 'expected a positive number of seconds');
      const r = await call(cmd, { op: 'save', dom: domArg(dom), file: resolve(file), checkpoint: opts.checkpoint ?? false, force: opts.force ?? false, timeoutMs: Math.round(secs * 1000) }, progressLine('save'));
      out(opts.json, r, () => `wv: domain ${r.id} (${r.name}) saved to ${r.path}: ${r.bytes} bytes (${r.rawBytes} raw) in ${r.ms} ms${r.checkpoint ? '; it goes on running' : ''}\n`);
    });

  program.command('restore').description('restore a domain from a save file (xl restore)')
    .argument('<file>', 'the save file')
    .option('-n, --name <name>', 'the restored domain\'s name (default: the saved one)')
    .option('-p, --paused', 'restore it paused')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, opts: { name?: string; paused?: boolean; json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'restore', file: resolve(file), ...(opts.name ? { name: opts.name } : {}), paused: opts.paused ?? false }, progressLine('restore'));
      out(opts.json, r, () => `wv: domain ${r.id} (${r.name}) restored from ${r.path}\n`);
    });

  program.command('migrate').description('move a running domain to another wasmvisor while it runs (xl migrate); the other daemon listens with wv boot -b migrate_listen=PORT')
    .argument('<domain>', 'id or name').argument('<host>', 'the other wasmvisor: HOST or HOST:PORT (default port 8002)')
    .option('-p, --paused', 'leave it paused on the other host')
    .option('-f, --force', 'if it does not suspend in time, capture it at its next block or yield')
    .option('-t, --timeout <seconds>', 'how long the guest may take to suspend for the last copy', '10')
    .option('-r, --rounds <n>', 'at most this many copy rounds while it runs', '8')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, host: string, opts: { paused?: boolean; force?: boolean; timeout: string; rounds: string; json?: boolean }, cmd: Command) => {
      const secs = Number(opts.timeout);
      if (!(secs > 0)) throw new InvalidArgumentError(`timeout "${opts.timeout}"`, 'expected a positive number of seconds');
      const rounds = Number(opts.rounds);
      if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 100)) throw new InvalidArgumentError(`rounds "${opts.rounds}"`, 'expected a whole number in 1-100');
      const r = await call(cmd, { op: 'migrate', dom: domArg(dom), target: host, paused: opts.paused ?? false, force: opts.force ?? false, timeoutMs: Math.round(secs * 1000), maxRounds: rounds }, progressLine('migrate'));
      out(opts.json, r, () => `wv: domain ${r.id} (${r.name}) migrated to ${r.target} as domain ${r.remoteId}: ${r.rounds} round(s), ${(r.bytesSent / (1024 * 1024)).toFixed(1)} MiB sent, downtime ${r.downtimeMs.toFixed(1)} ms (${r.finalPages} pages copied while stopped)\n`);
    });

  program.command('clone').description('start N copies of a running domain from one snapshot of it; it goes on running')
    .argument('<domain>', 'id or name').argument('<n>', 'how many copies (1-256)')
    .option('--names <list>', 'the copies\' names, joined by commas (default NAME-1, NAME-2, ...)')
    .option('-p, --paused', 'create the copies paused')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, n: string, opts: { names?: string; paused?: boolean; json?: boolean }, cmd: Command) => {
      const count = Number(n);
      if (!(Number.isInteger(count) && count >= 1 && count <= 256)) throw new InvalidArgumentError(`count "${n}"`, 'expected a whole number in 1-256');
      const r = await call(cmd, { op: 'clone', dom: domArg(dom), count, ...(opts.names ? { names: opts.names.split(',') } : {}), paused: opts.paused ?? false });
      out(opts.json, r, () => `wv: domain ${r.id} (${r.name}) cloned ${r.copies.length} time(s) in ${r.ms} ms (${r.msPerCopy.toFixed(1)} ms each): ${r.copies.map((c) => `${c.id} (${c.name})`).join(', ')}\n`);
    });

  program.command('destroy').description('kill a domain at once and free its memory').argument('<domain>', 'id or name')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'destroy', dom: domArg(dom) });
      out(opts.json, r, () => `wv: domain ${r.id} (${r.name}) destroyed\n`);
    });

  program.command('rename').description('rename a domain').argument('<domain>', 'id or name').argument('<new-name>', 'the new name')
    .option('--json', 'print the domain as JSON')
    .action(async (dom: string, name: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'rename', dom: domArg(dom), name });
      out(opts.json, r, () => `wv: domain ${r.id} is now ${r.name}\n`);
    });

  program.command('uptime').description('how long each domain (or one) has been up').argument('[domain]', 'id or name')
    .option('--json', 'print the rows as JSON')
    .action(async (dom: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const rows = await call(cmd, dom === undefined ? { op: 'uptime' } : { op: 'uptime', dom: domArg(dom) });
      out(opts.json, rows, () => `Name${' '.repeat(28)}ID  Uptime\n${rows.map((r) => `${r.name.padEnd(32)}${String(r.id).padStart(2)}  ${fmtUptime(r.uptimeS)}`).join('\n')}\n`);
    });

  program.command('vcpu-pin').description('pin a domain to a physical CPU (pincpu)').argument('<domain>', 'id or name').argument('<cpu>', 'CPU number')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, cpu: string, opts: { json?: boolean }, cmd: Command) => {
      if (!/^\d+$/.test(cpu)) throw new InvalidArgumentError('cpu', `"${cpu}" is not a CPU number`);
      const r = await call(cmd, { op: 'pin', dom: domArg(dom), cpu: Number(cpu) });
      out(opts.json, r, () => `wv: domain ${r.id} pinned to cpu ${r.pinned}${r.effective === 'now' ? '' : ` (it runs on cpu ${r.cpu} until it next starts)`}\n`);
    });

  program.command('sched-bvt').description('show or set a domain\'s BVT parameters (cpu_bvtset)').argument('<domain>', 'id or name')
    .option('--mcuadv <n>', 'inverse weight').option('--warp <us>', 'virtual time borrowed').option('--warpl <us>', 'warp limit').option('--warpu <us>', 'unwarp requirement')
    .option('--json', 'print the parameters as JSON')
    .action(async (dom: string, opts: { mcuadv?: string; warp?: string; warpl?: string; warpu?: string; json?: boolean }, cmd: Command) => {
      const settings: Record<string, number> = {};
      for (const k of ['mcuadv', 'warp', 'warpl', 'warpu'] as const) {
        if (opts[k] === undefined) continue;
        const n = Number(opts[k]);
        if (!Number.isFinite(n)) throw new InvalidArgumentError(k, `"${opts[k]}" is not a number`);
        settings[k] = n;
      }
      const r = await call(cmd, { op: 'sched-bvt', dom: domArg(dom), settings });
      out(opts.json, r, () => `domain ${r.id}: mcuadv ${r.settings.mcuadv} warp ${r.settings.warp} warpl ${r.settings.warpl} warpu ${r.settings.warpu}\n`);
    });

  program.command('bvt-slice').description('show or set the BVT time slice (cpu_bvtslice)').argument('[ms]', 'the new slice, ms')
    .option('--json', 'print it as JSON')
    .action(async (ms: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, ms === undefined ? { op: 'bvt-slice' } : { op: 'bvt-slice', ms: Number(ms) });
      out(opts.json, r, () => `bvt slice ${r.sliceMs} ms\n`);
    });

  program.command('debug-keys').description('the serial console\'s debug keys: h lists them (d domains, r run queues, e event channels, g grants, m memory)')
    .argument('<key>', 'one key')
    .action(async (key: string, _opts: unknown, cmd: Command) => {
      const r = await call(cmd, { op: 'debug-keys', key });
      process.stdout.write(r.text);
    });

  program.command('top')
    .description('a live view of the domains: CPU %, CPU time, memory, CPU, console, block and network I/O (q quits)')
    .option('-d, --delay <seconds>', 'time between refreshes', '1')
    .option('-b, --batch', 'print plain frames instead of redrawing the screen')
    .option('-n, --iterations <n>', 'stop after this many frames')
    .option('--json', 'one JSON object per frame (implies --batch)')
    .action(async (opts: { delay: string; batch?: boolean; iterations?: string; json?: boolean }, cmd: Command) => {
      const delay = Number(opts.delay);
      if (!(delay >= 0.05 && delay <= 3600)) throw new InvalidArgumentError('delay', `"${opts.delay}" is not a number of seconds in [0.05, 3600]`);
      const limit = opts.iterations === undefined ? Infinity : Number(opts.iterations);
      if (!(limit >= 1)) throw new InvalidArgumentError('iterations', `"${opts.iterations}" is not a positive number`);
      const batch = opts.batch || opts.json || !process.stdout.isTTY;
      const client = await ToolstackClient.connect(stateDir(cmd));
      const prev = new Map<number, { ns: number; at: number }>();
      let quit = false;
      const stdin = process.stdin;
      const onKey = (b: Buffer): void => { if (b.includes(0x71) || b.includes(0x03)) quit = true; };
      if (!batch && stdin.isTTY) { stdin.setRawMode(true); stdin.on('data', onKey); }
      try {
        // A first sample so the first frame's CPU % covers an interval.
        topRows(prev, await client.request({ op: 'list' }), performance.now());
        for (let frame = 0; frame < limit && !quit; frame++) {
          await new Promise((r) => setTimeout(r, delay * 1000));
          if (quit) break;
          const [info, rows, vbds, vifs] = await Promise.all([
            client.request({ op: 'info' }), client.request({ op: 'list' }), client.request({ op: 'block-list' }), client.request({ op: 'network-list' }),
          ]);
          const t = topRows(prev, rows, performance.now(), vbds, vifs);
          if (opts.json) process.stdout.write(`${JSON.stringify({ info, domains: t })}\n`);
          else if (batch) process.stdout.write(`${formatTop(info, t, Infinity)}\n`);
          else process.stdout.write(`\x1b[H\x1b[2J${formatTop(info, t, process.stdout.columns ?? 100)}`);
        }
      } finally {
        if (!batch && stdin.isTTY) { stdin.off('data', onKey); stdin.setRawMode(false); stdin.pause(); }
        client.close();
      }
    });

  const store = program.command('store').description('the store frontends and backends meet in, as domain 0 sees it (xenstore-ls, -read, -write, -rm)');
  store.command('ls').description('list a subtree with values and permissions').argument('[path]', 'where to start', '/')
    .option('--json', 'print the nodes as JSON')
    .action(async (path: string, opts: { json?: boolean }, cmd: Command) => {
      const nodes = await call(cmd, { op: 'store-ls', path });
      const perm = (n: (typeof nodes)[number]) => [`n${n.owner}`, ...n.others.map((o) => `${o.write ? 'b' : 'r'}${o.domid}`)].join(',');
      out(opts.json, nodes, () => nodes.map((n) => `${n.path} = ${JSON.stringify(n.value)}  (${perm(n)})`).join('\n') + '\n');
    });
  store.command('read').description('print a value').argument('<path>', 'the node')
    .action(async (path: string, _opts: unknown, cmd: Command) => { process.stdout.write(`${(await call(cmd, { op: 'store-read', path })).value}\n`); });
  store.command('write').description('set a value (creating the node)').argument('<path>', 'the node').argument('<value>', 'its value')
    .action(async (path: string, value: string, _opts: unknown, cmd: Command) => { await call(cmd, { op: 'store-write', path, value }); });
  store.command('rm').description('remove a node and everything under it').argument('<path>', 'the node')
    .action(async (path: string, _opts: unknown, cmd: Command) => { await call(cmd, { op: 'store-rm', path }); });

  program.command('console').description('attach to a domain\'s console (replays what it holds; Ctrl-] detaches)').argument('<domain>', 'id or name')
    .action(async (dom: string, _opts: unknown, cmd: Command) => {
      const client = await ToolstackClient.connect(stateDir(cmd));
      const con = await client.attachConsole(domArg(dom), (b) => process.stdout.write(b));
      const stdin = process.stdin;
      const tty = stdin.isTTY === true;
      if (tty) stdin.setRawMode(true);
      let detached = false;
      const onKey = (b: Buffer): void => {
        const at = b.indexOf(0x1d); // Ctrl-]
        if (at >= 0) {
          if (at > 0) con.send(b.subarray(0, at));
          detached = true;
          client.close();
          return;
        }
        // In raw mode Enter is CR; guests read lines ending in LF.
        con.send(tty ? Buffer.from(b.toString('binary').replace(/\r/g, '\n'), 'binary') : b);
      };
      stdin.on('data', onKey);
      stdin.once('end', () => { if (!tty) { /* input ended: keep showing output until the domain stops */ } });
      await con.ended;
      stdin.off('data', onKey);
      if (tty) stdin.setRawMode(false);
      stdin.pause();
      if (detached) process.stderr.write('\nwv: detached\n');
    });
}

function fmtUptime(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return `${d > 0 ? `${d} day${d > 1 ? 's' : ''}, ` : ''}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
}
