// TCP (RFC 793, with the congestion control of RFC 5681/6582, the timer of
// RFC 6298 and the reset/SYN checks of RFC 5961): connect, listen with a
// backlog, accept, send, receive, shutdown and close with FINs both ways.
//
// Each connection has fixed send and receive buffers, allocated the first
// time its slot is used and reused after (the stub runtime never frees), and
// the number of connections is fixed. The advertised window is the free
// space of the receive buffer (no window scaling: at most 65535); the sender
// never has more than min(peer window, cwnd) bytes in flight, and probes a
// closed window. Out-of-order segments are kept in the receive buffer at
// their offset (a few gaps at most) until the hole fills. Lost segments are
// resent on three duplicate ACKs (NewReno) or when the retransmission timer
// expires (RTO from measured RTT, doubled per expiry, at most
// TCP_DATA_RETRIES expiries, then the connection fails with NET_ETIMEDOUT).
// TIME_WAIT lasts TCP_TIME_WAIT_NS, far shorter than 2 MSL.
//
// Everything in a segment is checked against the segment before use: header
// length, data offset, options (each option's length), checksum.
import { Ipv4, IpPacket, IP_MAX_PAYLOAD, IP_PROTO_TCP } from "./ip";
import { ByteRing } from "./buffer";
import { NetStat } from "./stats";
import { csumAdd, csumFold, csumPseudo, csumStore, get16, get32, put16, put32, seqGe, seqGt, seqLe, seqLt } from "./bytes";
import { EPHEMERAL_COUNT, EPHEMERAL_FIRST } from "./udp";
import {
  NET_EADDRINUSE, NET_EADDRNOTAVAIL, NET_EAGAIN, NET_EBADF, NET_ECONNREFUSED, NET_ECONNRESET, NET_EINVAL, NET_EISCONN,
  NET_ENETUNREACH, NET_ENOTCONN, NET_EPIPE, NET_ETIMEDOUT,
} from "./errno";

/** A connection's state (RFC 793's names). */
export enum TcpState {
  Closed,
  Listen,
  SynSent,
  SynReceived,
  Established,
  FinWait1,
  FinWait2,
  CloseWait,
  Closing,
  LastAck,
  TimeWait,
}

const TCP_HLEN: u32 = 20;
const FIN: u32 = 0x01;
const SYN: u32 = 0x02;
const RST: u32 = 0x04;
const PSH: u32 = 0x08;
const ACK: u32 = 0x10;

/** Our MSS: a segment fills one frame. */
export const TCP_MSS: u32 = IP_MAX_PAYLOAD - TCP_HLEN;
/** The peer's MSS when its SYN has none (RFC 1122), and the least we accept (a tiny MSS only costs frames). */
const TCP_DEFAULT_MSS: u32 = 536;
const TCP_MIN_MSS: u32 = 64;
/** A segment without the MSS option. */
const NO_MSS: u32 = 0xffffffff;
const MAX_WINDOW: u32 = 65535;
const MAX_CWND: u32 = 1 << 22;
/** Retransmission timeout: before any RTT sample, and its bounds (RFC 6298, with Linux's 200 ms floor). */
export const TCP_RTO_INITIAL_NS: u64 = 1_000_000_000;
export const TCP_RTO_MIN_NS: u64 = 200_000_000;
export const TCP_RTO_MAX_NS: u64 = 60_000_000_000;
/** Expiries of the retransmission timer before a connection gives up: for a SYN, and for data or window probes. */
export const TCP_SYN_RETRIES: u32 = 5;
export const TCP_DATA_RETRIES: u32 = 8;
/** How long TIME_WAIT lasts, and how long a closed socket waits in FIN_WAIT_2 for the peer's FIN. */
export const TCP_TIME_WAIT_NS: u64 = 1_000_000_000;
export const TCP_FIN_WAIT2_NS: u64 = 60_000_000_000;
/** Gaps of out-of-order data a connection remembers; more are dropped (and resent by the peer). */
const OOO_SLOTS: i32 = 8;
const GRANULARITY_NS: u64 = 1_000_000;
/**
 * At most one ACK per this interval answers segments without data that fall
 * outside the window, and challenges (RFC 5961): two ends that disagree
 * about sequence numbers must not ACK each other forever.
 */
const OOW_ACK_INTERVAL_NS: u64 = 200_000_000;
const MAX_BACKOFF: u32 = 10;

/** A received segment, checked (Tcp.input). */
class TcpSegment {
  src: u32 = 0;
  dst: u32 = 0;
  sport: u32 = 0;
  dport: u32 = 0;
  seq: u32 = 0;
  ack: u32 = 0;
  flags: u32 = 0;
  wnd: u32 = 0;
  /** The payload: address and length, inside the frame. */
  data: usize = 0;
  len: u32 = 0;
  /** The MSS option, or NO_MSS. */
  mss: u32 = NO_MSS;
}

/**
 * Decides, when a SYN reaches a listener on every port (listenAny), whether
 * the connection may be set up: false answers the SYN with a RST (connection
 * refused). Addresses and ports are the segment's: dst and dport are what
 * the peer asked for.
 */
export abstract class TcpAdmit {
  abstract admit(dst: u32, dport: u32, src: u32, sport: u32): bool;
}

@inline function inWindow(x: u32, start: u32, wnd: u32): bool {
  return seqGe(x, start) && seqLt(x, start + wnd);
}

/**
 * A TCP connection or listener. Get one from NetStack.tcpSocket(), or from
 * accept() on a listener; give it back with close() (or abort()). Like a
 * closed file descriptor, a closed handle may be handed out again later, so
 * it must not be used after close(). Calls never block: they return
 * -NET_EAGAIN when they would have to wait, and progress happens in
 * NetStack.input and NetStack.poll.
 */
export class TcpSocket {
  private tcp: Tcp;
  /** Taken from the table (by a caller, or by a listener for a connection not yet accepted). */
  inUse: bool = false;
  /** A caller holds the handle. */
  held: bool = false;
  /** The listener whose accept queue holds this connection, until accept(). */
  parent: TcpSocket | null = null;
  /** When it was established, for accept's order. */
  order: u32 = 0;
  private backlog: i32 = 0;
  /** A listener on every port (listenAny), and what it asks before it answers a SYN. */
  anyPort: bool = false;
  private admitter: TcpAdmit | null = null;
  private st: TcpState = TcpState.Closed;
  private err: i32 = 0;
  /** Addresses and ports (a listener's localIp is 0: every address). */
  localIp: u32 = 0;
  localPort: u32 = 0;
  remoteIp: u32 = 0;
  remotePort: u32 = 0;

