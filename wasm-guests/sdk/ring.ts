// The shared-ring protocol of wasmvisor, guest side: the one implementation
// every guest driver uses. Same layout and rules as the host side
// (kernel/ring.ts) and Xen's ring.h; docs/rings.md describes both.
//
// A ring is one 4 KiB page: a 64-byte header (four free-running u32 indexes,
// then reserved zero bytes), then `ringSlots(slotSize)` slots of `slotSize`
// bytes shared by requests and responses. Messages are raw bytes: the caller
// copies its struct into a scratch buffer of `slotSize` bytes and passes its
// address (putRequest / putResponse), or passes a scratch buffer to receive
// one (takeRequest / takeResponse).
//
// The peer is not trusted. An index it publishes that claims more messages
// than the protocol allows breaks the ring: that call and every later one
// return -EINVAL. Slot offsets are always masked into the page, and a
// message is copied out of the page once, into the caller's buffer.
//
// Results: a count or 1/0 when fine, a negative errno otherwise (-EINVAL for
// a protocol error or bad parameters, or whatever a grant copy returned).

import { EAGAIN, EINVAL } from "./abi";
import { grant_copy_from, grant_copy_to } from "./grant";

/** Bytes in a ring page. */
export const RING_PAGE_SIZE: u32 = 4096;
/** Bytes before the first slot. */
export const RING_HEADER_SIZE: u32 = 64;
/** Offset of req_prod (written by the front end). */
export const RING_REQ_PROD: u32 = 0;
/** Offset of req_event (written by the back end). */
export const RING_REQ_EVENT: u32 = 4;
/** Offset of rsp_prod (written by the back end). */
export const RING_RSP_PROD: u32 = 8;
/** Offset of rsp_event (written by the front end). */
export const RING_RSP_EVENT: u32 = 12;

/**
 * The number of slots for `slotSize`: the largest power of two with
 * 64 + slots * slotSize <= 4096; -EINVAL unless slotSize is a multiple of 8
 * in [8, 4032].
 */
export function ringSlots(slotSize: u32): i32 {
  const room = RING_PAGE_SIZE - RING_HEADER_SIZE;
  if (slotSize < 8 || (slotSize & 7) != 0 || slotSize > room) return -EINVAL;
  let slots: u32 = 1;
  while (slots * 2 * slotSize <= room) slots <<= 1;
  return <i32>slots;
}

/** Offset in the page of the slot free-running index `index` maps to; `slots` is a power of two. */
export function ringSlotOffset(index: u32, slots: u32, slotSize: u32): u32 {
  return RING_HEADER_SIZE + (index & (slots - 1)) * slotSize;
}

/**
 * Where a ring page lives. Offsets passed by the rings are header offsets
 * (multiples of 4 below 64) or masked slot offsets, so they are always inside
 * the page; the implementations also refuse anything else with -EINVAL.
 */
export abstract class RingPage {
  /** 0 when the page can be used, else a negative errno. */
  abstract check(): i32;
  /** The u32 at header `offset` (0..0xffffffff), read as one 32-bit access, or a negative errno. */
  abstract load32(offset: u32): i64;
  /** Store `value` at header `offset` as one 32-bit access, touching no other byte. 0 or a negative errno. */
  abstract store32(offset: u32, value: u32): i32;
  /** Copy `len` bytes of the page at `offset` to guest address `dst`. 0 or a negative errno. */
  abstract copyOut(offset: u32, dst: usize, len: u32): i32;
  /** Copy `len` bytes from guest address `src` into the page at `offset`. 0 or a negative errno. */
  abstract copyIn(offset: u32, src: usize, len: u32): i32;
}

function headerOffsetOk(offset: u32): bool {
  return offset < RING_HEADER_SIZE && (offset & 3) == 0;
}

function rangeOk(offset: u32, len: u32): bool {
  return offset <= RING_PAGE_SIZE && len <= RING_PAGE_SIZE - offset;
}

/** A ring page in this guest's own memory at guest address `addr` (4-byte aligned; page-aligned to be grantable). Indexes use atomics. */
export class LocalRingPage extends RingPage {
  /** Guest address of the page. */
  readonly addr: usize;

  constructor(addr: usize) {
    super();
    this.addr = addr;
  }

