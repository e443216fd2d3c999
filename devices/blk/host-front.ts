/**
 * A block frontend written in TypeScript over a domain's memory: the same
 * protocol as the SDK's blkfront, built from the real ring and grant code.
 * The benchmarks and tests drive the backend with it; a host-side tool
 * could too.
 *
 * Memory layout in the domain: page `base` holds the ring; each of the
 * first FRONT_SLOTS requests in flight own 11 data pages each after it, so each
 * has its own pages and grants (made once, reused).
 */
import { FrontRing, MemoryRingPage, initSharedRing } from '../../kernel/ring.ts';
import type { GrantTables } from '../../kernel/grant.ts';
import { PAGE_SIZE } from '../../kernel/pv-table.ts';
import { SECTOR_SIZE } from './backing.ts';
import { BLK_SLOT_SIZE, MAX_SEGMENTS, Op, SECTORS_PER_PAGE, Status, requestCodec, responseCodec, type BlkRequest, type BlkResponse } from './protocol.ts';

// 16 slots x 11 pages + the ring = 177 grants, within a domain's 255.
export const FRONT_SLOTS = 16;
/** Pages a HostBlkFront uses in the domain's memory, from `base`. */
export const FRONT_PAGES = 1 + FRONT_SLOTS * MAX_SEGMENTS;
/** The most one request moves. */
export const MAX_REQUEST_BYTES = MAX_SEGMENTS * PAGE_SIZE;

export class HostBlkFront {
  readonly ringGref: number;
  readonly #mem: Uint8Array;
  readonly #base: number;
  readonly #ring: FrontRing<BlkRequest, BlkResponse>;
  readonly #grefs: number[][] = [];
  readonly #free: number[] = [];
  readonly #waiting = new Map<bigint, { resolve: (status: number) => void; slot: number }>();
  readonly #queue: Array<() => void> = [];
  #next = 1n;
  /** Ring the backend (its kick). */
  notifyBackend: () => void = () => {};

  /** Set up the ring and data grants for backend domain `backend` in `domid`'s memory from page `base`. */
  constructor(grants: GrantTables, domid: number, backend: number, mem: Uint8Array, base: number) {
    this.#mem = mem;
    this.#base = base;
    const page = new MemoryRingPage(mem, base * PAGE_SIZE);
    initSharedRing(page);
    this.#ring = new FrontRing(page, { request: requestCodec, response: responseCodec, slotSize: BLK_SLOT_SIZE });
    const g = grants.grantAccess(domid, backend, base, 0, mem.length);
    if (g < 0) throw new Error(`ring grant failed: ${g}`);
    this.ringGref = g;
    for (let s = 0; s < FRONT_SLOTS; s++) {
      const list: number[] = [];
      for (let i = 0; i < MAX_SEGMENTS; i++) {
        const r = grants.grantAccess(domid, backend, this.#dataPage(s, i), 0, mem.length);
        if (r < 0) throw new Error(`data grant failed: ${r}`);
        list.push(r);
      }
      this.#grefs.push(list);
      this.#free.push(s);
    }
  }

  #dataPage(slot: number, i: number): number { return this.#base + 1 + slot * MAX_SEGMENTS + i; }

  /** The backend answered: settle what it answered. */
  onNotify(): void {
    for (;;) {
      for (let r = this.#ring.takeResponse(); r !== undefined; r = this.#ring.takeResponse()) {
        const w = this.#waiting.get(r.id);
        if (!w) continue;
        this.#waiting.delete(r.id);
        w.resolve(r.status);
      }
      if (!this.#ring.finalCheckForResponses()) break;
    }
  }

  async #slot(): Promise<number> {
    while (this.#free.length === 0) await new Promise<void>((r) => this.#queue.push(r));
    return this.#free.pop()!;
  }

  #release(slot: number): void {
    this.#free.push(slot);
    this.#queue.shift()?.();
  }

  async #submit(op: number, sector: bigint, bytes: number, slot: number, nrSectors = 0n): Promise<number> {
    const segments = [];
    const sectors = bytes / SECTOR_SIZE;
    for (let done = 0, i = 0; done < sectors; i++) {
      const n = Math.min(SECTORS_PER_PAGE, sectors - done);
      segments.push({ gref: this.#grefs[slot]![i]!, firstSect: 0, lastSect: n - 1 });
      done += n;
    }
    const id = this.#next++;
    const done = new Promise<number>((resolve) => this.#waiting.set(id, { resolve, slot }));
    this.#ring.putRequest({ op, handle: 0, id, sector, segments, nrSectors, nrSegments: segments.length });
    if (this.#ring.pushRequests()) this.notifyBackend();
    return done;
  }

  /** Read `into.length` bytes (whole sectors, at most MAX_REQUEST_BYTES) at `sector`; returns the status. */
  async read(sector: bigint, into: Uint8Array): Promise<number> {
    const slot = await this.#slot();
    try {
      const status = await this.#submit(Op.READ, sector, into.length, slot);
      if (status === Status.OKAY) {
        const start = this.#dataPage(slot, 0) * PAGE_SIZE;
        into.set(this.#mem.subarray(start, start + into.length));
      }
      return status;
    } finally {
      this.#release(slot);
    }
  }

  async write(sector: bigint, data: Uint8Array): Promise<number> {
    const slot = await this.#slot();
    try {
      this.#mem.set(data, this.#dataPage(slot, 0) * PAGE_SIZE);
      return await this.#submit(Op.WRITE, sector, data.length, slot);
    } finally {
      this.#release(slot);
    }
  }

  async flush(): Promise<number> {
    const slot = await this.#slot();
    try { return await this.#submit(Op.FLUSH, 0n, 0, slot); } finally { this.#release(slot); }
  }
}
