/**
 * The block backend: serves one VBD's ring for one domain. Requests are
 * checked (operation, segment count and bounds, sector range, grants,
 * read-only), run asynchronously against the backing store straight into
 * or out of the granted pages, and answered as they complete. A bad request
 * gets an error status; only a broken ring (the frontend corrupted its
 * indexes) stops the device.
 *
 * Reads and writes come direct (up to 11 segments in the ring slot) or
 * indirect (up to MAX_INDIRECT_SEGMENTS descriptors in granted pages, 1 MiB
 * per request). Either way a request is decoded into private arrays once,
 * every segment is checked and its grant held before any I/O, adjacent
 * pieces of guest memory are merged, and one vectored read or write moves
 * the data. Responses completed while a batch of requests is being taken are
 * published together, with one notification.
 */
import { BackRing, RingField, type RingPage } from '../../kernel/ring.ts';
import type { GrantTables } from '../../kernel/grant.ts';
import { Errno } from '../../kernel/errno.ts';
import { NR_GRANTS } from '../../kernel/pv-table.ts';
import { BackingStore, SECTOR_SIZE } from './backing.ts';
import {
  BLK_SLOT_SIZE, MAX_INDIRECT_SEGMENTS, MAX_SEGMENTS, Op, SECTORS_PER_PAGE, SEGMENTS_PER_INDIRECT_PAGE, SEGMENT_SIZE, Status,
  indirectPages, requestCodec, responseCodec, type BlkRequest, type BlkResponse,
} from './protocol.ts';

export interface BlkStats {
  reads: number;
  writes: number;
  flushes: number;
  discards: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
}

export interface BlkBackendOptions {
  /** The grant tables, and the backend's own domain id (0: the host). */
  grants: GrantTables;
  self: number;
  /** The frontend's domain. */
  domid: number;
  /** The shared ring page (mapped from the frontend's grant). */
  page: RingPage;
  store: BackingStore;
  /** Tell the frontend responses are ready (its event channel). */
  notify: () => void;
  /** Called once if the frontend breaks the ring protocol. */
  onBroken?: (err: Error) => void;
  /**
   * Persistent grants (Xen's `feature-persistent`): the frontend said it
   * grants its data pages once and reuses them, so the backend keeps each
   * data grant held from its first use until `close` instead of holding and
   * letting go of every page of every request (two atomic operations a page,
   * a third of the backend's work on a 1 MiB request). While held the
   * frontend cannot end those grants (-EBUSY). Default false.
   */
  persistent?: boolean;
  /**
   * The ring is in use already (a restored domain's): start from the
   * responses it has published, so the requests after them, published
   * before the save but not answered, are taken (again). Default false (a
   * new ring, from 0).
   */
  resumed?: boolean;
}

