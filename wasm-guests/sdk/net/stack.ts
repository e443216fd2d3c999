// The network stack: one interface, with ARP, IPv4, ICMP echo, UDP and TCP
// over it. It knows nothing of the device: frames leave through a NetLink
// and arrive through input(); time arrives through poll().
//
// A guest's loop: take every received frame to input(), then call
// poll(now) (which runs timers and sends delayed ACKs), then sleep until the
// deadline poll returned or the next device event:
//
//   for (;;) {
//     while (front.receive(frame)) stack.input(frame, len);
//     ... socket calls ...
//     block(stack.poll(now()));
//   }
import { NetLink } from "./link";
import { NetStats, NetStat } from "./stats";
import { NetInterface, ETH_HLEN, ETH_MAX_FRAME, ETH_BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from "./iface";
import { Arp } from "./arp";
import { Ipv4, IpPacket, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from "./ip";
import { Icmp, PingReply } from "./icmp";
import { Udp, UdpSocket } from "./udp";
import { Tcp, TcpSocket } from "./tcp";
import { NetConfig } from "./addr";
import { getMac, get16 } from "./bytes";
import { NET_EINVAL, NET_ENOBUFS } from "./errno";

/** A stack's fixed limits: everything is allocated up to these and never more. */
export class NetOptions {
  /** TCP connections and listeners (accepted connections included). */
  maxTcpSockets: i32 = 64;
  /** Each TCP connection's send buffer and receive buffer (a power of two; 64 KiB covers the largest unscaled window). */
  tcpBufferSize: u32 = 65536;
  maxUdpSockets: i32 = 16;
  /** Each UDP socket's receive queue (a power of two). */
  udpBufferSize: u32 = 16384;
  arpCacheSize: i32 = 32;
  /** Frames held while ARP resolves their next hop. */
  arpHoldFrames: i32 = 16;
}

/** How soon poll() asks to run again after the link refused a frame. */
const TX_RETRY_NS: u64 = 1_000_000;

export class NetStack {
  readonly stats: NetStats;
  readonly iface: NetInterface;
  private arp: Arp;
  private ip: Ipv4;
  private icmp: Icmp;
  private udp: Udp;
  private tcp: Tcp;
  private pkt: IpPacket = new IpPacket();

  /** A stack on `link` with MAC `mac` and no address yet (setAddress or configure). */
  constructor(link: NetLink, mac: u64, options: NetOptions | null = null) {
    const o = options == null ? new NetOptions() : options;
    const stats = new NetStats();
    const iface = new NetInterface(link, mac, stats);
    const arp = new Arp(iface, o.arpCacheSize, o.arpHoldFrames);
    const ip = new Ipv4(iface, arp);
    // Seeds for ephemeral ports, ISNs and the ping identifier: the MAC differs between domains.
    const seed = <u32>(mac ^ (mac >> 32)) * 0x9e3779b1;
    this.stats = stats;
    this.iface = iface;
    this.arp = arp;
    this.ip = ip;
    this.icmp = new Icmp(ip, seed >> 16);
    this.udp = new Udp(ip, o.maxUdpSockets, o.udpBufferSize, seed >> 3);
    this.tcp = new Tcp(ip, o.maxTcpSockets, o.tcpBufferSize, seed);
  }

  /** Our MAC. */
  get mac(): u64 {
    return this.iface.mac;
  }

  /** The primary address (0 if none). */
  get address(): u32 {
    return this.iface.address(0);
  }

  /** Set the primary address, its netmask and the gateway (0: none), dropping any alias. */
  setAddress(ip: u32, mask: u32, gateway: u32): void {
    this.iface.setPrimary(ip, mask, gateway);
  }

  /** Add an alias (such as the CD's link-local address); 0 or -NET_ENOBUFS (NET_MAX_ADDRESSES held), -NET_EINVAL for 0. */
  addAddress(ip: u32, mask: u32): i32 {
    if (ip == 0) return -NET_EINVAL;
    return this.iface.add(ip, mask) ? 0 : -NET_ENOBUFS;
  }

  /**
   * Take the addresses from a kernel command line: `ip=<addr>::<gw>:<mask>::eth0:off`
   * sets the primary, `LINKLOCAL=<addr>` adds a 169.254/16 alias (the
   * primary, if none was given). Returns the number of addresses now held,
   * or -NET_EINVAL when a word is malformed (nothing is changed then).
   */
  configure(cmdline: string): i32 {
    const c = new NetConfig();
    if (!c.parse(cmdline)) return -NET_EINVAL;
    if (c.ip != 0) this.setAddress(c.ip, c.mask, c.gateway);
    if (c.linkLocal != 0) this.iface.add(c.linkLocal, 0xffff0000);
    return this.iface.count;
  }

  /** A received frame (`len` bytes at `ptr`, Ethernet header first; the buffer is free again on return). Bad frames are counted and dropped. */
  input(ptr: usize, len: u32): void {
    const stats = this.stats;
    stats.inc(NetStat.FramesIn);
    stats.add(NetStat.BytesIn, len);
    if (len < ETH_HLEN || len > ETH_MAX_FRAME) {
      stats.inc(NetStat.DropRunt);
      return;
    }
    const dst = getMac(ptr);
    if (dst != this.iface.mac && dst != ETH_BROADCAST) {
      stats.inc(NetStat.DropEthNotForUs);
      return;
    }
    const type = get16(ptr + 12);
    if (type == ETHERTYPE_ARP) {
      this.arp.input(ptr, len);
      return;
    }
    if (type != ETHERTYPE_IPV4) {
      stats.inc(NetStat.DropEthType);
      return;
    }
    const pkt = this.pkt;
    if (!this.ip.input(ptr, len, pkt)) return;
    switch (pkt.proto) {
      case IP_PROTO_TCP:
        this.tcp.input(pkt);
        break;
      case IP_PROTO_UDP:
        this.udp.input(pkt);
        break;
      case IP_PROTO_ICMP:
        this.icmp.input(pkt);
        break;
      default:
        stats.inc(NetStat.DropIpProtocol);
    }
  }

  /**
   * Advance the clock to `nowNs` (monotonic; an earlier time is ignored),
   * run the timers (retransmission, window probes, ARP retries, TIME_WAIT)
   * and send delayed ACKs. Returns the next deadline to call poll again by,
   * or 0 when nothing is timed.
   */
  poll(nowNs: u64): u64 {
    const iface = this.iface;
    if (nowNs > iface.now) iface.now = nowNs;
    const now = iface.now;
    iface.txBlocked = false;
    let next = this.arp.poll(now);
    const t = this.tcp.poll(now);
    if (t != 0 && (next == 0 || t < next)) next = t;
    if (iface.txBlocked) {
      const soon = now + TX_RETRY_NS;
      if (next == 0 || soon < next) next = soon;
    }
    return next;
  }

  /** The stack's clock: the last poll's time. */
  get now(): u64 {
    return this.iface.now;
  }

  /** A TCP socket, or null when NetOptions.maxTcpSockets are in use. */
  tcpSocket(): TcpSocket | null {
    return this.tcp.open(true);
  }

  /** TCP sockets in use: held by callers, waiting for accept, or still closing. */
  tcpSocketsInUse(): i32 {
    return this.tcp.inUse();
  }

  /** A UDP socket (unbound), or null when NetOptions.maxUdpSockets are in use. */
  udpSocket(): UdpSocket | null {
    return this.udp.open();
  }

  /**
   * Send an ICMP echo request to `ip` with sequence number `seq` (16 bits)
   * and `payloadLen` bytes (at most PING_MAX_PAYLOAD); its reply comes back
   * through nextPingReply. 0 or a negative errno (-NET_EMSGSIZE,
   * -NET_ENETUNREACH, -NET_EADDRNOTAVAIL, the link's).
   */
  ping(ip: u32, seq: u32, payloadLen: u32 = 56): i32 {
    return this.icmp.ping(ip, seq, payloadLen);
  }

  /** The oldest unread echo reply, into `out`; false when none (a reply queue of 16, the oldest overwritten). */
  nextPingReply(out: PingReply): bool {
    return this.icmp.nextReply(out);
  }
}