  // Send side. sbuf holds the bytes from sequence number sbSeq on: sent and
  // unacknowledged, then unsent. A queued FIN follows them (at sbSeq + len).
  private sbuf: ByteRing | null = null;
  private sbSeq: u32 = 0;
  private finQueued: bool = false;
  private iss: u32 = 0;
  private sndUna: u32 = 0;
  private sndNxt: u32 = 0;
  /** The highest sequence number sent; sndNxt goes back to sndUna after a timeout. */
  private sndMax: u32 = 0;
  private sndWnd: u32 = 0;
  private sndWl1: u32 = 0;
  private sndWl2: u32 = 0;
  private mss: u32 = TCP_DEFAULT_MSS;
  private cwnd: u32 = 0;
  private ssthresh: u32 = MAX_CWND;
  private dupAcks: u32 = 0;
  private inRecovery: bool = false;
  private recover: u32 = 0;

  // Receive side. rbuf holds the bytes before rcvNxt the caller has not read,
  // and out-of-order bytes past its end (the gaps in ooo*).
  private rbuf: ByteRing | null = null;
  private irs: u32 = 0;
  private rcvNxt: u32 = 0;
  private finReceived: bool = false;
  private finPending: bool = false;
  private finPendingSeq: u32 = 0;
  private oooStart: StaticArray<u32> = new StaticArray<u32>(OOO_SLOTS);
  private oooEnd: StaticArray<u32> = new StaticArray<u32>(OOO_SLOTS);
  private oooCount: i32 = 0;
  /** In-order segments not acknowledged yet (an ACK goes for every second one, or at poll). */
  private ackPending: u32 = 0;
  private ackNow: bool = false;
  /** rcvNxt + the window of our last segment. */
  private advEdge: u32 = 0;
  /** When the next rate-limited ACK may go (oowAck). */
  private oowAllowedAt: u64 = 0;

  // Timers: one deadline (0: none) whose meaning follows the state:
  // retransmission, window probe, TIME_WAIT, FIN_WAIT_2.
  private timer: u64 = 0;
  private retries: u32 = 0;
  private backoff: u32 = 0;
  private rto: u64 = TCP_RTO_INITIAL_NS;
  private srtt: u64 = 0;
  private rttvar: u64 = 0;
  private hasRtt: bool = false;
  private rttTiming: bool = false;
  private rttSeq: u32 = 0;
  private rttTime: u64 = 0;

  constructor(tcp: Tcp) {
    this.tcp = tcp;
  }

  /** The state. */
  get state(): TcpState {
    return this.st;
  }

  /** Why the connection ended: 0, or -NET_ECONNREFUSED, -NET_ECONNRESET, -NET_ETIMEDOUT. */
  get error(): i32 {
    return this.err;
  }

  /** Established, or closing with our side still open (CloseWait). */
  get connected(): bool {
    return this.st == TcpState.Established || this.st == TcpState.CloseWait;
  }

  /** Bytes recv() can return now. */
  available(): u32 {
    return this.rbuf == null ? 0 : this.rbuf!.len;
  }

  /** Room in the send buffer: what send() would take now. */
  sendSpace(): u32 {
    return this.sbuf == null || this.finQueued ? 0 : this.sbuf!.free();
  }

  /** Bytes sent or queued that the peer has not acknowledged yet. */
  unacknowledged(): u32 {
    return this.sbuf == null ? 0 : this.sbuf!.len;
  }

  /** Take the slot (Tcp.open): buffers allocated on first use, everything reset. */
  open(bufSize: u32, held: bool): void {
    if (this.sbuf == null) {
      this.sbuf = new ByteRing(bufSize);
      this.rbuf = new ByteRing(bufSize);
    }
    this.sbuf!.reset();
    this.rbuf!.reset();
    this.inUse = true;
    this.held = held;
    this.parent = null;
    this.order = 0;
    this.backlog = 0;
    this.anyPort = false;
    this.admitter = null;
    this.st = TcpState.Closed;
    this.err = 0;
    this.localIp = 0;
    this.localPort = 0;
    this.remoteIp = 0;
    this.remotePort = 0;
    this.finQueued = false;
    this.finReceived = false;
    this.finPending = false;
    this.oooCount = 0;
    this.ackPending = 0;
    this.ackNow = false;
    this.oowAllowedAt = 0;
    this.timer = 0;
    this.retries = 0;
    this.backoff = 0;
    this.rto = TCP_RTO_INITIAL_NS;
    this.hasRtt = false;
    this.rttTiming = false;
    this.mss = TCP_DEFAULT_MSS;
    this.cwnd = 0;
    this.ssthresh = MAX_CWND;
    this.dupAcks = 0;
    this.inRecovery = false;
    this.sndWnd = 0;
  }

  /** Bind to a local port before connect() or listen(); 0 or -NET_EBADF, -NET_EINVAL, -NET_EADDRINUSE. */
  bind(port: u32): i32 {
    if (!this.held) return -NET_EBADF;
    if (this.st != TcpState.Closed || this.localPort != 0 || port == 0 || port > 0xffff) return -NET_EINVAL;
    if (this.tcp.portUsed(port)) return -NET_EADDRINUSE;
    this.localPort = port;
    return 0;
  }

  /**
   * Start connecting to `ip`:`port`: 0 when the SYN is on its way (state
   * SynSent; Established once the peer answers, or Closed with `error`
   * -NET_ECONNREFUSED or -NET_ETIMEDOUT). Errors: -NET_EBADF, -NET_EISCONN,
   * -NET_EINVAL (port 0, a listener), -NET_EADDRNOTAVAIL (no address, no
   * free port), -NET_ENETUNREACH (no route, or one of our own addresses).
   */
  connect(ip: u32, port: u32): i32 {
    if (!this.held) return -NET_EBADF;
    if (this.st == TcpState.Listen) return -NET_EINVAL;
    if (this.st != TcpState.Closed || this.remotePort != 0) return -NET_EISCONN;
    if (port == 0 || port > 0xffff || ip == 0) return -NET_EINVAL;
    const iface = this.tcp.ip.iface;
    const src = iface.sourceFor(ip);
    if (src == 0) return -NET_EADDRNOTAVAIL;
    if (iface.isLocal(ip) || iface.isBroadcast(ip) || iface.nextHop(ip) == 0) return -NET_ENETUNREACH;
    if (this.localPort == 0) {
      this.localPort = this.tcp.ephemeral();
      if (this.localPort == 0) return -NET_EADDRNOTAVAIL;
    }
    this.localIp = src;
    this.remoteIp = ip;
    this.remotePort = port;
    this.err = 0;
    this.startSend();
    this.st = TcpState.SynSent;
    this.tcp.ip.iface.stats.inc(NetStat.TcpActiveOpens);
    this.sendSyn();
    this.rttTiming = true;
    this.rttSeq = this.iss + 1;
    this.rttTime = iface.now;
    return 0;
  }

