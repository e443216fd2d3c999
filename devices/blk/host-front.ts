/**
 * A block frontend written in TypeScript over a domain's memory: the same
 * protocol as the SDK's blkfront, built from the real ring and grant code.
 * The benchmarks and tests drive the backend with it; a host-side tool
 * could too.
 *
 * Memory layout in the domain, from page `base`: the ring; one indirect
 * page per request slot; then a pool of data pages. Every page is granted
 * to the backend once, at construction, and reused (Xen's persistent
 * grants), so a request costs no grant calls. A request borrows a run of
 * consecutive data pages from the pool (`lease`); a caller that wants the
 * data in the domain's memory reads into or writes from the lease directly
 * (`submit`), `read`/`write` copy through one.
 *
 * Requests of up to MAX_SEGMENTS pages go direct in the ring slot; larger
 * ones are indirect, their descriptors in the slot's indirect page.
 */
import { FrontRing, MemoryRingPage, initSharedRing, ringLayout } from '../../kernel/ring.ts';
import type { GrantTables } from '../../kernel/grant.ts';
import { InvalidArgumentError } from '../../kernel/errors.ts';
import { PAGE_SIZE } from '../../kernel/pv-table.ts';
import { SECTOR_SIZE } from './backing.ts';
import {
  BLK_SLOT_SIZE, MAX_INDIRECT_SEGMENTS, MAX_SEGMENTS, Op, SECTORS_PER_PAGE, SEGMENT_SIZE, SEGMENTS_PER_INDIRECT_PAGE, Status,
  requestCodec, responseCodec, type BlkRequest, type BlkResponse, type Segment,
} from './protocol.ts';

/** Requests in flight by default: every slot of the ring. */
export const FRONT_SLOTS = ringLayout(BLK_SLOT_SIZE).slots;
/** Data pages by default: two 1 MiB requests in flight. */
export const FRONT_DATA_PAGES = 2 * MAX_INDIRECT_SEGMENTS;

export interface HostBlkFrontOptions {
  /** Requests in flight at most (each has a ring slot and an indirect page); 1..32, default 32. */
  slots?: number;
  /** Data pages in the pool (each granted once); default FRONT_DATA_PAGES. */
  dataPages?: number;
  /**
   * The backend's feature-max-indirect-segments: the most pages one request
   * moves (0: the backend takes direct requests only, MAX_SEGMENTS pages).
   * Default MAX_INDIRECT_SEGMENTS.
   */
  maxIndirectSegments?: number;
}

/** Pages a HostBlkFront uses in the domain's memory, from `base`. */
export function frontPages(o: HostBlkFrontOptions = {}): number {
  return 1 + (o.slots ?? FRONT_SLOTS) + (o.dataPages ?? FRONT_DATA_PAGES);
}

/** Pages of the domain's memory lent to one request: `bytes` is where the data is. */
export interface BlkBuffer {
  readonly bytes: Uint8Array;
  /** First data page of the pool (internal). */
  readonly first: number;
  readonly pages: number;
}

export class HostBlkFront {
  /**
   * It grants its pages once and never ends them while connected, so a
   * backend may keep them held (Xen's feature-persistent).
   */
  readonly persistent = true;
  readonly ringGref: number;
  /** The most bytes one request moves. */
  readonly maxRequestBytes: number;
  readonly #mem: Uint8Array;
  readonly #view: DataView;
  readonly #ring: FrontRing<BlkRequest, BlkResponse>;
  readonly #indirectPage: number[] = [];
  readonly #indirectGref: number[] = [];
  readonly #dataBase: number;
  readonly #dataGref: number[] = [];
  readonly #used: Uint8Array;
  readonly #freeSlots: number[] = [];
  readonly #waiting: Array<((status: number) => void) | undefined>;
  readonly #slotQueue: Array<() => void> = [];
  readonly #pageQueue: Array<() => void> = [];
  /** Ring the backend (its kick). */
  notifyBackend: () => void = () => {};

