// IPv4 (RFC 791) without fragmentation: every datagram fits one frame (we
// send with DF set; fragments that arrive are dropped and counted). Input
// checks the header against the frame before anything reads past it.
import { NetInterface, ETH_HLEN, ETH_MAX_FRAME, ETH_MTU, ETHERTYPE_IPV4 } from "./iface";
import { Arp } from "./arp";
import { NetStat } from "./stats";
import { csumAdd, csumFold, csumStore, get16, get32, put16, put32 } from "./bytes";
import { NET_EADDRNOTAVAIL, NET_EMSGSIZE, NET_ENETUNREACH } from "./errno";

export const IP_PROTO_ICMP: u32 = 1;
export const IP_PROTO_TCP: u32 = 6;
export const IP_PROTO_UDP: u32 = 17;
export const IP_HLEN: u32 = 20;
/** The largest payload of a datagram we send: one frame, no options. */
export const IP_MAX_PAYLOAD: u32 = ETH_MTU - IP_HLEN;
/** TTL of the datagrams we send. */
export const IP_TTL: u32 = 64;

/** What Ipv4.input found in a frame: addresses and where the payload is (inside the frame). */
export class IpPacket {
  src: u32 = 0;
  dst: u32 = 0;
  proto: u32 = 0;
  ttl: u32 = 0;
  /** Guest address and length of the payload, within the frame (padding excluded). */
  payload: usize = 0;
  len: u32 = 0;
  /** Sent to a broadcast address rather than one of ours. */
  broadcast: bool = false;
}

export class Ipv4 {
  readonly iface: NetInterface;
  readonly arp: Arp;
  private tx: usize;
  private id: u32 = 0;

  constructor(iface: NetInterface, arp: Arp) {
    this.iface = iface;
    this.arp = arp;
    this.tx = heap.alloc(ETH_MAX_FRAME);
  }

  /** Where a protocol writes its payload (at most IP_MAX_PAYLOAD bytes) before calling `send`. */
  @inline payload(): usize {
    return this.tx + ETH_HLEN + IP_HLEN;
  }

  /**
   * Send the `len` bytes at payload() as a datagram from `src` (0: the
   * address routing picks) to `dst`. 0 when sent or held for ARP, else a
   * negative errno: NET_EMSGSIZE, NET_ENETUNREACH, NET_EADDRNOTAVAIL, or the link's.
   */
  send(src: u32, dst: u32, proto: u32, len: u32): i32 {
    if (len > IP_MAX_PAYLOAD) return -NET_EMSGSIZE;
    const iface = this.iface;
    const hop = iface.nextHop(dst);
    if (hop == 0) {
      iface.stats.inc(NetStat.TxNoRoute);
      return -NET_ENETUNREACH;
    }
    if (src == 0) src = iface.sourceFor(dst);
    if (src == 0) return -NET_EADDRNOTAVAIL;
    const h = this.tx + ETH_HLEN;
    store<u8>(h, 0x45);
    store<u8>(h + 1, 0);
    put16(h + 2, IP_HLEN + len);
    put16(h + 4, this.id++ & 0xffff);
    put16(h + 6, 0x4000);
    store<u8>(h + 8, <u8>IP_TTL);
    store<u8>(h + 9, <u8>proto);
    store<u16>(h + 10, 0);
    put32(h + 12, src);
    put32(h + 16, dst);
    csumStore(h + 10, csumAdd(0, h, IP_HLEN));
    iface.ethHeader(this.tx, 0, ETHERTYPE_IPV4);
    return this.arp.output(this.tx, ETH_HLEN + IP_HLEN + len, hop);
  }

  /** Check the IPv4 frame (`len` bytes at `p`, Ethernet header included) and fill `pkt`; false when dropped (and counted). */
  input(p: usize, len: u32, pkt: IpPacket): bool {
    const iface = this.iface;
    const stats = iface.stats;
    if (len < ETH_HLEN + IP_HLEN) {
      stats.inc(NetStat.DropIpMalformed);
      return false;
    }
    const h = p + ETH_HLEN;
    const room = len - ETH_HLEN;
    const vihl = <u32>load<u8>(h);
    const ihl = (vihl & 15) << 2;
    const total = get16(h + 2);
    if ((vihl >> 4) != 4 || ihl < IP_HLEN || ihl > room || total < ihl || total > room) {
      stats.inc(NetStat.DropIpMalformed);
      return false;
    }
    if (csumFold(csumAdd(0, h, ihl)) != 0xffff) {
      stats.inc(NetStat.DropIpChecksum);
      return false;
    }
    if ((get16(h + 6) & 0x3fff) != 0) {
      stats.inc(NetStat.DropIpFragment);
      return false;
    }
    const src = get32(h + 12);
    const dst = get32(h + 16);
    const top = src >> 24;
    if (top == 0 || top == 127 || top >= 224 || iface.isLocal(src) || iface.isBroadcast(src)) {
      stats.inc(NetStat.DropIpMartian);
      return false;
    }
    let broadcast = false;
    if (!iface.isLocal(dst)) {
      if (iface.isBroadcast(dst)) broadcast = true;
      else if (!iface.anyDestination || dst == 0 || (dst >> 24) >= 224) {
        stats.inc(NetStat.DropIpNotForUs);
        return false;
      }
    }
    pkt.src = src;
    pkt.dst = dst;
    pkt.proto = <u32>load<u8>(h + 9);
    pkt.ttl = <u32>load<u8>(h + 8);
    pkt.payload = h + ihl;
    pkt.len = total - ihl;
    pkt.broadcast = broadcast;
    return true;
  }
}
