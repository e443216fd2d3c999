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
 * UDP is relayed datagram by datagram through node:dgram sockets; the
 * stack's one catch-all UDP socket takes every datagram sent through the
 * gateway, with its destination, and answers from any address and port:
 *
 *  - outbound: one host socket per guest source address and port (a flow),
 *    closed after `udpIdleMs` without traffic, at most `maxUdpFlows` (the
 *    least recently used goes first); the destination is mapped and checked
 *    against the allow-list as for TCP (a refused datagram is dropped,
 *    counted in `udpOutbound.refused` and logged); a reply from a host
 *    address and port the flow sent to comes back to the guest from the
 *    switch address and port it sent to, anything else is dropped;
 *  - forwards (`protocol: 'udp'`): a host socket bound to the forward's port;
 *    each host peer (address and port) gets a gateway port, the source of
 *    its datagrams toward the guest, and the guest's replies to that port
 *    go back to that peer.
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
import { createSocket, type Socket as DgramSocket, type RemoteInfo } from 'node:dgram';
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
  /** UDP: host sockets for guests' outbound flows and peers of each UDP forward, at most (default 256) and after how long without a datagram they close (default 60000 ms). */
  maxUdpFlows?: number;
  udpIdleMs?: number;
  /** TCP connections the gateway's stack holds at once (default 128), and each one's buffers (default 65536, a power of two). */
  maxConnections?: number;
  bufferSize?: number;
  /** Refusals logged at most `lines` per `windowMs` (default 20 per 10000 ms); more are counted and summed up in the next window's first line. */
  refusalLog?: { lines: number; windowMs: number };
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
  readonly protocol: 'tcp' | 'udp';
  readonly host: string;
  /** The host port (the one bound, when 0 was asked for). */
  readonly port: number;
  readonly target: string;
  readonly stats: Readonly<NatStats>;
  /** Stop listening (TCP: connections already relaying go on until they end, the gateway's close ends them; UDP: the socket closes). */
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
  udpRecv(cap: number): number;
  udpEndpoint(which: number): number;
  udpSend(src: number, sport: number, dst: number, dport: number, len: number): number;
}

/** TcpState as numbered in wasm-guests/sdk/net/tcp.ts. */
const St = { Closed: 0, Established: 4, CloseWait: 7 } as const;
const EAGAIN = 11;
const ECONNREFUSED = 111;
/** The largest UDP payload in one frame (UDP_MAX_PAYLOAD in wasm-guests/sdk/net/udp.ts). */
const UDP_MAX_PAYLOAD = 1472;
/** Frames from the switch waiting for the stack; more are refused (counted as the gateway port's drops). */
const MAX_INBOX = 4096;

function zero(): NatStats {
  return { open: 0, total: 0, refused: 0, reset: 0, bytesToGuest: 0, bytesFromGuest: 0 };
}

/** One allow-list entry: a network and an optional port. */
interface Allow { net: number; mask: number; port?: number }

