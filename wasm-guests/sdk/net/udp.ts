// UDP (RFC 768): sockets bound to a port on every local address, datagrams
// of at most one frame, checksummed both ways (a zero checksum on input
// means none). Each socket queues received datagrams in a fixed buffer with
// their source and destination; a datagram that does not fit is dropped and
// counted. A socket bound with bindAny (a NAT gateway's) takes every
// datagram no bound port claims, whatever its destination address or port.
import { Ipv4, IpPacket, IP_MAX_PAYLOAD, IP_PROTO_UDP } from "./ip";
import { ByteRing } from "./buffer";
import { NetStat } from "./stats";
import { csumAdd, csumFold, csumPseudo, csumStore, get16, put16 } from "./bytes";
import { NET_EADDRINUSE, NET_EADDRNOTAVAIL, NET_EAGAIN, NET_EBADF, NET_EINVAL, NET_EMSGSIZE } from "./errno";

const UDP_HLEN: u32 = 8;
/** The largest datagram: one frame. */
export const UDP_MAX_PAYLOAD: u32 = IP_MAX_PAYLOAD - UDP_HLEN;
/** Each queued datagram's record: source address (4), source port (2), length (2), destination address (4), destination port (2), padding (2). */
const RECORD: u32 = 16;
/** Ports picked by bind(0) and by an unbound socket's first sendTo (IANA's dynamic range). */
export const EPHEMERAL_FIRST: u32 = 49152;
export const EPHEMERAL_COUNT: u32 = 16384;

/** Where a datagram came from, and where it was sent (UdpSocket.recvFrom fills it). */
export class UdpEndpoint {
  ip: u32 = 0;
  port: u32 = 0;
  /** The destination address and port: one of ours, a broadcast, or any (bindAny with NetInterface.anyDestination). */
  dstIp: u32 = 0;
  dstPort: u32 = 0;
}

/** A UDP socket: from NetStack.udpSocket(), back to the stack with close(). */
export class UdpSocket {
  private udp: Udp;
  private rx: ByteRing | null = null;
  /** Held by a caller (between NetStack.udpSocket and close). */
  inUse: bool = false;
  /** The bound port, or 0. */
  localPort: u32 = 0;
  /** Bound with bindAny: takes the datagrams no bound port claims. */
  any: bool = false;

  constructor(udp: Udp) {
    this.udp = udp;
  }

  /** Called by Udp.open: take the socket, allocating its buffer on first use. */
  open(bufSize: u32): void {
    if (this.rx == null) this.rx = new ByteRing(bufSize);
    this.rx!.reset();
    this.inUse = true;
    this.localPort = 0;
    this.any = false;
  }

  /** Bind to `port` (0: an ephemeral one); 0 or -NET_EBADF, -NET_EINVAL (bound already, bindAny, port > 65535), -NET_EADDRINUSE, -NET_EADDRNOTAVAIL. */
  bind(port: u32): i32 {
    if (!this.inUse) return -NET_EBADF;
    if (this.localPort != 0 || this.any || port > 0xffff) return -NET_EINVAL;
    if (port == 0) {
      port = this.udp.ephemeral();
      if (port == 0) return -NET_EADDRNOTAVAIL;
    } else if (this.udp.find(port) != null) {
      return -NET_EADDRINUSE;
    }
    this.localPort = port;
    return 0;
  }

  /**
   * Take every datagram no bound socket claims, to any port (and, with
   * NetInterface.anyDestination, any address): a NAT gateway's catch-all.
   * One socket at a time; 0 or -NET_EBADF, -NET_EINVAL (bound already),
   * -NET_EADDRINUSE (another socket has it).
   */
  bindAny(): i32 {
    if (!this.inUse) return -NET_EBADF;
    if (this.localPort != 0 || this.any) return -NET_EINVAL;
    if (this.udp.findAny() != null) return -NET_EADDRINUSE;
    this.any = true;
    return 0;
  }