export class BlkBackend {
  readonly stats: BlkStats = { reads: 0, writes: 0, flushes: 0, discards: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
  readonly #o: BlkBackendOptions;
  readonly #ring: BackRing<BlkRequest, BlkResponse>;
  #inflight = 0;
  #idle: Array<() => void> = [];
  #closed = false;
  #broken = false;
  /** Quiesced (a save is writing the frontend's memory): no request is taken until `resume`. */
  #paused = false;
  /** Inside kick: answers wait for its end and go out together. */
  #taking = false;
  // One request's segments, decoded here (synchronously) before they are checked and used.
  readonly #gref = new Uint32Array(MAX_INDIRECT_SEGMENTS);
  readonly #first = new Uint8Array(MAX_INDIRECT_SEGMENTS);
  readonly #last = new Uint8Array(MAX_INDIRECT_SEGMENTS);
  /** Where each held page is in the frontend's memory. */
  readonly #offset = new Int32Array(MAX_INDIRECT_SEGMENTS);
  /** A private copy of one indirect page's descriptors: the frontend cannot change them while they are checked. */
  readonly #desc = new Uint8Array(SEGMENTS_PER_INDIRECT_PAGE * SEGMENT_SIZE);
  readonly #descView = new DataView(this.#desc.buffer);
  // Persistent grants: the page offset of each data grant held (-1: not held), whether held writable, and which.
  readonly #pOffset: Int32Array | undefined;
  readonly #pWritable: Uint8Array | undefined;
  #pHeld: number[] = [];
  /** The frontend's generation the persistent holds belong to. */
  #pGen = -1;

  constructor(o: BlkBackendOptions) {
    this.#o = o;
    const start = o.resumed ? o.page.load32(RingField.RSP_PROD) : 0;
    this.#ring = new BackRing(o.page, { request: requestCodec, response: responseCodec, slotSize: BLK_SLOT_SIZE, start });
    if (o.persistent) {
      this.#pOffset = new Int32Array(NR_GRANTS).fill(-1);
      this.#pWritable = new Uint8Array(NR_GRANTS);
    }
  }

  /** Data grants held persistently (0 unless `persistent`). */
  get persistentGrants(): number { return this.#pHeld.length; }

  get inflight(): number { return this.#inflight; }

  /** The frontend notified: take every request there is and start it. */
  kick(): void {
    if (this.#closed || this.#broken || this.#paused) return;
    this.#taking = true;
    try {
      for (;;) {
        for (let req = this.#ring.takeRequest(); req !== undefined; req = this.#ring.takeRequest()) this.#start(req);
        if (!this.#ring.finalCheckForRequests()) break;
      }
    } catch (err) {
      this.#break(err as Error);
    } finally {
      this.#taking = false;
    }
    this.#push();
  }

  #start(req: BlkRequest): void {
    const store = this.#o.store;
    switch (req.op) {
      case Op.FLUSH:
        this.stats.flushes++;
        return this.#track(req, store.flush());
      case Op.DISCARD:
        this.stats.discards++;
        return this.#track(req, store.discard(req.sector, req.nrSectors));
      case Op.READ:
      case Op.WRITE:
        if (req.nrSegments < 1 || req.nrSegments > MAX_SEGMENTS) return this.#answer(req, Status.ERROR);
        for (let i = 0; i < req.nrSegments; i++) {
          const s = req.segments[i]!;
          this.#gref[i] = s.gref;
          this.#first[i] = s.firstSect;
          this.#last[i] = s.lastSect;
        }
        return this.#readWrite(req, req.op === Op.WRITE, req.nrSegments);
      case Op.INDIRECT:
        return this.#indirect(req);
      default:
        return this.#answer(req, Status.NOT_SUPPORTED);
    }
  }

  /** Run `p` for `req` and answer OKAY or ERROR when it settles. */
  #track(req: BlkRequest, p: Promise<void>): void {
    this.#inflight++;
    p.then(() => this.#done(req, Status.OKAY), () => this.#done(req, Status.ERROR));
  }

  #done(req: BlkRequest, status: number): void {
    this.#inflight--;
    this.#answer(req, status);
    if (this.#inflight === 0) for (const f of this.#idle.splice(0)) f();
  }

  #answer(req: BlkRequest, status: number): void {
    if (status !== Status.OKAY) this.stats.errors++;
    if (this.#broken) return;
    try {
      this.#ring.putResponse({ id: req.id, op: req.op, status });
    } catch (err) {
      this.#break(err as Error);
      return;
    }
    if (!this.#taking) this.#push();
  }

  /** Publish the responses written; notify if the frontend asked. */
  #push(): void {
    if (this.#broken) return;
    try {
      if (this.#ring.pushResponses()) this.#o.notify();
    } catch (err) {
      this.#break(err as Error);
    }
  }

  #break(err: Error): void {
    if (this.#broken) return;
    this.#broken = true;
    this.#o.onBroken?.(err);
  }

  /** Decode an indirect request's descriptors (a private copy of each page), then run it as a read or write. */
  #indirect(req: BlkRequest): void {
    const n = req.nrSegments;
    const op = req.indirectOp;
    if ((op !== Op.READ && op !== Op.WRITE) || n < 1 || n > MAX_INDIRECT_SEGMENTS) return this.#answer(req, Status.ERROR);
    const grefs = req.indirectGrefs ?? [];
    const pages = indirectPages(n);
    if (grefs.length < pages) return this.#answer(req, Status.ERROR);
    const { grants, self, domid } = this.#o;
    const mem = grants.memoryOf(domid);
    if (mem === undefined) return this.#answer(req, Status.ERROR);
    for (let p = 0; p < pages; p++) {
      // The descriptors are only read: a read-only grant is enough.
      const at = grants.hold(self, domid, grefs[p]!, false, mem.length);
      if (at < 0) return this.#answer(req, Status.ERROR);
      const count = Math.min(SEGMENTS_PER_INDIRECT_PAGE, n - p * SEGMENTS_PER_INDIRECT_PAGE);
      this.#desc.set(mem.subarray(at, at + count * SEGMENT_SIZE));
      grants.unhold(domid, grefs[p]!);
      const v = this.#descView;
      const grefOut = this.#gref;
      const firstOut = this.#first;
      const lastOut = this.#last;
      for (let i = 0, k = p * SEGMENTS_PER_INDIRECT_PAGE; i < count; i++, k++) {
        grefOut[k] = v.getUint32(i * SEGMENT_SIZE, true);
        firstOut[k] = v.getUint8(i * SEGMENT_SIZE + 4);
        lastOut[k] = v.getUint8(i * SEGMENT_SIZE + 5);
      }
    }
    this.#readWrite(req, op === Op.WRITE, n);
  }

  /**
   * Check the `n` decoded segments, hold their grants, and start one
   * vectored I/O over them. Everything up to the I/O is synchronous (the
   * decode arrays are shared by all requests); a failure holds nothing.
   */
  #readWrite(req: BlkRequest, write: boolean, n: number): void {
    const { grants, self, domid, store } = this.#o;
    if (write && store.info.readonly) return this.#answer(req, Status.ERROR);
    const firsts = this.#first;
    const lasts = this.#last;
    let sectors = 0;
    for (let i = 0; i < n; i++) {
      const first = firsts[i]!;
      const last = lasts[i]!;
      if (first > last || last >= SECTORS_PER_PAGE) return this.#answer(req, Status.ERROR);
      sectors += last - first + 1;
    }
    if (req.sector + BigInt(sectors) > store.info.sectors) return this.#answer(req, Status.ERROR);
    const mem = grants.memoryOf(domid);
    if (mem === undefined) return this.#answer(req, Status.ERROR);
    const offsets = this.#offset;
    // A read fills the frontend's pages (writable grants); a write only reads them.
    let held: Uint32Array | undefined;
    if (this.#pOffset !== undefined) {
      if (!this.#holdPersistent(n, !write, mem.length)) return this.#answer(req, Status.ERROR);
    } else {
      if (grants.holdMany(self, domid, this.#gref, n, !write, mem.length, offsets) < 0) return this.#answer(req, Status.ERROR);
      held = this.#gref.slice(0, n);
    }
    const buffers: Uint8Array[] = [];
    let start = -1;
    let end = -1;
    for (let i = 0; i < n; i++) {
      const at = offsets[i]!;
      const from = at + firsts[i]! * SECTOR_SIZE;
      const to = at + (lasts[i]! + 1) * SECTOR_SIZE;
      // Pieces that follow each other in the guest's memory become one buffer.
      if (from === end) end = to;
      else {
        if (start >= 0) buffers.push(mem.subarray(start, end));
        start = from;
        end = to;
      }
    }
    buffers.push(mem.subarray(start, end));
    const bytes = sectors * SECTOR_SIZE;
    this.#inflight++;
    const done = (status: number): void => {
      if (held !== undefined) grants.unholdMany(domid, held, n);
      if (status === Status.OKAY) {
        if (write) { this.stats.writes++; this.stats.bytesWritten += bytes; } else { this.stats.reads++; this.stats.bytesRead += bytes; }
      }
      this.#done(req, status);
    };
    store.vectored(write, req.sector, buffers, (err) => done(err === undefined ? Status.OKAY : Status.ERROR));
  }

  /**
   * The offsets of the `n` decoded segments' pages into #offset, from the
   * persistent holds, holding (and keeping) the grants used for the first
   * time. A grant is kept writable when it allows it. False when a segment's
   * grant is bad; what was held stays held.
   */
  #holdPersistent(n: number, writable: boolean, limit: number): boolean {
    const { grants, self, domid } = this.#o;
    const pOffset = this.#pOffset!;
    const pWritable = this.#pWritable!;
    const gen = grants.table.generation(domid);
    if (!grants.table.live(domid)) return false;
    // A new domain with the frontend's id: the old holds went with the old domain.
    if (gen !== this.#pGen) this.#dropPersistent(gen);
    const grefs = this.#gref;
    const offsets = this.#offset;
    for (let i = 0; i < n; i++) {
      const gref = grefs[i]!;
      if (gref >= NR_GRANTS) return false;
      const off = pOffset[gref]!;
      if (off >= 0) {
        // Held read-only means the grant is read-only: no reads into it.
        if (writable && pWritable[gref] === 0) return false;
        offsets[i] = off;
        continue;
      }
      let at = grants.hold(self, domid, gref, true, limit);
      let w = 1;
      if (at === -Errno.EACCES) { at = grants.hold(self, domid, gref, false, limit); w = 0; }
      if (at < 0) return false;
      pOffset[gref] = at;
      pWritable[gref] = w;
      this.#pHeld.push(gref);
      if (writable && w === 0) return false;
      offsets[i] = at;
    }
    return true;
  }

  /** Let go of the persistent holds (not if the frontend's id now names another domain: its entries were reset) and start over for generation `gen`. */
  #dropPersistent(gen: number): void {
    const { grants, domid } = this.#o;
    if (this.#pHeld.length > 0 && grants.table.generation(domid) === this.#pGen) grants.unholdMany(domid, this.#pHeld, this.#pHeld.length);
    for (const g of this.#pHeld) this.#pOffset![g] = -1;
    this.#pHeld = [];
    this.#pGen = gen;
  }

  /**
   * Stop taking requests (notifications are remembered by the ring: `resume`
   * looks at it again) and resolve, with how many requests were in flight,
   * once they have all completed and their answers are published: then the
   * backend does not touch the frontend's memory until `resume` or `close`.
   */
  async pause(): Promise<number> {
    this.#paused = true;
    const inflight = this.#inflight;
    if (inflight > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
    return inflight;
  }

  /** Take requests again after `pause`, at once. */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.kick();
  }

  /** Detach: finish the requests in flight (their answers still go out), then stop and let go of persistent grants. */
  async close(): Promise<void> {
    if (this.#inflight > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
    this.#closed = true;
    if (this.#pOffset !== undefined) this.#dropPersistent(-1);
  }
}