  /**
   * Listen on `port` (0: the bound one) on every local address, keeping at
   * most `backlog` connections that are being set up or wait for accept()
   * (more SYNs are dropped and counted). 0 or -NET_EBADF, -NET_EINVAL,
   * -NET_EADDRINUSE (another listener has the port).
   */
  listen(port: u32, backlog: i32): i32 {
    if (!this.held) return -NET_EBADF;
    if (this.st != TcpState.Closed || this.remotePort != 0) return -NET_EINVAL;
    if (port == 0) port = this.localPort;
    if (port == 0 || port > 0xffff || (port != this.localPort && this.localPort != 0)) return -NET_EINVAL;
    if (this.tcp.listener(port) != null) return -NET_EADDRINUSE;
    this.localPort = port;
    this.localIp = 0;
    this.backlog = max(backlog, 1);
    this.st = TcpState.Listen;
    return 0;
  }

  /**
   * Listen on every port of every local address (with
   * NetInterface.anyDestination, of every address): a SYN no connection or
   * port listener takes comes here, and `admit` (if any) decides whether it
   * is answered or refused with a RST. Children have the local address and
   * port the peer asked for. At most one such listener per stack. 0 or
   * -NET_EBADF, -NET_EINVAL, -NET_EADDRINUSE.
   */
  listenAny(backlog: i32, admit: TcpAdmit | null): i32 {
    if (!this.held) return -NET_EBADF;
    if (this.st != TcpState.Closed || this.remotePort != 0 || this.localPort != 0) return -NET_EINVAL;
    if (this.tcp.anyListener() != null) return -NET_EADDRINUSE;
    this.localIp = 0;
    this.anyPort = true;
    this.admitter = admit;
    this.backlog = max(backlog, 1);
    this.st = TcpState.Listen;
    return 0;
  }

  /** The oldest established connection waiting on this listener, now the caller's; null when none. */
  accept(): TcpSocket | null {
    if (!this.held || this.st != TcpState.Listen) return null;
    const c = this.tcp.oldestChild(this);
    if (c == null) return null;
    c.parent = null;
    c.held = true;
    return c;
  }

  /**
   * Queue up to `len` bytes at `ptr` for sending: the count taken (the send
   * buffer may hold less), or -NET_EAGAIN (buffer full, or still
   * connecting), -NET_ENOTCONN, -NET_EPIPE (after shutdown/close), -NET_EBADF,
   * or the error that ended the connection.
   */
  send(ptr: usize, len: u32): i32 {
    if (!this.held) return -NET_EBADF;
    if (this.err != 0) return this.err;
    switch (this.st) {
      case TcpState.Established:
      case TcpState.CloseWait:
        break;
      case TcpState.SynSent:
      case TcpState.SynReceived:
        return -NET_EAGAIN;
      case TcpState.Closed:
      case TcpState.Listen:
        return -NET_ENOTCONN;
      default:
        return -NET_EPIPE;
    }
    if (this.finQueued) return -NET_EPIPE;
    const sb = this.sbuf!;
    const n = min(len, sb.free());
    if (n == 0) return len == 0 ? 0 : -NET_EAGAIN;
    sb.append(ptr, n);
    this.trySend();
    return <i32>n;
  }

  /**
   * Take up to `cap` received bytes into `ptr`: the count, 0 at the end of
   * the stream (the peer's FIN, all data read), or -NET_EAGAIN (nothing yet),
   * -NET_ENOTCONN, -NET_EBADF, or the error that ended the connection.
   */
  recv(ptr: usize, cap: u32): i32 {
    if (!this.held) return -NET_EBADF;
    const rb = this.rbuf!;
    if (rb.len > 0 && cap > 0) {
      const n = min(cap, rb.len);
      rb.peek(0, ptr, n);
      rb.consume(n);
      this.windowUpdate();
      return <i32>n;
    }
    if (this.finReceived) return 0;
    if (this.err != 0) return this.err;
    if (this.st == TcpState.Closed || this.st == TcpState.Listen) return -NET_ENOTCONN;
    return cap == 0 ? 0 : -NET_EAGAIN;
  }

  /** Send a FIN after the queued data; receiving goes on until the peer's FIN. A listener stops listening. 0 or -NET_EBADF. */
  shutdown(): i32 {
    if (!this.held) return -NET_EBADF;
    switch (this.st) {
      case TcpState.Listen:
        this.tcp.dropChildren(this);
        this.toClosed(0);
        break;
      case TcpState.SynSent:
        this.toClosed(0);
        break;
      case TcpState.SynReceived:
      case TcpState.Established:
        this.finQueued = true;
        this.st = TcpState.FinWait1;
        this.trySend();
        break;
      case TcpState.CloseWait:
        this.finQueued = true;
        this.st = TcpState.LastAck;
        this.trySend();
        break;
      default:
        break;
    }
    return 0;
  }

  /**
   * Give the handle back. Queued data is still sent and the FIN handshake
   * completes in the background (data arriving after close is acknowledged
   * and discarded); the slot is reused once the connection is closed.
   */
  close(): void {
    if (!this.held) return;
    this.shutdown();
    this.held = false;
    if (this.st == TcpState.Closed) this.free();
    else if (this.st == TcpState.FinWait2) this.timer = this.tcp.ip.iface.now + TCP_FIN_WAIT2_NS;
  }

  /** Reset the connection (RST to the peer) and give the handle back at once. */
  abort(): void {
    if (!this.held) return;
    this.resetAndClose();
    this.held = false;
    this.free();
  }

  // ---- Internal: called by Tcp. ----

  /** Send a RST if synchronized, and close (a listener drops its queue). */
  resetAndClose(): void {
    if (this.st == TcpState.Listen) this.tcp.dropChildren(this);
    else if (this.st >= TcpState.SynReceived && this.st != TcpState.TimeWait) this.emit(this.sndNxt, RST | ACK, 0, 0, false);
    this.toClosed(0);
  }

  /** Deliver a segment addressed to this socket. */
  input(seg: TcpSegment): void {
    switch (this.st) {
      case TcpState.Closed:
        return;
      case TcpState.Listen:
        this.onListen(seg);
        return;
      case TcpState.SynSent:
        this.onSynSent(seg);
        return;
      default:
        this.onSegment(seg);
    }
  }