  /**
   * Send `len` bytes at `ptr` from `srcIp`:`srcPort` (any address and port,
   * whether ours or not: a NAT gateway answers for the addresses it stands
   * for) to `ip`:`port`. Only for a socket bound with bindAny. Returns `len`,
   * or -NET_EBADF, -NET_EINVAL (not bindAny, a port 0 or over 65535, source 0),
   * -NET_EMSGSIZE, or an error of the route or link.
   */
  sendFrom(srcIp: u32, srcPort: u32, ip: u32, port: u32, ptr: usize, len: u32): i32 {
    if (!this.inUse) return -NET_EBADF;
    if (!this.any || srcIp == 0 || srcPort == 0 || srcPort > 0xffff || port == 0 || port > 0xffff) return -NET_EINVAL;
    if (len > UDP_MAX_PAYLOAD) return -NET_EMSGSIZE;
    return this.udp.output(srcPort, ip, port, ptr, len, srcIp);
  }

  /**
   * Send `len` bytes at `ptr` to `ip`:`port` (255.255.255.255 or a subnet's
   * broadcast goes to everyone on the link). Binds an ephemeral port first if
   * needed. Returns `len`, or -NET_EMSGSIZE (over UDP_MAX_PAYLOAD), -NET_EINVAL
   * (port 0), -NET_EBADF, or an error of the route or link.
   */
  sendTo(ip: u32, port: u32, ptr: usize, len: u32): i32 {
    if (!this.inUse) return -NET_EBADF;
    if (port == 0 || port > 0xffff) return -NET_EINVAL;
    if (len > UDP_MAX_PAYLOAD) return -NET_EMSGSIZE;
    if (this.localPort == 0) {
      const r = this.bind(0);
      if (r < 0) return r;
    }
    return this.udp.output(this.localPort, ip, port, ptr, len);
  }

  /**
   * Take the oldest queued datagram: its first `cap` bytes go to `ptr`
   * (the rest is discarded) and its source to `from`. Returns the bytes
   * copied, or -NET_EAGAIN when none is queued, -NET_EBADF.
   */
  recvFrom(ptr: usize, cap: u32, from: UdpEndpoint | null): i32 {
    if (!this.inUse) return -NET_EBADF;
    const rx = this.rx!;
    if (rx.len < RECORD) return -NET_EAGAIN;
    const hdr = this.udp.scratch;
    rx.peek(0, hdr, RECORD);
    const len = <u32>load<u16>(hdr + 6);
    if (from != null) {
      from.ip = load<u32>(hdr);
      from.port = <u32>load<u16>(hdr + 4);
      from.dstIp = load<u32>(hdr + 8);
      from.dstPort = <u32>load<u16>(hdr + 12);
    }
    const n = min(len, cap);
    rx.peek(RECORD, ptr, n);
    rx.consume(RECORD + len);
    return <i32>n;
  }

  /** Bytes of the oldest queued datagram, or -1 when none is queued. */
  pending(): i32 {
    if (!this.inUse) return -1;
    const rx = this.rx!;
    if (rx.len < RECORD) return -1;
    rx.peek(6, this.udp.scratch, 2);
    return <i32>load<u16>(this.udp.scratch);
  }

  /** Unbind and give the socket back; queued datagrams are dropped. The handle must not be used again. */
  close(): void {
    this.inUse = false;
    this.localPort = 0;
    this.any = false;
  }

  /** Queue a datagram (Udp.input); false when it does not fit. */
  deliver(src: u32, sport: u32, dst: u32, dport: u32, data: usize, len: u32): bool {
    const rx = this.rx!;
    if (rx.free() < RECORD + len) return false;
    const hdr = this.udp.scratch;
    store<u32>(hdr, src);
    store<u16>(hdr + 4, <u16>sport);
    store<u16>(hdr + 6, <u16>len);
    store<u32>(hdr + 8, dst);
    store<u16>(hdr + 12, <u16>dport);
    store<u16>(hdr + 14, 0);
    rx.append(hdr, RECORD);
    rx.append(data, len);
    return true;
  }
}

