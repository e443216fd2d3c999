/**
 * The shared-ring protocol of wasmvisor, host side: the one implementation
 * every host device uses (the guest SDK has the other, wasm-guests/sdk/ring.ts,
 * with the same layout; docs/rings.md describes both).
 *
 * The semantics are those of Xen's ring.h. A ring is one 4 KiB page: a 64-byte
 * header with four free-running u32 indexes, then a power-of-two number of
 * fixed-size slots that requests and responses share. The front end produces
 * requests and consumes responses; the back end does the reverse. Each end
 * keeps private copies of its own indexes and publishes them with an atomic
 * store after the slots are written; a producer has to notify its peer only
 * when the peer asked for it through the matching `*_event` field.
 *
 * The peer is not trusted. Everything read from the page is checked before
 * it is used: an index that claims more messages than the protocol allows
 * raises a `RingProtocolError` and the ring stays broken; slot offsets are
 * always masked into the page, and a message is copied out of the page once
 * before it is decoded, so a peer that rewrites a slot while it is read can
 * only garble that message's bytes.
 */
import { InvalidArgumentError, RingProtocolError } from './errors.ts';

export { RingProtocolError };

/** Bytes in a ring page (one grant page). */
export const RING_PAGE_SIZE = 4096;
/** Bytes before the first slot: the four indexes and 48 reserved (zero) bytes. */
export const RING_HEADER_SIZE = 64;

/**
 * Byte offsets of the header fields. Each is a little-endian u32 read and
 * written only with atomic 32-bit operations. Owners: the front end writes
 * REQ_PROD and RSP_EVENT, the back end writes RSP_PROD and REQ_EVENT.
 */
export const RingField = {
  /** Requests produced (front end). */
  REQ_PROD: 0,
  /** The back end wants a notification when REQ_PROD passes this value (back end). */
  REQ_EVENT: 4,
  /** Responses produced (back end). */
  RSP_PROD: 8,
  /** The front end wants a notification when RSP_PROD passes this value (front end). */
  RSP_EVENT: 12,
} as const;

/** The stable code of `RingProtocolError`. */
export const RING_PROTOCOL_CODE = 'WV_ERR_RING_PROTOCOL';

/**
 * Where a ring page lives. Implementations guarantee that no call touches
 * anything outside the page's 4096 bytes: offsets and lengths outside it are
 * refused (thrown as `InvalidArgumentError`, a bug in the caller, never
 * reached by the rings here, which only pass header offsets and masked slot
 * offsets).
 */
export interface RingPage {
  /** Atomically load the u32 at `offset`, a multiple of 4 below RING_HEADER_SIZE. Returns 0..2^32-1. */
  load32(offset: number): number;
  /** Atomically store `value` (taken modulo 2^32) at `offset`, a multiple of 4 below RING_HEADER_SIZE. */
  store32(offset: number, value: number): void;
  /** Copy `dst.length` bytes of the page from `offset` into `dst`. */
  readBytes(offset: number, dst: Uint8Array): void;
  /** Copy `src` into the page at `offset`. */
  writeBytes(offset: number, src: Uint8Array): void;
}

/**
 * A ring page inside a window of guest memory (normally a view of a domain's
 * shared Wasm memory). The constructor checks that the page lies inside the
 * window and that its header is 4-byte aligned in the underlying buffer, so
 * that every later access is in bounds. Shared memories never shrink, so the
 * views stay valid when the guest grows its memory.
 */
export class MemoryRingPage implements RingPage {
  /** Offset of the page in the window it was made from. */
  readonly offset: number;
  readonly #bytes: Uint8Array;
  readonly #words: Uint32Array;

