/**
 * The CLI's side of the control socket (protocol.ts). Each failure to reach
 * the daemon is one clear error: none running, a stale socket left by a
 * daemon that died, a socket another user owns, a daemon that speaks
 * another protocol version, or a daemon that went away mid-request.
 */
import net from 'node:net';
import { existsSync, statSync } from 'node:fs';
import { WvError } from '../../kernel/errors.ts';
import { PROTOCOL_VERSION, type Action, type DomRef, type Response, type Results } from './protocol.ts';
import { StateDirError, socketPath } from './paths.ts';

/** No daemon answers on the state directory's socket. */
export class NoDaemonError extends WvError {
  constructor(sock: string, detail: string) {
    super('WV_ERR_NO_DAEMON', `no wasmvisor daemon on ${sock}: ${detail} (start one with: wv boot)`);
  }
}

/** The daemon speaks another protocol version, or broke the protocol. */
export class ProtocolError extends WvError {
  constructor(detail: string) {
    super('WV_ERR_PROTOCOL', detail);
  }
}

/** An error the daemon returned, with its code. */
export class RemoteError extends WvError {}

export class ToolstackClient {
  readonly #sock: net.Socket;
  #buf = '';
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; progress?: ((p: { what: string; done: number; total?: number }) => void) | undefined }>();
  #closedWith: Error | undefined;
  /** Set while a console is attached: raw bytes go here instead of the response parser. */
  #raw: ((b: Buffer) => void) | undefined;
  /** A console request in flight: once its response is read, the stream is raw. */
  #rawAfter: { id: number; out: (b: Buffer) => void } | undefined;

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.on('data', (chunk: Buffer) => this.#onData(chunk));
    const gone = (err?: Error): void => {
      this.#closedWith ??= new ProtocolError(`the daemon closed the connection${err ? `: ${err.message}` : ''} (did it stop or die? see its log, wv.log in the state directory)`);
      for (const w of this.#waiting.values()) w.reject(this.#closedWith);
      this.#waiting.clear();
    };
    sock.on('error', gone);
    sock.on('close', () => gone());
  }

  static async connect(stateDir: string): Promise<ToolstackClient> {
    const path = socketPath(stateDir);
    if (!existsSync(path)) throw new NoDaemonError(path, 'the socket does not exist');
    const st = statSync(path);
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
      throw new StateDirError(stateDir, `the socket belongs to uid ${st.uid}, not to you (uid ${process.getuid()})`);
    }
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(path);
      s.once('connect', () => resolve(s));
      s.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') reject(new NoDaemonError(path, 'the socket is stale (its daemon died)'));
        else if (err.code === 'EACCES') reject(new StateDirError(stateDir, 'permission denied on the socket'));
        else reject(new NoDaemonError(path, err.code ?? err.message));
      });
    });
    return new ToolstackClient(sock);
  }

  #onData(chunk: Buffer): void {
    if (this.#raw) { this.#raw(chunk); return; }
    this.#buf += chunk.toString('utf8');
    for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      let res: Response;
      try {
        res = JSON.parse(line) as Response;
      } catch {
        this.#closedWith = new ProtocolError('the daemon sent something that is not JSON');
        this.#sock.destroy();
        return;
      }
      const w = this.#waiting.get(res.id) ?? (res.id === 0 ? [...this.#waiting.values()][0] : undefined);
      if (!w) continue;
      if ('progress' in res) {
        w.progress?.(res.progress);
        continue;
      }
      this.#waiting.delete(res.id);
      if (res.ok) w.resolve(res.result);
      else w.reject(new RemoteError(res.error.code, res.error.message));
      if (res.ok && this.#rawAfter && this.#rawAfter.id === res.id) {
        // From here on the connection carries the console's bytes; the rest of this chunk is the first of them.
        const out = this.#rawAfter.out;
        this.#raw = out;
        this.#rawAfter = undefined;
        const rest = Buffer.from(this.#buf, 'utf8');
        this.#buf = '';
        if (rest.length) out(rest);
        return;
      }
    }
  }

  /** Send one action; `progress` hears the progress lines long work sends before its result. */
  request<A extends Action>(action: A, progress?: (p: { what: string; done: number; total?: number }) => void): Promise<Results[A['op']]> {
    if (this.#closedWith) return Promise.reject(this.#closedWith);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, progress });
      this.#sock.write(`${JSON.stringify({ v: PROTOCOL_VERSION, id, action })}\n`);
    });
  }

  /**
   * Attach to a domain's console: `out` gets its buffered text, then what it
   * writes; `send` types into it. Resolves with those once attached; `ended`
   * resolves when the domain stops or the daemon closes the stream.
   */
  async attachConsole(dom: DomRef, out: (bytes: Buffer) => void): Promise<{ id: number; name: string; send: (b: Uint8Array) => void; ended: Promise<void> }> {
    return this.#stream({ op: 'console', dom }, out);
  }

  /** Follow every domain's console, lines prefixed with the domain's name (xen_read_console). */
  async followConsoles(out: (bytes: Buffer) => void): Promise<{ domains: number; ended: Promise<void> }> {
    return this.#stream({ op: 'consoles' }, out);
  }

  async #stream<A extends Action>(action: A, out: (bytes: Buffer) => void): Promise<Results[A['op']] & { send: (b: Uint8Array) => void; ended: Promise<void> }> {
    const ended = new Promise<void>((resolve) => this.#sock.once('close', () => resolve()));
    this.#rawAfter = { id: this.#next, out };
    try {
      const r = await this.request(action);
      return Object.assign(r as object, { send: (b: Uint8Array) => { this.#sock.write(b); }, ended }) as Results[A['op']] & { send: (b: Uint8Array) => void; ended: Promise<void> };
    } finally {
      this.#rawAfter = undefined;
    }
  }

  close(): void { this.#sock.end(); }
}