  /** Timers, delayed ACKs, and output the link refused earlier. */
  poll(now: u64): void {
    if (this.timer != 0 && now >= this.timer) this.onTimer(now);
    if (!this.inUse) return;
    this.trySend();
    if (this.ackPending > 0 || this.ackNow) this.sendAck();
  }

  /** The timer deadline, 0 for none. */
  @inline deadline(): u64 {
    return this.timer;
  }

  private onListen(seg: TcpSegment): void {
    const flags = seg.flags;
    if ((flags & RST) != 0) return;
    if ((flags & ACK) != 0) {
      this.tcp.sendReset(seg);
      return;
    }
    if ((flags & SYN) == 0) return;
    const stats = this.tcp.ip.iface.stats;
    const admit = this.admitter;
    if (admit != null && !admit.admit(seg.dst, seg.dport, seg.src, seg.sport)) {
      stats.inc(NetStat.TcpRefused);
      this.tcp.sendReset(seg);
      return;
    }
    if (this.tcp.childCount(this) >= this.backlog) {
      stats.inc(NetStat.DropTcpBacklog);
      return;
    }
    const c = this.tcp.open(false);
    if (c == null) {
      stats.inc(NetStat.DropTcpBacklog);
      return;
    }
    c.parent = this;
    c.localIp = seg.dst;
    c.localPort = seg.dport;
    c.remoteIp = seg.src;
    c.remotePort = seg.sport;
    c.synReceived(seg);
    stats.inc(NetStat.TcpPassiveOpens);
  }

  /** A SYN for a new passive connection: answer with SYN-ACK. */
  private synReceived(seg: TcpSegment): void {
    this.irs = seg.seq;
    this.rcvNxt = seg.seq + 1;
    this.advEdge = this.rcvNxt;
    this.setMss(seg.mss);
    this.startSend();
    this.sndWnd = seg.wnd;
    this.sndWl1 = seg.seq;
    this.sndWl2 = this.iss;
    this.st = TcpState.SynReceived;
    this.sendSyn();
  }

  private onSynSent(seg: TcpSegment): void {
    const flags = seg.flags;
    const hasAck = (flags & ACK) != 0;
    if (hasAck && (seqLe(seg.ack, this.iss) || seqGt(seg.ack, this.sndMax))) {
      if ((flags & RST) == 0) this.tcp.sendReset(seg);
      return;
    }
    if ((flags & RST) != 0) {
      if (hasAck) {
        this.tcp.ip.iface.stats.inc(NetStat.TcpResetsIn);
        this.toClosed(-NET_ECONNREFUSED);
      }
      return;
    }
    if ((flags & SYN) == 0) return;
    this.irs = seg.seq;
    this.rcvNxt = seg.seq + 1;
    this.advEdge = this.rcvNxt;
    this.setMss(seg.mss);
    if (hasAck) {
      this.sndWnd = seg.wnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      this.acked(seg.ack);
      this.established();
      this.sendAck();
      this.trySend();
    } else {
      // Simultaneous open: both sent a SYN.
      this.st = TcpState.SynReceived;
      this.sendSyn();
    }
  }

  private onSegment(seg: TcpSegment): void {
    const stats = this.tcp.ip.iface.stats;
    const flags = seg.flags;
    const seq = seg.seq;
    const n = seg.len;
    const fin = (flags & FIN) != 0;
    const segLen = n + ((flags & SYN) != 0 ? 1 : 0) + (fin ? 1 : 0);
    const wnd = this.rcvWindow();
    const rcvNxt = this.rcvNxt;
    // Acceptable if any of it falls in the window (RFC 793 p. 69); a closed
    // window still takes a bare FIN or ACK at rcvNxt.
    let ok: bool;
    if (segLen == 0) ok = wnd == 0 ? seq == rcvNxt : inWindow(seq, rcvNxt, wnd);
    else if (wnd == 0) ok = n == 0 && seq == rcvNxt;
    else ok = inWindow(seq, rcvNxt, wnd) || inWindow(seq + segLen - 1, rcvNxt, wnd);
    if (!ok) {
      if ((flags & RST) != 0) return;
      if (this.st == TcpState.SynReceived && (flags & SYN) != 0 && seq == this.irs) {
        // Our SYN-ACK was lost: the peer sent its SYN again.
        this.sendSyn();
        return;
      }
      stats.inc(NetStat.DropTcpOutOfWindow);
      // A closed window must not stop the peer's ACKs from counting.
      if ((flags & ACK) != 0 && this.st != TcpState.SynReceived && !seqGt(seg.ack, this.sndMax)) {
        if (!this.processAck(seg, true)) return;
      }
      this.oowAck(n > 0);
      this.trySend();
      return;
    }
    if ((flags & RST) != 0) {
      if (seq != rcvNxt) {
        this.oowAck(false); // challenge ACK (RFC 5961): a blind reset must hit rcvNxt exactly
        return;
      }
      stats.inc(NetStat.TcpResetsIn);
      switch (this.st) {
        case TcpState.SynReceived:
          this.toClosed(this.parent != null ? 0 : -NET_ECONNREFUSED);
          break;
        case TcpState.Closing:
        case TcpState.LastAck:
        case TcpState.TimeWait:
          this.toClosed(0);
          break;
        default:
          this.toClosed(-NET_ECONNRESET);
      }
      return;
    }
    if ((flags & SYN) != 0) {
      this.oowAck(false); // a SYN inside the window: challenge ACK (RFC 5961)
      return;
    }
    if ((flags & ACK) == 0) return;
    if (this.st == TcpState.SynReceived) {
      if (seqLe(seg.ack, this.sndUna) || seqGt(seg.ack, this.sndMax)) {
        this.tcp.sendReset(seg);
        return;
      }
      this.established();
      this.sndWnd = seg.wnd;
      this.sndWl1 = seq;
      this.sndWl2 = seg.ack;
    }
    if (seqGt(seg.ack, this.sndMax)) {
      this.sendAck(); // acknowledges what we never sent
      return;
    }
    if (!this.processAck(seg, segLen > 0)) return;
    if (n > 0) {
      const st = this.st;
      if (st == TcpState.Established || st == TcpState.FinWait1 || st == TcpState.FinWait2) this.receive(seq, seg.data, n);
    }
    if (fin && !this.finReceived) {
      const finSeq = seq + n;
      if (finSeq == this.rcvNxt) this.acceptFin();
      else if (seqGt(finSeq, this.rcvNxt) && !this.finPending) {
        this.finPending = true;
        this.finPendingSeq = finSeq;
        this.ackNow = true;
      }
    }
    this.trySend();
    if (this.ackNow || this.ackPending >= 2) this.sendAck();
  }

