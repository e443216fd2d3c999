/**
 * The block backend: serves one VBD's ring for one domain. Requests are
 * checked (operation, segment count and bounds, sector range, grants,
 * read-only), run asynchronously against the backing store straight into
 * or out of the granted pages, and answered as they complete. A bad request
 * gets an error status; only a broken ring (the frontend corrupted its
 * indexes) stops the device.
 */
import { BackRing, type RingPage } from '../../kernel/ring.ts';
import type { GrantTables, GrantMapping } from '../../kernel/grant.ts';
import { BackingStore, SECTOR_SIZE } from './backing.ts';
import { BLK_SLOT_SIZE, MAX_SEGMENTS, Op, SECTORS_PER_PAGE, Status, requestCodec, responseCodec, type BlkRequest, type BlkResponse } from './protocol.ts';

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
}

export class BlkBackend {
  readonly stats: BlkStats = { reads: 0, writes: 0, flushes: 0, discards: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
  readonly #o: BlkBackendOptions;
  readonly #ring: BackRing<BlkRequest, BlkResponse>;
  readonly #inflight = new Set<Promise<void>>();
  #closed = false;
  #broken = false;

  constructor(o: BlkBackendOptions) {
    this.#o = o;
    this.#ring = new BackRing(o.page, { request: requestCodec, response: responseCodec, slotSize: BLK_SLOT_SIZE });
  }

  get inflight(): number { return this.#inflight.size; }

  /** The frontend notified: take every request there is and start it. */
  kick(): void {
    if (this.#closed || this.#broken) return;
    try {
      for (;;) {
        for (let req = this.#ring.takeRequest(); req !== undefined; req = this.#ring.takeRequest()) this.#start(req);
        if (!this.#ring.finalCheckForRequests()) break;
      }
    } catch (err) {
      this.#broken = true;
      this.#o.onBroken?.(err as Error);
    }
  }

  #start(req: BlkRequest): void {
    const p = this.#run(req).then((status) => this.#answer(req, status));
    this.#inflight.add(p);
    p.finally(() => this.#inflight.delete(p));
  }

  #answer(req: BlkRequest, status: number): void {
    if (status !== Status.OKAY) this.stats.errors++;
    if (this.#broken) return;
    try {
      this.#ring.putResponse({ id: req.id, op: req.op, status });
      if (this.#ring.pushResponses()) this.#o.notify();
    } catch (err) {
      this.#broken = true;
      this.#o.onBroken?.(err as Error);
    }
  }

  async #run(req: BlkRequest): Promise<number> {
    const store = this.#o.store;
    switch (req.op) {
      case Op.FLUSH:
        this.stats.flushes++;
        try { await store.flush(); return Status.OKAY; } catch { return Status.ERROR; }
      case Op.DISCARD:
        this.stats.discards++;
        try { await store.discard(req.sector, req.nrSectors); return Status.OKAY; } catch { return Status.ERROR; }
      case Op.READ:
      case Op.WRITE:
        return this.#readWrite(req);
      default:
        return Status.NOT_SUPPORTED;
    }
  }

  async #readWrite(req: BlkRequest): Promise<number> {
    const write = req.op === Op.WRITE;
    if (req.nrSegments < 1 || req.nrSegments > MAX_SEGMENTS) return Status.ERROR;
    if (write && this.#o.store.info.readonly) return Status.ERROR;
    let total = 0n;
    for (const s of req.segments) {
      if (s.firstSect > s.lastSect || s.lastSect >= SECTORS_PER_PAGE) return Status.ERROR;
      total += BigInt(s.lastSect - s.firstSect + 1);
    }
    if (req.sector + total > this.#o.store.info.sectors) return Status.ERROR;
    // Map every segment first: a bad grant fails the request before any I/O.
    const maps: GrantMapping[] = [];
    try {
      for (const s of req.segments) {
        // A read fills the frontend's page (a writable mapping); a write only reads it.
        const m = this.#o.grants.map(this.#o.self, this.#o.domid, s.gref, !write);
        if (typeof m === 'number') return Status.ERROR;
        maps.push(m);
      }
      // The segments are consecutive sectors on the disk: one vectored I/O for the request.
      const buffers = req.segments.map((s, i) => maps[i]!.bytes.subarray(s.firstSect * SECTOR_SIZE, (s.lastSect + 1) * SECTOR_SIZE));
      try {
        await (write ? this.#o.store.writev(req.sector, buffers) : this.#o.store.readv(req.sector, buffers));
      } catch {
        return Status.ERROR;
      }
      const n = Number(total) * SECTOR_SIZE;
      if (write) { this.stats.writes++; this.stats.bytesWritten += n; } else { this.stats.reads++; this.stats.bytesRead += n; }
      return Status.OKAY;
    } finally {
      for (const m of maps) m.release();
    }
  }

  /** Detach: finish the requests in flight (their answers still go out), then stop. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#inflight]);
    this.#closed = true;
  }
}
