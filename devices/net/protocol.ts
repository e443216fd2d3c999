/**
 * The vif ring protocol (after Xen's `io/netif.h`): two rings per virtual
 * interface, each one 4 KiB page in kernel/ring.ts's layout, sharing one
 * event channel. Every frame is one Ethernet II frame of 14..MAX_FRAME bytes
 * (no FCS) in one buffer: there are no multi-slot frames, no offloads and
 * no extra-info slots.
 *
 * TX ring: the guest sends. 16-byte slots, 128 of them.
 *   Request                                    Response
 *    0  u32 gref    the page holding the frame   0  u16 id      (as requested)
 *    4  u16 offset  of the frame in that page    2  i16 status  (NetStatus)
 *    6  u16 flags   0 (no TxFlag is defined)     4..15 zero
 *    8  u16 id      the frontend's, echoed
 *   10  u16 size    bytes of the frame (14..1514)
 *   12..15 zero
 * The page may be granted read-only: the backend only reads it, and copies
 * the frame out once before it looks at it. OKAY means the switch took the
 * frame (it may still be dropped further on: a receiver without buffers);
 * ERROR means the request itself was bad (grant, offset, size, flags);
 * DROPPED means the switch refused the frame (malformed, spoofed,
 * unroutable, over the rate limit). The buffer is the guest's again once
 * answered.
 *
 * RX ring: the guest posts empty buffers, the backend fills them. 8-byte
 * slots, 256 of them.
 *   Request                                    Response
 *    0  u16 id      the frontend's, echoed       0  u16 id
 *    2  u16 zero                                 2  u16 offset  where the frame starts in the page
 *    4  u32 gref    a page granted writable      4  u16 flags   0 (no RxFlag is defined)
 *                                                6  i16 status  the frame's size (> 0), or ERROR
 * A response with status ERROR returns a buffer the backend could not use
 * (its grant was bad); no frame is lost for it, the backend tries the next
 * buffer. A frontend must read `offset` from the response (the backend
 * writes at RX_OFFSET today). When no buffer is posted the frame is dropped
 * and counted on the receiving port: nothing waits for a guest.
 *
 * Both rings: the frontend initialises them (initSharedRing), grants both
 * pages to the backend read-write, and notifies the one event channel after
 * pushing TX requests when the ring says so. The backend does not ask to
 * be told about new RX buffers: it looks when a frame arrives.
 */
import type { RingCodec } from '../../kernel/ring.ts';
import { ringLayout } from '../../kernel/ring.ts';

/** Largest IPv4 packet in one frame. */
export const MTU = 1500;
/** Bytes of an Ethernet II header (two MACs and the EtherType; no VLAN tag). */
export const ETH_HEADER = 14;
/** Smallest frame the backend takes: a bare Ethernet header. */
export const MIN_FRAME = ETH_HEADER;
/** Largest frame: header plus MTU (no FCS). */
export const MAX_FRAME = ETH_HEADER + MTU;

export const TX_SLOT_SIZE = 16;
export const RX_SLOT_SIZE = 8;
/** Slots of the TX ring (128). */
export const TX_RING_SLOTS = ringLayout(TX_SLOT_SIZE).slots;
/** Slots of the RX ring (256). */
export const RX_RING_SLOTS = ringLayout(RX_SLOT_SIZE).slots;
/** Where the backend writes a received frame in an RX page. */
export const RX_OFFSET = 0;

/** Response statuses, as Xen's NETIF_RSP_*. */
export const NetStatus = { OKAY: 0, ERROR: -1, DROPPED: -2 } as const;

export interface TxRequest { gref: number; offset: number; flags: number; id: number; size: number }
export interface TxResponse { id: number; status: number }
export interface RxRequest { id: number; gref: number }
/** `status` is the frame's size, or NetStatus.ERROR. */
export interface RxResponse { id: number; offset: number; flags: number; status: number }

export const txRequestCodec: RingCodec<TxRequest> = {
  size: 12,
  write(v, r) {
    v.setUint32(0, r.gref, true);
    v.setUint16(4, r.offset, true);
    v.setUint16(6, r.flags, true);
    v.setUint16(8, r.id, true);
    v.setUint16(10, r.size, true);
  },
  read(v) {
    return { gref: v.getUint32(0, true), offset: v.getUint16(4, true), flags: v.getUint16(6, true), id: v.getUint16(8, true), size: v.getUint16(10, true) };
  },
};

export const txResponseCodec: RingCodec<TxResponse> = {
  size: 4,
  write(v, r) {
    v.setUint16(0, r.id, true);
    v.setInt16(2, r.status, true);
  },
  read(v) {
    return { id: v.getUint16(0, true), status: v.getInt16(2, true) };
  },
};

export const rxRequestCodec: RingCodec<RxRequest> = {
  size: 8,
  write(v, r) {
    v.setUint16(0, r.id, true);
    v.setUint32(4, r.gref, true);
  },
  read(v) {
    return { id: v.getUint16(0, true), gref: v.getUint32(4, true) };
  },
};

export const rxResponseCodec: RingCodec<RxResponse> = {
  size: 8,
  write(v, r) {
    v.setUint16(0, r.id, true);
    v.setUint16(2, r.offset, true);
    v.setUint16(4, r.flags, true);
    v.setInt16(6, r.status, true);
  },
  read(v) {
    return { id: v.getUint16(0, true), offset: v.getUint16(2, true), flags: v.getUint16(4, true), status: v.getInt16(6, true) };
  },
};

/** The options both ends give BackRing/FrontRing for the TX ring. */
export const TX_RING = { request: txRequestCodec, response: txResponseCodec, slotSize: TX_SLOT_SIZE } as const;
/** The options both ends give BackRing/FrontRing for the RX ring. */
export const RX_RING = { request: rxRequestCodec, response: rxResponseCodec, slotSize: RX_SLOT_SIZE } as const;