  /**
   * The ACK field and window of an acceptable segment. Returns false when
   * the connection is gone (our FIN acknowledged in LastAck).
   */
  private processAck(seg: TcpSegment, hasPayload: bool): bool {
    const ack = seg.ack;
    if (seqLt(ack, this.sndUna)) return true;
    const sb = this.sbuf!;
    const now = this.tcp.ip.iface.now;
    if (seqGt(ack, this.sndUna)) {
      const acked = ack - this.sndUna;
      this.acked(ack);
      if (this.inRecovery) {
        if (seqGe(ack, this.recover)) {
          this.inRecovery = false;
          this.cwnd = this.ssthresh;
        } else {
          // A partial ACK (RFC 6582): the next hole is lost too.
          this.retransmitFirst();
          this.cwnd = (this.cwnd > acked ? this.cwnd - acked : 0) + this.mss;
        }
      } else if (this.cwnd < this.ssthresh) {
        this.cwnd += min(acked, this.mss);
      } else {
        this.cwnd += max<u32>(1, this.mss * this.mss / this.cwnd);
      }
      if (this.cwnd > MAX_CWND) this.cwnd = MAX_CWND;
      this.dupAcks = 0;
      this.timer = this.sndMax == this.sndUna ? 0 : now + this.rto;
    } else if (this.sndMax != this.sndUna) {
      if (!hasPayload && seg.wnd == this.sndWnd) {
        this.dupAcks++;
        if (this.dupAcks == this.dupThreshold() && !this.inRecovery) {
          const flight = this.sndMax - this.sndUna;
          this.ssthresh = max(flight / 2, 2 * this.mss);
          this.inRecovery = true;
          this.recover = this.sndMax;
          this.tcp.ip.iface.stats.inc(NetStat.TcpFastRetransmits);
          this.retransmitFirst();
          this.cwnd = this.ssthresh + 3 * this.mss;
        } else if (this.inRecovery) {
          this.cwnd = min(this.cwnd + this.mss, MAX_CWND);
        }
      }
    } else {
      this.retries = 0; // a window probe was answered
    }
    if (seqLt(this.sndWl1, seg.seq) || (this.sndWl1 == seg.seq && seqLe(this.sndWl2, ack))) {
      if (this.sndWnd == 0 && seg.wnd != 0) this.backoff = 0;
      this.sndWnd = seg.wnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = ack;
    }
    if (this.finQueued && this.sndUna == this.sbSeq + sb.len + 1) {
      switch (this.st) {
        case TcpState.FinWait1:
          this.st = TcpState.FinWait2;
          this.timer = this.held ? 0 : now + TCP_FIN_WAIT2_NS;
          break;
        case TcpState.Closing:
          this.enterTimeWait();
          break;
        case TcpState.LastAck:
          this.toClosed(0);
          return false;
        default:
          break;
      }
    }
    return true;
  }

  /**
   * Duplicate ACKs that mean a loss: 3, or fewer when fewer segments are
   * out and nothing new can go (early retransmit, RFC 5827), since a small
   * window cannot produce three.
   */
  private dupThreshold(): u32 {
    const oseg = (this.sndMax - this.sndUna + this.mss - 1) / this.mss;
    const unsent = <u32>(this.sndNxt - this.sbSeq) < this.sbuf!.len;
    return oseg < 4 && !unsent ? max<u32>(oseg - 1, 1) : 3;
  }

  /** sndUna moves to `ack`: drop acknowledged bytes, take an RTT sample. */
  private acked(ack: u32): void {
    const sb = this.sbuf!;
    if (seqGt(ack, this.sbSeq)) {
      const d = min(ack - this.sbSeq, sb.len);
      sb.consume(d);
      this.sbSeq += d;
    }
    this.sndUna = ack;
    if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
    this.retries = 0;
    this.backoff = 0;
    if (this.rttTiming && seqGe(ack, this.rttSeq)) {
      this.rttTiming = false;
      this.rttSample(this.tcp.ip.iface.now - this.rttTime);
    }
  }

  private rttSample(r: u64): void {
    if (!this.hasRtt) {
      this.srtt = r;
      this.rttvar = r / 2;
      this.hasRtt = true;
    } else {
      const delta = this.srtt > r ? this.srtt - r : r - this.srtt;
      this.rttvar = (3 * this.rttvar + delta) / 4;
      this.srtt = (7 * this.srtt + r) / 8;
    }
    let rto = this.srtt + max(GRANULARITY_NS, 4 * this.rttvar);
    if (rto < TCP_RTO_MIN_NS) rto = TCP_RTO_MIN_NS;
    if (rto > TCP_RTO_MAX_NS) rto = TCP_RTO_MAX_NS;
    this.rto = rto;
  }

  /** In-window data at `seq`: appended, or kept out of order. */
  private receive(seq: u32, data: usize, n: u32): void {
    if (seqLt(seq, this.rcvNxt)) {
      const d = this.rcvNxt - seq;
      if (d >= n) {
        this.ackNow = true;
        return;
      }
      data += d;
      n -= d;
      seq = this.rcvNxt;
    }
    const rb = this.rbuf!;
    const off = seq - this.rcvNxt;
    const room = rb.free();
    if (off >= room) {
      this.ackNow = true;
      return;
    }
    if (n > room - off) n = room - off;
    if (!this.held && this.parent == null) {
      // Closed by the caller: nobody will read it.
      if (off == 0) this.rcvNxt += n;
      this.ackNow = true;
      return;
    }
    if (off == 0) {
      rb.append(data, n);
      this.rcvNxt += n;
      this.ackPending++;
      if (this.oooCount > 0) {
        this.drainOoo();
        this.ackNow = true;
      }
      if (this.finPending && this.rcvNxt == this.finPendingSeq) this.acceptFin();
    } else {
      rb.writeAt(off, data, n);
      this.addOoo(seq, seq + n);
      this.tcp.ip.iface.stats.inc(NetStat.TcpOutOfOrder);
      this.ackNow = true;
    }
  }

  private addOoo(s: u32, e: u32): void {
    let i = 0;
    while (i < this.oooCount) {
      const a = unchecked(this.oooStart[i]);
      const b = unchecked(this.oooEnd[i]);
      if (seqLe(s, b) && seqLe(a, e)) {
        if (seqLt(a, s)) s = a;
        if (seqGt(b, e)) e = b;
        this.removeOoo(i);
        i = 0;
        continue;
      }
      i++;
    }
    if (this.oooCount == OOO_SLOTS) return;
    unchecked(this.oooStart[this.oooCount] = s);
    unchecked(this.oooEnd[this.oooCount] = e);
    this.oooCount++;
  }

