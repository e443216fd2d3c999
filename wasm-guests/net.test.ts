/**
 * The SDK's network stack (wasm-guests/sdk/net/), compiled into a small AS
 * module (wasm-guests/test-modules/net-check.ts) holding two stacks with
 * their own MACs and addresses. The test is the wire between them: frames
 * a stack sends arrive through the import `test.send`, and the test hands
 * them to the other stack, or drops, duplicates, reorders or corrupts them.
 * Time is a fake clock the test advances: a little per frame, and straight
 * to the next deadline a stack asked for when the wire is idle.
 *
 * Every frame a stack sends is checked by an independent decoder written
 * here (IPv4 header checksum, TCP/UDP pseudo-header checksums, lengths,
 * options), and every TCP data segment against the largest window the
 * receiver ever advertised. Every call into the module runs under a vm
 * timeout, so a stack that loops forever fails the test instead of stopping it.
 */
import t, { type Test } from 'tap';
import { bounded as boundedCall, compileAs, instantiateTestModule } from '../test/helpers/asc.ts';
import { prng } from '../test/fuzz/prng.ts';

const EAGAIN = 11;
const EBADF = 9;
const EINVAL = 22;
const EPIPE = 32;
const EMSGSIZE = 90;
const EADDRINUSE = 98;
const ENETUNREACH = 101;
const ECONNRESET = 104;
const ETIMEDOUT = 110;
const ECONNREFUSED = 111;

/** TcpState, as numbered in sdk/net/tcp.ts. */
const St = {
  Closed: 0, Listen: 1, SynSent: 2, SynReceived: 3, Established: 4, FinWait1: 5, FinWait2: 6, CloseWait: 7, Closing: 8,
  LastAck: 9, TimeWait: 10,
} as const;

/** Longest a bounded run may take. */
const CALL_MS = 60_000;
const MS = 1_000_000n;
const SECOND = 1_000_000_000n;

const module = new WebAssembly.Module(await compileAs('wasm-guests/test-modules/net-check.ts'));

interface NetCheck {
  buffer(): number;
  bufferSize(): number;
  frameBuffer(): number;
  create(which: number, mac: bigint, maxTcp: number, tcpBuf: number): void;
  setAddress(which: number, ip: number, mask: number, gw: number): void;
  addAddress(which: number, ip: number, mask: number): number;
  configure(which: number, len: number): number;
  address(which: number, i: number): number;
  mask(which: number, i: number): number;
  gateway(which: number): number;
  input(which: number, len: number): void;
  poll(which: number, now: bigint): bigint;
  statCount(): number;
  stat(which: number, i: number): bigint;
  statName(i: number): number;
  ping(which: number, ip: number, seq: number, len: number): number;
  pingReply(which: number): number;
  tcpOpen(which: number): number;
  tcpBind(h: number, port: number): number;
  tcpConnect(h: number, ip: number, port: number): number;
  tcpListen(h: number, port: number, backlog: number): number;
  tcpListenAny(h: number, backlog: number, refuse: number): number;
  setAnyDestination(which: number, on: boolean): void;
  tcpAccept(h: number): number;
  tcpSend(h: number, off: number, len: number): number;
  tcpRecv(h: number, off: number, cap: number): number;
  tcpShutdown(h: number): number;
  tcpClose(h: number): void;
  tcpAbort(h: number): void;
  tcpState(h: number): number;
  tcpError(h: number): number;
  tcpAvailable(h: number): number;
  tcpSendSpace(h: number): number;
  tcpUnacked(h: number): number;
  tcpEndpoint(h: number, which: number): number;
  tcpInUse(which: number): number;
  udpOpen(which: number): number;
  udpBind(h: number, port: number): number;
  udpPort(h: number): number;
  udpBindAny(h: number): number;
  udpSendFrom(h: number, src: number, sport: number, ip: number, port: number, off: number, len: number): number;
  fromDstIp(): number;
  fromDstPort(): number;
  udpSendTo(h: number, ip: number, port: number, off: number, len: number): number;
  udpRecvFrom(h: number, off: number, cap: number): number;
  fromIp(): number;
  fromPort(): number;
  udpClose(h: number): void;
  parseIp(len: number): bigint;
  formatIp(ip: number): number;
  parseMacText(len: number): bigint;
  formatMacText(mac: bigint): number;
  parseConfig(len: number): number;
  heapMark(): number;
}

/** Every call into a module goes through here: a loop that never returns becomes an exception after `ms`. */
function bounded<T>(f: () => T, ms = CALL_MS): T {
  return boundedCall(f, ms);
}

function ipOf(s: string): number {
  return s.split('.').reduce((a, b) => a * 256 + Number(b), 0) >>> 0;
}
function ipText(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

const A = 0;
const B = 1;
const IP_A = ipOf('169.254.1.1');
const IP_B = ipOf('169.254.1.2');
const MASK16 = ipOf('255.255.0.0');
const GW = ipOf('169.254.1.254');
const MAC_A = 0x020000000001n;
const MAC_B = 0x020000000002n;
const MAC_OTHER = 0x020000000099n;

// ---- An independent decoder for the frames the stacks send ----

function sum16(b: Uint8Array, start: number, end: number, acc = 0): number {
  let i = start;
  for (; i + 1 < end; i += 2) acc += (b[i]! << 8) | b[i + 1]!;
  if (i < end) acc += b[i]! << 8;
  return acc;
}
function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 65536);
  return acc;
}
function pseudo(src: number, dst: number, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}
/** The checksum to store in a field that is zero. */
function checksum(acc: number): number {
  return ~fold(acc) & 0xffff;
}

interface TcpInfo {
  src: number; dst: number; sport: number; dport: number; seq: number; ack: number; flags: number; wnd: number;
  len: number; mss?: number;
}
interface Decoded {
  kind: 'arp' | 'icmp' | 'udp' | 'tcp';
  error?: string;
  tcp?: TcpInfo;
}

/** Check a frame as a receiver that trusts nothing would: every length, checksum and option. */
function decode(f: Uint8Array): Decoded {
  const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
  const bad = (kind: Decoded['kind'], error: string): Decoded => ({ kind, error });
  if (f.length < 14) return bad('arp', `runt frame of ${f.length} bytes`);
  if (f.length > 1514) return bad('arp', `frame of ${f.length} bytes`);
  const type = v.getUint16(12);
  if ((f[6]! & 1) !== 0) return bad('arp', 'multicast source MAC');
  if (type === 0x0806) {
    if (f.length !== 42) return bad('arp', `ARP frame of ${f.length} bytes`);
    if (v.getUint16(14) !== 1 || v.getUint16(16) !== 0x0800 || f[18] !== 6 || f[19] !== 4) return bad('arp', 'ARP header');
    const op = v.getUint16(20);
    if (op !== 1 && op !== 2) return bad('arp', `ARP op ${op}`);
    for (let i = 0; i < 6; i++) if (f[22 + i] !== f[6 + i]) return bad('arp', 'ARP sender MAC is not the frame source');
    return { kind: 'arp' };
  }
  if (type !== 0x0800) return bad('arp', `ethertype ${type.toString(16)}`);
  if (f.length < 34) return bad('icmp', 'short IPv4 frame');
  if (f[14] !== 0x45) return bad('icmp', `version/IHL ${f[14]!.toString(16)}`);
  const total = v.getUint16(16);
  if (total !== f.length - 14) return bad('icmp', `IPv4 total length ${total} in a frame of ${f.length}`);
  if (fold(sum16(f, 14, 34)) !== 0xffff) return bad('icmp', 'IPv4 header checksum');
  if (v.getUint16(20) !== 0x4000) return bad('icmp', `flags/fragment ${v.getUint16(20).toString(16)}`);
  if (f[22] !== 64) return bad('icmp', `TTL ${f[22]}`);
  const proto = f[23]!;
  const src = v.getUint32(26);
  const dst = v.getUint32(30);
  const len = total - 20;
  if (proto === 1) {
    if (len < 8) return bad('icmp', 'short ICMP');
    if (fold(sum16(f, 34, 34 + len)) !== 0xffff) return bad('icmp', 'ICMP checksum');
    return { kind: 'icmp' };
  }
  if (proto === 17) {
    if (len < 8 || v.getUint16(38) !== len) return bad('udp', 'UDP length');
    if (v.getUint16(40) === 0) return bad('udp', 'UDP without checksum');
    if (fold(sum16(f, 34, 34 + len, pseudo(src, dst, 17, len))) !== 0xffff) return bad('udp', 'UDP checksum');
    return { kind: 'udp' };
  }
  if (proto !== 6) return bad('tcp', `protocol ${proto}`);
  if (len < 20) return bad('tcp', 'short TCP');
  const doff = (f[46]! >> 4) * 4;
  if (doff < 20 || doff > len) return bad('tcp', `data offset ${doff}`);
  if (fold(sum16(f, 34, 34 + len, pseudo(src, dst, 6, len))) !== 0xffff) return bad('tcp', 'TCP checksum');
  const flags = f[47]! & 0x3f;
  let mss: number | undefined;
  for (let i = 54; i < 34 + doff;) {
    const kind = f[i]!;
    if (kind === 0) break;
    if (kind === 1) { i++; continue; }
    const olen = f[i + 1]!;
    if (olen < 2 || i + olen > 34 + doff) return bad('tcp', 'TCP option length');
    if (kind === 2) {
      if (olen !== 4 || !(flags & 2)) return bad('tcp', 'MSS option');
      mss = v.getUint16(i + 2);
    }
    i += olen;
  }
  if ((flags & 2) && mss !== 1460) return bad('tcp', 'SYN without MSS 1460');
  if ((flags & 4) && (flags & 3)) return bad('tcp', 'RST with SYN or FIN');
  return {
    kind: 'tcp',
    tcp: {
      src, dst, sport: v.getUint16(34), dport: v.getUint16(36), seq: v.getUint32(38), ack: v.getUint32(42), flags,
      wnd: v.getUint16(48), len: len - doff, ...(mss === undefined ? {} : { mss }),
    },
  };
}

