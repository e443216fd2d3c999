/**
 * The NAT gateway: the way between the virtual switch and the host's own
 * sockets, with no root (docs/net.md, "NAT and port forwards").
 *
 * It is a `gateway` port on the switch whose end of every connection is the
 * guests' own TCP/IP stack (wasm-guests/sdk/net), compiled with a small
 * driver (wasm-guests/nat) into a module that runs here, in the host's main
 * thread: frames from the switch go to its input, its frames go to the
 * switch, and time comes from the host's clock. TCP is terminated in that
 * stack and relayed, byte for byte, to and from node:net sockets:
 *
 *  - port forwards (host to guest): a host listener; each host connection
 *    makes the stack connect to the guest's address and port;
 *  - outbound (guest to host): the stack takes a SYN for any address and
 *    port sent to the gateway; the gateway's own address and the host
 *    aliases (default 169.254.0.2) mean the host's 127.0.0.1, any other
 *    address means itself; the SYN is answered only when the allow-list
 *    (default: loopback only) permits the mapped host address, else it gets
 *    a RST and the refusal is logged with the reason.
 *
 * Flow control is end to end: a host socket is paused while the stack's send
 * buffer is full (and resumed when it drains), and the stack's receive
 * buffer is read only while the host socket takes writes, so a slow reader
 * on either side closes the TCP window of the other. Half-closes pass both
 * ways (FIN becomes end() and 'end' becomes shutdown); resets become resets.
 *
 * Threat model: the guests are hostile. Frames from the switch were checked
 * by the switch and are checked again by the stack, which owns its memory
 * and bounds everything (socket table, buffers); a guest can use up the
 * gateway's socket table (then further connections are refused) but cannot
 * reach a host address the allow-list does not permit.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, WvError } from '../../../kernel/errors.ts';
import { formatIp, parseIp, parseMac } from '../frame.ts';
import type { SwitchPort, VirtualSwitch } from '../switch.ts';
import { Verdict } from '../switch.ts';

/** A port forward could not listen on its host address and port (in use, not permitted, no such address). */
export class NatForwardError extends WvError {
  constructor(where: string, detail: string) {
    super('WV_ERR_NAT_FORWARD', `NAT: cannot forward ${where}: ${detail}`);
  }
}

/** The gateway's stack module (wasm-guests/build/nat.wasm) is missing, does not load, or failed (a bug: it aborted). */
export class NatModuleError extends WvError {
  constructor(detail: string) {
    super('WV_ERR_NAT_MODULE', `NAT: ${detail}`);
  }
}

export interface NatOptions {
  /** The switch the gateway joins. */
  switch: VirtualSwitch;
  /** The gateway's address on the switch, guests' default route: default DEFAULT_NAT_ADDRESS (169.254.0.1). */
  address?: string;
  /** The guests' subnet: default 255.255.0.0 (169.254/16, as the Demo CD's link-local addresses). */
  netmask?: string;
  /** Default 00:16:3e:ff:ff:fe. */
  mac?: string;
  /**
   * Switch addresses that mean a host address (the gateway's port owns them,
   * so guests can ping them): default { '169.254.0.2': '127.0.0.1' }. The
   * gateway's own address means 127.0.0.1 as well.
   */
  hostAliases?: Readonly<Record<string, string>>;
  /**
   * Host addresses guests may connect to, after aliasing: `a.b.c.d` or
   * `a.b.c.d/n`, optionally `:port`. Default ['127.0.0.0/8'] (loopback only).
   */
  allow?: readonly string[];
  /** TCP connections the gateway's stack holds at once (default 128), and each one's buffers (default 65536, a power of two). */
  maxConnections?: number;
  bufferSize?: number;
  /** Where refusals, forwards and failures are reported. */
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  /** The compiled wasm-guests/build/nat.wasm (default: read and compiled now). */
  module?: WebAssembly.Module;
}

export const DEFAULT_NAT_ADDRESS = '169.254.0.1';
export const DEFAULT_HOST_ALIAS = '169.254.0.2';
export const DEFAULT_NAT_MAC = '00:16:3e:ff:ff:fe';

