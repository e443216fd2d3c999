// The NAT gateway's network stack: not a guest. This module runs in the
// host's main thread (devices/net/nat/gateway.ts loads it) and holds one
// instance of the SDK's TCP/IP stack, the switch port's end of every
// connection the gateway relays. Frames leave through the import
// `nat.send`, come in through `input`, and time comes through `poll`. Data
// passes through `buffer()`, which the host reads and writes directly.
// Sockets are named by small integer handles (one per stack slot, so
// reusing a slot reuses its handle). A SYN to any port and any address (the
// stack takes every destination) reaches one listener, which asks the host
// (`nat.admit`) before it answers. UDP has one catch-all socket (bindAny):
// the host reads each datagram with its source and destination
// (`udpRecv`, `udpEndpoint`) and answers from any address and port
// (`udpSend`).
import { NetLink, NetStack, NetOptions, TcpSocket, TcpAdmit, UdpSocket, UdpEndpoint } from "../sdk/net/index";

@external("nat", "send")
declare function hostSend(ptr: usize, len: u32): i32;

@external("nat", "admit")
declare function hostAdmit(dst: u32, dport: u32, src: u32, sport: u32): i32;

@external("nat", "abort")
declare function hostAbort(message: usize, file: usize, line: u32, column: u32): void;

/** AssemblyScript's abort: the host throws, naming the place. */
export function abort(message: string | null, file: string | null, line: u32, column: u32): void {
  hostAbort(changetype<usize>(message), changetype<usize>(file), line, column);
  unreachable();
}

class HostLink extends NetLink {
  send(ptr: usize, len: u32): i32 {
    return hostSend(ptr, len);
  }
}

class HostAdmit extends TcpAdmit {
  admit(dst: u32, dport: u32, src: u32, sport: u32): bool {
    return hostAdmit(dst, dport, src, sport) != 0;
  }
}

const BUF_SIZE: u32 = 65536;
const BUF = heap.alloc(BUF_SIZE);
const FRAME = heap.alloc(2048);
let stack: NetStack | null = null;
let listener: TcpSocket | null = null;
const tcps = new Array<TcpSocket>();
let udp: UdpSocket | null = null;
const udpFrom = new UdpEndpoint();
/** The catch-all UDP socket's receive queue: datagrams from every guest wait here until the host's next pump. */
const UDP_QUEUE: u32 = 262144;

/** Where the host puts frames for `input` and data for `send`, and finds data from `recv`. */
export function buffer(): usize {
  return BUF;
}

export function bufferSize(): u32 {
  return BUF_SIZE;
}

export function frameBuffer(): usize {
  return FRAME;
}

/**
 * Create the stack: `mac`, the gateway's address and netmask, the socket
 * table and buffer sizes (0: the defaults), and the listener on every port
 * and address. 0 or a negative errno.
 */
export function init(mac: u64, ip: u32, mask: u32, maxTcp: i32, tcpBuf: u32): i32 {
  const o = new NetOptions();
  if (maxTcp > 0) o.maxTcpSockets = maxTcp;
  if (tcpBuf > 0) o.tcpBufferSize = tcpBuf;
  o.maxUdpSockets = 1;
  o.udpBufferSize = UDP_QUEUE;
  const s = new NetStack(new HostLink(), mac, o);
  s.setAddress(ip, mask, 0);
  s.iface.anyDestination = true;
  stack = s;
  const l = s.tcpSocket()!;
  const r = l.listenAny(64, new HostAdmit());
  if (r < 0) return r;
  listener = l;
  const u = s.udpSocket()!;
  const ru = u.bindAny();
  if (ru < 0) return ru;
  udp = u;
  return 0;
}

export function addAddress(ip: u32, mask: u32): i32 {
  return stack!.addAddress(ip, mask);
}

/** Feed the `len` bytes at frameBuffer() to the stack. */
export function input(len: u32): void {
  stack!.input(FRAME, len);
}

export function poll(now: u64): u64 {
  return stack!.poll(now);
}

function handle(s: TcpSocket | null): i32 {
  if (s == null) return -1;
  const i = tcps.indexOf(s);
  if (i >= 0) return i;
  tcps.push(s);
  return tcps.length - 1;
}

/** A connection a guest opened (admitted and established), or -1. */
export function accept(): i32 {
  return handle(listener!.accept());
}

/** Connect to `ip`:`port`: a handle, or -1 when the table is full, or a negative errno below -1. */
export function connect(ip: u32, port: u32): i32 {
  const s = stack!.tcpSocket();
  if (s == null) return -1;
  const r = s.connect(ip, port);
  if (r < 0) {
    s.close();
    return r < -1 ? r : -2;
  }
  return handle(s);
}

/** Queue `len` bytes from buffer() for sending: the count taken, or a negative errno. */
export function send(h: i32, len: u32): i32 {
  return tcps[h].send(BUF, len);
}

/** Up to `cap` bytes into buffer(): the count, 0 at end of stream, or a negative errno. */
export function recv(h: i32, cap: u32): i32 {
  return tcps[h].recv(BUF, min(cap, BUF_SIZE));
}

export function state(h: i32): i32 {
  return tcps[h].state;
}

export function error(h: i32): i32 {
  return tcps[h].error;
}

export function sendSpace(h: i32): u32 {
  return tcps[h].sendSpace();
}

export function available(h: i32): u32 {
  return tcps[h].available();
}

export function unacked(h: i32): u32 {
  return tcps[h].unacknowledged();
}

/** 0 local address, 1 local port, 2 remote address, 3 remote port. */
export function endpoint(h: i32, which: i32): u32 {
  const s = tcps[h];
  return which == 0 ? s.localIp : which == 1 ? s.localPort : which == 2 ? s.remoteIp : s.remotePort;
}

export function shutdown(h: i32): i32 {
  return tcps[h].shutdown();
}

export function close(h: i32): void {
  tcps[h].close();
}

export function abortSocket(h: i32): void {
  tcps[h].abort();
}

export function socketsInUse(): i32 {
  return stack!.tcpSocketsInUse();
}

export function stat(i: i32): u64 {
  return stack!.stats.get(i);
}

/** The oldest datagram a guest sent, into buffer() (at most `cap` bytes): its length, or a negative errno (-EAGAIN: none). */
export function udpRecv(cap: u32): i32 {
  return udp!.recvFrom(BUF, min(cap, BUF_SIZE), udpFrom);
}

/** Of the datagram udpRecv took: 0 source address, 1 source port, 2 destination address, 3 destination port. */
export function udpEndpoint(which: i32): u32 {
  const e = udpFrom;
  return which == 0 ? e.ip : which == 1 ? e.port : which == 2 ? e.dstIp : e.dstPort;
}

/** Send `len` bytes from buffer() as `src`:`sport` to `dst`:`dport`: `len`, or a negative errno. */
export function udpSend(src: u32, sport: u32, dst: u32, dport: u32, len: u32): i32 {
  return udp!.sendFrom(src, sport, dst, dport, BUF, len);
}