// ---- Frame builders, for hostile input ----

function ethHeader(dst: bigint, src: bigint, type: number): Uint8Array {
  const f = new Uint8Array(14);
  const v = new DataView(f.buffer);
  v.setUint16(0, Number(dst >> 32n));
  v.setUint32(2, Number(dst & 0xffffffffn));
  v.setUint16(6, Number(src >> 32n));
  v.setUint32(8, Number(src & 0xffffffffn));
  v.setUint16(12, type);
  return f;
}
function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}
/** An IPv4 frame from A to B (MACs and addresses overridable), with a right header checksum. */
function ipFrame(proto: number, payload: Uint8Array, o: { src?: number; dst?: number; frag?: number; ttl?: number; ethDst?: bigint } = {}): Uint8Array {
  const h = new Uint8Array(20);
  const v = new DataView(h.buffer);
  h[0] = 0x45;
  v.setUint16(2, 20 + payload.length);
  v.setUint16(6, o.frag ?? 0x4000);
  h[8] = o.ttl ?? 64;
  h[9] = proto;
  v.setUint32(12, o.src ?? IP_A);
  v.setUint32(16, o.dst ?? IP_B);
  v.setUint16(10, checksum(sum16(h, 0, 20)));
  return concat(ethHeader(o.ethDst ?? MAC_B, MAC_A, 0x0800), h, payload);
}
/** A TCP segment with a right checksum (for A -> B unless told). */
function tcpSegment(o: { sport?: number; dport?: number; seq?: number; ack?: number; flags?: number; wnd?: number; options?: number[]; data?: Uint8Array; src?: number; dst?: number; doff?: number }): Uint8Array {
  const opts = Uint8Array.from(o.options ?? []);
  const hlen = 20 + opts.length;
  const data = o.data ?? new Uint8Array(0);
  const s = new Uint8Array(hlen + data.length);
  const v = new DataView(s.buffer);
  v.setUint16(0, o.sport ?? 40000);
  v.setUint16(2, o.dport ?? 80);
  v.setUint32(4, o.seq ?? 1000);
  v.setUint32(8, o.ack ?? 0);
  s[12] = ((o.doff ?? hlen / 4) & 15) << 4;
  s[13] = o.flags ?? 0x02;
  v.setUint16(14, o.wnd ?? 65535);
  s.set(opts, 20);
  s.set(data, hlen);
  v.setUint16(16, checksum(sum16(s, 0, s.length, pseudo(o.src ?? IP_A, o.dst ?? IP_B, 6, s.length))));
  return s;
}
function udpDatagram(sport: number, dport: number, data: Uint8Array, src = IP_A, dst = IP_B): Uint8Array {
  const s = new Uint8Array(8 + data.length);
  const v = new DataView(s.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint16(4, s.length);
  s.set(data, 8);
  v.setUint16(6, checksum(sum16(s, 0, s.length, pseudo(src, dst, 17, s.length))) || 0xffff);
  return s;
}
function icmpEcho(type: number, id: number, seq: number, data: Uint8Array): Uint8Array {
  const s = new Uint8Array(8 + data.length);
  const v = new DataView(s.buffer);
  s[0] = type;
  v.setUint16(4, id);
  v.setUint16(6, seq);
  s.set(data, 8);
  v.setUint16(2, checksum(sum16(s, 0, s.length)));
  return s;
}

// ---- The wire ----

interface Frame { from: number; to: number; bytes: Uint8Array }
type Verdict = 'pass' | 'drop' | 'dup' | 'hold';

/** One instance of the test module, with stacks A and B joined by a wire the test controls. */
class Net {
  readonly ex: NetCheck;
  readonly memory: WebAssembly.Memory;
  now = 0n;
  /** Frames on the wire, in order. */
  queue: Frame[] = [];
  /** Frames held back by a 'hold' verdict: delivered after the next frame (reordering). */
  held: Frame[] = [];
  deadlines: bigint[] = [0n, 0n];
  /** Decides each frame's fate, by its index on the wire. */
  filter: ((f: Frame, index: number) => Verdict) | null = null;
  /** When set, the link refuses frames from that stack (ring full). */
  linkFull = [false, false];
  /** Frames that failed the independent decoder, and counts by kind. */
  errors: string[] = [];
  kinds = new Map<string, number>();
  /** TCP data that went past the receiver's advertised window. */
  windowViolations: string[] = [];
  private edges = new Map<string, number>();
  sent = 0;
  /** Frames that went through the filter: the index it is given. */
  onWire = 0;
  delivered = 0;
  dropped = 0;
  /** Fake ns the wire takes per frame. */
  tick = 10_000n;
  /** Every frame sent, when set (for the fuzzer's corpus). */
  capture: Frame[] | null = null;
  private statNames: string[] = [];

  constructor() {
    this.memory = new WebAssembly.Memory({ initial: 1, maximum: 4096, shared: true });
    this.ex = instantiateTestModule(module, this.memory, { send: this.onSend }) as unknown as NetCheck;
    for (let i = 0; i < this.ex.statCount(); i++) this.statNames.push(this.text(this.ex.statName(i)));
  }

  /** Stacks A (169.254.1.1) and B (169.254.1.2) on 169.254/16. */
  static pair(o: { maxTcp?: number; tcpBuf?: number } = {}): Net {
    const n = new Net();
    n.ex.create(A, MAC_A, o.maxTcp ?? 0, o.tcpBuf ?? 0);
    n.ex.create(B, MAC_B, o.maxTcp ?? 0, o.tcpBuf ?? 0);
    n.ex.setAddress(A, IP_A, MASK16, GW);
    n.ex.setAddress(B, IP_B, MASK16, GW);
    n.pollAll();
    return n;
  }

  mem(): Uint8Array { return new Uint8Array(this.memory.buffer); }
  buf(): number { return this.ex.buffer(); }
  text(n: number): string { return Buffer.from(this.mem().subarray(this.buf(), this.buf() + n)).toString(); }
  write(bytes: Uint8Array, off = 0): void { this.mem().set(bytes, this.buf() + off); }
  read(off: number, n: number): Uint8Array { return this.mem().slice(this.buf() + off, this.buf() + off + n); }

  private onSend = (which: number, ptr: number, len: number): number => {
    if (this.linkFull[which]) return -EAGAIN;
    ptr >>>= 0;
    const bytes = this.mem().slice(ptr, ptr + len);
    const frame = { from: which, to: 1 - which, bytes };
    this.sent++;
    this.check(frame);
    this.capture?.push(frame);
    this.queue.push(frame);
    return 0;
  };

  private check(f: Frame): void {
    const d = decode(f.bytes);
    this.kinds.set(d.kind, (this.kinds.get(d.kind) ?? 0) + 1);
    if (d.error) {
      this.errors.push(`${'AB'[f.from]}: ${d.error}`);
      return;
    }
    const s = d.tcp;
    if (!s) return;
    const key = `${s.src}:${s.sport}>${s.dst}:${s.dport}`;
    const back = `${s.dst}:${s.dport}>${s.src}:${s.sport}`;
    if (s.flags & 0x10) {
      const edge = (s.ack + s.wnd) >>> 0;
      const old = this.edges.get(key);
      if (old === undefined || ((edge - old) | 0) > 0) this.edges.set(key, edge);
    }
    const edge = this.edges.get(back);
    if (s.len > 0 && edge !== undefined && !(s.flags & 2) && (((s.seq + s.len) >>> 0) - edge | 0) > 0) {
      this.windowViolations.push(`${'AB'[f.from]} sent ${s.seq}+${s.len} past the edge ${edge}`);
    }
  }

  /** Hand a frame to its stack. */
  deliver(f: Frame): void {
    this.mem().set(f.bytes, this.ex.frameBuffer());
    this.ex.input(f.to, f.bytes.length);
    this.delivered++;
  }

  /** Give a crafted frame to stack `to`. */
  inject(to: number, bytes: Uint8Array): void {
    bounded(() => this.deliver({ from: 1 - to, to, bytes }));
  }

  pollAll(): void {
    for (let i = 0; i < 2; i++) this.deadlines[i] = this.ex.poll(i, this.now);
  }

  stats(which: number): Map<string, bigint> {
    const m = new Map<string, bigint>();
    this.statNames.forEach((name, i) => m.set(name, this.ex.stat(which, i)));
    return m;
  }
  stat(which: number, name: string): number {
    const i = this.statNames.indexOf(name);
    if (i < 0) throw new Error(`no counter ${name}`);
    return Number(this.ex.stat(which, i));
  }

  /**
   * Run the wire until `done()` holds: each round runs `app` (the
   * applications), delivers the frames on the wire through the filter, and
   * polls both stacks. When the wire is idle the clock jumps to the next
   * deadline. False when nothing is left to happen (stalled) or after
   * `maxTime` of fake time or `maxRounds`.
   */
  run(done: () => boolean, app: (() => void) | null = null, o: { maxTime?: bigint; maxRounds?: number } = {}): boolean {
    const until = this.now + (o.maxTime ?? 600n * SECOND);
    const maxRounds = o.maxRounds ?? 1_000_000;
    return bounded(() => {
      for (let round = 0; round < maxRounds; round++) {
        app?.();
        if (done()) return true;
        if (this.queue.length > 0 || this.held.length > 0) {
          const batch = this.queue.splice(0);
          if (batch.length === 0) batch.push(...this.held.splice(0));
          for (const f of batch) {
            this.now += this.tick;
            const verdict = this.filter ? this.filter(f, this.onWire++) : 'pass';
            if (verdict === 'drop') { this.dropped++; continue; }
            if (verdict === 'hold') { this.held.push(f); continue; }
            this.deliver(f);
            if (verdict === 'dup') this.deliver(f);
            for (const h of this.held.splice(0)) this.deliver(h);
          }
          this.pollAll();
          continue;
        }
        this.pollAll();
        if (this.queue.length > 0) continue;
        const next = this.deadlines.filter((d) => d > 0n).reduce((a, b) => (a === 0n || b < a ? b : a), 0n);
        if (next === 0n) {
          app?.();
          return done();
        }
        if (next > until) return done();
        if (next > this.now) this.now = next;
        this.pollAll();
      }
      return done();
    });
  }

  /** Advance the fake clock by `dt`, running the wire meanwhile. */
  idle(dt: bigint, app: (() => void) | null = null): void {
    const end = this.now + dt;
    this.run(() => this.now >= end, app, { maxTime: dt });
    if (this.now < end) {
      this.now = end;
      bounded(() => this.pollAll());
    }
  }
}

/** A listener on B:`port`, a connection from A to it: both handles, established. */
function connectPair(t: Test, net: Net, port = 80): { a: number; b: number; listener: number } {
  const ex = net.ex;
  const listener = ex.tcpOpen(B);
  t.equal(ex.tcpListen(listener, port, 4), 0, 'B listens');
  const a = ex.tcpOpen(A);
  t.equal(ex.tcpConnect(a, IP_B, port), 0, 'A connects');
  let b = -1;
  const ok = net.run(() => {
    if (b < 0) b = ex.tcpAccept(listener);
    return b >= 0 && ex.tcpState(a) === St.Established;
  });
  t.ok(ok, 'the connection is established and accepted');
  return { a, b, listener };
}

/** Pseudo-random bytes. */
function randomBytes(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const x = Math.floor(r() * 2 ** 32);
    out[i] = x; out[i + 1] = x >>> 8; out[i + 2] = x >>> 16; out[i + 3] = x >>> 24;
  }
  return out;
}