  check(): i32 {
    return (this.addr & 3) == 0 ? 0 : -EINVAL;
  }

  load32(offset: u32): i64 {
    if (!headerOffsetOk(offset)) return -EINVAL;
    return <i64>atomic.load<u32>(this.addr + <usize>offset);
  }

  store32(offset: u32, value: u32): i32 {
    if (!headerOffsetOk(offset)) return -EINVAL;
    atomic.store<u32>(this.addr + <usize>offset, value);
    return 0;
  }

  copyOut(offset: u32, dst: usize, len: u32): i32 {
    if (!rangeOk(offset, len)) return -EINVAL;
    memory.copy(dst, this.addr + <usize>offset, <usize>len);
    return 0;
  }

  copyIn(offset: u32, src: usize, len: u32): i32 {
    if (!rangeOk(offset, len)) return -EINVAL;
    memory.copy(this.addr + <usize>offset, src, <usize>len);
    return 0;
  }
}

/**
 * A ring page another domain (`granter`) granted to this one as `gref`,
 * reached only through the grant copy hypercalls. Every header access copies
 * exactly the 4 bytes of that field, so a store never overwrites a field the
 * other end owns.
 */
export class GrantRingPage extends RingPage {
  /** The domain that granted the page. */
  readonly granter: u32;
  /** Its grant reference. */
  readonly gref: u32;
  // Held as an object so that a collecting runtime keeps it; `scratch` is its address.
  private buf: ArrayBuffer;
  private scratch: usize;

  constructor(granter: u32, gref: u32) {
    super();
    this.granter = granter;
    this.gref = gref;
    this.buf = new ArrayBuffer(8);
    this.scratch = changetype<usize>(this.buf);
  }

  check(): i32 {
    return 0;
  }

  load32(offset: u32): i64 {
    if (!headerOffsetOk(offset)) return -EINVAL;
    const r = grant_copy_from(this.granter, this.gref, offset, <u32>this.scratch, 4);
    if (r < 0) return r;
    return <i64>load<u32>(this.scratch);
  }

  store32(offset: u32, value: u32): i32 {
    if (!headerOffsetOk(offset)) return -EINVAL;
    store<u32>(this.scratch, value);
    const r = grant_copy_to(this.granter, this.gref, offset, <u32>this.scratch, 4);
    return r < 0 ? r : 0;
  }

  copyOut(offset: u32, dst: usize, len: u32): i32 {
    if (!rangeOk(offset, len)) return -EINVAL;
    const r = grant_copy_from(this.granter, this.gref, offset, <u32>dst, len);
    return r < 0 ? r : 0;
  }

  copyIn(offset: u32, src: usize, len: u32): i32 {
    if (!rangeOk(offset, len)) return -EINVAL;
    const r = grant_copy_to(this.granter, this.gref, offset, <u32>src, len);
    return r < 0 ? r : 0;
  }
}

/**
 * Prepare a page for a new ring, as the front end does before it grants it:
 * both producer indexes at `start`, both event indexes at `start + 1`, the
 * reserved bytes zero. Returns 0 or a negative errno.
 */
export function initSharedRing(page: RingPage, start: u32): i32 {
  let r = page.check();
  if (r < 0) return r;
  for (let off: u32 = 16; off < RING_HEADER_SIZE; off += 4) {
    r = page.store32(off, 0);
    if (r < 0) return r;
  }
  r = page.store32(RING_REQ_PROD, start);
  if (r == 0) r = page.store32(RING_RSP_PROD, start);
  if (r == 0) r = page.store32(RING_REQ_EVENT, start + 1);
  if (r == 0) r = page.store32(RING_RSP_EVENT, start + 1);
  return r;
}

/** True when a producer that moved from `old` to `now` must notify a consumer waiting for `event`. */
function mustNotify(old: u32, now: u32, event: u32): bool {
  return now - event < now - old;
}

/**
 * The front end: produces requests, consumes responses.
 * Invariants (u32 arithmetic): rspCons <= published <= reqProdPvt,
 * reqProdPvt - rspCons <= slots; an rsp_prod is accepted only if
 * rsp_prod - rspCons <= published - rspCons.
 */
