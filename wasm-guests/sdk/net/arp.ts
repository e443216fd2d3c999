// ARP (RFC 826) for IPv4 over Ethernet: a small cache whose entries expire,
// requests retried a few times, and frames held while their next hop is
// resolved (a bounded pool: when it is full, or the hop never answers, the
// frames are dropped and counted; TCP retransmits them).
//
// An entry past its expiry is stale: it is still used while a request
// refreshes it, and dropped only when ARP_TRIES requests go unanswered, so
// a busy connection does not stall every ARP_TTL_NS.
//
// The cache learns only from ARP frames: it updates an entry it has, and
// adds one only when the frame is a request for one of our addresses, so a
// storm of unsolicited ARP cannot flush it (RFC 826's merge rule).
import { NetInterface, ETH_BROADCAST, ETH_HLEN, ETH_MAX_FRAME, ETHERTYPE_ARP, ETHERTYPE_IPV4, NEXT_HOP_BROADCAST } from "./iface";
import { NetStat } from "./stats";
import { get16, get32, getMac, put16, put32, putMac } from "./bytes";

const ARP_LEN: u32 = 28;
const ARP_OP_REQUEST: u32 = 1;
const ARP_OP_REPLY: u32 = 2;
/** How long an answer is trusted. */
export const ARP_TTL_NS: u64 = 60_000_000_000;
/** Between two requests for the same address, and how many are sent before giving up. */
export const ARP_RETRY_NS: u64 = 1_000_000_000;
export const ARP_TRIES: u32 = 3;

const FREE: u8 = 0;
const INCOMPLETE: u8 = 1;
const RESOLVED: u8 = 2;

class ArpEntry {
  ip: u32 = 0;
  mac: u64 = 0;
  state: u8 = FREE;
  /** RESOLVED: fresh until; INCOMPLETE: the next request. */
  deadline: u64 = 0;
  /** RESOLVED and stale: when the next refresh request may go. */
  retryAt: u64 = 0;
  tries: u32 = 0;
  /** When it was last set, to evict the oldest. */
  stamp: u64 = 0;
  /** We sent through it (not only learnt it from a request): kept longer under pressure. */
  used: bool = false;
}

/** A frame waiting for its next hop's MAC. */
class HeldFrame {
  busy: bool = false;
  hop: u32 = 0;
  len: u32 = 0;
  /** Arrival order, so a hop's frames leave in the order they came. */
  order: u32 = 0;
  readonly buf: usize;

  constructor() {
    this.buf = heap.alloc(ETH_MAX_FRAME);
  }
}

export class Arp {
  private iface: NetInterface;
  private entries: Array<ArpEntry>;
  private held: Array<HeldFrame>;
  private order: u32 = 0;
  private tx: usize;

  constructor(iface: NetInterface, cacheSize: i32, holdFrames: i32) {
    const entries = new Array<ArpEntry>();
    for (let i = 0; i < max(cacheSize, 1); i++) entries.push(new ArpEntry());
    const held = new Array<HeldFrame>();
    for (let i = 0; i < max(holdFrames, 1); i++) held.push(new HeldFrame());
    this.iface = iface;
    this.entries = entries;
    this.held = held;
    this.tx = heap.alloc(ETH_HLEN + ARP_LEN);
  }

  /** The MAC cached for `ip` (fresh or stale), or -1. */
  lookup(ip: u32): i64 {
    const e = this.find(ip);
    return e != null && e.state == RESOLVED ? <i64>e.mac : -1;
  }

  /**
   * Send the frame at `p` (its Ethernet source and type written) to next hop
   * `hop`: write the destination MAC and send it, or hold a copy while `hop`
   * is resolved. 0 (sent or held; a frame that cannot be held is counted and
   * dropped) or the link's negative errno.
   */
  output(p: usize, len: u32, hop: u32): i32 {
    if (hop == NEXT_HOP_BROADCAST) {
      putMac(p, ETH_BROADCAST);
      return this.iface.sendFrame(p, len);
    }
    const now = this.iface.now;
    let e = this.find(hop);
    if (e != null && e.state == RESOLVED) {
      if (now >= e.deadline && now >= e.retryAt) this.refresh(e);
      if (e.state == RESOLVED) {
        e.used = true;
        putMac(p, e.mac);
        return this.iface.sendFrame(p, len);
      }
      e = null;
    }
    if (e == null) {
      e = this.slot(hop);
      e.ip = hop;
      e.used = true;
      e.state = INCOMPLETE;
      e.tries = 1;
      e.deadline = now + ARP_RETRY_NS;
      e.stamp = now;
      this.request(hop);
    }
    this.hold(p, len, hop);
    return 0;
  }

  /** An ARP frame (`len` bytes at `p`, Ethernet header included). */
  input(p: usize, len: u32): void {
    const stats = this.iface.stats;
    if (len < ETH_HLEN + ARP_LEN) {
      stats.inc(NetStat.DropArpMalformed);
      return;
    }
    const a = p + ETH_HLEN;
    const op = get16(a + 6);
    if (get16(a) != 1 || get16(a + 2) != ETHERTYPE_IPV4 || load<u8>(a + 4) != 6 || load<u8>(a + 5) != 4 ||
      (op != ARP_OP_REQUEST && op != ARP_OP_REPLY)) {
      stats.inc(NetStat.DropArpMalformed);
      return;
    }
    const sha = getMac(a + 8);
    const spa = get32(a + 14);
    const tpa = get32(a + 24);
    if (sha == 0 || (sha & 0x010000000000) != 0) {
      stats.inc(NetStat.DropArpMalformed);
      return;
    }
    // Someone else claiming one of our addresses is not believed.
    if (this.iface.isLocal(spa)) return;
    const forUs = this.iface.isLocal(tpa);
    if (spa != 0 && !this.iface.isBroadcast(spa)) {
      let e = this.find(spa);
      if (e == null && forUs) {
        e = this.slot(spa);
        e.used = false;
      }
      if (e != null) {
        e.ip = spa;
        e.mac = sha;
        e.state = RESOLVED;
        e.deadline = this.iface.now + ARP_TTL_NS;
        e.retryAt = 0;
        e.stamp = this.iface.now;
        e.tries = 0;
        this.release(spa, sha);
      }
    }
    if (op == ARP_OP_REQUEST && forUs) this.send(ARP_OP_REPLY, sha, sha, tpa, spa);
  }