/** The UDP layer: a fixed table of sockets. */
export class Udp {
  readonly ip: Ipv4;
  private sockets: Array<UdpSocket> = new Array<UdpSocket>();
  private bufSize: u32;
  private nextPort: u32;
  /** A few bytes for record headers. */
  readonly scratch: usize;

  constructor(ip: Ipv4, maxSockets: i32, bufSize: u32, seed: u32) {
    this.ip = ip;
    this.bufSize = bufSize;
    this.nextPort = seed % EPHEMERAL_COUNT;
    this.scratch = heap.alloc(16);
    for (let i = 0; i < maxSockets; i++) this.sockets.push(new UdpSocket(this));
  }

  /** A free socket, or null when all are in use. */
  open(): UdpSocket | null {
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (!s.inUse) {
        s.open(this.bufSize);
        return s;
      }
    }
    return null;
  }

  find(port: u32): UdpSocket | null {
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (s.inUse && s.localPort == port) return s;
    }
    return null;
  }

  /** The socket bound with bindAny, or null. */
  findAny(): UdpSocket | null {
    for (let i = 0; i < this.sockets.length; i++) {
      const s = unchecked(this.sockets[i]);
      if (s.inUse && s.any) return s;
    }
    return null;
  }

  /** A free ephemeral port, or 0. */
  ephemeral(): u32 {
    for (let i: u32 = 0; i < EPHEMERAL_COUNT; i++) {
      const port = EPHEMERAL_FIRST + (this.nextPort++ % EPHEMERAL_COUNT);
      if (this.find(port) == null) return port;
    }
    return 0;
  }

  /** Send from `sport` (and `src`, or 0: the address facing `dst`). */
  output(sport: u32, dst: u32, dport: u32, data: usize, len: u32, src: u32 = 0): i32 {
    const ip = this.ip;
    if (src == 0) src = ip.iface.sourceFor(dst);
    if (src == 0) return -NET_EADDRNOTAVAIL;
    const p = ip.payload();
    put16(p, sport);
    put16(p + 2, dport);
    put16(p + 4, UDP_HLEN + len);
    store<u16>(p + 6, 0);
    memory.copy(p + UDP_HLEN, data, len);
    let sum = csumPseudo(src, dst, IP_PROTO_UDP, UDP_HLEN + len);
    sum = csumAdd(sum, p, UDP_HLEN + len);
    // A computed 0 is sent as 0xffff: 0 means "no checksum".
    if (csumFold(sum) == 0xffff) store<u16>(p + 6, 0xffff);
    else csumStore(p + 6, sum);
    const r = ip.send(src, dst, IP_PROTO_UDP, UDP_HLEN + len);
    if (r < 0) return r;
    ip.iface.stats.inc(NetStat.UdpDatagramsOut);
    return <i32>len;
  }

  input(pkt: IpPacket): void {
    const stats = this.ip.iface.stats;
    const p = pkt.payload;
    if (pkt.len < UDP_HLEN) {
      stats.inc(NetStat.DropUdpMalformed);
      return;
    }
    const ulen = get16(p + 4);
    if (ulen < UDP_HLEN || ulen > pkt.len) {
      stats.inc(NetStat.DropUdpMalformed);
      return;
    }
    if (load<u16>(p + 6) != 0 && csumFold(csumAdd(csumPseudo(pkt.src, pkt.dst, IP_PROTO_UDP, ulen), p, ulen)) != 0xffff) {
      stats.inc(NetStat.DropUdpChecksum);
      return;
    }
    const sport = get16(p);
    const dport = get16(p + 2);
    // Port 0 is no one's (an unbound socket has localPort 0 too).
    let s: UdpSocket | null = null;
    if (dport != 0) s = this.find(dport);
    if (s == null && dport != 0) s = this.findAny();
    if (s == null) {
      stats.inc(NetStat.DropUdpNoPort);
      return;
    }
    if (!s.deliver(pkt.src, sport, pkt.dst, dport, p + UDP_HLEN, ulen - UDP_HLEN)) {
      stats.inc(NetStat.DropUdpQueueFull);
      return;
    }
    stats.inc(NetStat.UdpDatagramsIn);
  }
}