const SEND_AREA = 0;
const RECV_AREA = 1 << 19;
const CHUNK = 1 << 16;

/** One direction of a transfer: the app step moves data in and out of the sockets. */
class Transfer {
  sent = 0;
  got: Uint8Array;
  received = 0;
  eof = false;
  /** When false, the receiver does not read (flow control). */
  reading = true;
  closeWhenSent = false;
  /** Forged segments may add bytes: count them, keep none (fuzzing a live connection). */
  lenient = false;
  private closed = false;
  readonly data: Uint8Array;
  private area: number;
  private net: Net;
  private from: number;
  private to: number;

  constructor(net: Net, from: number, to: number, data: Uint8Array, lane = 0) {
    this.net = net;
    this.from = from;
    this.to = to;
    this.data = data;
    this.got = new Uint8Array(data.length);
    this.area = lane * 2 * CHUNK;
  }

  step = (): void => {
    const ex = this.net.ex;
    while (this.sent < this.data.length) {
      const n = Math.min(CHUNK, this.data.length - this.sent);
      this.net.write(this.data.subarray(this.sent, this.sent + n), SEND_AREA + this.area);
      const r = ex.tcpSend(this.from, SEND_AREA + this.area, n);
      if (r <= 0) break;
      this.sent += r;
    }
    if (this.closeWhenSent && !this.closed && this.sent === this.data.length) {
      ex.tcpShutdown(this.from);
      this.closed = true;
    }
    while (this.reading && !this.eof) {
      const r = ex.tcpRecv(this.to, RECV_AREA + this.area, CHUNK);
      if (r === 0) { this.eof = true; break; }
      if (r < 0) break;
      if (this.received + r > this.got.length) {
        if (!this.lenient) throw new Error(`received ${this.received + r} bytes, more than the ${this.got.length} sent`);
        this.received += r;
        continue;
      }
      this.got.set(this.net.read(RECV_AREA + this.area, r), this.received);
      this.received += r;
    }
  };

  done = (): boolean => this.received === this.data.length;

  exact(): boolean {
    return this.received === this.data.length && Buffer.compare(this.got, this.data) === 0;
  }
}

function checkWire(t: Test, net: Net): void {
  t.same(net.errors, [], 'every frame sent parses as valid (independent decoder)');
  t.same(net.windowViolations, [], 'no data segment went past the advertised window');
}

t.test('addresses and the kernel command line', async (t) => {
  const net = new Net();
  const ex = net.ex;
  const str = (s: string): number => { const b = Buffer.from(s); net.write(b); return b.length; };
  t.equal(ex.parseIp(str('169.254.1.1')), BigInt(IP_A));
  t.equal(ex.parseIp(str('255.255.255.255')), 0xffffffffn);
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', 'a.b.c.d', '1.2.3.4 ', '1234.1.1.1']) {
    t.equal(ex.parseIp(str(bad)), -1n, `"${bad}" is not an address`);
  }
  t.equal(net.text(ex.formatIp(IP_B)), '169.254.1.2');
  t.equal(ex.parseMacText(str('02:00:00:aa:BB:0f')), 0x020000aabb0fn);
  t.equal(ex.parseMacText(str('02:00:00:aa:bb')), -1n);
  t.equal(net.text(ex.formatMacText(0x020000aabb0fn)), '02:00:00:aa:bb:0f');

  const conf = (s: string): number[] | string => {
    const r = ex.parseConfig(str(s));
    if (r <= 0) return net.text(-r);
    const v = new DataView(net.read(0, 16).buffer);
    return [0, 4, 8, 12].map((o) => v.getUint32(o, true));
  };
  t.same(conf('root=/dev/ram0 ip=169.254.1.1::169.254.1.254:255.255.0.0::eth0:off LINKLOCAL=169.254.1.9 4'),
    [IP_A, MASK16, GW, ipOf('169.254.1.9')], 'the Demo CD form');
  t.same(conf('ip=10.0.0.5'), [ipOf('10.0.0.5'), ipOf('255.0.0.0'), 0, 0], 'classful mask, no gateway');
  t.same(conf('ip=192.168.7.3:::'), [ipOf('192.168.7.3'), ipOf('255.255.255.0'), 0, 0]);
  t.same(conf('ip=off LOCALIP=169.254.3.3'), [0, 0, 0, ipOf('169.254.3.3')], 'ip=off; the LOCALIP= spelling');
  t.same(conf('quiet'), [0, 0, 0, 0], 'no ip= at all');
  t.match(conf('ip=169.254.1::169.254.1.254:255.255.0.0::eth0:off'), /client address/);
  t.match(conf('ip=169.254.1.1::169.254.1.254:255.0.255.0::eth0:off'), /netmask/);
  t.match(conf('ip=169.254.1.1::gw:255.255.0.0::eth0:off'), /gateway/);
  t.match(conf('LINKLOCAL=nope'), /LINKLOCAL/);

  ex.create(A, MAC_A, 0, 0);
  t.equal(ex.configure(A, str('ip=10.1.2.3::10.1.0.1:255.255.0.0::eth0:off LINKLOCAL=169.254.1.1')), 2, 'two addresses');
  t.equal(ex.address(A, 0) >>> 0, ipOf('10.1.2.3'));
  t.equal(ex.mask(A, 0) >>> 0, MASK16);
  t.equal(ex.gateway(A) >>> 0, ipOf('10.1.0.1'));
  t.equal(ex.address(A, 1) >>> 0, IP_A, 'the link-local alias');
  t.equal(ex.mask(A, 1) >>> 0, MASK16);
  t.equal(ex.configure(A, str('ip=1.2.3')), -EINVAL, 'a malformed ip= is refused');
  t.equal(ex.address(A, 0) >>> 0, ipOf('10.1.2.3'), 'and changes nothing');
});

t.test('ARP resolves, and pings are answered both ways', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  t.equal(ex.ping(A, IP_B, 1, 56), 0);
  t.equal(net.stat(A, 'arp-requests-out'), 1, 'A asks who has B');
  t.equal(net.stat(A, 'arp-queued'), 1, 'the ping waits for the answer');
  const reply = (which: number): { from: number; seq: number; rtt: bigint; ttl: number; len: number } | null => {
    if (ex.pingReply(which) === 0) return null;
    const v = new DataView(net.read(0, 24).buffer);
    return { from: v.getUint32(0, true), seq: v.getUint32(4, true), rtt: v.getBigUint64(8, true), ttl: v.getUint32(16, true), len: v.getUint32(20, true) };
  };
  type Reply = ReturnType<typeof reply>;
  const waitReply = (which: number): Reply => {
    let got: Reply = null;
    net.run(() => (got ??= reply(which)) !== null);
    return got;
  };
  let r = waitReply(A);
  t.ok(r, 'A gets a reply');
  t.same(r && { from: r.from, seq: r.seq, ttl: r.ttl, len: r.len }, { from: IP_B, seq: 1, ttl: 64, len: 56 });
  t.ok(r && r.rtt > 0n && r.rtt < MS, `the RTT is measured on the fake clock (${r?.rtt} ns)`);
  t.equal(net.stat(B, 'arp-replies-out'), 1, 'B answered the ARP request');
  t.equal(net.stat(B, 'icmp-echo-requests-in'), 1);
  t.equal(net.stat(B, 'icmp-echo-replies-out'), 1);
  t.equal(net.stat(A, 'ping-replies'), 1);

  t.equal(ex.ping(B, IP_A, 7, 1400), 0, 'B pings A with a large payload');
  r = waitReply(B);
  t.ok(r, 'B gets a reply');
  t.same(r && { from: r.from, seq: r.seq, len: r.len }, { from: IP_A, seq: 7, len: 1400 });
  t.equal(net.stat(B, 'arp-requests-out'), 0, 'B learnt A from its request: no ARP needed');
  t.equal(ex.ping(A, IP_B, 8, 1473), -EMSGSIZE, 'a payload past one frame is refused');
  t.equal(ex.ping(A, ipOf('10.9.9.9'), 1, 8), 0, 'off-subnet goes to the gateway');
  t.ok(net.run(() => false, null, { maxTime: 10n * SECOND }) === false);
  t.equal(net.stat(A, 'arp-timeouts'), 1, 'the gateway never answers: ARP gives up');
  t.equal(net.stat(A, 'arp-requests-out'), 1 + 3, 'after three requests');
  t.equal(net.stat(A, 'arp-queue-drops'), 1, 'and drops the held ping');
  ex.setAddress(B, IP_B, MASK16, 0);
  t.equal(ex.ping(B, ipOf('10.9.9.9'), 1, 8), -ENETUNREACH, 'no gateway: no route');
  t.equal(net.stat(B, 'tx-no-route'), 1);

  // Many pings in a row all come back, in order.
  for (let i = 0; i < 10; i++) t.equal(ex.ping(A, IP_B, 100 + i, 32), 0);
  const seqs: number[] = [];
  net.run(() => { for (let x = reply(A); x; x = reply(A)) seqs.push(x.seq); return seqs.length === 10; });
  t.same(seqs, [100, 101, 102, 103, 104, 105, 106, 107, 108, 109]);
  checkWire(t, net);
});