  /** Retry and expire requests; returns the next deadline (0: none). */
  poll(now: u64): u64 {
    let next: u64 = 0;
    for (let i = 0; i < this.entries.length; i++) {
      const e = unchecked(this.entries[i]);
      if (e.state != INCOMPLETE) continue;
      if (now >= e.deadline) {
        if (e.tries >= ARP_TRIES) {
          this.iface.stats.inc(NetStat.ArpTimeouts);
          this.drop(e.ip);
          e.state = FREE;
          continue;
        }
        e.tries++;
        e.deadline = now + ARP_RETRY_NS;
        this.request(e.ip);
      }
      if (next == 0 || e.deadline < next) next = e.deadline;
    }
    return next;
  }

  /** A stale entry in use: ask again, and forget it after ARP_TRIES unanswered requests. */
  private refresh(e: ArpEntry): void {
    if (e.tries >= ARP_TRIES) {
      this.iface.stats.inc(NetStat.ArpTimeouts);
      e.state = FREE;
      return;
    }
    e.tries++;
    e.retryAt = this.iface.now + ARP_RETRY_NS;
    this.request(e.ip);
  }

  private find(ip: u32): ArpEntry | null {
    for (let i = 0; i < this.entries.length; i++) {
      const e = unchecked(this.entries[i]);
      if (e.state != FREE && e.ip == ip) return e;
    }
    return null;
  }

  /**
   * A free entry, else the oldest of the least useful kind: one learnt from
   * a request and never used, then an unanswered one (its held frames are
   * dropped), then one in use. A storm of ARP requests or of packets from
   * spoofed neighbours so churns the first two kinds, not the entries in use.
   */
  private slot(ip: u32): ArpEntry {
    let best: ArpEntry | null = null;
    let bestRank = 0;
    for (let i = 0; i < this.entries.length; i++) {
      const e = unchecked(this.entries[i]);
      if (e.state == FREE) {
        best = e;
        break;
      }
      const rank = e.state == RESOLVED && !e.used ? 0 : e.state == INCOMPLETE ? 1 : 2;
      if (best == null || rank < bestRank || (rank == bestRank && e.stamp < best.stamp)) {
        best = e;
        bestRank = rank;
      }
    }
    const e = best!;
    if (e.state == INCOMPLETE) this.drop(e.ip);
    e.state = FREE;
    e.ip = ip;
    e.tries = 0;
    return e;
  }

  private request(ip: u32): void {
    this.iface.stats.inc(NetStat.ArpRequestsOut);
    this.send(ARP_OP_REQUEST, ETH_BROADCAST, 0, this.iface.sourceFor(ip), ip);
  }

  private send(op: u32, ethDst: u64, tha: u64, spa: u32, tpa: u32): void {
    const p = this.tx;
    this.iface.ethHeader(p, ethDst, ETHERTYPE_ARP);
    const a = p + ETH_HLEN;
    put16(a, 1);
    put16(a + 2, ETHERTYPE_IPV4);
    store<u8>(a + 4, 6);
    store<u8>(a + 5, 4);
    put16(a + 6, op);
    putMac(a + 8, this.iface.mac);
    put32(a + 14, spa);
    putMac(a + 18, tha);
    put32(a + 24, tpa);
    if (op == ARP_OP_REPLY) this.iface.stats.inc(NetStat.ArpRepliesOut);
    this.iface.sendFrame(p, ETH_HLEN + ARP_LEN);
  }

  private hold(p: usize, len: u32, hop: u32): void {
    const stats = this.iface.stats;
    for (let i = 0; i < this.held.length; i++) {
      const h = unchecked(this.held[i]);
      if (h.busy) continue;
      h.busy = true;
      h.hop = hop;
      h.len = min(len, ETH_MAX_FRAME);
      h.order = this.order++;
      memory.copy(h.buf, p, h.len);
      stats.inc(NetStat.ArpQueued);
      return;
    }
    stats.inc(NetStat.ArpQueueDrops);
  }

  /** Send the frames held for `hop`, oldest first. */
  private release(hop: u32, mac: u64): void {
    for (;;) {
      let first: HeldFrame | null = null;
      for (let i = 0; i < this.held.length; i++) {
        const h = unchecked(this.held[i]);
        if (h.busy && h.hop == hop && (first == null || <i32>(h.order - first.order) < 0)) first = h;
      }
      if (first == null) return;
      first.busy = false;
      putMac(first.buf, mac);
      this.iface.sendFrame(first.buf, first.len);
    }
  }

  private drop(hop: u32): void {
    for (let i = 0; i < this.held.length; i++) {
      const h = unchecked(this.held[i]);
      if (h.busy && h.hop == hop) {
        h.busy = false;
        this.iface.stats.inc(NetStat.ArpQueueDrops);
      }
    }
  }
}