  private removeOoo(i: i32): void {
    this.oooCount--;
    unchecked(this.oooStart[i] = this.oooStart[this.oooCount]);
    unchecked(this.oooEnd[i] = this.oooEnd[this.oooCount]);
  }

  /** Take the out-of-order data that now follows rcvNxt. */
  private drainOoo(): void {
    const rb = this.rbuf!;
    let i = 0;
    while (i < this.oooCount) {
      const a = unchecked(this.oooStart[i]);
      const b = unchecked(this.oooEnd[i]);
      if (seqLe(a, this.rcvNxt)) {
        if (seqGt(b, this.rcvNxt)) {
          rb.commit(b - this.rcvNxt);
          this.rcvNxt = b;
        }
        this.removeOoo(i);
        i = 0;
        continue;
      }
      i++;
    }
  }

  private acceptFin(): void {
    this.rcvNxt += 1;
    this.finReceived = true;
    this.finPending = false;
    this.ackNow = true;
    switch (this.st) {
      case TcpState.SynReceived:
      case TcpState.Established:
        this.st = TcpState.CloseWait;
        break;
      case TcpState.FinWait1:
        if (this.finAcked()) this.enterTimeWait();
        else this.st = TcpState.Closing;
        break;
      case TcpState.FinWait2:
        this.enterTimeWait();
        break;
      default:
        break;
    }
  }

  @inline private finAcked(): bool {
    return this.finQueued && this.sndUna == this.sbSeq + this.sbuf!.len + 1;
  }

  private enterTimeWait(): void {
    this.st = TcpState.TimeWait;
    this.timer = this.tcp.ip.iface.now + TCP_TIME_WAIT_NS;
  }

  private established(): void {
    this.st = TcpState.Established;
    this.cwnd = 10 * this.mss;
    this.ssthresh = MAX_CWND;
    this.retries = 0;
    this.backoff = 0;
    this.timer = 0;
    this.order = this.tcp.nextOrder();
  }

  private onTimer(now: u64): void {
    const stats = this.tcp.ip.iface.stats;
    this.timer = 0;
    switch (this.st) {
      case TcpState.TimeWait:
      case TcpState.FinWait2:
        this.toClosed(0);
        return;
      case TcpState.SynSent:
      case TcpState.SynReceived:
        if (this.retries >= TCP_SYN_RETRIES) {
          stats.inc(NetStat.TcpGiveUps);
          this.toClosed(-NET_ETIMEDOUT);
          return;
        }
        this.retries++;
        stats.inc(NetStat.TcpTimeouts);
        stats.inc(NetStat.TcpRetransmits);
        this.rto = min(this.rto * 2, TCP_RTO_MAX_NS);
        this.rttTiming = false;
        this.sendSyn();
        return;
      case TcpState.Listen:
      case TcpState.Closed:
        return;
      default:
        break;
    }
    const sb = this.sbuf!;
    if (this.sndMax != this.sndUna) {
      if (this.retries >= TCP_DATA_RETRIES) {
        stats.inc(NetStat.TcpGiveUps);
        this.toClosed(-NET_ETIMEDOUT);
        return;
      }
      this.retries++;
      stats.inc(NetStat.TcpTimeouts);
      this.rto = min(this.rto * 2, TCP_RTO_MAX_NS);
      this.ssthresh = max((this.sndMax - this.sndUna) / 2, 2 * this.mss);
      this.cwnd = this.mss;
      this.dupAcks = 0;
      this.inRecovery = false;
      this.rttTiming = false;
      this.sndNxt = this.sndUna; // go back: resend from the first unacknowledged byte
      this.trySend();
      if (this.timer == 0) this.timer = now + this.rto;
    } else if (<u32>(this.sndNxt - this.sbSeq) < sb.len) {
      // Data waits for a closed window: probe it with an old sequence number, which makes the peer ACK with its window.
      if (this.retries >= TCP_DATA_RETRIES) {
        stats.inc(NetStat.TcpGiveUps);
        this.toClosed(-NET_ETIMEDOUT);
        return;
      }
      this.retries++;
      stats.inc(NetStat.TcpZeroWindowProbes);
      this.emit(this.sndUna - 1, ACK, 0, 0, false);
      if (this.backoff < MAX_BACKOFF) this.backoff++;
      this.timer = now + min(this.rto << this.backoff, TCP_RTO_MAX_NS);
    }
  }

  /** Send what the windows allow, and a FIN after the last byte once queued. */
  private trySend(): void {
    switch (this.st) {
      case TcpState.Established:
      case TcpState.CloseWait:
      case TcpState.FinWait1:
      case TcpState.Closing:
      case TcpState.LastAck:
        break;
      default:
        return;
    }
    const sb = this.sbuf!;
    const iface = this.tcp.ip.iface;
    for (;;) {
      const off = this.sndNxt - this.sbSeq;
      if (off > sb.len) break; // the FIN is out
      const avail = sb.len - off;
      const flight = this.sndNxt - this.sndUna;
      // Limited transmit (RFC 3042): each of the first two duplicate ACKs lets one more segment go, to make more.
      const wnd = min(this.sndWnd, this.cwnd + (this.inRecovery ? 0 : min(this.dupAcks, 2) * this.mss));
      const usable = wnd > flight ? wnd - flight : 0;
      const n = min(min(avail, usable), this.mss);
      const fin = this.finQueued && n == avail;
      if (n == 0 && !fin) break;
      // No runt segment while more waits and data is in flight (sender-side silly window avoidance).
      if (n < this.mss && n < avail && flight > 0) break;
      if (this.emit(this.sndNxt, ACK | (n > 0 ? PSH : 0) | (fin ? FIN : 0), off, n, false) < 0) break;
      if (seqLt(this.sndNxt, this.sndMax)) {
        iface.stats.inc(NetStat.TcpRetransmits);
      } else if (!this.rttTiming && n > 0) {
        this.rttTiming = true;
        this.rttSeq = this.sndNxt + n;
        this.rttTime = iface.now;
      }
      this.sndNxt += n + (fin ? 1 : 0);
      if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
      if (this.timer == 0 || this.backoff > 0) {
        this.timer = iface.now + this.rto;
        this.backoff = 0;
      }
      if (fin) break;
    }
    // Nothing in flight and data held back by a closed window: arm the probe.
    if (this.timer == 0 && this.sndMax == this.sndUna && <u32>(this.sndNxt - this.sbSeq) < sb.len) {
      this.timer = iface.now + min(this.rto << this.backoff, TCP_RTO_MAX_NS);
    }
  }

