// Counters of the network stack: what came in, what went out, and every
// frame dropped, by reason. A malformed frame is always counted, never trapped on.

/** The counters of NetStats, by index. `Count` is their number. */
export enum NetStat {
  /** Frames given to NetStack.input, and their bytes. */
  FramesIn,
  BytesIn,
  /** Frames the link accepted, and their bytes. */
  FramesOut,
  BytesOut,
  /** The link refused a frame (ring full or an error); the frame was lost. */
  TxLinkErrors,
  /** Sends to a destination with no route (off-subnet, no gateway). */
  TxNoRoute,
  /** Shorter than an Ethernet header, or longer than 1514 bytes. */
  DropRunt,
  /** Destination MAC neither ours nor broadcast. */
  DropEthNotForUs,
  /** Neither IPv4 nor ARP. */
  DropEthType,
  /** ARP: short, or not Ethernet/IPv4, or a bad opcode or sender. */
  DropArpMalformed,
  /** IPv4: short, version, header length, total length past the frame. */
  DropIpMalformed,
  DropIpChecksum,
  /** Fragments are not reassembled. */
  DropIpFragment,
  /** Destination not one of our addresses or a broadcast. */
  DropIpNotForUs,
  /** Source that cannot be a host: ours, broadcast, multicast, 0/8, 127/8. */
  DropIpMartian,
  /** Not ICMP, UDP or TCP. */
  DropIpProtocol,
  DropIcmpMalformed,
  DropIcmpChecksum,
  DropUdpMalformed,
  DropUdpChecksum,
  /** No socket bound to the destination port. */
  DropUdpNoPort,
  /** The socket's receive buffer had no room. */
  DropUdpQueueFull,
  /** TCP: short header, data offset outside the segment, broadcast. */
  DropTcpMalformed,
  DropTcpChecksum,
  /** Options that overrun the header or have an impossible length. */
  DropTcpOptions,
  /** No connection or listener (answered with a reset unless it was one). */
  DropTcpNoSocket,
  /** A listener's backlog, or the socket table, was full. */
  DropTcpBacklog,
  /** Segments outside the receive window, or old duplicates (answered with an ACK). */
  DropTcpOutOfWindow,
  /** Frames queued while ARP resolved their next hop, and those dropped (queue full, or no answer). */
  ArpQueued,
  ArpQueueDrops,
  ArpRequestsOut,
  ArpRepliesOut,
  /** Next hops that never answered. */
  ArpTimeouts,
  IcmpEchoRequestsIn,
  IcmpEchoRepliesOut,
  /** Echo replies matched to one of our pings. */
  PingReplies,
  UdpDatagramsIn,
  UdpDatagramsOut,
  TcpSegmentsIn,
  TcpSegmentsOut,
  /** Segments sent again, after a timeout or three duplicate ACKs. */
  TcpRetransmits,
  TcpFastRetransmits,
  /** Retransmission timer expiries. */
  TcpTimeouts,
  TcpZeroWindowProbes,
  /** Out-of-order segments kept until the gap fills. */
  TcpOutOfOrder,
  TcpResetsIn,
  TcpResetsOut,
  /** Connections opened actively and passively, and those that gave up (timeout). */
  TcpActiveOpens,
  TcpPassiveOpens,
  TcpGiveUps,
  /** SYNs a listener on every port refused with a RST (its TcpAdmit said no). */
  TcpRefused,
  Count,
}