t.test('UDP datagrams both ways, byte-exact', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const ua = ex.udpOpen(A);
  const ub = ex.udpOpen(B);
  t.equal(ex.udpBind(ua, 5000), 0);
  t.equal(ex.udpBind(ub, 6000), 0);
  t.equal(ex.udpBind(ex.udpOpen(B), 6000), -EADDRINUSE, 'a port is bound once');
  const sizes = [0, 1, 100, 1471, 1472];
  const sent: Uint8Array[] = sizes.map((n, i) => randomBytes(n, 10 + i));
  for (const d of sent) {
    net.write(d);
    t.equal(ex.udpSendTo(ua, IP_B, 6000, 0, d.length), d.length);
  }
  t.equal(ex.udpSendTo(ua, IP_B, 6000, 0, 1473), -EMSGSIZE, 'one frame at most');
  t.equal(ex.udpSendTo(ua, IP_B, 0, 0, 10), -EINVAL, 'port 0');
  const got: Uint8Array[] = [];
  net.run(() => {
    for (;;) {
      const n = ex.udpRecvFrom(ub, 4096, 2048);
      if (n < 0) { if (n !== -EAGAIN) got.push(new Uint8Array(0)); break; }
      got.push(net.read(4096, n));
      t.equal(ex.fromIp() >>> 0, IP_A);
      t.equal(ex.fromPort(), 5000);
    }
    return got.length === sent.length;
  });
  t.equal(got.length, sent.length, 'every datagram arrives');
  t.ok(got.every((g, i) => Buffer.compare(g, sent[i]!) === 0), 'with its exact bytes, in order');

  // B answers from its port; A sees the reply.
  const back = randomBytes(777, 99);
  net.write(back);
  t.equal(ex.udpSendTo(ub, IP_A, 5000, 0, back.length), back.length);
  let n = -1;
  net.run(() => (n = ex.udpRecvFrom(ua, 4096, 2048)) >= 0);
  t.equal(n, 777);
  t.ok(Buffer.compare(net.read(4096, 777), back) === 0, 'the reply is exact');
  t.equal(ex.fromIp() >>> 0, IP_B);
  t.equal(ex.fromPort(), 6000);

  // Truncation to the caller's buffer; an unbound socket gets an ephemeral port.
  const eph = ex.udpOpen(A);
  net.write(back);
  t.equal(ex.udpSendTo(eph, IP_B, 6000, 0, 500), 500);
  t.ok(ex.udpPort(eph) >= 49152, `an ephemeral port (${ex.udpPort(eph)})`);
  net.run(() => (n = ex.udpRecvFrom(ub, 4096, 10)) >= 0);
  t.equal(n, 10, 'a datagram is cut to the buffer');
  t.equal(ex.fromPort(), ex.udpPort(eph));
  t.equal(ex.udpRecvFrom(ub, 4096, 10), -EAGAIN, 'and its rest discarded');

  // No one on the port; a full queue.
  t.equal(ex.udpSendTo(ua, IP_B, 6001, 0, 8), 8);
  for (let i = 0; i < 20; i++) ex.udpSendTo(ua, IP_B, 6000, 0, 1472);
  net.run(() => false);
  t.equal(net.stat(B, 'drop-udp-no-port'), 1);
  t.ok(net.stat(B, 'drop-udp-queue-full') >= 8, `a full queue drops (${net.stat(B, 'drop-udp-queue-full')})`);
  let queued = 0;
  while (ex.udpRecvFrom(ub, 4096, 2048) === 1472) queued++;
  t.equal(queued + net.stat(B, 'drop-udp-queue-full'), 20, 'what was not dropped was queued');
  ex.udpClose(ub);
  t.equal(ex.udpRecvFrom(ub, 0, 10), -EBADF, 'a closed socket');
  // Broadcast reaches B.
  const ubc = ex.udpOpen(B);
  ex.udpBind(ubc, 7000);
  t.equal(ex.udpSendTo(ua, ipOf('169.254.255.255'), 7000, 0, 4), 4);
  net.run(() => (n = ex.udpRecvFrom(ubc, 0, 10)) >= 0);
  t.equal(n, 4, 'a subnet broadcast is delivered');
  t.equal(net.stat(A, 'arp-requests-out'), 1, 'without ARP');
  checkWire(t, net);
});

t.test('TCP: connect, accept, 2 MiB each way at once, byte-exact', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const { a, b } = connectPair(t, net);
  t.equal(ex.tcpEndpoint(a, 2) >>> 0, IP_B);
  t.equal(ex.tcpEndpoint(a, 3), 80);
  t.equal(ex.tcpEndpoint(b, 0) >>> 0, IP_B, 'the accepted socket has B\'s address');
  t.equal(ex.tcpEndpoint(b, 2) >>> 0, IP_A);
  t.equal(ex.tcpEndpoint(b, 3), ex.tcpEndpoint(a, 1), 'and A\'s port');
  const size = 2 << 20;
  const ab = new Transfer(net, a, b, randomBytes(size, 1), 0);
  const ba = new Transfer(net, b, a, randomBytes(size, 2), 1);
  const started = performance.now();
  const framesBefore = net.sent;
  const ok = net.run(() => ab.done() && ba.done(), () => { ab.step(); ba.step(); });
  const ms = performance.now() - started;
  t.ok(ok, 'both transfers complete');
  t.ok(ab.exact(), 'A -> B is byte-exact');
  t.ok(ba.exact(), 'B -> A is byte-exact');
  const mbps = (2 * size) / 1e6 / (ms / 1000);
  t.comment(`bulk: ${(2 * size) >> 20} MiB in ${ms.toFixed(0)} ms wall (${mbps.toFixed(1)} MB/s through the harness), ` +
    `${net.sent - framesBefore} frames, ${Number(net.now) / 1e6} ms of fake time`);
  t.equal(net.stat(A, 'tcp-retransmits'), 0, 'a lossless wire needs no retransmission');
  t.equal(net.stat(B, 'tcp-retransmits'), 0);
  t.equal(net.stats(A).get('drop-tcp-checksum'), 0n);
  const segs = net.stat(A, 'tcp-segments-out');
  t.ok(segs < 2 * (size / 1460) + 200, `A sent ${segs} segments: ACKs ride on data or go every second segment`);
  checkWire(t, net);
});

t.test('sequence numbers wrap around in the middle of a transfer', async (t) => {
  // A fresh pair with the same MACs draws the same ISNs, which advance one per
  // 4 us of clock (RFC 793): learn A's first ISN at time 0, then start a second
  // pair at the time that puts it 100 kB before 2^32.
  const first = Net.pair();
  first.capture = [];
  const l = first.ex.tcpOpen(B);
  first.ex.tcpListen(l, 80, 1);
  first.ex.tcpConnect(first.ex.tcpOpen(A), IP_B, 80);
  const findSyn = (n: Net): TcpInfo | undefined => n.capture!.map((f) => decode(f.bytes).tcp).find((s) => s?.flags === 0x02);
  first.run(() => findSyn(first) !== undefined);
  const syn = findSyn(first);
  t.ok(syn, 'A\'s SYN');
  const target = 2 ** 32 - 100_000;
  const ticks = (target - syn!.seq + 2 ** 32) % 2 ** 32;
  const net = Net.pair();
  net.now = BigInt(ticks) * 4000n;
  bounded(() => net.pollAll());
  net.capture = [];
  const { a, b } = connectPair(t, net);
  const iss = findSyn(net)?.seq ?? -1;
  t.equal(iss, target, `A's ISN is ${iss.toString(16)}`);
  net.capture = null;
  const ab = new Transfer(net, a, b, randomBytes(2 << 20, 20), 0);
  const ba = new Transfer(net, b, a, randomBytes(1 << 20, 21), 1);
  t.ok(net.run(() => ab.done() && ba.done(), () => { ab.step(); ba.step(); }), 'both transfers complete');
  t.ok(ab.exact(), 'A -> B is byte-exact across the wrap');
  t.ok(ba.exact(), 'B -> A is byte-exact');
  // And with loss, so retransmission and out-of-order data cross the wrap too.
  const lossy = Net.pair();
  lossy.now = BigInt(ticks) * 4000n;
  bounded(() => lossy.pollAll());
  const p = connectPair(t, lossy);
  lossy.filter = (_f, i) => (i % 9 === 4 ? 'drop' : i % 11 === 0 ? 'hold' : 'pass');
  const x = new Transfer(lossy, p.a, p.b, randomBytes(400_000, 22), 0);
  t.ok(lossy.run(x.done, x.step), 'a lossy transfer across the wrap completes');
  t.ok(x.exact(), 'byte-exact');
  t.ok(lossy.stat(A, 'tcp-retransmits') > 0 && lossy.stat(B, 'tcp-out-of-order') > 0, 'with retransmissions and out-of-order segments');
  checkWire(t, net);
  checkWire(t, lossy);
});