/** Check an allow-list entry (`a.b.c.d[/bits][:port]`); throws InvalidArgumentError naming it. */
export function parseAllow(text: string): Allow {
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

/** A guest source's outbound UDP: one host socket, and the switch destinations it sent to (by host address:port) for the replies. */
class UdpFlow {
  readonly dests = new Map<string, { dst: number; dport: number }>();
  last = 0;
  readonly key: string;
  readonly sock: DgramSocket;
  readonly guest: number;
  readonly gport: number;
  constructor(key: string, sock: DgramSocket, guest: number, gport: number) {
    this.key = key;
    this.sock = sock;
    this.guest = guest;
    this.gport = gport;
  }
}

/** A host peer of a UDP forward: its gateway port toward the guest. */
interface UdpPeer {
  readonly key: string;
  readonly fwd: UdpForwardState;
  readonly address: string;
  readonly port: number;
  /** The gateway port (source on 169.254.0.1) its datagrams come from toward the guest. */
  readonly gwPort: number;
  /** The guest address and port it was sent to (the guest's replies must come from there). */
  guest: number;
  gport: number;
  last: number;
}

interface UdpForwardState {
  readonly sock: DgramSocket;
  readonly to: ForwardTarget;
  readonly target: string;
  readonly stats: NatStats;
  readonly peers: Map<string, UdpPeer>;
  closed: boolean;
}

/** Destinations one outbound flow remembers for its replies (the least recently used is forgotten). */
const UDP_FLOW_DESTS = 64;
/** First gateway port handed to UDP forward peers. */
const UDP_PEER_PORT_FIRST = 20000;

export class NatGateway {
  readonly address: string;
  readonly netmask: string;
  readonly port: SwitchPort;
  /** Outbound connections (guest to host). */
  readonly outbound: NatStats = zero();
  /** Outbound UDP: `open` and `total` count flows (guest source address and port), `refused` datagrams dropped (not allowed, or the host socket failed). */
  readonly udpOutbound: NatStats = zero();
  readonly #sw: VirtualSwitch;
  readonly #ex: NatExports;
  readonly #aliases = new Map<number, string>();
  readonly #addr: number;
  #allow: Allow[];
  #allowSpec: string[];
  /** Refusal lines logged in the current window, the window's start (ms), and refusals not logged in it. */
  #refusalLines = 0;
  #refusalWindow = 0;
  #refusalsQuiet = 0;
  #refusalTimer: NodeJS.Timeout | undefined;
  readonly #refusalLinesMax: number;
  readonly #refusalWindowMs: number;
  readonly #log: NonNullable<NatOptions['log']>;
  readonly #inbox: Uint8Array[] = [];
  readonly #relays = new Set<Relay>();
  readonly #forwards = new Set<{ info: NatForward }>();
  readonly #udpFlows = new Map<string, UdpFlow>();
  /** UDP forward peers by gateway port. */
  readonly #udpPeers = new Map<number, UdpPeer>();
  readonly #udpForwards = new Set<UdpForwardState>();
  readonly #maxUdpFlows: number;
  readonly #udpIdleMs: number;
  #nextPeerPort = UDP_PEER_PORT_FIRST;
  #udpSweep: NodeJS.Timeout | undefined;
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
    this.#refusalLinesMax = o.refusalLog?.lines ?? 20;
    this.#refusalWindowMs = o.refusalLog?.windowMs ?? 10_000;
    if (!Number.isInteger(this.#refusalLinesMax) || this.#refusalLinesMax < 0 || !(this.#refusalWindowMs > 0)) {
      throw new InvalidArgumentError('NAT refusalLog', `${this.#refusalLinesMax} lines per ${this.#refusalWindowMs} ms is not a whole number of lines per a positive time`);
    }
    this.#maxUdpFlows = o.maxUdpFlows ?? 256;
    this.#udpIdleMs = o.udpIdleMs ?? 60_000;
    if (!Number.isInteger(this.#maxUdpFlows) || this.#maxUdpFlows < 1 || this.#maxUdpFlows > 4096) throw new InvalidArgumentError('NAT maxUdpFlows', `${this.#maxUdpFlows} is not 1..4096`);
    if (!(this.#udpIdleMs >= 10 && this.#udpIdleMs <= 3_600_000)) throw new InvalidArgumentError('NAT udpIdleMs', `${this.#udpIdleMs} is not 10..3600000`);
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
    this.#udpSweep = setInterval(() => this.#sweepUdp(), Math.max(5, Math.floor(this.#udpIdleMs / 4)));
    this.#udpSweep.unref();
    this.#schedule();
  }

  /** The allow-list: host addresses (and ports) guests may reach. */
  get allow(): string[] {
    return [...this.#allowSpec];
  }

  /**
   * Replace the allow-list. Every entry is checked first (a bad one throws,
   * changing nothing). Connections already relaying are left alone; new
   * ones and new UDP flows are checked against the new list.
   */
  setAllow(list: readonly string[]): void {
    const parsed = list.map(parseAllow);
    this.#allowSpec = list.map((x) => x.trim());
    this.#allow = parsed;
    this.#log('info', `NAT: guests may reach ${this.#allowText()}`);
  }

  /** Every forward now. */
  get forwards(): NatForward[] {
    return [...this.#forwards].map((f) => f.info);
  }

  /** Host UDP sockets open now for guests' outbound flows, and for peers of UDP forwards. */
  get udpFlows(): { outbound: number; peers: number } {
    return { outbound: this.#udpFlows.size, peers: this.#udpPeers.size };
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
  async forward(from: { host?: string; port: number; protocol?: 'tcp' | 'udp' }, to: ForwardTarget): Promise<NatForward> {
    if (this.#closed) throw new InvalidArgumentError('NAT gateway', 'it is closed');
    const protocol = from.protocol ?? 'tcp';
    if (protocol !== 'tcp' && protocol !== 'udp') throw new InvalidArgumentError('forward protocol', `"${String(protocol)}" is not tcp or udp`);
    checkPort('forward host port', from.port, true);
    checkPort('forward target port', to.port);
    if (to.ip === undefined && to.resolve === undefined) throw new InvalidArgumentError('forward target', 'needs ip or resolve');
    if (to.ip !== undefined) parseIp(to.ip);
    const host = from.host ?? '127.0.0.1';
    const target = to.name ?? `${to.ip}:${to.port}`;
    const stats = zero();
    if (protocol === 'udp') return this.#forwardUdp(host, from.port, to, target, stats);
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
        protocol: 'tcp', host, port, target, stats,
        close: async (): Promise<void> => {
          this.#forwards.delete(entry);
          // Connections it relays are reset (server.close alone would wait for them to end).
          for (const r of this.#relays) if (r.stats === stats) this.#abort(r);
          this.#schedule();
          await new Promise<void>((r) => server.close(() => r()));
        },
      } satisfies NatForward,
    };
    this.#forwards.add(entry);
    this.#log('info', `NAT: forwarding ${host}:${port} to ${target}`);
    return entry.info;
  }

  /** A UDP forward: bind the host port; datagrams go to the guest from a gateway port per host peer. */
  async #forwardUdp(host: string, hostPort: number, to: ForwardTarget, target: string, stats: NatStats): Promise<NatForward> {
    const sock = createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', (err: NodeJS.ErrnoException) => reject(new NatForwardError(`udp ${host}:${hostPort} to ${target}`, `${err.code ?? ''} ${err.message}`.trim())));
      sock.bind(hostPort, host, () => resolve());
    });
    if (this.#closed) {
      sock.close();
      throw new InvalidArgumentError('NAT gateway', 'it was closed while the forward was being set up');
    }
    sock.removeAllListeners('error');
    sock.on('error', (err) => this.#log('error', `NAT: udp forward ${host}:${hostPort}: ${err.message}`));
    const port = sock.address().port;
    const state: UdpForwardState = { sock, to, target, stats, peers: new Map(), closed: false };
    sock.on('message', (msg, rinfo) => this.#udpFromPeer(state, msg, rinfo));
    const entry = {
      info: {
        protocol: 'udp', host, port, target, stats,
        close: async (): Promise<void> => {
          this.#forwards.delete(entry);
          this.#closeUdpForward(state);
        },
      } satisfies NatForward,
    };
    this.#udpForwards.add(state);
    this.#forwards.add(entry);
    this.#log('info', `NAT: forwarding udp ${host}:${port} to ${target}`);
    return entry.info;
  }

  /** Close every forward and connection and leave the switch. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#flushRefusals();
    for (const r of this.#relays) this.#abort(r);
    clearInterval(this.#udpSweep);
    for (const f of this.#udpFlows.values()) f.sock.close();
    this.#udpFlows.clear();
    for (const s of this.#udpForwards) this.#closeUdpForward(s);
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
    this.#udpFromGuests();
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
    this.#logRefusal(`NAT: refused ${formatIp(src)}:${sport} -> ${formatIp(dst)}:${dport}: host address ${host} port ${dport} is not allowed (allow: ${this.#allowText()})`);
    return false;
  }

  /**
   * Log a refusal, at most refusalLog.lines per refusalLog.windowMs: a
   * guest that hammers a forbidden address must not flood the kernel log.
   * When the window ends, one line says how many went unlogged.
   */
  #logRefusal(line: string): void {
    const t = Date.now();
    if (t - this.#refusalWindow >= this.#refusalWindowMs) {
      this.#flushRefusals();
      this.#refusalWindow = t;
      this.#refusalLines = 0;
    }
    if (this.#refusalLines < this.#refusalLinesMax) {
      this.#refusalLines++;
      this.#log('warn', line);
    } else if (this.#refusalsQuiet++ === 0) {
      this.#refusalTimer = setTimeout(() => this.#flushRefusals(), this.#refusalWindow + this.#refusalWindowMs - t);
      this.#refusalTimer.unref();
    }
  }

  /** Say how many refusals went unlogged in the window that ends. */
  #flushRefusals(): void {
    clearTimeout(this.#refusalTimer);
    if (this.#refusalsQuiet > 0) this.#log('warn', `NAT: ${this.#refusalsQuiet} more refusals were not logged (at most ${this.#refusalLinesMax} lines per ${this.#refusalWindowMs} ms)`);
    this.#refusalsQuiet = 0;
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
      this.#logRefusal(`NAT: refused ${from} -> ${target}: ${why}`);
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

  // ---- UDP ----

  /** Every datagram guests sent through the gateway: to a forward's peer, or out to the host. */
  #udpFromGuests(): void {
    const ex = this.#ex;
    const buf = ex.buffer();
    for (;;) {
      const n = ex.udpRecv(UDP_MAX_PAYLOAD);
      if (n < 0) break;
      const src = ex.udpEndpoint(0) >>> 0;
      const sport = ex.udpEndpoint(1);
      const dst = ex.udpEndpoint(2) >>> 0;
      const dport = ex.udpEndpoint(3);
      const data = Buffer.from(new Uint8Array(ex.memory.buffer, buf, n));
      const peer = dst === this.#addr ? this.#udpPeers.get(dport) : undefined;
      if (peer && peer.guest === src && peer.gport === sport) {
        // A guest's reply to a forward's host peer.
        if (peer.fwd.closed) continue;
        peer.last = Date.now();
        peer.fwd.stats.bytesFromGuest += n;
        this.#dgramSend(peer.fwd.sock, data, peer.port, peer.address, `udp forward ${peer.fwd.target} to ${peer.key}`);
        continue;
      }
      this.#udpOut(src, sport, dst, dport, data);
    }
  }

  #udpOut(src: number, sport: number, dst: number, dport: number, data: Buffer): void {
    const host = this.#hostFor(dst);
    const what = `udp ${formatIp(src)}:${sport} -> ${formatIp(dst)}:${dport}`;
    if (dport === 0 || !this.#allowed(host, dport)) {
      this.udpOutbound.refused++;
      this.#logRefusal(`NAT: refused ${what}: host address ${host} port ${dport} is not allowed (allow: ${this.#allowText()})`);
      return;
    }
    const key = `${src}:${sport}`;
    let flow = this.#udpFlows.get(key);
    if (flow) this.#udpFlows.delete(key); // re-inserted below: the map is kept in order of use
    else {
      if (this.#udpFlows.size >= this.#maxUdpFlows) {
        const [oldest] = this.#udpFlows.values();
        this.#closeFlow(oldest!, 'the flow table is full');
      }
      const sock = createSocket('udp4');
      const f = new UdpFlow(key, sock, src, sport);
      sock.on('message', (msg, rinfo) => this.#udpReply(f, msg, rinfo));
      sock.on('error', (err: NodeJS.ErrnoException) => {
        this.udpOutbound.refused++;
        this.#log('warn', `NAT: ${what}: host socket ${err.code ?? err.message}`);
      });
      flow = f;
      this.udpOutbound.open++;
      this.udpOutbound.total++;
    }
    this.#udpFlows.set(key, flow);
    flow.last = Date.now();
    const dest = `${host}:${dport}`;
    flow.dests.delete(dest); // re-inserted: the map is kept in order of use
    flow.dests.set(dest, { dst, dport });
    if (flow.dests.size > UDP_FLOW_DESTS) flow.dests.delete(flow.dests.keys().next().value!);
    this.udpOutbound.bytesFromGuest += data.length;
    this.#dgramSend(flow.sock, data, dport, host, what);
  }

  /** Send on a host socket; a failure (asynchronous or not) is logged, never thrown into the pump. */
  #dgramSend(sock: DgramSocket, data: Buffer, port: number, host: string, what: string): void {
    try {
      sock.send(data, port, host, (err) => {
        if (err) this.#log('info', `NAT: ${what}: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      });
    } catch (err) {
      this.#log('warn', `NAT: ${what}: ${(err as Error).message}`);
    }
  }

  /** A host reply to a flow: to the guest from the switch address and port it sent to; from anyone else, dropped. */
  #udpReply(f: UdpFlow, msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#closed || this.#udpFlows.get(f.key) !== f) return;
    const d = f.dests.get(`${rinfo.address}:${rinfo.port}`);
    if (!d || msg.length > UDP_MAX_PAYLOAD) return;
    f.last = Date.now();
    if (this.#toGuestUdp(d.dst, d.dport, f.guest, f.gport, msg)) this.udpOutbound.bytesToGuest += msg.length;
  }

  /** A datagram from a host peer of a UDP forward, to the guest from the peer's gateway port. */
  #udpFromPeer(s: UdpForwardState, msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#closed || s.closed) return;
    const from = `${rinfo.address}:${rinfo.port}`;
    const refuse = (why: string): void => {
      s.stats.refused++;
      this.#logRefusal(`NAT: refused udp ${from} -> ${s.target}: ${why}`);
    };
    const ip = s.to.ip ?? s.to.resolve!();
    if (ip === undefined) return refuse('it has no address (the domain is gone or has no vif)');
    if (this.#sw.owner(ip) === undefined) return refuse(`nobody on the switch has ${ip}`);
    if (msg.length > UDP_MAX_PAYLOAD) return refuse(`${msg.length} bytes is over one frame (${UDP_MAX_PAYLOAD})`);
    let peer = s.peers.get(from);
    const guest = parseIp(ip);
    if (peer) s.peers.delete(from);
    else {
      if (this.#udpPeers.size >= this.#maxUdpFlows) {
        const oldest = [...this.#udpPeers.values()].reduce((a, b) => (b.last < a.last ? b : a));
        this.#closePeer(oldest);
      }
      const gwPort = this.#peerPort();
      if (gwPort === 0) return refuse('no gateway port is free');
      peer = { key: from, fwd: s, address: rinfo.address, port: rinfo.port, gwPort, guest, gport: s.to.port, last: 0 };
      this.#udpPeers.set(gwPort, peer);
      s.stats.open++;
      s.stats.total++;
    }
    // The domain's address may have changed since; its replies come from the new one.
    peer.guest = guest;
    peer.last = Date.now();
    s.peers.set(from, peer);
    if (this.#toGuestUdp(this.#addr, peer.gwPort, guest, peer.gport, msg)) s.stats.bytesToGuest += msg.length;
  }

  /** A free gateway port for a forward peer, or 0. */
  #peerPort(): number {
    const span = 65536 - UDP_PEER_PORT_FIRST;
    for (let i = 0; i < span; i++) {
      const p = this.#nextPeerPort;
      this.#nextPeerPort = p + 1 >= 65536 ? UDP_PEER_PORT_FIRST : p + 1;
      if (!this.#udpPeers.has(p)) return p;
    }
    return 0;
  }

  #toGuestUdp(src: number, sport: number, dst: number, dport: number, msg: Buffer): boolean {
    const ex = this.#ex;
    const buf = ex.buffer();
    new Uint8Array(ex.memory.buffer, buf, msg.length).set(msg);
    const r = ex.udpSend(src, sport, dst, dport, msg.length);
    // The stack may have queued an ARP request: let its timers run.
    this.#schedule();
    return r >= 0;
  }

  #closeFlow(f: UdpFlow, why: string): void {
    if (this.#udpFlows.get(f.key) !== f) return;
    this.#udpFlows.delete(f.key);
    this.udpOutbound.open--;
    f.sock.close();
    if (why !== 'idle') this.#log('info', `NAT: udp flow from ${formatIp(f.guest)}:${f.gport} closed: ${why}`);
  }

  #closePeer(p: UdpPeer): void {
    if (this.#udpPeers.get(p.gwPort) !== p) return;
    this.#udpPeers.delete(p.gwPort);
    p.fwd.peers.delete(p.key);
    p.fwd.stats.open--;
  }

  #closeUdpForward(s: UdpForwardState): void {
    if (s.closed) return;
    s.closed = true;
    for (const p of [...s.peers.values()]) this.#closePeer(p);
    this.#udpForwards.delete(s);
    s.sock.close();
  }

  /** Close the flows and forget the peers that have been quiet for udpIdleMs. */
  #sweepUdp(): void {
    const old = Date.now() - this.#udpIdleMs;
    for (const f of [...this.#udpFlows.values()]) if (f.last < old) this.#closeFlow(f, 'idle');
    for (const p of [...this.#udpPeers.values()]) if (p.last < old) this.#closePeer(p);
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
        this.#logRefusal(`NAT: ${r.label}: the host refused: ${err.code ?? err.message}`);
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
        this.#logRefusal(`NAT: refused ${r.label}: ${err === ECONNREFUSED ? 'the guest refused (nothing listens)' : `error ${err}`}`);
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

  /** End a relay now: the stack's socket is aborted (a RST to the guest) and the host socket destroyed. */
  #abort(r: Relay): void {
    this.#release(r, 'abort');
    this.#finish(r);
    r.sock.destroy();
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