/** The name of counter `s` (for printing). */
export function netStatName(s: i32): string {
  switch (s) {
    case NetStat.FramesIn: return "frames-in";
    case NetStat.BytesIn: return "bytes-in";
    case NetStat.FramesOut: return "frames-out";
    case NetStat.BytesOut: return "bytes-out";
    case NetStat.TxLinkErrors: return "tx-link-errors";
    case NetStat.TxNoRoute: return "tx-no-route";
    case NetStat.DropRunt: return "drop-runt";
    case NetStat.DropEthNotForUs: return "drop-eth-not-for-us";
    case NetStat.DropEthType: return "drop-eth-type";
    case NetStat.DropArpMalformed: return "drop-arp-malformed";
    case NetStat.DropIpMalformed: return "drop-ip-malformed";
    case NetStat.DropIpChecksum: return "drop-ip-checksum";
    case NetStat.DropIpFragment: return "drop-ip-fragment";
    case NetStat.DropIpNotForUs: return "drop-ip-not-for-us";
    case NetStat.DropIpMartian: return "drop-ip-martian";
    case NetStat.DropIpProtocol: return "drop-ip-protocol";
    case NetStat.DropIcmpMalformed: return "drop-icmp-malformed";
    case NetStat.DropIcmpChecksum: return "drop-icmp-checksum";
    case NetStat.DropUdpMalformed: return "drop-udp-malformed";
    case NetStat.DropUdpChecksum: return "drop-udp-checksum";
    case NetStat.DropUdpNoPort: return "drop-udp-no-port";
    case NetStat.DropUdpQueueFull: return "drop-udp-queue-full";
    case NetStat.DropTcpMalformed: return "drop-tcp-malformed";
    case NetStat.DropTcpChecksum: return "drop-tcp-checksum";
    case NetStat.DropTcpOptions: return "drop-tcp-options";
    case NetStat.DropTcpNoSocket: return "drop-tcp-no-socket";
    case NetStat.DropTcpBacklog: return "drop-tcp-backlog";
    case NetStat.DropTcpOutOfWindow: return "drop-tcp-out-of-window";
    case NetStat.ArpQueued: return "arp-queued";
    case NetStat.ArpQueueDrops: return "arp-queue-drops";
    case NetStat.ArpRequestsOut: return "arp-requests-out";
    case NetStat.ArpRepliesOut: return "arp-replies-out";
    case NetStat.ArpTimeouts: return "arp-timeouts";
    case NetStat.IcmpEchoRequestsIn: return "icmp-echo-requests-in";
    case NetStat.IcmpEchoRepliesOut: return "icmp-echo-replies-out";
    case NetStat.PingReplies: return "ping-replies";
    case NetStat.UdpDatagramsIn: return "udp-datagrams-in";
    case NetStat.UdpDatagramsOut: return "udp-datagrams-out";
    case NetStat.TcpSegmentsIn: return "tcp-segments-in";
    case NetStat.TcpSegmentsOut: return "tcp-segments-out";
    case NetStat.TcpRetransmits: return "tcp-retransmits";
    case NetStat.TcpFastRetransmits: return "tcp-fast-retransmits";
    case NetStat.TcpTimeouts: return "tcp-timeouts";
    case NetStat.TcpZeroWindowProbes: return "tcp-zero-window-probes";
    case NetStat.TcpOutOfOrder: return "tcp-out-of-order";
    case NetStat.TcpResetsIn: return "tcp-resets-in";
    case NetStat.TcpResetsOut: return "tcp-resets-out";
    case NetStat.TcpActiveOpens: return "tcp-active-opens";
    case NetStat.TcpPassiveOpens: return "tcp-passive-opens";
    case NetStat.TcpGiveUps: return "tcp-give-ups";
    case NetStat.TcpRefused: return "tcp-refused";
    default: return "";
  }
}

/** One stack's counters; they only grow (modulo 2^64). */
export class NetStats {
  private counts: StaticArray<u64> = new StaticArray<u64>(NetStat.Count);

  /** The value of counter `s` (0 for an index out of range). */
  get(s: i32): u64 {
    return s >= 0 && s < NetStat.Count ? unchecked(this.counts[s]) : 0;
  }

  @inline inc(s: NetStat): void {
    unchecked(this.counts[s] += 1);
  }

  @inline add(s: NetStat, n: u64): void {
    unchecked(this.counts[s] += n);
  }

  /** Frames dropped on input, all reasons together. */
  dropped(): u64 {
    let n: u64 = 0;
    for (let s = NetStat.DropRunt; s <= NetStat.DropTcpOutOfWindow; s++) n += unchecked(this.counts[s]);
    return n;
  }
}