t.test('flow control: a receiver that stops reading stalls the sender at its window', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const { a, b } = connectPair(t, net);
  const x = new Transfer(net, a, b, randomBytes(300_000, 3));
  x.reading = false;
  net.idle(30n * SECOND, x.step);
  t.equal(ex.tcpAvailable(b), 65535, 'B holds exactly the window it advertised');
  t.equal(x.received, 0);
  t.ok(x.sent >= 65535 && x.sent <= 65535 + 65536, `A took what its buffer holds (${x.sent})`);
  t.equal(ex.tcpState(a), St.Established, 'A is waiting, not failed');
  const probes = net.stat(A, 'tcp-zero-window-probes');
  t.ok(probes >= 3, `A probes the closed window (${probes} probes in 30 s)`);
  t.ok(probes <= 20, 'with backoff');
  net.idle(600n * SECOND, x.step);
  t.equal(ex.tcpState(a), St.Established, 'a peer that answers probes is never given up on');
  t.equal(net.stat(A, 'tcp-give-ups'), 0);
  // Read a little: less than an MSS does not reopen the window (no silly window).
  t.ok(ex.tcpRecv(b, RECV_AREA, 100) === 100);
  x.got.set(net.read(RECV_AREA, 100), 0);
  x.received = 100;
  const segsBefore = net.stat(A, 'tcp-segments-out');
  net.idle(100n * MS, x.step);
  t.equal(ex.tcpAvailable(b), 65435, 'no tiny segment fills a tiny window');
  t.ok(net.stat(A, 'tcp-segments-out') - segsBefore <= 1, 'the sender stays quiet');
  x.reading = true;
  t.ok(net.run(x.done, x.step), 'reading again resumes the transfer');
  t.ok(x.exact(), 'byte-exact');
  checkWire(t, net);
});

t.test('loss: every 7th frame dropped, then a burst', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const { a, b } = connectPair(t, net);
  net.filter = (_f, i) => (i % 7 === 6 ? 'drop' : 'pass');
  const ab = new Transfer(net, a, b, randomBytes(1 << 20, 4), 0);
  const ba = new Transfer(net, b, a, randomBytes(256 << 10, 5), 1);
  t.ok(net.run(() => ab.done() && ba.done(), () => { ab.step(); ba.step(); }), 'both transfers complete');
  t.ok(ab.exact() && ba.exact(), 'byte-exact both ways');
  t.ok(net.dropped > 100, `${net.dropped} frames dropped`);
  const ra = net.stat(A, 'tcp-retransmits');
  t.ok(ra > 0, `A retransmitted ${ra} segments (${net.stat(A, 'tcp-fast-retransmits')} fast, ${net.stat(A, 'tcp-timeouts')} timeouts)`);
  t.ok(net.stat(B, 'tcp-retransmits') > 0, 'so did B');
  t.ok(net.stat(B, 'tcp-out-of-order') > 0, 'B kept segments that came after a hole');
  t.comment(`fake time for 1.25 MiB with 1/7 loss: ${Number(net.now) / 1e6} ms`);

  // A burst: the wire loses everything for half a second, in the middle of the transfer.
  let burst = -1n;
  net.filter = (_f, i) => {
    if (burst < 0n && i > net.onWire - 2) burst = net.now + 2n * MS;
    return net.now >= burst && net.now < burst + 500n * MS ? 'drop' : 'pass';
  };
  const timeouts = net.stat(A, 'tcp-timeouts');
  const x = new Transfer(net, a, b, randomBytes(512 << 10, 6), 0);
  t.ok(net.run(x.done, x.step), 'the transfer survives a burst');
  t.ok(x.exact(), 'byte-exact');
  t.ok(net.stat(A, 'tcp-timeouts') > timeouts, 'the burst took a retransmission timeout');
  checkWire(t, net);
});

t.test('reordering and duplication', async (t) => {
  const net = Net.pair();
  const { a, b } = connectPair(t, net);
  net.filter = (_f, i) => (i % 5 === 0 ? 'dup' : i % 3 === 0 ? 'hold' : 'pass');
  const ab = new Transfer(net, a, b, randomBytes(1 << 20, 7), 0);
  const ba = new Transfer(net, b, a, randomBytes(300_000, 8), 1);
  t.ok(net.run(() => ab.done() && ba.done(), () => { ab.step(); ba.step(); }), 'both transfers complete');
  t.ok(ab.exact() && ba.exact(), 'byte-exact both ways');
  t.ok(net.stat(B, 'tcp-out-of-order') > 0, `B saw ${net.stat(B, 'tcp-out-of-order')} segments out of order`);
  t.ok(net.stat(B, 'drop-tcp-out-of-window') > 0, `and ${net.stat(B, 'drop-tcp-out-of-window')} duplicates`);
  checkWire(t, net);
});

t.test('close from either side: FINs both ways, EOF, TIME_WAIT, slots reused', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const baseA = ex.tcpInUse(A);
  const baseB = ex.tcpInUse(B);
  // The connecting side closes first.
  {
    const { a, b, listener } = connectPair(t, net);
    const x = new Transfer(net, a, b, randomBytes(100_000, 9));
    x.closeWhenSent = true;
    t.ok(net.run(() => x.eof, x.step), 'B reads everything, then end of stream');
    t.ok(x.exact(), 'byte-exact');
    t.equal(ex.tcpRecv(b, 0, 100), 0, 'recv keeps returning 0 at the end');
    t.equal(ex.tcpState(b), St.CloseWait);
    t.ok(net.run(() => ex.tcpState(a) === St.FinWait2), 'A\'s FIN is acknowledged: FinWait2');
    t.equal(ex.tcpSend(a, 0, 10), -EPIPE, 'no sending after shutdown');
    // B can still send after A's FIN (half close).
    const back = new Transfer(net, b, a, randomBytes(5000, 10), 1);
    back.closeWhenSent = true;
    t.ok(net.run(() => back.eof, back.step), 'A reads B\'s data, then end of stream');
    t.ok(back.exact(), 'byte-exact after the half close');
    t.ok(net.run(() => ex.tcpState(b) === St.Closed && ex.tcpState(a) === St.TimeWait), 'B: LastAck -> Closed; A: TimeWait');
    t.ok(net.run(() => ex.tcpState(a) === St.Closed), 'A leaves TIME_WAIT');
    t.equal(ex.tcpError(a), 0);
    t.equal(ex.tcpError(b), 0);
    ex.tcpClose(a);
    ex.tcpClose(b);
    ex.tcpClose(listener);
    t.equal(ex.tcpInUse(A), baseA, 'A\'s slot is free again');
    t.equal(ex.tcpInUse(B), baseB, 'B\'s too');
  }
  // The accepting side closes first, with close() right away (orphaned socket finishes alone).
  {
    const { a, b, listener } = connectPair(t, net);
    const x = new Transfer(net, b, a, randomBytes(60_000, 11));
    x.step();
    t.equal(x.sent, 60_000, 'B queues 60 kB');
    ex.tcpClose(b);
    t.ok(net.run(() => x.eof, x.step), 'A gets all the data, then end of stream');
    t.ok(x.exact(), 'byte-exact: close does not lose queued data');
    ex.tcpClose(a);
    t.ok(net.run(() => ex.tcpInUse(A) === baseA && ex.tcpInUse(B) === baseB + 1), 'both sides finish the handshake and free their slots');
    ex.tcpClose(listener);
    t.equal(ex.tcpInUse(B), baseB);
  }
  // Many connections in a row reuse slots and buffers: the heap stops growing.
  const listener = ex.tcpOpen(B);
  ex.tcpListen(listener, 81, 8);
  let mark = 0;
  for (let i = 0; i < 40; i++) {
    if (i === 5) mark = ex.heapMark();
    const c = ex.tcpOpen(A);
    ex.tcpConnect(c, IP_B, 81);
    let s = -1;
    net.run(() => (s < 0 && (s = ex.tcpAccept(listener)), s >= 0 && ex.tcpState(c) === St.Established));
    net.write(new Uint8Array([1, 2, 3]));
    ex.tcpSend(c, 0, 3);
    ex.tcpClose(c);
    net.run(() => ex.tcpRecv(s, 0, 10) === 0);
    ex.tcpClose(s);
    net.run(() => ex.tcpInUse(A) === baseA);
  }
  t.equal(ex.heapMark() - mark, 16, '35 connections allocated nothing (only heapMark\'s own 16 bytes)');
  checkWire(t, net);
});

t.test('resets: a closed port refuses, abort resets the peer', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const c = ex.tcpOpen(A);
  t.equal(ex.tcpConnect(c, IP_B, 81), 0);
  t.ok(net.run(() => ex.tcpState(c) === St.Closed), 'the connection ends');
  t.equal(ex.tcpError(c), -ECONNREFUSED, 'refused');
  t.equal(ex.tcpSend(c, 0, 1), -ECONNREFUSED, 'send reports it');
  t.equal(ex.tcpRecv(c, 0, 1), -ECONNREFUSED, 'recv too');
  t.equal(net.stat(B, 'drop-tcp-no-socket'), 1);
  t.equal(net.stat(B, 'tcp-resets-out'), 1);
  t.equal(net.stat(A, 'tcp-resets-in'), 1);
  t.equal(ex.tcpConnect(c, IP_B, 81), -106, 'a failed socket cannot connect again (EISCONN)');
  ex.tcpClose(c);

  const { a, b } = connectPair(t, net);
  ex.tcpAbort(a);
  t.ok(net.run(() => ex.tcpState(b) === St.Closed), 'B sees the reset');
  t.equal(ex.tcpError(b), -ECONNRESET);
  t.equal(ex.tcpRecv(b, 0, 10), -ECONNRESET);
  t.equal(ex.tcpSend(a, 0, 1), -EBADF, 'an aborted handle is gone');

  // A reset that does not hit rcvNxt exactly is answered with a challenge ACK, not obeyed.
  const p = connectPair(t, net, 82);
  const port = ex.tcpEndpoint(p.a, 1);
  const resetsIn = net.stat(B, 'tcp-resets-in');
  net.inject(B, ipFrame(6, tcpSegment({ sport: port, dport: 82, seq: 12345, flags: 0x04 })));
  t.equal(ex.tcpState(p.b), St.Established, 'a blind reset is ignored');
  t.equal(net.stat(B, 'tcp-resets-in'), resetsIn);
  // Backlog: B's listener keeps 4 at most; the rest wait for their SYN to be retried.
  const l2 = ex.tcpOpen(B);
  ex.tcpListen(l2, 90, 2);
  const cs = [0, 1, 2, 3].map(() => { const h = ex.tcpOpen(A); ex.tcpConnect(h, IP_B, 90); return h; });
  net.run(() => false, null, { maxTime: 100n * MS });
  t.ok(net.stat(B, 'drop-tcp-backlog') >= 2, 'SYNs past the backlog are dropped');
  const accepted: number[] = [];
  t.ok(net.run(() => {
    for (let h = ex.tcpAccept(l2); h >= 0; h = ex.tcpAccept(l2)) accepted.push(h);
    return accepted.length === 4 && cs.every((h) => ex.tcpState(h) === St.Established);
  }), 'accepting makes room: all four connect (SYN retried)');
  checkWire(t, net);
});