  /** Resend the first unacknowledged segment (fast retransmit, partial ACK). */
  private retransmitFirst(): void {
    const out = this.sndMax - this.sndUna;
    if (out == 0) return;
    const sb = this.sbuf!;
    const off = this.sndUna - this.sbSeq;
    const data = off < sb.len ? sb.len - off : 0;
    const n = min(min(out, data), this.mss);
    const fin = this.finQueued && off + n == sb.len && out > n;
    if (n == 0 && !fin) return;
    this.rttTiming = false;
    if (this.emit(this.sndUna, ACK | (fin ? FIN : 0), off, n, false) == 0) this.tcp.ip.iface.stats.inc(NetStat.TcpRetransmits);
    this.timer = this.tcp.ip.iface.now + this.rto;
  }

  /** When the caller frees receive space: tell a stalled peer the window opened. */
  private windowUpdate(): void {
    if (this.st != TcpState.Established && this.st != TcpState.FinWait1 && this.st != TcpState.FinWait2) return;
    const wnd = this.rcvWindow();
    const old = seqGt(this.advEdge, this.rcvNxt) ? this.advEdge - this.rcvNxt : 0;
    if ((old < this.mss && wnd >= this.mss) || (wnd > old && wnd - old >= this.rbuf!.cap / 2)) this.sendAck();
  }

  /**
   * The window to advertise: free receive space, at most 65535 (no window
   * scaling). The right edge never moves back, and moves on only by at least
   * min(MSS, half the buffer), so a slow reader does not invite tiny
   * segments (receiver-side silly window avoidance, RFC 1122 4.2.3.3).
   */
  private rcvWindow(): u32 {
    const free = min(this.rbuf!.free(), MAX_WINDOW);
    const open = seqGt(this.advEdge, this.rcvNxt) ? this.advEdge - this.rcvNxt : 0;
    if (free <= open || free - open >= min(this.mss, this.rbuf!.cap / 2)) return free;
    return open;
  }

  private setMss(peer: u32): void {
    this.mss = peer == NO_MSS ? TCP_DEFAULT_MSS : max(TCP_MIN_MSS, min(peer, TCP_MSS));
  }

  /** Sequence space of a new connection; the SYN goes at iss. */
  private startSend(): void {
    this.iss = this.tcp.newIss();
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.sbSeq = this.iss + 1;
    this.sbuf!.reset();
    this.finQueued = false;
  }

  /** Our SYN (SynSent) or SYN-ACK (SynReceived), at iss, with the MSS option; arms the timer. */
  private sendSyn(): void {
    const flags = this.st == TcpState.SynSent ? SYN : SYN | ACK;
    this.emit(this.iss, flags, 0, 0, true);
    this.sndNxt = this.iss + 1;
    this.sndMax = this.iss + 1;
    this.timer = this.tcp.ip.iface.now + this.rto;
  }

  private sendAck(): void {
    this.emit(this.sndNxt, ACK, 0, 0, false);
  }

  /** ACK a segment we could not take; rate-limited unless it carried data (a duplicate the peer resent: it needs the ACK). */
  private oowAck(hadData: bool): void {
    const now = this.tcp.ip.iface.now;
    if (!hadData) {
      if (now < this.oowAllowedAt) return;
      this.oowAllowedAt = now + OOW_ACK_INTERVAL_NS;
    }
    this.sendAck();
  }

  /** Build and send one segment; 0 or a negative errno (the segment is lost; retransmission recovers it). */
  private emit(seq: u32, flags: u32, off: u32, n: u32, withMss: bool): i32 {
    const wnd = this.rcvWindow();
    const r = this.tcp.output(this.localIp, this.remoteIp, this.localPort, this.remotePort, seq, this.rcvNxt, flags, wnd,
      this.sbuf!, off, n, withMss);
    if (r == 0 && (flags & ACK) != 0) {
      this.ackPending = 0;
      this.ackNow = false;
      this.advEdge = this.rcvNxt + wnd;
    }
    return r;
  }

  /** The connection is over; the slot is freed unless a caller still holds it. */
  toClosed(err: i32): void {
    this.st = TcpState.Closed;
    this.timer = 0;
    if (err != 0) this.err = err;
    this.ackPending = 0;
    this.ackNow = false;
    if (!this.held) this.free();
  }

  private free(): void {
    this.st = TcpState.Closed;
    this.inUse = false;
    this.held = false;
    this.parent = null;
    this.timer = 0;
  }
}

/** The TCP layer: the connection table, demultiplexing, resets for strays. */
export class Tcp {
  readonly ip: Ipv4;
  private sockets: Array<TcpSocket> = new Array<TcpSocket>();
  private bufSize: u32;
  private seg: TcpSegment = new TcpSegment();
  private nextPort: u32;
  private rand: u32;
  private orderCounter: u32 = 0;
  /** The socket the last segment went to: bulk transfers hit it again. */
  private last: TcpSocket | null = null;

  constructor(ip: Ipv4, maxSockets: i32, bufSize: u32, seed: u32) {
    this.ip = ip;
    this.bufSize = bufSize;
    this.rand = seed | 1;
    this.nextPort = seed % EPHEMERAL_COUNT;
    for (let i = 0; i < maxSockets; i++) this.sockets.push(new TcpSocket(this));
  }

