// The interface: one link, its MAC, its IPv4 addresses (a primary from ip=
// and aliases such as the CD's LINKLOCAL=), the gateway, the clock and the
// counters. The protocol layers share it; it sends frames and routes.
import { NetLink } from "./link";
import { NetStats, NetStat } from "./stats";

/** Ethernet II: header length, largest frame (MTU 1500), broadcast MAC, the types handled. */
export const ETH_HLEN: u32 = 14;
export const ETH_MAX_FRAME: u32 = 1514;
export const ETH_MTU: u32 = 1500;
export const ETH_BROADCAST: u64 = 0xffffffffffff;
export const ETHERTYPE_IPV4: u32 = 0x0800;
export const ETHERTYPE_ARP: u32 = 0x0806;

/** Addresses an interface holds at most (a primary and aliases). */
export const NET_MAX_ADDRESSES: i32 = 4;

/** `nextHop` for a destination reached by Ethernet broadcast. */
export const NEXT_HOP_BROADCAST: u32 = 0xffffffff;

export class NetInterface {
  readonly link: NetLink;
  /** Our MAC (unicast: bit 40 clear). */
  mac: u64;
  readonly stats: NetStats;
  /** The clock: the `nowNs` of the last NetStack.poll. */
  now: u64 = 0;
  /** Set when the link refused a frame; NetStack.poll asks to be called again soon. */
  txBlocked: bool = false;
  private addrs: StaticArray<u32> = new StaticArray<u32>(NET_MAX_ADDRESSES);
  private masks: StaticArray<u32> = new StaticArray<u32>(NET_MAX_ADDRESSES);
  /** Addresses in use, in `addrs[0..count)`; addrs[0] is the primary. */
  count: i32 = 0;
  /** The default gateway, or 0. */
  gateway: u32 = 0;
  /**
   * Take IPv4 datagrams for any unicast address, not only ours (a NAT
   * gateway that terminates connections for the addresses it routes to).
   */
  anyDestination: bool = false;

  constructor(link: NetLink, mac: u64, stats: NetStats) {
    this.link = link;
    this.mac = mac & ETH_BROADCAST;
    this.stats = stats;
  }

  /** Replace every address with `ip`/`mask` and set the gateway. ip 0 removes them all. */
  setPrimary(ip: u32, mask: u32, gateway: u32): void {
    this.count = 0;
    this.gateway = gateway;
    if (ip != 0) this.add(ip, mask);
  }

  /** Add an address (an alias); false when the table is full. Adding one held already only updates its mask. */
  add(ip: u32, mask: u32): bool {
    for (let i = 0; i < this.count; i++) {
      if (unchecked(this.addrs[i]) == ip) {
        unchecked(this.masks[i] = mask);
        return true;
      }
    }
    if (this.count == NET_MAX_ADDRESSES) return false;
    unchecked(this.addrs[this.count] = ip);
    unchecked(this.masks[this.count] = mask);
    this.count++;
    return true;
  }

  /** Address `i` (0 the primary), or 0. */
  address(i: i32): u32 {
    return i >= 0 && i < this.count ? unchecked(this.addrs[i]) : 0;
  }

  mask(i: i32): u32 {
    return i >= 0 && i < this.count ? unchecked(this.masks[i]) : 0;
  }

  /** One of our addresses. */
  isLocal(ip: u32): bool {
    if (ip == 0) return false;
    for (let i = 0; i < this.count; i++) if (unchecked(this.addrs[i]) == ip) return true;
    return false;
  }

  /** 255.255.255.255 or the directed broadcast of one of our subnets. */
  isBroadcast(ip: u32): bool {
    if (ip == 0xffffffff) return true;
    for (let i = 0; i < this.count; i++) {
      const m = unchecked(this.masks[i]);
      if (m != 0xffffffff && m != 0xfffffffe && (ip & m) == (unchecked(this.addrs[i]) & m) && (ip | m) == 0xffffffff) return true;
    }
    return false;
  }

  /** The index of the address whose subnet holds `ip`, or -1. */
  private onLink(ip: u32): i32 {
    for (let i = 0; i < this.count; i++) {
      const m = unchecked(this.masks[i]);
      if ((ip & m) == (unchecked(this.addrs[i]) & m)) return i;
    }
    return -1;
  }

  /** The source address for packets to `dst`: the one on dst's subnet, else the primary; 0 if we have none. */
  sourceFor(dst: u32): u32 {
    const i = this.onLink(dst);
    return i >= 0 ? unchecked(this.addrs[i]) : this.address(0);
  }

  /** Where to send a packet for `dst`: dst itself when on a local subnet, the gateway, NEXT_HOP_BROADCAST, or 0 for no route. */
  nextHop(dst: u32): u32 {
    if (this.isBroadcast(dst)) return NEXT_HOP_BROADCAST;
    if (this.onLink(dst) >= 0) return dst;
    if (this.gateway != 0 && this.onLink(this.gateway) >= 0) return this.gateway;
    return 0;
  }

  /** Write an Ethernet header (to `dst`, from us) at `p`. */
  ethHeader(p: usize, dst: u64, type: u32): void {
    store<u16>(p, bswap<u16>(<u16>(dst >> 32)));
    store<u32>(p + 2, bswap<u32>(<u32>dst));
    store<u16>(p + 6, bswap<u16>(<u16>(this.mac >> 32)));
    store<u32>(p + 8, bswap<u32>(<u32>this.mac));
    store<u16>(p + 12, bswap<u16>(<u16>type));
  }

  /** Hand a whole frame to the link, counting it; 0 or the link's negative errno. */
  sendFrame(p: usize, len: u32): i32 {
    const r = this.link.send(p, len);
    if (r < 0) {
      this.stats.inc(NetStat.TxLinkErrors);
      this.txBlocked = true;
      return r;
    }
    this.stats.inc(NetStat.FramesOut);
    this.stats.add(NetStat.BytesOut, len);
    return 0;
  }
}