export class FrontRing {
  /** Where the ring lives. */
  readonly page: RingPage;
  /** Bytes per slot (and per message). */
  readonly slotSize: u32;
  /** Number of slots, a power of two (0 when slotSize is invalid). */
  readonly slots: u32;
  /** 0, or the errno that makes the ring unusable (bad parameters, or -EINVAL after a protocol error). */
  error: i32;
  private _reqProdPvt: u32;
  private _reqPublished: u32;
  private _rspCons: u32;

  /** Attach to `page`, initialised (by initSharedRing) with the same `start`; the page is not touched. */
  constructor(page: RingPage, slotSize: u32, start: u32 = 0) {
    const n = ringSlots(slotSize);
    this.page = page;
    this.slotSize = slotSize;
    this.slots = n > 0 ? <u32>n : 0;
    this.error = n < 0 ? n : page.check();
    this._reqProdPvt = start;
    this._reqPublished = start;
    this._rspCons = start;
  }

  /** Requests written (published or not). */
  get reqProdPvt(): u32 { return this._reqProdPvt; }
  /** Responses consumed. */
  get rspCons(): u32 { return this._rspCons; }

  /** Slots free for new requests, or a negative errno. */
  freeSlots(): i32 {
    if (this.error < 0) return this.error;
    return <i32>(this.slots - (this._reqProdPvt - this._rspCons));
  }

  /** Copy `slotSize` bytes at `src` into the next slot, unpublished: 0, -EAGAIN when full, or a negative errno. */
  putRequest(src: usize): i32 {
    const free = this.freeSlots();
    if (free < 0) return free;
    if (free == 0) return -EAGAIN;
    const r = this.page.copyIn(ringSlotOffset(this._reqProdPvt, this.slots, this.slotSize), src, this.slotSize);
    if (r < 0) return r;
    this._reqProdPvt++;
    return 0;
  }

  /** Publish the written requests; 1 when the back end must be notified, 0 when not, or a negative errno. */
  pushRequests(): i32 {
    if (this.error < 0) return this.error;
    const old = this._reqPublished;
    const now = this._reqProdPvt;
    const r = this.page.store32(RING_REQ_PROD, now);
    if (r < 0) return r;
    this._reqPublished = now;
    const event = this.page.load32(RING_REQ_EVENT);
    if (event < 0) return <i32>event;
    return mustNotify(old, now, <u32>event) ? 1 : 0;
  }

  /** Responses published and not consumed, or a negative errno (-EINVAL: the back end broke the protocol). */
  unconsumedResponses(): i32 {
    if (this.error < 0) return this.error;
    const prod = this.page.load32(RING_RSP_PROD);
    if (prod < 0) return <i32>prod;
    const avail = <u32>prod - this._rspCons;
    if (avail > this._reqPublished - this._rspCons) {
      this.error = -EINVAL;
      return this.error;
    }
    return <i32>avail;
  }

  /** Copy the next response to `dst` (slotSize bytes) and consume it: 1, 0 when there is none, or a negative errno. */
  takeResponse(dst: usize): i32 {
    const n = this.unconsumedResponses();
    if (n <= 0) return n;
    const r = this.page.copyOut(ringSlotOffset(this._rspCons, this.slots, this.slotSize), dst, this.slotSize);
    if (r < 0) return r;
    this._rspCons++;
    return 1;
  }

  /** Before waiting: ask to be notified at the next response, then look again. 1 when there is work, 0, or a negative errno. */
  finalCheckForResponses(): i32 {
    let n = this.unconsumedResponses();
    if (n != 0) return n > 0 ? 1 : n;
    const r = this.page.store32(RING_RSP_EVENT, this._rspCons + 1);
    if (r < 0) return r;
    n = this.unconsumedResponses();
    return n > 0 ? 1 : n;
  }
}

/**
 * The back end: consumes requests, produces responses.
 * Invariants (u32 arithmetic): published <= rspProdPvt <= reqCons,
 * reqCons - rspProdPvt <= slots; a req_prod is accepted only if
 * reqCons - rspProdPvt <= req_prod - rspProdPvt <= slots.
 */
export class BackRing {
  /** Where the ring lives. */
  readonly page: RingPage;
  /** Bytes per slot (and per message). */
  readonly slotSize: u32;
  /** Number of slots, a power of two (0 when slotSize is invalid). */
  readonly slots: u32;
  /** 0, or the errno that makes the ring unusable (bad parameters, or -EINVAL after a protocol error). */
  error: i32;
  private _rspProdPvt: u32;
  private _rspPublished: u32;
  private _reqCons: u32;