t.test('a listener on every port (listenAny), with admission, and every address (anyDestination)', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const any = ex.tcpOpen(B);
  t.equal(ex.tcpListenAny(any, 8, 666), 0, 'B listens on every port but 666');
  t.equal(ex.tcpListenAny(ex.tcpOpen(B), 8, 0), -EADDRINUSE, 'one such listener per stack');
  const l80 = ex.tcpOpen(B);
  t.equal(ex.tcpListen(l80, 80, 4), 0, 'a port listener still takes its port');
  const c1 = ex.tcpOpen(A);
  const c80 = ex.tcpOpen(A);
  const refused = ex.tcpOpen(A);
  ex.tcpConnect(c1, IP_B, 1234);
  ex.tcpConnect(c80, IP_B, 80);
  ex.tcpConnect(refused, IP_B, 666);
  let got = -1;
  let got80 = -1;
  t.ok(net.run(() => {
    if (got < 0) got = ex.tcpAccept(any);
    if (got80 < 0) got80 = ex.tcpAccept(l80);
    return got >= 0 && got80 >= 0 && ex.tcpState(refused) === St.Closed;
  }), 'both connect, one is refused');
  t.same([ex.tcpEndpoint(got, 0) >>> 0, ex.tcpEndpoint(got, 1)], [IP_B, 1234], 'the child has the address and port asked for');
  t.equal(ex.tcpAccept(any), -1, 'port 80 went to its own listener');
  t.equal(ex.tcpError(refused), -ECONNREFUSED);
  t.equal(net.stat(B, 'tcp-refused'), 1);
  // An address that is not B's, routed through B: dropped unless B takes every destination.
  const OUTSIDE = ipOf('10.1.2.3');
  ex.setAddress(A, IP_A, MASK16, IP_B);
  const far = ex.tcpOpen(A);
  ex.tcpConnect(far, OUTSIDE, 8080);
  net.run(() => false, null, { maxTime: 100n * MS });
  t.ok(net.stat(B, 'drop-ip-not-for-us') >= 1, 'not for B');
  t.equal(ex.tcpState(far), St.SynSent);
  ex.setAnyDestination(B, true);
  let farChild = -1;
  t.ok(net.run(() => {
    if (farChild < 0) farChild = ex.tcpAccept(any);
    return farChild >= 0 && ex.tcpState(far) === St.Established;
  }, null, { maxTime: 10n * SECOND }), 'with anyDestination the SYN is answered (when retried)');
  t.same([ex.tcpEndpoint(farChild, 0) >>> 0, ex.tcpEndpoint(farChild, 1)], [OUTSIDE, 8080]);
  checkWire(t, net);
});

t.test('UDP on every port (bindAny) and every address (anyDestination), answered from any source (sendFrom)', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const any = ex.udpOpen(B);
  const other = ex.udpOpen(B);
  t.equal(ex.udpSendFrom(any, IP_B, 53, IP_A, 5000, 0, 4), -EINVAL, 'sendFrom needs bindAny');
  t.equal(ex.udpBindAny(any), 0);
  t.equal(ex.udpBindAny(other), -EADDRINUSE, 'one catch-all per stack');
  t.equal(ex.udpBindAny(any), -EINVAL, 'bound already');
  t.equal(ex.udpBind(any, 99), -EINVAL, 'a catch-all has no port');
  t.equal(ex.udpBind(other, 53), 0, 'a bound port still takes its own datagrams');
  const ua = ex.udpOpen(A);
  t.equal(ex.udpBind(ua, 5000), 0);
  const OUTSIDE = ipOf('10.1.2.3');
  ex.setAddress(A, IP_A, MASK16, IP_B);
  ex.setAnyDestination(B, true);
  const d = randomBytes(300, 7);
  net.write(d);
  t.equal(ex.udpSendTo(ua, OUTSIDE, 4444, 0, d.length), d.length);
  t.equal(ex.udpSendTo(ua, IP_B, 53, 0, 8), 8);
  let n = -1;
  net.run(() => (n = ex.udpRecvFrom(any, 4096, 2048)) >= 0);
  t.equal(n, 300);
  t.ok(Buffer.compare(net.read(4096, 300), d) === 0, 'byte-exact');
  t.same([ex.fromIp() >>> 0, ex.fromPort(), ex.fromDstIp() >>> 0, ex.fromDstPort()], [IP_A, 5000, OUTSIDE, 4444], 'with its source and destination');
  t.equal(ex.udpRecvFrom(any, 4096, 2048), -EAGAIN, 'port 53 went to its own socket');
  t.equal(ex.udpRecvFrom(other, 4096, 2048), 8);
  t.equal(ex.fromDstPort(), 53);
  // The reply comes from the address and port A sent to, though neither is B's.
  const back = randomBytes(200, 8);
  net.write(back);
  t.equal(ex.udpSendFrom(any, OUTSIDE, 4444, IP_A, 5000, 0, back.length), back.length);
  t.equal(ex.udpSendFrom(any, OUTSIDE, 0, IP_A, 5000, 0, 1), -EINVAL, 'source port 0');
  t.equal(ex.udpSendFrom(any, 0, 4444, IP_A, 5000, 0, 1), -EINVAL, 'source address 0');
  t.equal(ex.udpSendFrom(any, OUTSIDE, 4444, IP_A, 5000, 0, 1473), -EMSGSIZE);
  net.run(() => (n = ex.udpRecvFrom(ua, 4096, 2048)) >= 0);
  t.equal(n, 200);
  t.ok(Buffer.compare(net.read(4096, 200), back) === 0, 'the reply is exact');
  t.same([ex.fromIp() >>> 0, ex.fromPort()], [OUTSIDE, 4444]);
  ex.udpClose(any);
  t.equal(ex.udpBindAny(other), -EINVAL, 'other is bound to 53');
  const again = ex.udpOpen(B);
  t.equal(ex.udpBindAny(again), 0, 'closing frees the catch-all');
  checkWire(t, net);
});

t.test('a dead link: connect and send give up with a timeout', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  const { a } = connectPair(t, net);
  net.filter = () => 'drop';
  const start = net.now;
  net.write(randomBytes(10_000, 12));
  t.equal(ex.tcpSend(a, 0, 10_000), 10_000);
  t.ok(net.run(() => ex.tcpState(a) === St.Closed, null, { maxTime: 3600n * SECOND }), 'the connection is given up');
  t.equal(ex.tcpError(a), -ETIMEDOUT);
  t.equal(ex.tcpSend(a, 0, 1), -ETIMEDOUT);
  t.equal(net.stat(A, 'tcp-give-ups'), 1);
  t.equal(net.stat(A, 'tcp-timeouts'), 8, 'after 8 retransmission timeouts');
  const secs = Number(net.now - start) / 1e9;
  t.ok(secs > 50 && secs < 200, `with exponential backoff (${secs.toFixed(1)} s of fake time)`);

  const c = ex.tcpOpen(A);
  const t0 = net.now;
  t.equal(ex.tcpConnect(c, ipOf('169.254.9.9'), 80), 0, 'connect to a host that is not there');
  t.ok(net.run(() => ex.tcpState(c) === St.Closed, null, { maxTime: 3600n * SECOND }));
  t.equal(ex.tcpError(c), -ETIMEDOUT, 'connect times out');
  t.ok(net.stat(A, 'arp-timeouts') >= 1, 'ARP never resolved');
  t.comment(`connect gave up after ${Number(net.now - t0) / 1e9} s`);

  // A link that refuses frames for a while (ring full) only delays a transfer.
  const n2 = Net.pair();
  const p = connectPair(t, n2);
  const x = new Transfer(n2, p.a, p.b, randomBytes(200_000, 13));
  let rounds = 0;
  t.ok(n2.run(x.done, () => { rounds++; n2.linkFull[A] = rounds % 4 === 0 || (rounds > 20 && rounds < 30); x.step(); }), 'the transfer completes');
  t.ok(x.exact(), 'byte-exact');
  t.ok(n2.stat(A, 'tx-link-errors') > 0, `the link refused ${n2.stat(A, 'tx-link-errors')} frames`);
  checkWire(t, net);
  checkWire(t, n2);
});