  /** A free slot, taken (its buffers allocated on first use); null when all are in use. */
  open(held: bool): TcpSocket | null {
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (!s.inUse) {
        s.open(this.bufSize, held);
        return s;
      }
    }
    return null;
  }

  /** Sockets in use (held, connecting, closing or waiting for accept). */
  inUse(): i32 {
    let n = 0;
    for (let i = 0; i < this.sockets.length; i++) if (unchecked(this.sockets[i]).inUse) n++;
    return n;
  }

  portUsed(port: u32): bool {
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (s.inUse && s.localPort == port) return true;
    }
    return false;
  }

  /** The listener on every port (listenAny), if any. */
  anyListener(): TcpSocket | null {
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (s.inUse && s.anyPort && s.state == TcpState.Listen) return s;
    }
    return null;
  }

  listener(port: u32): TcpSocket | null {
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (s.inUse && s.state == TcpState.Listen && s.localPort == port && !s.anyPort) return s;
    }
    return null;
  }

  /** A free ephemeral port, or 0. */
  ephemeral(): u32 {
    for (let i: u32 = 0; i < EPHEMERAL_COUNT; i++) {
      const port = EPHEMERAL_FIRST + (this.nextPort++ % EPHEMERAL_COUNT);
      if (!this.portUsed(port)) return port;
    }
    return 0;
  }

  /** An initial sequence number: a generator seeded from the MAC, plus a 4 µs clock (RFC 793). */
  newIss(): u32 {
    let x = this.rand;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    this.rand = x;
    return x + <u32>(this.ip.iface.now / 4000);
  }

  nextOrder(): u32 {
    return this.orderCounter++;
  }

  childCount(parent: TcpSocket): i32 {
    let n = 0;
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (s.inUse && s.parent === parent) n++;
    }
    return n;
  }

  oldestChild(parent: TcpSocket): TcpSocket | null {
    let best: TcpSocket | null = null;
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (!s.inUse || s.parent !== parent || s.state == TcpState.SynReceived || s.state == TcpState.Closed) continue;
      if (best == null || <i32>(s.order - best.order) < 0) best = s;
    }
    return best;
  }

  /** Reset every connection waiting on a listener that closes. */
  dropChildren(parent: TcpSocket): void {
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (s.inUse && s.parent === parent) s.resetAndClose();
    }
  }

  /** Run timers and flush delayed ACKs; returns the earliest deadline (0: none). */
  poll(now: u64): u64 {
    let next: u64 = 0;
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (!s.inUse) continue;
      s.poll(now);
      const d = s.deadline();
      if (s.inUse && d != 0 && (next == 0 || d < next)) next = d;
    }
    return next;
  }

  private find(seg: TcpSegment): TcpSocket | null {
    const last = this.last;
    if (last != null && last.inUse && last.localPort == seg.dport && last.remotePort == seg.sport && last.remoteIp == seg.src &&
      last.localIp == seg.dst && last.state != TcpState.Listen && last.state != TcpState.Closed) return last;
    let listener: TcpSocket | null = null;
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (!s.inUse || s.localPort != seg.dport) continue;
      if (s.state == TcpState.Listen) {
        listener = s;
      } else if (s.state != TcpState.Closed && s.remotePort == seg.sport && s.remoteIp == seg.src && s.localIp == seg.dst) {
        this.last = s;
        return s;
      }
    }
    return listener != null ? listener : this.anyListener();
  }

  input(pkt: IpPacket): void {
    const stats = this.ip.iface.stats;
    stats.inc(NetStat.TcpSegmentsIn);
    const p = pkt.payload;
    const len = pkt.len;
    if (len < TCP_HLEN || pkt.broadcast) {
      stats.inc(NetStat.DropTcpMalformed);
      return;
    }
    if (csumFold(csumAdd(csumPseudo(pkt.src, pkt.dst, IP_PROTO_TCP, len), p, len)) != 0xffff) {
      stats.inc(NetStat.DropTcpChecksum);
      return;
    }
    const doff = (<u32>load<u8>(p + 12) >> 4) << 2;
    if (doff < TCP_HLEN || doff > len) {
      stats.inc(NetStat.DropTcpMalformed);
      return;
    }
    const seg = this.seg;
    seg.mss = NO_MSS;
    // Options: each one's length is checked against the header before it is read.
    let i: u32 = TCP_HLEN;
    while (i < doff) {
      const kind = <u32>load<u8>(p + i);
      if (kind == 0) break;
      if (kind == 1) {
        i++;
        continue;
      }
      if (i + 1 >= doff) {
        stats.inc(NetStat.DropTcpOptions);
        return;
      }
      const olen = <u32>load<u8>(p + i + 1);
      if (olen < 2 || olen > doff - i || (kind == 2 && olen != 4)) {
        stats.inc(NetStat.DropTcpOptions);
        return;
      }
      if (kind == 2) seg.mss = get16(p + i + 2);
      i += olen;
    }
    seg.src = pkt.src;
    seg.dst = pkt.dst;
    seg.sport = get16(p);
    seg.dport = get16(p + 2);
    seg.seq = get32(p + 4);
    seg.ack = get32(p + 8);
    seg.flags = <u32>load<u8>(p + 13) & 0x3f;
    seg.wnd = get16(p + 14);
    seg.data = p + doff;
    seg.len = len - doff;
    if (seg.sport == 0 || seg.dport == 0) {
      stats.inc(NetStat.DropTcpMalformed);
      return;
    }
    const s = this.find(seg);
    if (s == null) {
      stats.inc(NetStat.DropTcpNoSocket);
      this.sendReset(seg);
      return;
    }
    s.input(seg);
  }

  /** Answer a segment no connection takes with a reset (RFC 793 p. 36); never a reset for a reset. */
  sendReset(seg: TcpSegment): void {
    if ((seg.flags & RST) != 0) return;
    if ((seg.flags & ACK) != 0) {
      this.output(seg.dst, seg.src, seg.dport, seg.sport, seg.ack, 0, RST, 0, null, 0, 0, false);
    } else {
      const len = seg.len + ((seg.flags & SYN) != 0 ? 1 : 0) + ((seg.flags & FIN) != 0 ? 1 : 0);
      this.output(seg.dst, seg.src, seg.dport, seg.sport, 0, seg.seq + len, RST | ACK, 0, null, 0, 0, false);
    }
  }

  /** Build a segment at the IP payload (data: `n` bytes at `off` in `data`) and send it. */
  output(src: u32, dst: u32, sport: u32, dport: u32, seq: u32, ack: u32, flags: u32, wnd: u32,
    data: ByteRing | null, off: u32, n: u32, withMss: bool): i32 {
    const ip = this.ip;
    const p = ip.payload();
    const hlen = TCP_HLEN + (withMss ? 4 : 0);
    put16(p, sport);
    put16(p + 2, dport);
    put32(p + 4, seq);
    put32(p + 8, (flags & ACK) != 0 ? ack : 0);
    store<u8>(p + 12, <u8>((hlen >> 2) << 4));
    store<u8>(p + 13, <u8>flags);
    put16(p + 14, wnd);
    store<u32>(p + 16, 0); // checksum and urgent pointer
    if (withMss) {
      store<u8>(p + 20, 2);
      store<u8>(p + 21, 4);
      put16(p + 22, TCP_MSS);
    }
    if (n > 0 && data != null) data.peek(off, p + hlen, n);
    csumStore(p + 16, csumAdd(csumPseudo(src, dst, IP_PROTO_TCP, hlen + n), p, hlen + n));
    const r = ip.send(src, dst, IP_PROTO_TCP, hlen + n);
    if (r == 0) {
      const stats = ip.iface.stats;
      stats.inc(NetStat.TcpSegmentsOut);
      if ((flags & RST) != 0) stats.inc(NetStat.TcpResetsOut);
    }
    return r;
  }
}