  /** Attach to `page`, which the front end initialised with the same `start`; the page is not touched. */
  constructor(page: RingPage, slotSize: u32, start: u32 = 0) {
    const n = ringSlots(slotSize);
    this.page = page;
    this.slotSize = slotSize;
    this.slots = n > 0 ? <u32>n : 0;
    this.error = n < 0 ? n : page.check();
    this._rspProdPvt = start;
    this._rspPublished = start;
    this._reqCons = start;
  }

  /** Responses written (published or not). */
  get rspProdPvt(): u32 { return this._rspProdPvt; }
  /** Requests consumed. */
  get reqCons(): u32 { return this._reqCons; }

  /** Requests consumed that still need a response, or a negative errno. */
  pendingResponses(): i32 {
    if (this.error < 0) return this.error;
    return <i32>(this._reqCons - this._rspProdPvt);
  }

  /** Requests published and not consumed, or a negative errno (-EINVAL: the front end broke the protocol). */
  unconsumedRequests(): i32 {
    if (this.error < 0) return this.error;
    const prod = this.page.load32(RING_REQ_PROD);
    if (prod < 0) return <i32>prod;
    const unanswered = <u32>prod - this._rspProdPvt;
    const consumed = this._reqCons - this._rspProdPvt;
    if (unanswered > this.slots || unanswered < consumed) {
      this.error = -EINVAL;
      return this.error;
    }
    return <i32>(unanswered - consumed);
  }

  /** Copy the next request to `dst` (slotSize bytes) and consume it: 1, 0 when there is none, or a negative errno. */
  takeRequest(dst: usize): i32 {
    const n = this.unconsumedRequests();
    if (n <= 0) return n;
    const r = this.page.copyOut(ringSlotOffset(this._reqCons, this.slots, this.slotSize), dst, this.slotSize);
    if (r < 0) return r;
    this._reqCons++;
    return 1;
  }

  /**
   * Copy `slotSize` bytes at `src` into the slot of the oldest unanswered
   * request, unpublished: 0, -EINVAL when every consumed request already has
   * a response (the ring is not broken by that), or a negative errno.
   */
  putResponse(src: usize): i32 {
    const pending = this.pendingResponses();
    if (pending < 0) return pending;
    if (pending == 0) return -EINVAL;
    const r = this.page.copyIn(ringSlotOffset(this._rspProdPvt, this.slots, this.slotSize), src, this.slotSize);
    if (r < 0) return r;
    this._rspProdPvt++;
    return 0;
  }

  /** Publish the written responses; 1 when the front end must be notified, 0 when not, or a negative errno. */
  pushResponses(): i32 {
    if (this.error < 0) return this.error;
    const old = this._rspPublished;
    const now = this._rspProdPvt;
    const r = this.page.store32(RING_RSP_PROD, now);
    if (r < 0) return r;
    this._rspPublished = now;
    const event = this.page.load32(RING_RSP_EVENT);
    if (event < 0) return <i32>event;
    return mustNotify(old, now, <u32>event) ? 1 : 0;
  }

  /** Before waiting: ask to be notified at the next request, then look again. 1 when there is work, 0, or a negative errno. */
  finalCheckForRequests(): i32 {
    let n = this.unconsumedRequests();
    if (n != 0) return n > 0 ? 1 : n;
    const r = this.page.store32(RING_REQ_EVENT, this._reqCons + 1);
    if (r < 0) return r;
    n = this.unconsumedRequests();
    return n > 0 ? 1 : n;
  }
}

/** A front ring over the page at guest address `addr` of this guest's memory. */
export function localFrontRing(addr: usize, slotSize: u32, start: u32 = 0): FrontRing {
  return new FrontRing(new LocalRingPage(addr), slotSize, start);
}

/** A back ring over the page `granter` granted to this guest as `gref`, reached through grant copies. */
export function grantBackRing(granter: u32, gref: u32, slotSize: u32, start: u32 = 0): BackRing {
  return new BackRing(new GrantRingPage(granter, gref), slotSize, start);
}