t.test('hostile frames are dropped and counted, never trapped on', async (t) => {
  const net = Net.pair();
  const ex = net.ex;
  ex.ping(A, IP_B, 1, 8);
  t.ok(net.run(() => ex.pingReply(A) === 1), 'B learns A\'s MAC');
  const listener = ex.tcpOpen(B);
  ex.tcpListen(listener, 80, 4);
  const u = ex.udpOpen(B);
  ex.udpBind(u, 53);
  const expect = (name: string, frame: Uint8Array, what: string): void => {
    const before = net.stat(B, name);
    net.inject(B, frame);
    t.equal(net.stat(B, name), before + 1, `${what}: counted as ${name}`);
  };
  const eth = ethHeader(MAC_B, MAC_A, 0x0800);
  const ipv4 = (mutate: (h: Uint8Array, v: DataView) => void, payload = new Uint8Array(20), fix = true): Uint8Array => {
    const f = ipFrame(6, payload);
    const h = f.subarray(14, 34);
    const v = new DataView(f.buffer, 14, 20);
    mutate(h, v);
    if (fix) { v.setUint16(10, 0); v.setUint16(10, checksum(sum16(h, 0, 20))); }
    return f;
  };
  expect('drop-runt', new Uint8Array(0), 'an empty frame');
  expect('drop-runt', new Uint8Array(13), 'a 13-byte frame');
  expect('drop-runt', concat(eth, new Uint8Array(1501)), 'a 1515-byte frame');
  expect('drop-eth-not-for-us', ipFrame(1, icmpEcho(8, 1, 1, new Uint8Array(8)), { ethDst: MAC_OTHER }), 'another MAC');
  expect('drop-eth-not-for-us', ipFrame(1, icmpEcho(8, 1, 1, new Uint8Array(8)), { ethDst: 0x01005e000001n }), 'a multicast MAC');
  expect('drop-eth-type', concat(ethHeader(MAC_B, MAC_A, 0x86dd), new Uint8Array(40)), 'IPv6');
  expect('drop-arp-malformed', concat(ethHeader(MAC_B, MAC_A, 0x0806), new Uint8Array(20)), 'a truncated ARP');
  const arp = (o: { hlen?: number; op?: number; sha?: bigint }): Uint8Array => {
    const a = new Uint8Array(28);
    const v = new DataView(a.buffer);
    v.setUint16(0, 1); v.setUint16(2, 0x0800); a[4] = o.hlen ?? 6; a[5] = 4; v.setUint16(6, o.op ?? 1);
    const sha = o.sha ?? MAC_A;
    v.setUint16(8, Number(sha >> 32n)); v.setUint32(10, Number(sha & 0xffffffffn));
    v.setUint32(14, IP_A); v.setUint32(24, IP_B);
    return concat(ethHeader(MAC_B, MAC_A, 0x0806), a);
  };
  expect('drop-arp-malformed', arp({ hlen: 7 }), 'ARP with a 7-byte hardware address');
  expect('drop-arp-malformed', arp({ op: 9 }), 'ARP opcode 9');
  expect('drop-arp-malformed', arp({ sha: 0xffffffffffffn }), 'ARP from the broadcast MAC');
  expect('drop-ip-malformed', concat(eth, new Uint8Array(10)), 'a truncated IPv4 header');
  expect('drop-ip-malformed', ipv4((h) => { h[0] = 0x65; }), 'version 6');
  expect('drop-ip-malformed', ipv4((h) => { h[0] = 0x44; }), 'IHL 4');
  expect('drop-ip-malformed', ipv4((h) => { h[0] = 0x4f; }, new Uint8Array(8)), 'IHL 15 past the frame');
  expect('drop-ip-malformed', ipv4((_h, v) => v.setUint16(2, 41)), 'total length past the frame');
  expect('drop-ip-malformed', ipv4((_h, v) => v.setUint16(2, 19)), 'total length under the header');
  expect('drop-ip-checksum', ipv4((h) => { h[8] = 1; }, new Uint8Array(20), false), 'a bad header checksum');
  expect('drop-ip-fragment', ipv4((_h, v) => v.setUint16(6, 0x2000)), 'a first fragment (MF)');
  expect('drop-ip-fragment', ipv4((_h, v) => v.setUint16(6, 0x0010)), 'a later fragment (offset)');
  expect('drop-ip-not-for-us', ipFrame(1, icmpEcho(8, 1, 1, new Uint8Array(0)), { dst: ipOf('169.254.1.3') }), 'another host\'s address');
  expect('drop-ip-martian', ipFrame(1, icmpEcho(8, 1, 1, new Uint8Array(0)), { src: ipOf('127.0.0.1') }), 'from loopback');
  expect('drop-ip-martian', ipFrame(1, icmpEcho(8, 1, 1, new Uint8Array(0)), { src: IP_B }), 'from B\'s own address');
  expect('drop-ip-martian', ipFrame(1, icmpEcho(8, 1, 1, new Uint8Array(0)), { src: ipOf('224.0.0.1') }), 'from multicast');
  expect('drop-ip-protocol', ipFrame(47, new Uint8Array(24)), 'GRE');
  expect('drop-icmp-malformed', ipFrame(1, new Uint8Array(4)), 'a 4-byte ICMP message');
  const badIcmp = icmpEcho(8, 1, 1, new Uint8Array(8));
  badIcmp[9] = 1;
  expect('drop-icmp-checksum', ipFrame(1, badIcmp), 'a bad ICMP checksum');
  expect('drop-udp-malformed', ipFrame(17, new Uint8Array(6)), 'a 6-byte UDP datagram');
  const longUdp = udpDatagram(1000, 53, new Uint8Array(10));
  new DataView(longUdp.buffer).setUint16(4, 100);
  expect('drop-udp-malformed', ipFrame(17, longUdp), 'a UDP length past the datagram');
  const badUdp = udpDatagram(1000, 53, new Uint8Array(10));
  badUdp[12] = badUdp[12]! ^ 0xff;
  expect('drop-udp-checksum', ipFrame(17, badUdp), 'a bad UDP checksum');
  expect('drop-tcp-malformed', ipFrame(6, new Uint8Array(10)), 'a 10-byte TCP header');
  expect('drop-tcp-malformed', ipFrame(6, tcpSegment({ doff: 15 })), 'a data offset past the segment');
  expect('drop-tcp-malformed', ipFrame(6, tcpSegment({ doff: 4 })), 'a data offset under the header');
  const badTcp = tcpSegment({ data: new Uint8Array(10) });
  badTcp[25] = badTcp[25]! ^ 1;
  expect('drop-tcp-checksum', ipFrame(6, badTcp), 'a bad TCP checksum');
  expect('drop-tcp-options', ipFrame(6, tcpSegment({ options: [3, 0, 0, 0] })), 'an option of length 0');
  expect('drop-tcp-options', ipFrame(6, tcpSegment({ options: [8, 1, 0, 0] })), 'an option of length 1');
  expect('drop-tcp-options', ipFrame(6, tcpSegment({ options: [8, 40, 0, 0] })), 'an option past the header');
  expect('drop-tcp-options', ipFrame(6, tcpSegment({ options: [2, 3, 5, 0] })), 'an MSS option of length 3');
  expect('drop-tcp-options', ipFrame(6, tcpSegment({ options: [1, 1, 1, 2] })), 'an option whose length byte is missing');
  expect('drop-tcp-malformed', ipFrame(6, tcpSegment({}), { dst: ipOf('169.254.255.255') }), 'TCP to a broadcast address');
  expect('drop-tcp-no-socket', ipFrame(6, tcpSegment({ dport: 81, flags: 0x10 })), 'an ACK to a closed port');
  // Absurd but well-formed: a SYN with MSS 0 is clamped, and the connection works.
  const synMss0 = ipFrame(6, tcpSegment({ sport: 41000, seq: 5000, options: [2, 4, 0, 0] }));
  t.ok(net.queue.every((f) => decode(f.bytes).tcp?.flags === 0x04), 'B answered only with resets so far');
  net.queue.length = 0;
  net.inject(B, synMss0);
  t.equal(net.queue.length, 1, 'B answers a SYN with MSS 0');
  const synAck = decode(net.queue[0]!.bytes).tcp!;
  t.equal(synAck.flags, 0x12, 'SYN-ACK');
  net.queue.length = 0;
  const data = randomBytes(200, 14);
  net.inject(B, ipFrame(6, tcpSegment({ sport: 41000, seq: 5001, ack: synAck.seq + 1, flags: 0x18, data })));
  const s = ex.tcpAccept(listener);
  t.ok(s >= 0, 'the connection is accepted');
  t.equal(ex.tcpRecv(s, 0, 1000), 200, 'its data arrives');
  net.queue.length = 0;
  net.write(randomBytes(1000, 15));
  t.equal(ex.tcpSend(s, 0, 1000), 1000);
  const segs = net.queue.map((f) => decode(f.bytes).tcp!).filter((x) => x.len > 0);
  t.ok(segs.length >= 1 && segs.every((x) => x.len <= 64), `segments respect the clamped MSS of 64 (${segs.map((x) => x.len).join(',')})`);
  net.queue.length = 0;
  t.same(net.errors, [], 'B\'s answers to hostile frames are well-formed');

  // An ARP storm: requests for B from a thousand made-up neighbours. B answers
  // them all, and keeps the entry it uses for A.
  net.queue.length = 0;
  const storm = (spa: number): Uint8Array => {
    const f = arp({ sha: 0x020000100000n + BigInt(spa & 0xffff) });
    new DataView(f.buffer).setUint32(14 + 14, spa);
    return f;
  };
  bounded(() => { for (let i = 0; i < 1000; i++) net.inject(B, storm(ipOf('169.254.100.0') + i)); });
  t.equal(net.queue.length, 1000, 'every request for B is answered');
  t.ok(net.queue.every((f) => decode(f.bytes).kind === 'arp' && !decode(f.bytes).error), 'with well-formed replies');
  net.queue.length = 0;
  const arpOut = net.stat(B, 'arp-requests-out');
  t.equal(ex.ping(B, IP_A, 77, 8), 0);
  t.ok(net.run(() => ex.pingReply(B) === 1), 'B still reaches A');
  t.equal(net.stat(B, 'arp-requests-out'), arpOut, 'without asking for A again: the storm did not evict it');

  // Out-of-window ACKs on a live connection: answered at most once per 200 ms (no ACK war).
  {
    const q = connectPair(t, net, 8082);
    const port = ex.tcpEndpoint(q.a, 1);
    net.queue.length = 0;
    bounded(() => {
      for (let i = 0; i < 200; i++) net.inject(B, ipFrame(6, tcpSegment({ sport: port, dport: 8082, seq: 7 + i, ack: 1, flags: 0x10 })));
    });
    t.equal(net.queue.length, 1, `200 stray ACKs got ${net.queue.length} answer`);
    net.queue.length = 0;
    net.idle(300n * MS);
    net.inject(B, ipFrame(6, tcpSegment({ sport: port, dport: 8082, seq: 7, ack: 1, flags: 0x10 })));
    t.equal(net.queue.length, 1, 'and another once the interval has passed');
    net.queue.length = 0;
    t.equal(ex.tcpState(q.b), St.Established, 'the connection is unharmed');
  }

  // After all that, B still works.
  const drops = net.stats(B);
  t.equal(ex.ping(A, IP_B, 1, 8), 0);
  t.ok(net.run(() => ex.pingReply(A) === 1), 'B still answers pings');
  const p = connectPair(t, net, 8081);
  t.ok(p.b >= 0, 'and accepts connections');
  t.ok(net.stat(B, 'drop-ip-malformed') === Number(drops.get('drop-ip-malformed')), 'normal traffic adds no drops');
});