  /** The page at byte `offset` of `memory`; throws `InvalidArgumentError` unless it fits and is aligned. */
  constructor(memory: Uint8Array, offset: number) {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + RING_PAGE_SIZE > memory.length) {
      throw new InvalidArgumentError('ring page', `offset ${offset} does not leave a ${RING_PAGE_SIZE}-byte page inside a ${memory.length}-byte memory`);
    }
    if ((memory.byteOffset + offset) % 4 !== 0) {
      throw new InvalidArgumentError('ring page', `offset ${offset} is not 4-byte aligned, so its indexes cannot be accessed atomically`);
    }
    this.offset = offset;
    this.#bytes = memory.subarray(offset, offset + RING_PAGE_SIZE);
    this.#words = new Uint32Array(memory.buffer, memory.byteOffset + offset, RING_HEADER_SIZE / 4);
  }

  load32(offset: number): number {
    return Atomics.load(this.#words, wordIndex(offset));
  }

  store32(offset: number, value: number): void {
    Atomics.store(this.#words, wordIndex(offset), value >>> 0);
  }

  readBytes(offset: number, dst: Uint8Array): void {
    checkRange(offset, dst.length);
    dst.set(this.#bytes.subarray(offset, offset + dst.length));
  }

  writeBytes(offset: number, src: Uint8Array): void {
    checkRange(offset, src.length);
    this.#bytes.set(src, offset);
  }
}

function wordIndex(offset: number): number {
  if (!Number.isInteger(offset) || offset < 0 || offset >= RING_HEADER_SIZE || offset % 4 !== 0) {
    throw new InvalidArgumentError('ring header offset', `${offset} is not a multiple of 4 below ${RING_HEADER_SIZE}`);
  }
  return offset / 4;
}

function checkRange(offset: number, len: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + len > RING_PAGE_SIZE) {
    throw new InvalidArgumentError('ring page range', `[${offset}, ${offset + len}) is not inside the ${RING_PAGE_SIZE}-byte page`);
  }
}

/** The geometry of a ring: both ends must use the same slot size. */
export interface RingLayout {
  /** Bytes per slot: a multiple of 8, at least 8. */
  readonly slotSize: number;
  /** Slots: the largest power of two with RING_HEADER_SIZE + slots * slotSize <= RING_PAGE_SIZE. */
  readonly slots: number;
}

/** The layout for `slotSize`; throws `InvalidArgumentError` unless it is a multiple of 8 in [8, 4032]. */
export function ringLayout(slotSize: number): RingLayout {
  const room = RING_PAGE_SIZE - RING_HEADER_SIZE;
  if (!Number.isInteger(slotSize) || slotSize < 8 || slotSize % 8 !== 0 || slotSize > room) {
    throw new InvalidArgumentError('ring slot size', `${slotSize} is not a multiple of 8 between 8 and ${room}`);
  }
  let slots = 1;
  while (slots * 2 * slotSize <= room) slots *= 2;
  return { slotSize, slots };
}

/** Byte offset in the page of the slot that free-running index `index` maps to: always inside the page. */
export function ringSlotOffset(layout: RingLayout, index: number): number {
  return RING_HEADER_SIZE + ((index >>> 0) & (layout.slots - 1)) * layout.slotSize;
}

/**
 * Prepare a page for a new ring, as the front end does before it shares it
 * (Xen's SHARED_RING_INIT): both producer indexes at `start`, both event
 * indexes at `start + 1` (so the first message of each kind notifies), the
 * reserved bytes zero. Slots are left as they are. Both ends must then be
 * created with the same `start`.
 */
export function initSharedRing(page: RingPage, start = 0): void {
  for (let off = 16; off < RING_HEADER_SIZE; off += 4) page.store32(off, 0);
  page.store32(RingField.REQ_PROD, start);
  page.store32(RingField.RSP_PROD, start);
  page.store32(RingField.REQ_EVENT, start + 1);
  page.store32(RingField.RSP_EVENT, start + 1);
}

/**
 * How one kind of message is laid out in a slot. `write` and `read` get a
 * DataView of exactly `size` bytes over the ring's private scratch buffer
 * (never over the shared page: a message is copied out of the page once, so
 * the peer cannot change it while it is decoded), zero-filled before
 * `write`. The view is valid only during the call.
 */
export interface RingCodec<T> {
  /** Encoded size in bytes, at most the ring's slot size. */
  readonly size: number;
  /** Encode `msg` into `view` (little-endian, as the guest side reads it). */
  write(view: DataView, msg: T): void;
  /** Decode a message from `view`. May throw for bytes it rejects; the message is consumed either way. */
  read(view: DataView): T;
}

/** A codec for raw messages of `size` bytes: `write` takes at most `size` bytes (the rest is zero), `read` returns a copy. */
export function bytesCodec(size: number): RingCodec<Uint8Array> {
  return {
    size,
    write(view, msg) {
      if (msg.length > size) throw new InvalidArgumentError('ring message', `${msg.length} bytes do not fit a ${size}-byte message`);
      new Uint8Array(view.buffer, view.byteOffset, size).set(msg);
    },
    read(view) {
      return new Uint8Array(view.buffer, view.byteOffset, size).slice();
    },
  };
}

/** What both ring classes are made from. */
export interface RingOptions<Req, Rsp> {
  /** The request codec. */
  readonly request: RingCodec<Req>;
  /** The response codec. */
  readonly response: RingCodec<Rsp>;
  /** Bytes per slot; default: the larger codec size rounded up to a multiple of 8. Both ends must agree. */
  readonly slotSize?: number;
  /** Where the private indexes start (default 0): the `start` the page was initialised with. */
  readonly start?: number;
}

/** Slot access shared by both ends: the masked offsets and the copy through a private scratch buffer. */
class Slots {
  readonly layout: RingLayout;
  readonly #page: RingPage;
  readonly #scratch: Uint8Array;
  // The views codecs get, made once (a DataView costs about 100 ns, as much as the rest of a message).
  readonly #request: RingCodec<unknown>;
  readonly #requestView: DataView;
  readonly #responseView: DataView;

  constructor(page: RingPage, request: RingCodec<unknown>, response: RingCodec<unknown>, slotSize: number | undefined) {
    for (const size of [request.size, response.size]) {
      if (!Number.isInteger(size) || size < 0) throw new InvalidArgumentError('ring codec', `size ${size} is not a byte count`);
    }
    const need = Math.max(request.size, response.size);
    const size = slotSize ?? Math.max(8, Math.ceil(need / 8) * 8);
    this.layout = ringLayout(size);
    if (need > size) throw new InvalidArgumentError('ring codec', `a ${need}-byte message does not fit a ${size}-byte slot`);
    this.#page = page;
    this.#scratch = new Uint8Array(size);
    this.#request = request;
    this.#requestView = new DataView(this.#scratch.buffer, 0, request.size);
    this.#responseView = new DataView(this.#scratch.buffer, 0, response.size);
  }

  /** The view of exactly `codec.size` bytes for one of the ring's two codecs. */
  #view(codec: RingCodec<unknown>): DataView {
    return codec === this.#request ? this.#requestView : this.#responseView;
  }

  /** Copy the slot of `index` into the scratch buffer. */
  fetch(index: number): void {
    this.#page.readBytes(ringSlotOffset(this.layout, index), this.#scratch);
  }

  /** Decode the message last fetched. */
  decode<T>(codec: RingCodec<T>): T {
    return codec.read(this.#view(codec));
  }

  write<T>(index: number, codec: RingCodec<T>, msg: T): void {
    this.#scratch.fill(0);
    codec.write(this.#view(codec), msg);
    this.#page.writeBytes(ringSlotOffset(this.layout, index), this.#scratch);
  }
}

/** True when a producer that moved its index from `old` to `now` must notify a consumer waiting for `event` (all u32). */
function mustNotify(old: number, now: number, event: number): boolean {
  return ((now - event) >>> 0) < ((now - old) >>> 0);
}

/**
 * The front end of a ring: produces requests, consumes responses.
 *
 * Invariants (u32 arithmetic): `rspCons <= published <= reqProdPvt` and
 * `reqProdPvt - rspCons <= slots`, where `published` is the last REQ_PROD it
 * stored; a RSP_PROD is accepted only if `rspProd - rspCons <= published -
 * rspCons` (no response to a request never published). Once a
 * RingProtocolError is raised the ring is broken and every operation rethrows it.
 */
export class FrontRing<Req, Rsp> {
  /** The page the ring lives in. */
  readonly page: RingPage;
  /** Bytes per slot. */
  readonly slotSize: number;
  /** Number of slots (a power of two). */
  readonly slots: number;
  readonly #request: RingCodec<Req>;
  readonly #response: RingCodec<Rsp>;
  readonly #slots: Slots;
  #reqProdPvt: number;
  #reqPublished: number;
  #rspCons: number;
  #broken: RingProtocolError | undefined;

  /** Attach to `page` (already initialised with `initSharedRing(page, options.start)`); the page is not touched. */
  constructor(page: RingPage, options: RingOptions<Req, Rsp>) {
    this.page = page;
    this.#request = options.request;
    this.#response = options.response;
    this.#slots = new Slots(page, options.request, options.response, options.slotSize);
    this.slotSize = this.#slots.layout.slotSize;
    this.slots = this.#slots.layout.slots;
    const start = (options.start ?? 0) >>> 0;
    this.#reqProdPvt = this.#reqPublished = this.#rspCons = start;
  }

  /** Requests written but not necessarily published (Xen's req_prod_pvt). */
  get reqProdPvt(): number { return this.#reqProdPvt; }
  /** Responses consumed (Xen's rsp_cons). */
  get rspCons(): number { return this.#rspCons; }
  /** The protocol error that broke this ring, if any. */
  get broken(): RingProtocolError | undefined { return this.#broken; }

  /** Slots free for new requests: slots minus requests whose responses are not yet consumed. */
  freeSlots(): number {
    this.#check();
    return this.slots - ((this.#reqProdPvt - this.#rspCons) >>> 0);
  }

  /** True when no request can be written until responses are consumed. */
  full(): boolean {
    return this.freeSlots() === 0;
  }

  /** Write a request into the next slot, unpublished; false (nothing written) when the ring is full. */
  putRequest(msg: Req): boolean {
    if (this.freeSlots() === 0) return false;
    this.#slots.write(this.#reqProdPvt, this.#request, msg);
    this.#reqProdPvt = (this.#reqProdPvt + 1) >>> 0;
    return true;
  }

  /**
   * Publish the written requests (store REQ_PROD after the slots) and say
   * whether the back end must be notified: true only if REQ_EVENT lies in
   * the range just published (Xen's RING_PUSH_REQUESTS_AND_CHECK_NOTIFY).
   */
  pushRequests(): boolean {
    this.#check();
    const old = this.#reqPublished;
    const now = this.#reqProdPvt;
    this.page.store32(RingField.REQ_PROD, now);
    this.#reqPublished = now;
    return mustNotify(old, now, this.page.load32(RingField.REQ_EVENT));
  }

  /** Responses published and not yet consumed; throws RingProtocolError if RSP_PROD is impossible. */
  unconsumedResponses(): number {
    this.#check();
    const prod = this.page.load32(RingField.RSP_PROD);
    const avail = (prod - this.#rspCons) >>> 0;
    const outstanding = (this.#reqPublished - this.#rspCons) >>> 0;
    if (avail > outstanding) {
      throw this.#break(new RingProtocolError('rsp_prod', prod,
        `claims ${avail} responses after rsp_cons ${this.#rspCons}, but only ${outstanding} requests are outstanding`));
    }
    return avail;
  }

  /** The next response, consumed, or undefined when there is none. */
  takeResponse(): Rsp | undefined {
    if (this.unconsumedResponses() === 0) return undefined;
    this.#slots.fetch(this.#rspCons);
    this.#rspCons = (this.#rspCons + 1) >>> 0;
    return this.#slots.decode(this.#response);
  }

  /**
   * Call when there are no responses left, before waiting for a
   * notification: asks for one at the next response (RSP_EVENT = rspCons + 1)
   * and then looks again, so a response published in between is not missed
   * (Xen's RING_FINAL_CHECK_FOR_RESPONSES). True when there is work.
   */
  finalCheckForResponses(): boolean {
    if (this.unconsumedResponses() > 0) return true;
    this.page.store32(RingField.RSP_EVENT, this.#rspCons + 1);
    return this.unconsumedResponses() > 0;
  }

  #check(): void {
    if (this.#broken) throw this.#broken;
  }

  #break(err: RingProtocolError): RingProtocolError {
    this.#broken = err;
    return err;
  }
}

/**
 * The back end of a ring: consumes requests, produces responses.
 *
 * Invariants (u32 arithmetic): `published <= rspProdPvt <= reqCons` and
 * `reqCons - rspProdPvt <= slots`, where `published` is the last RSP_PROD it
 * stored; a REQ_PROD is accepted only if `reqCons - rspProdPvt <= reqProd -
 * rspProdPvt <= slots` (it never goes back past what was consumed and never
 * claims more unanswered requests than slots), so the back end never reads
 * a slot that a response of its own has not freed. Once a
 * RingProtocolError is raised the ring is broken and every operation rethrows it.
 */
export class BackRing<Req, Rsp> {
  /** The page the ring lives in. */
  readonly page: RingPage;
  /** Bytes per slot. */
  readonly slotSize: number;
  /** Number of slots (a power of two). */
  readonly slots: number;
  readonly #request: RingCodec<Req>;
  readonly #response: RingCodec<Rsp>;
  readonly #slots: Slots;
  #rspProdPvt: number;
  #rspPublished: number;
  #reqCons: number;
  #broken: RingProtocolError | undefined;

  /** Attach to `page`, which the front end initialised with `options.start`; the page is not touched. */
  constructor(page: RingPage, options: RingOptions<Req, Rsp>) {
    this.page = page;
    this.#request = options.request;
    this.#response = options.response;
    this.#slots = new Slots(page, options.request, options.response, options.slotSize);
    this.slotSize = this.#slots.layout.slotSize;
    this.slots = this.#slots.layout.slots;
    const start = (options.start ?? 0) >>> 0;
    this.#rspProdPvt = this.#rspPublished = this.#reqCons = start;
  }

  /** Responses written but not necessarily published (Xen's rsp_prod_pvt). */
  get rspProdPvt(): number { return this.#rspProdPvt; }
  /** Requests consumed (Xen's req_cons). */
  get reqCons(): number { return this.#reqCons; }
  /** The protocol error that broke this ring, if any. */
  get broken(): RingProtocolError | undefined { return this.#broken; }

  /** Requests consumed that still need a response (each frees a slot once answered). */
  pendingResponses(): number {
    this.#check();
    return (this.#reqCons - this.#rspProdPvt) >>> 0;
  }

  /** Requests published and not yet consumed; throws RingProtocolError if REQ_PROD is impossible. */
  unconsumedRequests(): number {
    this.#check();
    const prod = this.page.load32(RingField.REQ_PROD);
    const unanswered = (prod - this.#rspProdPvt) >>> 0;
    const consumed = (this.#reqCons - this.#rspProdPvt) >>> 0;
    if (unanswered > this.slots) {
      throw this.#break(new RingProtocolError('req_prod', prod,
        `claims ${unanswered} requests after rsp_prod_pvt ${this.#rspProdPvt}, more than the ${this.slots} slots`));
    }
    if (unanswered < consumed) {
      throw this.#break(new RingProtocolError('req_prod', prod, `went back before req_cons ${this.#reqCons}`));
    }
    return unanswered - consumed;
  }

  /** The next request, consumed, or undefined when there is none. */
  takeRequest(): Req | undefined {
    if (this.unconsumedRequests() === 0) return undefined;
    this.#slots.fetch(this.#reqCons);
    this.#reqCons = (this.#reqCons + 1) >>> 0;
    return this.#slots.decode(this.#request);
  }

  /**
   * Write a response into the slot of the oldest unanswered request,
   * unpublished; false (nothing written) when every consumed request already
   * has a response.
   */
  putResponse(msg: Rsp): boolean {
    if (this.pendingResponses() === 0) return false;
    this.#slots.write(this.#rspProdPvt, this.#response, msg);
    this.#rspProdPvt = (this.#rspProdPvt + 1) >>> 0;
    return true;
  }

  /**
   * Publish the written responses (store RSP_PROD after the slots) and say
   * whether the front end must be notified: true only if RSP_EVENT lies in
   * the range just published (Xen's RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
   */
  pushResponses(): boolean {
    this.#check();
    const old = this.#rspPublished;
    const now = this.#rspProdPvt;
    this.page.store32(RingField.RSP_PROD, now);
    this.#rspPublished = now;
    return mustNotify(old, now, this.page.load32(RingField.RSP_EVENT));
  }

  /**
   * Call when there are no requests left, before waiting for a notification:
   * asks for one at the next request (REQ_EVENT = reqCons + 1) and then
   * looks again, so a request published in between is not missed (Xen's
   * RING_FINAL_CHECK_FOR_REQUESTS). True when there is work.
   */
  finalCheckForRequests(): boolean {
    if (this.unconsumedRequests() > 0) return true;
    this.page.store32(RingField.REQ_EVENT, this.#reqCons + 1);
    return this.unconsumedRequests() > 0;
  }

  #check(): void {
    if (this.#broken) throw this.#broken;
  }

  #break(err: RingProtocolError): RingProtocolError {
    this.#broken = err;
    return err;
  }
}
