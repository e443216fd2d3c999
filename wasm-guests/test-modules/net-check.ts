// Test module for wasm-guests/net.test.ts (not a guest: it exports helpers
// and no start). It holds up to four network stacks, each with its own MAC;
// their frames leave through the import `test.send(which, ptr, len)` and the
// test, playing the wire, hands them to another stack with `input`. Data
// for sockets passes through `buffer()`, which the test reads and writes
// directly; sockets are named by small integer handles.
import {
  TcpAdmit, NetLink, NetStack, NetOptions, TcpSocket, UdpSocket, UdpEndpoint, PingReply, NetConfig, NetStat, netStatName,
  parseIpv4, formatIpv4, parseMacAddress, formatMacAddress,
} from "../sdk/index";

@external("test", "send")
declare function hostSend(which: i32, ptr: usize, len: u32): i32;

class WireLink extends NetLink {
  which: i32;

  constructor(which: i32) {
    super();
    this.which = which;
  }

  send(ptr: usize, len: u32): i32 {
    return hostSend(this.which, ptr, len);
  }
}

const STACKS = 4;
const BUF_SIZE: u32 = 1 << 20;
const BUF = heap.alloc(BUF_SIZE);
const FRAME = heap.alloc(2048);
const stacks = new Array<NetStack | null>(STACKS);
const tcps = new Array<TcpSocket>();
const udps = new Array<UdpSocket>();
const from = new UdpEndpoint();
const reply = new PingReply();

function stack(which: i32): NetStack {
  return stacks[which]!;
}

/** Address of the data buffer, and where `input` takes its frame from. */
export function buffer(): usize {
  return BUF;
}

export function bufferSize(): u32 {
  return BUF_SIZE;
}

export function frameBuffer(): usize {
  return FRAME;
}

/** Create stack `which` (0..3) with `mac`; 0 for the default limits. */
export function create(which: i32, mac: u64, maxTcp: i32, tcpBuf: u32): void {
  const o = new NetOptions();
  if (maxTcp > 0) o.maxTcpSockets = maxTcp;
  if (tcpBuf > 0) o.tcpBufferSize = tcpBuf;
  stacks[which] = new NetStack(new WireLink(which), mac, o);
}

export function setAddress(which: i32, ip: u32, mask: u32, gw: u32): void {
  stack(which).setAddress(ip, mask, gw);
}

export function addAddress(which: i32, ip: u32, mask: u32): i32 {
  return stack(which).addAddress(ip, mask);
}

/** Configure from the `len` bytes of command line in the buffer. */
export function configure(which: i32, len: u32): i32 {
  return stack(which).configure(String.UTF8.decodeUnsafe(BUF, len));
}

/** Address `i` of the stack and its mask. */
export function address(which: i32, i: i32): u32 {
  return stack(which).iface.address(i);
}

export function mask(which: i32, i: i32): u32 {
  return stack(which).iface.mask(i);
}

export function gateway(which: i32): u32 {
  return stack(which).iface.gateway;
}

/** Feed the `len` bytes at frameBuffer() to stack `which`. */
export function input(which: i32, len: u32): void {
  stack(which).input(FRAME, len);
}

export function poll(which: i32, now: u64): u64 {
  return stack(which).poll(now);
}

export function statCount(): i32 {
  return NetStat.Count;
}

export function stat(which: i32, i: i32): u64 {
  return stack(which).stats.get(i);
}

function put(s: string): i32 {
  return <i32>String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, BUF);
}

/** The name of counter `i`, into the buffer: its length. */
export function statName(i: i32): i32 {
  return put(netStatName(i));
}

export function ping(which: i32, ip: u32, seq: u32, len: u32): i32 {
  return stack(which).ping(ip, seq, len);
}

/** The next ping reply into the buffer (u32 from, u32 seq, u64 rtt, u32 ttl, u32 len): 1, or 0 when none. */
export function pingReply(which: i32): i32 {
  if (!stack(which).nextPingReply(reply)) return 0;
  store<u32>(BUF, reply.from);
  store<u32>(BUF, reply.seq, 4);
  store<u64>(BUF, reply.rttNs, 8);
  store<u32>(BUF, reply.ttl, 16);
  store<u32>(BUF, reply.len, 20);
  return 1;
}

// ---- TCP ----

function tcp(h: i32): TcpSocket {
  return tcps[h];
}

/** A socket's handle: the same for the same slot, so reusing slots allocates nothing here either. */
function handle(s: TcpSocket | null): i32 {
  if (s == null) return -1;
  const i = tcps.indexOf(s);
  if (i >= 0) return i;
  tcps.push(s);
  return tcps.length - 1;
}

export function tcpOpen(which: i32): i32 {
  return handle(stack(which).tcpSocket());
}

export function tcpBind(h: i32, port: u32): i32 {
  return tcp(h).bind(port);
}

export function tcpConnect(h: i32, ip: u32, port: u32): i32 {
  return tcp(h).connect(ip, port);
}

export function tcpListen(h: i32, port: u32, backlog: i32): i32 {
  return tcp(h).listen(port, backlog);
}