/** Connection counters of one forward, or of all outbound connections. */
export interface NatStats {
  /** Connections relaying now. */
  open: number;
  /** Connections set up (relayed at least one way). */
  total: number;
  /** Connections refused: nobody at the guest end, a domain that is gone, a destination not allowed, a host refusal, a full table. */
  refused: number;
  /** Connections that ended with a reset or error after they were set up. */
  reset: number;
  /** Bytes from the host side to the guest, and from the guest to the host side. */
  bytesToGuest: number;
  bytesFromGuest: number;
}

/** Where a forward goes: a fixed address, or one looked up for each connection (a domain's current address). */
export interface ForwardTarget {
  ip?: string;
  resolve?: () => string | undefined;
  port: number;
  /** For messages and listings, e.g. `domain 3 port 22`. */
  name?: string;
}

/** A port forward: host address and port to a guest's. */
export interface NatForward {
  readonly host: string;
  /** The host port (the one bound, when 0 was asked for). */
  readonly port: number;
  readonly target: string;
  readonly stats: Readonly<NatStats>;
  /** Stop listening; connections already relaying go on until they end (the gateway's close ends them). */
  close(): Promise<void>;
}

interface NatExports {
  memory: WebAssembly.Memory;
  _initialize(): void;
  buffer(): number;
  bufferSize(): number;
  frameBuffer(): number;
  init(mac: bigint, ip: number, mask: number, maxTcp: number, tcpBuf: number): number;
  addAddress(ip: number, mask: number): number;
  input(len: number): void;
  poll(now: bigint): bigint;
  accept(): number;
  connect(ip: number, port: number): number;
  send(h: number, len: number): number;
  recv(h: number, cap: number): number;
  state(h: number): number;
  error(h: number): number;
  sendSpace(h: number): number;
  available(h: number): number;
  endpoint(h: number, which: number): number;
  shutdown(h: number): number;
  close(h: number): void;
  abortSocket(h: number): void;
  socketsInUse(): number;
}

/** TcpState as numbered in wasm-guests/sdk/net/tcp.ts. */
const St = { Closed: 0, Established: 4, CloseWait: 7 } as const;
const EAGAIN = 11;
const ECONNREFUSED = 111;
/** Frames from the switch waiting for the stack; more are refused (counted as the gateway port's drops). */
const MAX_INBOX = 4096;

function zero(): NatStats {
  return { open: 0, total: 0, refused: 0, reset: 0, bytesToGuest: 0, bytesFromGuest: 0 };
}

/** One allow-list entry: a network and an optional port. */
interface Allow { net: number; mask: number; port?: number }

function parseAllow(text: string): Allow {
  const m = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?(?::(\d+))?$/.exec(text.trim());
  const bits = m?.[2] === undefined ? 32 : Number(m[2]);
  const port = m?.[3] === undefined ? undefined : Number(m[3]);
  if (!m || bits > 32 || (port !== undefined && (port < 1 || port > 65535))) {
    throw new InvalidArgumentError(`NAT allow "${text}"`, 'expected a.b.c.d[/bits][:port], e.g. 127.0.0.0/8 or 10.0.0.5:80');
  }
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { net: (parseIp(m[1]!) & mask) >>> 0, mask, ...(port === undefined ? {} : { port }) };
}

function checkPort(what: string, port: number, zeroOk = false): void {
  if (!Number.isInteger(port) || port < (zeroOk ? 0 : 1) || port > 65535) throw new InvalidArgumentError(what, `${port} is not a port number`);
}

/** One relayed connection: a host socket and a stack handle. */
class Relay {
  /** Host bytes the stack's send buffer has not taken yet. */
  pending: Buffer[] = [];
  pendingBytes = 0;
  /** The host side sent its FIN; the stack's is sent once `pending` is empty. */
  hostEnded = false;
  shutSent = false;
  /** The guest side's FIN was read and passed on (end()). */
  guestEnded = false;
  established = false;
  /** The stack handle was given back (it may be reused: never touch it again). */
  released = false;
  done = false;
  readonly sock: Socket;
  readonly h: number;
  readonly stats: NatStats;
  readonly label: string;
  constructor(sock: Socket, h: number, stats: NatStats, label: string) {
    this.sock = sock;
    this.h = h;
    this.stats = stats;
    this.label = label;
  }
}