t.test('fuzz: mutated frames never trap, hang or allocate', async (t) => {
  // A corpus of real frames from a session with pings, UDP and TCP both ways.
  const net = Net.pair();
  const ex = net.ex;
  net.capture = [];
  const { a, b } = connectPair(t, net);
  const x = new Transfer(net, a, b, randomBytes(20_000, 16));
  x.closeWhenSent = true;
  ex.ping(A, IP_B, 1, 100);
  const ua = ex.udpOpen(A);
  ex.udpBind(ua, 9);
  ex.udpSendTo(ua, IP_B, 9, 0, 300);
  net.run(() => x.eof, x.step);
  const corpus = net.capture.map((f) => f.bytes);
  net.capture = null;
  t.ok(corpus.length > 20, `${corpus.length} frames in the corpus`);
  const l = ex.tcpOpen(B);
  ex.tcpListen(l, 80, 4);
  ex.udpBind(ex.udpOpen(B), 9);
  const r = prng(20240601);
  const fix = (f: Uint8Array): void => {
    // Make the checksums right again, so mutations reach the layers above.
    if (f.length < 34 || f[12] !== 8 || f[13] !== 0) return;
    const ihl = (f[14]! & 15) * 4;
    if (ihl < 20 || 14 + ihl > f.length) return;
    const v = new DataView(f.buffer, f.byteOffset);
    v.setUint16(24, 0);
    v.setUint16(24, checksum(sum16(f, 14, 14 + ihl)));
    const total = Math.min(v.getUint16(16), f.length - 14);
    const p = 14 + ihl;
    const len = total - ihl;
    const at = f[23] === 6 ? 16 : f[23] === 17 ? 6 : f[23] === 1 ? 2 : -1;
    if (at < 0 || len < at + 2) return;
    v.setUint16(p + at, 0);
    const init = f[23] === 1 ? 0 : pseudo(v.getUint32(26), v.getUint32(30), f[23]!, len);
    v.setUint16(p + at, checksum(sum16(f, p, p + len, init)));
  };
  // Take every socket once, so their buffers exist: then nothing may allocate.
  for (const w of [A, B]) {
    const hs: number[] = [];
    for (let h = ex.tcpOpen(w); h >= 0; h = ex.tcpOpen(w)) hs.push(h);
    for (const h of hs) ex.tcpClose(h);
    const us: number[] = [];
    for (let h = ex.udpOpen(w); h >= 0; h = ex.udpOpen(w)) us.push(h);
    for (const h of us) ex.udpClose(h);
  }
  const mark = ex.heapMark();
  const start = performance.now();
  const N = 30_000;
  bounded(() => {
    for (let i = 0; i < N; i++) {
      const src = corpus[Math.floor(r() * corpus.length)]!;
      let f: Uint8Array = src.slice();
      const kind = r();
      if (kind < 0.3) {
        f = f.slice(0, Math.floor(r() * f.length));
      } else {
        const flips = 1 + Math.floor(r() * 4);
        for (let k = 0; k < flips; k++) {
          const at = 14 + Math.floor(r() * Math.max(1, f.length - 14));
          if (at < f.length) f[at] = r() < 0.5 ? Math.floor(r() * 256) : [0, 0xff, 0x7f, 0x80][Math.floor(r() * 4)]!;
        }
        if (kind < 0.8) fix(f);
      }
      // Every frame goes to the stack it was meant for.
      const to = f.length >= 6 && f[5] === 2 ? B : A;
      net.deliver({ from: 1 - to, to, bytes: f });
      if (i % 64 === 0) { net.now += MS; net.pollAll(); net.queue.length = 0; }
    }
  });
  net.queue.length = 0;
  const ms = performance.now() - start;
  t.comment(`${N} mutated frames in ${ms.toFixed(0)} ms`);
  t.equal(ex.heapMark() - mark, 16, 'no allocation per frame');
  const dropsA = net.stats(A);
  const dropsB = net.stats(B);
  const total = [...dropsA, ...dropsB].filter(([k]) => k.startsWith('drop-')).reduce((s, [, v]) => s + Number(v), 0);
  t.ok(total > N / 3, `${total} of them were dropped and counted`);
  t.same(net.errors, [], 'everything the stacks sent in answer was well-formed');
  // Mutations of a live connection's frames, injected while it moves data:
  // the data may be corrupted (TCP cannot tell forged in-window bytes), but
  // nothing traps, hangs or allocates, and the stacks keep answering.
  const live = connectPair(t, net, 7070);
  const z = new Transfer(net, live.a, live.b, randomBytes(300_000, 19));
  z.lenient = true;
  net.capture = [];
  net.run(() => net.capture!.length > 100, z.step);
  const liveCorpus = net.capture.map((f) => f.bytes);
  net.capture = null;
  const mark2 = ex.heapMark();
  bounded(() => {
    for (let round = 0; round < 200; round++) {
      for (let k = 0; k < 20; k++) {
        const f = liveCorpus[Math.floor(r() * liveCorpus.length)]!.slice();
        if (f.length > 54) {
          const at = 38 + Math.floor(r() * 16); // sequence, ack, offset, flags, window
          f[at] = Math.floor(r() * 256);
          if (r() < 0.3) f[47] = Math.floor(r() * 64);
          fix(f);
        }
        net.deliver({ from: 1 - (f[5] === 2 ? B : A), to: f[5] === 2 ? B : A, bytes: f });
      }
      net.run(() => true, z.step, { maxRounds: 1 });
      net.run(() => false, z.step, { maxRounds: 20, maxTime: 50n * MS });
    }
  });
  t.equal(ex.heapMark() - mark2, 16, 'no allocation while a live connection is fuzzed');
  t.ok(ex.tcpState(live.a) <= St.TimeWait && ex.tcpState(live.b) <= St.TimeWait, `states stay valid (${ex.tcpState(live.a)}, ${ex.tcpState(live.b)})`);
  ex.tcpAbort(live.a);
  ex.tcpAbort(live.b);
  net.run(() => false, null, { maxTime: 2n * SECOND });

  // The stacks still talk: a fresh connection on a fresh port moves data.
  net.filter = null;
  const p = connectPair(t, net, 8080);
  const y = new Transfer(net, p.a, p.b, randomBytes(100_000, 17));
  t.ok(net.run(y.done, y.step), 'a transfer after the fuzzing completes');
  t.ok(y.exact(), 'byte-exact');
});

t.test('socket table limits and argument errors', async (t) => {
  const net = Net.pair({ maxTcp: 4, tcpBuf: 16384 });
  const ex = net.ex;
  const hs = [0, 1, 2, 3].map(() => ex.tcpOpen(A));
  t.ok(hs.every((h) => h >= 0), 'four sockets');
  t.equal(ex.tcpOpen(A), -1, 'a fifth is refused: the table is bounded');
  t.equal(ex.tcpBind(hs[0]!, 5555), 0);
  t.equal(ex.tcpBind(hs[1]!, 5555), -EADDRINUSE);
  t.equal(ex.tcpListen(hs[0]!, 0, 1), 0, 'listen on the bound port');
  t.equal(ex.tcpListen(hs[1]!, 5555, 1), -EADDRINUSE, 'one listener per port');
  t.equal(ex.tcpConnect(hs[0]!, IP_B, 80), -EINVAL, 'a listener does not connect');
  t.equal(ex.tcpConnect(hs[1]!, IP_B, 0), -EINVAL, 'port 0');
  t.equal(ex.tcpConnect(hs[1]!, IP_A, 80), -ENETUNREACH, 'no loopback');
  t.equal(ex.tcpSend(hs[1]!, 0, 1), -107, 'send before connect: ENOTCONN');
  t.equal(ex.tcpRecv(hs[1]!, 0, 1), -107, 'recv before connect: ENOTCONN');
  ex.tcpClose(hs[3]!);
  t.equal(ex.tcpSend(hs[3]!, 0, 1), -EBADF, 'a closed handle');
  t.ok(ex.tcpOpen(A) >= 0, 'its slot is handed out again');
  for (const h of hs) ex.tcpClose(h);
  t.equal(ex.tcpInUse(A), 0, 'closing a listener or an unconnected socket frees it at once');
  // A small buffer (16 KiB) still moves data.
  const { a, b } = connectPair(t, net, 99);
  const x = new Transfer(net, a, b, randomBytes(100_000, 18));
  t.ok(net.run(x.done, x.step), 'a transfer through 16 KiB buffers');
  t.ok(x.exact(), 'byte-exact');
  checkWire(t, net);
});