/** Refuses one port (0: none), for listenAny. */
class RefusePort extends TcpAdmit {
  port: u32;
  constructor(port: u32) {
    super();
    this.port = port;
  }
  admit(dst: u32, dport: u32, src: u32, sport: u32): bool {
    return dport != this.port;
  }
}

export function tcpListenAny(h: i32, backlog: i32, refuse: u32): i32 {
  return tcp(h).listenAny(backlog, refuse == 0 ? null : new RefusePort(refuse));
}

export function setAnyDestination(which: i32, on: bool): void {
  stack(which).iface.anyDestination = on;
}

export function tcpAccept(h: i32): i32 {
  return handle(tcp(h).accept());
}

/** Send `len` bytes of the buffer from `off`. */
export function tcpSend(h: i32, off: u32, len: u32): i32 {
  if (off > BUF_SIZE || len > BUF_SIZE - off) return -22;
  return tcp(h).send(BUF + off, len);
}

/** Receive up to `cap` bytes into the buffer at `off`. */
export function tcpRecv(h: i32, off: u32, cap: u32): i32 {
  if (off > BUF_SIZE || cap > BUF_SIZE - off) return -22;
  return tcp(h).recv(BUF + off, cap);
}

export function tcpShutdown(h: i32): i32 {
  return tcp(h).shutdown();
}

export function tcpClose(h: i32): void {
  tcp(h).close();
}

export function tcpAbort(h: i32): void {
  tcp(h).abort();
}

export function tcpState(h: i32): i32 {
  return <i32>tcp(h).state;
}

export function tcpError(h: i32): i32 {
  return tcp(h).error;
}

export function tcpAvailable(h: i32): u32 {
  return tcp(h).available();
}

export function tcpSendSpace(h: i32): u32 {
  return tcp(h).sendSpace();
}

export function tcpUnacked(h: i32): u32 {
  return tcp(h).unacknowledged();
}

/** 0 local address, 1 local port, 2 remote address, 3 remote port. */
export function tcpEndpoint(h: i32, which: i32): u32 {
  const s = tcp(h);
  switch (which) {
    case 0: return s.localIp;
    case 1: return s.localPort;
    case 2: return s.remoteIp;
    default: return s.remotePort;
  }
}

export function tcpInUse(which: i32): i32 {
  return stack(which).tcpSocketsInUse();
}

// ---- UDP ----

export function udpOpen(which: i32): i32 {
  const s = stack(which).udpSocket();
  if (s == null) return -1;
  const i = udps.indexOf(s);
  if (i >= 0) return i;
  udps.push(s);
  return udps.length - 1;
}

export function udpBind(h: i32, port: u32): i32 {
  return udps[h].bind(port);
}

export function udpBindAny(h: i32): i32 {
  return udps[h].bindAny();
}

export function udpSendFrom(h: i32, src: u32, sport: u32, ip: u32, port: u32, off: u32, len: u32): i32 {
  if (off > BUF_SIZE || len > BUF_SIZE - off) return -22;
  return udps[h].sendFrom(src, sport, ip, port, BUF + off, len);
}

/** Where the datagram udpRecvFrom took was sent. */
export function fromDstIp(): u32 {
  return from.dstIp;
}

export function fromDstPort(): u32 {
  return from.dstPort;
}

export function udpPort(h: i32): u32 {
  return udps[h].localPort;
}

export function udpSendTo(h: i32, ip: u32, port: u32, off: u32, len: u32): i32 {
  if (off > BUF_SIZE || len > BUF_SIZE - off) return -22;
  return udps[h].sendTo(ip, port, BUF + off, len);
}

/** Receive into the buffer at `off`; the source is then fromIp()/fromPort(). */
export function udpRecvFrom(h: i32, off: u32, cap: u32): i32 {
  if (off > BUF_SIZE || cap > BUF_SIZE - off) return -22;
  return udps[h].recvFrom(BUF + off, cap, from);
}

export function fromIp(): u32 {
  return from.ip;
}

export function fromPort(): u32 {
  return from.port;
}

export function udpClose(h: i32): void {
  udps[h].close();
}

// ---- Addresses and configuration ----

export function parseIp(len: u32): i64 {
  return parseIpv4(String.UTF8.decodeUnsafe(BUF, len));
}

export function formatIp(ip: u32): i32 {
  return put(formatIpv4(ip));
}

export function parseMacText(len: u32): i64 {
  return parseMacAddress(String.UTF8.decodeUnsafe(BUF, len));
}

export function formatMacText(mac: u64): i32 {
  return put(formatMacAddress(mac));
}

/** Parse the `len` bytes of command line: 1 and (ip, mask, gateway, linkLocal) as u32s in the buffer, or 0 and the error text's length negated. */
export function parseConfig(len: u32): i32 {
  const c = new NetConfig();
  if (!c.parse(String.UTF8.decodeUnsafe(BUF, len))) return -put(c.error);
  store<u32>(BUF, c.ip);
  store<u32>(BUF, c.mask, 4);
  store<u32>(BUF, c.gateway, 8);
  store<u32>(BUF, c.linkLocal, 12);
  return 1;
}

/** The top of the heap (the stub runtime never frees): allocates the same few bytes on every call. */
export function heapMark(): usize {
  return heap.alloc(1);
}