  /** Set up the ring and grants for backend domain `backend` in `domid`'s memory from page `base`. */
  constructor(grants: GrantTables, domid: number, backend: number, mem: Uint8Array, base: number, o: HostBlkFrontOptions = {}) {
    const slots = o.slots ?? FRONT_SLOTS;
    const dataPages = o.dataPages ?? FRONT_DATA_PAGES;
    const maxIndirect = o.maxIndirectSegments ?? MAX_INDIRECT_SEGMENTS;
    if (!Number.isInteger(slots) || slots < 1 || slots > FRONT_SLOTS) throw new InvalidArgumentError('slots', `${slots} is not 1..${FRONT_SLOTS}`);
    // One indirect page per slot holds SEGMENTS_PER_INDIRECT_PAGE descriptors.
    if (!Number.isInteger(maxIndirect) || maxIndirect < 0 || maxIndirect > SEGMENTS_PER_INDIRECT_PAGE) throw new InvalidArgumentError('maxIndirectSegments', `${maxIndirect} is not 0..${SEGMENTS_PER_INDIRECT_PAGE}`);
    const maxPages = Math.max(maxIndirect, MAX_SEGMENTS);
    if (!Number.isInteger(dataPages) || dataPages < 1) throw new InvalidArgumentError('dataPages', `${dataPages}`);
    this.maxRequestBytes = Math.min(maxPages, dataPages) * PAGE_SIZE;
    if ((base + frontPages(o)) * PAGE_SIZE > mem.length) throw new InvalidArgumentError('base', `${frontPages(o)} pages from page ${base} do not fit a ${mem.length}-byte memory`);
    this.#mem = mem;
    this.#view = new DataView(mem.buffer, mem.byteOffset, mem.length);
    const page = new MemoryRingPage(mem, base * PAGE_SIZE);
    initSharedRing(page);
    this.#ring = new FrontRing(page, { request: requestCodec, response: responseCodec, slotSize: BLK_SLOT_SIZE });
    const grant = (p: number, readonly: number): number => {
      const g = grants.grantAccess(domid, backend, p, readonly, mem.length);
      if (g < 0) throw new InvalidArgumentError('frontend grants', `granting page ${p} failed: error ${g}`);
      return g;
    };
    this.ringGref = grant(base, 0);
    for (let s = 0; s < slots; s++) {
      this.#indirectPage.push(base + 1 + s);
      this.#indirectGref.push(grant(base + 1 + s, 1)); // the backend only reads descriptors
      this.#freeSlots.push(slots - 1 - s);
    }
    this.#waiting = new Array(slots).fill(undefined);
    this.#dataBase = base + 1 + slots;
    for (let i = 0; i < dataPages; i++) this.#dataGref.push(grant(this.#dataBase + i, 0));
    this.#used = new Uint8Array(dataPages);
  }