export class NatGateway {
  readonly address: string;
  readonly netmask: string;
  readonly port: SwitchPort;
  /** Outbound connections (guest to host). */
  readonly outbound: NatStats = zero();
  readonly #sw: VirtualSwitch;
  readonly #ex: NatExports;
  readonly #aliases = new Map<number, string>();
  readonly #addr: number;
  readonly #allow: Allow[];
  readonly #allowSpec: string[];
  readonly #log: NonNullable<NatOptions['log']>;
  readonly #inbox: Uint8Array[] = [];
  readonly #relays = new Set<Relay>();
  readonly #forwards = new Set<{ server: Server; info: NatForward }>();
  #scheduled = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: NatOptions) {
    this.#sw = o.switch;
    this.address = o.address ?? DEFAULT_NAT_ADDRESS;
    this.netmask = o.netmask ?? '255.255.0.0';
    this.#addr = parseIp(this.address);
    const mask = parseIp(this.netmask);
    this.#log = o.log ?? (() => {});
    this.#allowSpec = [...(o.allow ?? ['127.0.0.0/8'])];
    this.#allow = this.#allowSpec.map(parseAllow);
    const aliases = o.hostAliases ?? { [DEFAULT_HOST_ALIAS]: '127.0.0.1' };
    for (const [k, v] of Object.entries(aliases)) {
      parseIp(v);
      this.#aliases.set(parseIp(k), v);
    }
    const maxConnections = o.maxConnections ?? 128;
    const bufferSize = o.bufferSize ?? 65536;
    if (!Number.isInteger(maxConnections) || maxConnections < 2 || maxConnections > 4096) throw new InvalidArgumentError('NAT maxConnections', `${maxConnections} is not 2..4096`);
    if (!(bufferSize >= 1024 && bufferSize <= 1 << 20 && (bufferSize & (bufferSize - 1)) === 0)) throw new InvalidArgumentError('NAT bufferSize', `${bufferSize} is not a power of two in 1 KiB..1 MiB`);
    const module = o.module ?? loadModule();
    const holder: { ex?: NatExports } = {};
    const instance = new WebAssembly.Instance(module, {
      nat: {
        send: (ptr: number, len: number) => this.#send(ptr, len),
        admit: (dst: number, dport: number, src: number, sport: number) => (this.#admit(dst >>> 0, dport, src >>> 0, sport) ? 1 : 0),
        abort: (msg: number, file: number, line: number, col: number) => {
          const mem = holder.ex!.memory;
          throw new NatModuleError(`the stack aborted: ${asString(mem, msg)} at ${asString(mem, file)}:${line}:${col}`);
        },
      },
    });
    const ex = instance.exports as unknown as NatExports;
    holder.ex = ex;
    this.#ex = ex;
    ex._initialize();
    const mac = parseMac(o.mac ?? DEFAULT_NAT_MAC);
    const r = ex.init(BigInt(mac), this.#addr, mask, maxConnections, bufferSize);
    if (r < 0) throw new NatModuleError(`the stack did not start (error ${-r})`);
    for (const a of this.#aliases.keys()) ex.addAddress(a, mask);
    // Claims the gateway's address and the aliases on the switch (a clash throws, naming the holder).
    this.port = this.#sw.addPort({
      name: 'nat', mac: o.mac ?? DEFAULT_NAT_MAC, ips: [this.address, ...[...this.#aliases.keys()].map(formatIp)], gateway: true,
      deliver: (frame) => this.#deliver(frame),
    });
    this.#schedule();
  }

  /** Every forward now. */
  get forwards(): NatForward[] {
    return [...this.#forwards].map((f) => f.info);
  }

  /** Connections the gateway's stack holds (relaying, or finishing their FINs). */
  get connectionsInUse(): number {
    return this.#ex.socketsInUse() - 1;
  }

  /**
   * Forward host `from.host` (default 127.0.0.1) port `from.port` (0: any
   * free one) to `to`. Resolves once listening; rejects with NatForwardError
   * when the host port cannot be bound. A connection to a target with no
   * address, or an address nobody on the switch owns (a domain that is
   * gone), is refused at once: the host socket is reset, and it is counted
   * and logged.
   */
  async forward(from: { host?: string; port: number }, to: ForwardTarget): Promise<NatForward> {
    if (this.#closed) throw new InvalidArgumentError('NAT gateway', 'it is closed');
    checkPort('forward host port', from.port, true);
    checkPort('forward target port', to.port);
    if (to.ip === undefined && to.resolve === undefined) throw new InvalidArgumentError('forward target', 'needs ip or resolve');
    if (to.ip !== undefined) parseIp(to.ip);
    const host = from.host ?? '127.0.0.1';
    const target = to.name ?? `${to.ip}:${to.port}`;
    const stats = zero();
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (sock) => this.#incoming(sock, to, target, stats));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(new NatForwardError(`${host}:${from.port} to ${target}`, `${err.code ?? ''} ${err.message}`.trim())));
      server.listen(from.port, host, () => resolve());
    });
    if (this.#closed) {
      server.close();
      throw new InvalidArgumentError('NAT gateway', 'it was closed while the forward was being set up');
    }
    server.on('error', (err) => this.#log('error', `NAT: forward ${host}:${from.port}: ${err.message}`));
    const port = (server.address() as { port: number }).port;
    const entry = {
      server,
      info: {
        host, port, target, stats,
        close: async (): Promise<void> => {
          this.#forwards.delete(entry);
          await new Promise<void>((r) => server.close(() => r()));
        },
      } satisfies NatForward,
    };
    this.#forwards.add(entry);
    this.#log('info', `NAT: forwarding ${host}:${port} to ${target}`);
    return entry.info;
  }

  /** Close every forward and connection and leave the switch. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const r of this.#relays) {
      this.#release(r, 'abort');
      r.done = true;
      r.sock.destroy();
    }
    this.#relays.clear();
    const closing = [...this.#forwards].map((f) => f.info.close());
    if (!this.port.removed) this.#sw.removePort(this.port);
    await Promise.all(closing);
  }

  // ---- the switch side ----

  #deliver(frame: Uint8Array): boolean {
    if (this.#closed || this.#inbox.length >= MAX_INBOX || frame.length > 2048) return false;
    this.#inbox.push(frame.slice());
    this.#schedule();
    return true;
  }

  #send(ptr: number, len: number): number {
    if (this.#closed || this.port.removed) return -EAGAIN;
    const v = this.#sw.send(this.port, new Uint8Array(this.#ex.memory.buffer, ptr, len));
    // A frame the switch dropped is lost like one on a wire: TCP sends it again.
    return v === Verdict.RATE_LIMITED ? -EAGAIN : 0;
  }

  #schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #now(): bigint {
    return process.hrtime.bigint();
  }

  /** Frames in, timers, every relay both ways, then the stack's next deadline. */
  #pump(): void {
    if (this.#closed) return;
    const ex = this.#ex;
    const now = this.#now();
    ex.poll(now);
    const frame = ex.frameBuffer();
    while (this.#inbox.length > 0) {
      const f = this.#inbox.shift()!;
      new Uint8Array(ex.memory.buffer, frame, f.length).set(f);
      ex.input(f.length);
    }
    for (let h = ex.accept(); h >= 0; h = ex.accept()) this.#outgoing(h);
    for (const r of this.#relays) this.#service(r);
    const next = ex.poll(this.#now());
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (next !== 0n) {
      const ms = Math.max(0, Number(next - this.#now()) / 1e6);
      this.#timer = setTimeout(() => this.#pump(), Math.ceil(ms));
      this.#timer.unref();
    }
  }

  // ---- outbound: guest to host ----

  /** Where a destination on the switch leads on the host: an alias, the gateway itself (127.0.0.1), or itself. */
  #hostFor(dst: number): string {
    if (dst === this.#addr) return '127.0.0.1';
    return this.#aliases.get(dst) ?? formatIp(dst);
  }

  #allowed(host: string, port: number): boolean {
    const a = parseIp(host);
    return this.#allow.some((e) => ((a & e.mask) >>> 0) === e.net && (e.port === undefined || e.port === port));
  }

  /** The stack asks before answering a guest's SYN. */
  #admit(dst: number, dport: number, src: number, sport: number): boolean {
    const host = this.#hostFor(dst);
    if (this.#allowed(host, dport)) return true;
    this.outbound.refused++;
    this.#log('warn', `NAT: refused ${formatIp(src)}:${sport} -> ${formatIp(dst)}:${dport}: host address ${host} port ${dport} is not allowed (allow: ${this.#allowText()})`);
    return false;
  }

  #allowText(): string {
    return this.#allowSpec.join(', ') || 'nothing';
  }

  /** A guest's connection was established: connect to the host and relay. */
  #outgoing(h: number): void {
    const ex = this.#ex;
    const dst = ex.endpoint(h, 0) >>> 0;
    const dport = ex.endpoint(h, 1);
    const src = ex.endpoint(h, 2) >>> 0;
    const sport = ex.endpoint(h, 3);
    const host = this.#hostFor(dst);
    const label = `${formatIp(src)}:${sport} -> ${formatIp(dst)}:${dport} (host ${host}:${dport})`;
    const sock = netConnect({ host, port: dport, allowHalfOpen: true });
    sock.pause();
    const r = new Relay(sock, h, this.outbound, label);
    this.#relays.add(r);
    this.#wire(r);
    sock.once('connect', () => {
      r.established = true;
      this.outbound.open++;
      this.outbound.total++;
      sock.resume();
      this.#schedule();
    });
  }

  // ---- forwards: host to guest ----

  #incoming(sock: Socket, to: ForwardTarget, target: string, stats: NatStats): void {
    const ex = this.#ex;
    const from = `${sock.remoteAddress}:${sock.remotePort}`;
    const refuse = (why: string): void => {
      stats.refused++;
      this.#log('warn', `NAT: refused ${from} -> ${target}: ${why}`);
      sock.on('error', () => {});
      sock.resetAndDestroy();
    };
    if (this.#closed) return refuse('the gateway is closed');
    const ip = to.ip ?? to.resolve!();
    if (ip === undefined) return refuse('it has no address (the domain is gone or has no vif)');
    if (this.#sw.owner(ip) === undefined) return refuse(`nobody on the switch has ${ip}`);
    const h = ex.connect(parseIp(ip), to.port);
    if (h < 0) return refuse(h === -1 ? 'the gateway\'s connection table is full' : `connect failed (${-h})`);
    const r = new Relay(sock, h, stats, `${from} -> ${target} (${ip}:${to.port})`);
    this.#relays.add(r);
    this.#wire(r);
    this.#schedule();
  }

  // ---- relaying ----

  #wire(r: Relay): void {
    const { sock } = r;
    sock.on('data', (chunk: Buffer) => {
      r.pending.push(chunk);
      r.pendingBytes += chunk.length;
      this.#toGuest(r);
      if (r.pendingBytes > 0) sock.pause();
      this.#schedule();
    });
    sock.on('end', () => {
      r.hostEnded = true;
      this.#toGuest(r);
      this.#schedule();
    });
    sock.on('drain', () => this.#schedule());
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!r.established && r.stats === this.outbound) {
        this.outbound.refused++;
        this.#log('warn', `NAT: ${r.label}: the host refused: ${err.code ?? err.message}`);
      } else if (!r.done) this.#log('info', `NAT: ${r.label}: host socket ${err.code ?? err.message}`);
    });
    sock.on('close', () => {
      if (r.done) return;
      // The host socket is gone before the relay finished: the guest side is reset, unless it had finished both ways.
      if (!r.released) {
        if (r.guestEnded && r.shutSent) this.#ex.close(r.h);
        else {
          this.#ex.abortSocket(r.h);
          if (r.established) r.stats.reset++;
        }
        r.released = true;
      }
      this.#finish(r);
      this.#schedule();
    });
  }

  /** Host bytes into the stack's send buffer, as far as it has room; the FIN after the last. */
  #toGuest(r: Relay): void {
    if (r.released || !r.established) return;
    const ex = this.#ex;
    const buf = ex.buffer();
    const cap = ex.bufferSize();
    while (r.pending.length > 0) {
      const space = ex.sendSpace(r.h);
      if (space === 0) break;
      const chunk = r.pending[0]!;
      const n0 = Math.min(space, chunk.length, cap);
      new Uint8Array(ex.memory.buffer, buf, n0).set(chunk.subarray(0, n0));
      const n = ex.send(r.h, n0);
      if (n <= 0) break;
      r.stats.bytesToGuest += n;
      r.pendingBytes -= n;
      if (n === chunk.length) r.pending.shift();
      else r.pending[0] = chunk.subarray(n);
    }
    if (r.pendingBytes === 0) {
      if (r.hostEnded && !r.shutSent) {
        ex.shutdown(r.h);
        r.shutSent = true;
      } else if (!r.hostEnded && r.sock.isPaused()) r.sock.resume();
    }
  }

  #service(r: Relay): void {
    if (r.released) return;
    const ex = this.#ex;
    const st = ex.state(r.h);
    if (!r.established && r.stats !== this.outbound) {
      // A forward: waiting for the guest to answer our SYN.
      if (st === St.Established || st === St.CloseWait) {
        r.established = true;
        r.stats.open++;
        r.stats.total++;
        r.sock.resume();
      } else if (st === St.Closed) {
        const err = -ex.error(r.h);
        r.stats.refused++;
        this.#log('warn', `NAT: refused ${r.label}: ${err === ECONNREFUSED ? 'the guest refused (nothing listens)' : `error ${err}`}`);
        this.#release(r, 'abort');
        r.sock.resetAndDestroy();
        this.#finish(r);
        return;
      } else return;
    }
    if (!r.established) return; // outbound: waiting for the host's connect
    this.#toGuest(r);
    // Guest bytes to the host socket while it takes them.
    const buf = ex.buffer();
    while (!r.guestEnded && !r.sock.destroyed && !r.sock.writableNeedDrain) {
      const n = ex.recv(r.h, ex.bufferSize());
      if (n > 0) {
        r.stats.bytesFromGuest += n;
        r.sock.write(Buffer.from(new Uint8Array(ex.memory.buffer, buf, n)));
        continue;
      }
      if (n === 0) {
        r.guestEnded = true;
        r.sock.end();
        break;
      }
      if (n === -EAGAIN) break;
      // Reset or timed out: so is the host side.
      r.stats.reset++;
      this.#log('info', `NAT: ${r.label}: the guest side ended with error ${-n}`);
      this.#release(r, 'close');
      r.sock.resetAndDestroy();
      this.#finish(r);
      return;
    }
    if (r.guestEnded && r.shutSent) this.#release(r, 'close');
  }

  #release(r: Relay, how: 'close' | 'abort'): void {
    if (r.released) return;
    r.released = true;
    if (how === 'close') this.#ex.close(r.h);
    else this.#ex.abortSocket(r.h);
  }

  #finish(r: Relay): void {
    if (r.done) return;
    r.done = true;
    if (r.established) r.stats.open--;
    this.#relays.delete(r);
  }
}

/** wasm-guests/build/nat.wasm, built with the guests (scripts/build-guests.ts). */
function loadModule(): WebAssembly.Module {
  const url = new URL('../../../wasm-guests/build/nat.wasm', import.meta.url);
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = new Uint8Array(readFileSync(url));
  } catch (err) {
    throw new NatModuleError(`cannot read ${url.pathname} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): build it with npm run build (scripts/build-guests.ts)`);
  }
  return new WebAssembly.Module(bytes);
}

/** An AssemblyScript string (UTF-16, its byte length just before it). */
function asString(mem: WebAssembly.Memory, ptr: number): string {
  if (ptr === 0) return '(null)';
  const len = new DataView(mem.buffer).getUint32(ptr - 4, true);
  return Buffer.from(new Uint8Array(mem.buffer, ptr, len)).toString('utf16le');
}
