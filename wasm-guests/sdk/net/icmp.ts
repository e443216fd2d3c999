// ICMP echo (RFC 792): answer pings sent to one of our addresses (not to a
// broadcast), and send our own, matching replies by identifier and sequence
// to report the round trip. Other ICMP messages are ignored.
import { Ipv4, IpPacket, IP_MAX_PAYLOAD, IP_PROTO_ICMP } from "./ip";
import { NetStat } from "./stats";
import { csumAdd, csumFold, csumStore, get16, put16 } from "./bytes";
import { NET_EMSGSIZE } from "./errno";

const ICMP_ECHO_REPLY: u32 = 0;
const ICMP_ECHO_REQUEST: u32 = 8;
const ICMP_HLEN: u32 = 8;
/** Pings remembered while unanswered (a new one replaces the oldest), and replies kept until read. */
const PING_SLOTS: i32 = 16;
const PING_REPLIES: i32 = 16;
/** The largest ping payload: one frame. */
export const PING_MAX_PAYLOAD: u32 = IP_MAX_PAYLOAD - ICMP_HLEN;

/** One echo reply to a NetStack.ping. */
export class PingReply {
  /** Who answered, and the sequence number of the ping. */
  from: u32 = 0;
  seq: u32 = 0;
  /** From the ping's send to the stack's clock (the last poll) when the reply came. */
  rttNs: u64 = 0;
  /** TTL of the reply, and its payload length. */
  ttl: u32 = 0;
  len: u32 = 0;
}

class PingSent {
  busy: bool = false;
  dst: u32 = 0;
  seq: u32 = 0;
  at: u64 = 0;
}

export class Icmp {
  private ip: Ipv4;
  /** The identifier of our echo requests. */
  private id: u32;
  private sent: Array<PingSent> = new Array<PingSent>();
  private replies: Array<PingReply> = new Array<PingReply>();
  private replyHead: i32 = 0;
  private replyCount: i32 = 0;

  constructor(ip: Ipv4, id: u32) {
    this.ip = ip;
    this.id = id & 0xffff;
    for (let i = 0; i < PING_SLOTS; i++) this.sent.push(new PingSent());
    for (let i = 0; i < PING_REPLIES; i++) this.replies.push(new PingReply());
  }

  /** Send an echo request with `len` payload bytes; 0 or a negative errno from Ipv4.send. */
  ping(dst: u32, seq: u32, len: u32): i32 {
    if (len > PING_MAX_PAYLOAD) return -NET_EMSGSIZE;
    let slot = unchecked(this.sent[0]);
    for (let i = 0; i < PING_SLOTS; i++) {
      const s = unchecked(this.sent[i]);
      if (!s.busy) {
        slot = s;
        break;
      }
      if (s.at < slot.at) slot = s;
    }
    const p = this.ip.payload();
    store<u8>(p, <u8>ICMP_ECHO_REQUEST);
    store<u8>(p + 1, 0);
    store<u16>(p + 2, 0);
    put16(p + 4, this.id);
    put16(p + 6, seq & 0xffff);
    for (let i: u32 = 0; i < len; i++) store<u8>(p + ICMP_HLEN + i, <u8>(i + seq));
    csumStore(p + 2, csumAdd(0, p, ICMP_HLEN + len));
    slot.busy = true;
    slot.dst = dst;
    slot.seq = seq & 0xffff;
    slot.at = this.ip.iface.now;
    const r = this.ip.send(0, dst, IP_PROTO_ICMP, ICMP_HLEN + len);
    if (r < 0) slot.busy = false;
    return r;
  }

  /** Take the oldest unread reply into `out`; false when there is none. */
  nextReply(out: PingReply): bool {
    if (this.replyCount == 0) return false;
    const r = unchecked(this.replies[this.replyHead]);
    out.from = r.from;
    out.seq = r.seq;
    out.rttNs = r.rttNs;
    out.ttl = r.ttl;
    out.len = r.len;
    this.replyHead = (this.replyHead + 1) % PING_REPLIES;
    this.replyCount--;
    return true;
  }

  input(pkt: IpPacket): void {
    const stats = this.ip.iface.stats;
    const p = pkt.payload;
    const len = pkt.len;
    if (len < ICMP_HLEN) {
      stats.inc(NetStat.DropIcmpMalformed);
      return;
    }
    if (csumFold(csumAdd(0, p, len)) != 0xffff) {
      stats.inc(NetStat.DropIcmpChecksum);
      return;
    }
    const type = <u32>load<u8>(p);
    if (type == ICMP_ECHO_REQUEST && load<u8>(p + 1) == 0) {
      stats.inc(NetStat.IcmpEchoRequestsIn);
      // Only our own addresses answer: with anyDestination (a NAT gateway) others reach us too, and are not us.
      if (pkt.broadcast || len > IP_MAX_PAYLOAD || !this.ip.iface.isLocal(pkt.dst)) return;
      const q = this.ip.payload();
      memory.copy(q, p, len);
      store<u8>(q, <u8>ICMP_ECHO_REPLY);
      store<u16>(q + 2, 0);
      csumStore(q + 2, csumAdd(0, q, len));
      if (this.ip.send(pkt.dst, pkt.src, IP_PROTO_ICMP, len) == 0) stats.inc(NetStat.IcmpEchoRepliesOut);
    } else if (type == ICMP_ECHO_REPLY && get16(p + 4) == this.id) {
      const seq = get16(p + 6);
      for (let i = 0; i < PING_SLOTS; i++) {
        const s = unchecked(this.sent[i]);
        if (!s.busy || s.seq != seq || s.dst != pkt.src) continue;
        s.busy = false;
        stats.inc(NetStat.PingReplies);
        const at = (this.replyHead + this.replyCount) % PING_REPLIES;
        if (this.replyCount == PING_REPLIES) this.replyHead = (this.replyHead + 1) % PING_REPLIES;
        else this.replyCount++;
        const r = unchecked(this.replies[at]);
        r.from = pkt.src;
        r.seq = seq;
        r.rttNs = this.ip.iface.now - s.at;
        r.ttl = pkt.ttl;
        r.len = len - ICMP_HLEN;
        return;
      }
    }
  }
}