  /** The backend answered: settle what it answered. */
  onNotify(): void {
    for (;;) {
      for (let r = this.#ring.takeResponse(); r !== undefined; r = this.#ring.takeResponse()) {
        const slot = Number(r.id);
        const w = this.#waiting[slot];
        if (w === undefined) continue; // not a request of ours: ignore it
        this.#waiting[slot] = undefined;
        this.#freeSlots.push(slot);
        // A request waiting for a slot goes out after this batch, not inside it.
        const next = this.#slotQueue.shift();
        if (next) queueMicrotask(next);
        w(r.status);
      }
      if (!this.#ring.finalCheckForResponses()) break;
    }
  }

  /** Borrow data pages for `bytes` (a whole number of sectors, at most maxRequestBytes); waits while the pool is short. */
  async lease(bytes: number): Promise<BlkBuffer> {
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes % SECTOR_SIZE !== 0 || bytes > this.maxRequestBytes) {
      throw new InvalidArgumentError('block request', `${bytes} bytes is not a whole number of sectors in 1..${this.maxRequestBytes}`);
    }
    const pages = Math.ceil(bytes / PAGE_SIZE);
    for (;;) {
      const first = this.#findRun(pages);
      if (first >= 0) {
        this.#used.fill(1, first, first + pages);
        const at = (this.#dataBase + first) * PAGE_SIZE;
        return { bytes: this.#mem.subarray(at, at + bytes), first, pages };
      }
      await new Promise<void>((r) => this.#pageQueue.push(r));
    }
  }

  /** Give pages back. */
  release(buf: BlkBuffer): void {
    this.#used.fill(0, buf.first, buf.first + buf.pages);
    // Every waiter looks again (a large one may still not fit; it queues again).
    for (const w of this.#pageQueue.splice(0)) w();
  }

  #findRun(pages: number): number {
    const used = this.#used;
    for (let i = 0; i + pages <= used.length; i++) {
      let j = 0;
      while (j < pages && used[i + j] === 0) j++;
      if (j === pages) return i;
      i += j;
    }
    return -1;
  }

  /** Run `send(slot)` with a free slot, now or when one is released. */
  #withSlot(send: (slot: number) => Promise<number>): Promise<number> {
    const slot = this.#freeSlots.pop();
    if (slot !== undefined) return send(slot);
    return new Promise<number>((resolve) => this.#slotQueue.push(() => resolve(this.#withSlot(send))));
  }

  /**
   * Read into or write from a lease: `op` is Op.READ or Op.WRITE; all of
   * `buf.bytes` moves, from `sector`. Resolves to the status. No async
   * function or extra promise on the way: in the benchmarks this runs on
   * the same thread as the backend.
   */
  submit(op: number, sector: bigint, buf: BlkBuffer): Promise<number> {
    if (op !== Op.READ && op !== Op.WRITE) return Promise.reject(new InvalidArgumentError('block request', `op ${op} is not READ or WRITE`));
    return this.#withSlot((slot) => {
      const n = buf.pages;
      // Every page is whole but perhaps the last.
      const lastOfLast = (buf.bytes.length / SECTOR_SIZE - 1) % SECTORS_PER_PAGE;
      const grefs = this.#dataGref;
      const first = buf.first;
      if (n <= MAX_SEGMENTS) {
        const segments: Segment[] = [];
        for (let i = 0; i < n; i++) segments.push({ gref: grefs[first + i]!, firstSect: 0, lastSect: i === n - 1 ? lastOfLast : SECTORS_PER_PAGE - 1 });
        return this.#send(slot, { op, handle: 0, id: BigInt(slot), sector, segments, nrSectors: 0n, nrSegments: n });
      }
      const v = this.#view;
      for (let i = 0, at = this.#indirectPage[slot]! * PAGE_SIZE; i < n; i++, at += SEGMENT_SIZE) {
        v.setUint32(at, grefs[first + i]!, true);
        v.setUint8(at + 4, 0);
        v.setUint8(at + 5, i === n - 1 ? lastOfLast : SECTORS_PER_PAGE - 1);
        v.setUint16(at + 6, 0, true);
      }
      return this.#send(slot, { op: Op.INDIRECT, indirectOp: op, handle: 0, id: BigInt(slot), sector, segments: [], nrSectors: 0n, nrSegments: n, indirectGrefs: [this.#indirectGref[slot]!] });
    });
  }

  /** Put `req` in the ring for `slot`; the slot is free again when the answer comes (onNotify). */
  #send(slot: number, req: BlkRequest): Promise<number> {
    const done = new Promise<number>((resolve) => { this.#waiting[slot] = resolve; });
    this.#ring.putRequest(req);
    if (this.#ring.pushRequests()) this.notifyBackend();
    return done;
  }

  /** Read `into.length` bytes (whole sectors, at most maxRequestBytes) at `sector`, copied out of the domain's memory; returns the status. */
  async read(sector: bigint, into: Uint8Array): Promise<number> {
    const buf = await this.lease(into.length);
    try {
      const status = await this.submit(Op.READ, sector, buf);
      if (status === Status.OKAY) into.set(buf.bytes);
      return status;
    } finally {
      this.release(buf);
    }
  }

  /** Write `data` (whole sectors, at most maxRequestBytes) at `sector`, copied into the domain's memory first. */
  async write(sector: bigint, data: Uint8Array): Promise<number> {
    const buf = await this.lease(data.length);
    try {
      buf.bytes.set(data);
      return await this.submit(Op.WRITE, sector, buf);
    } finally {
      this.release(buf);
    }
  }

  flush(): Promise<number> {
    return this.#withSlot((slot) => this.#send(slot, { op: Op.FLUSH, handle: 0, id: BigInt(slot), sector: 0n, segments: [], nrSectors: 0n, nrSegments: 0 }));
  }
}

