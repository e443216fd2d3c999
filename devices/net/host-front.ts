/**
 * A network frontend written in TypeScript over a domain's memory: the same
 * protocol as the SDK's netfront will speak, built from the real ring and
 * grant code. Tests and benchmarks drive NetBackend and the switch with it.
 *
 * Memory layout in the domain, from page `base`: the TX ring, the RX ring,
 * the TX buffers (two per page, at offsets 0 and 2048, each page granted
 * read-only), then one page per RX buffer (granted writable). Every page is
 * granted once, at construction, and reused, so a frame costs no grant
 * calls. A TX buffer is busy from `send` until its response; an RX buffer
 * is posted again as soon as its frame has been copied out (unless
 * `autoRepost` is off, to play a guest that stops consuming).
 */
import { FrontRing, MemoryRingPage, initSharedRing } from '../../kernel/ring.ts';
import type { GrantTables } from '../../kernel/grant.ts';
import { InvalidArgumentError } from '../../kernel/errors.ts';
import { PAGE_SIZE } from '../../kernel/pv-table.ts';
import {
  MAX_FRAME, MIN_FRAME, NetStatus, RX_RING, RX_RING_SLOTS, TX_RING, TX_RING_SLOTS,
  type RxRequest, type RxResponse, type TxRequest, type TxResponse,
} from './protocol.ts';

/** Bytes of one TX buffer: two per page. */
const TX_BUFFER = PAGE_SIZE / 2;

export interface HostNetFrontOptions {
  /** TX buffers (frames in flight); 1..TX_RING_SLOTS, default TX_RING_SLOTS. */
  txBuffers?: number;
  /** RX buffers, all posted at construction; 0..RX_RING_SLOTS, default 64. */
  rxBuffers?: number;
}

/** Pages a HostNetFront uses in the domain's memory, from `base`. */
export function netFrontPages(o: HostNetFrontOptions = {}): number {
  return 2 + Math.ceil((o.txBuffers ?? TX_RING_SLOTS) / 2) + (o.rxBuffers ?? 64);
}

export class HostNetFront {
  readonly txRingGref: number;
  readonly rxRingGref: number;
  /** Frames received and not yet taken (`take`, `next`), oldest first. */
  readonly inbox: Uint8Array[] = [];
  /** TX answers by status (sent: OKAY, txErrors: ERROR, txDropped: DROPPED), frames received, RX buffers returned ERROR. */
  readonly stats = { sent: 0, received: 0, txErrors: 0, txDropped: 0, rxErrors: 0 };
  /** Post RX buffers again once their frame is copied out; off plays a guest that stops consuming. */
  autoRepost = true;
  /** Ring the backend (its kick). */
  notifyBackend: () => void = () => {};
  /** Called for each frame received (default: append it to `inbox`). */
  onFrame: (frame: Uint8Array) => void = (f) => { this.inbox.push(f); this.#wake(); };
  readonly #mem: Uint8Array;
  readonly #tx: FrontRing<TxRequest, TxResponse>;
  readonly #rx: FrontRing<RxRequest, RxResponse>;
  readonly #txBase: number;
  readonly #txGref: number[] = [];
  readonly #rxBase: number;
  readonly #rxGref: number[] = [];
  readonly #freeTx: number[] = [];
  readonly #txWaiting: Array<((status: number) => void) | undefined>;
  readonly #txQueue: Array<(buffer: number) => void> = [];
  readonly #rxIdle: number[] = [];
  #waiters: Array<() => void> = [];

  /** Set up both rings and the buffers for backend domain `backend` in `domid`'s memory from page `base`. */
  constructor(grants: GrantTables, domid: number, backend: number, mem: Uint8Array, base: number, o: HostNetFrontOptions = {}) {
    const txBuffers = o.txBuffers ?? TX_RING_SLOTS;
    const rxBuffers = o.rxBuffers ?? 64;
    if (!Number.isInteger(txBuffers) || txBuffers < 1 || txBuffers > TX_RING_SLOTS) throw new InvalidArgumentError('txBuffers', `${txBuffers} is not 1..${TX_RING_SLOTS}`);
    if (!Number.isInteger(rxBuffers) || rxBuffers < 0 || rxBuffers > RX_RING_SLOTS) throw new InvalidArgumentError('rxBuffers', `${rxBuffers} is not 0..${RX_RING_SLOTS}`);
    const pages = netFrontPages({ txBuffers, rxBuffers });
    if ((base + pages) * PAGE_SIZE > mem.length) throw new InvalidArgumentError('base', `${pages} pages from page ${base} do not fit a ${mem.length}-byte memory`);
    this.#mem = mem;
    const txPage = new MemoryRingPage(mem, base * PAGE_SIZE);
    const rxPage = new MemoryRingPage(mem, (base + 1) * PAGE_SIZE);
    initSharedRing(txPage);
    initSharedRing(rxPage);
    this.#tx = new FrontRing(txPage, TX_RING);
    this.#rx = new FrontRing(rxPage, RX_RING);
    const grant = (p: number, readonly: number): number => {
      const g = grants.grantAccess(domid, backend, p, readonly, mem.length);
      if (g < 0) throw new InvalidArgumentError('frontend grants', `granting page ${p} failed: error ${g}`);
      return g;
    };
    this.txRingGref = grant(base, 0);
    this.rxRingGref = grant(base + 1, 0);
    this.#txBase = base + 2;
    for (let p = 0; p < Math.ceil(txBuffers / 2); p++) this.#txGref.push(grant(this.#txBase + p, 1));
    for (let i = txBuffers - 1; i >= 0; i--) this.#freeTx.push(i);
    this.#txWaiting = new Array(txBuffers).fill(undefined);
    this.#rxBase = this.#txBase + Math.ceil(txBuffers / 2);
    for (let j = 0; j < rxBuffers; j++) {
      this.#rxGref.push(grant(this.#rxBase + j, 0));
      this.#rxIdle.push(j);
    }
    this.postRx();
  }

  /** Post every RX buffer not posted now; returns how many. */
  postRx(): number {
    let n = 0;
    for (let j = this.#rxIdle.pop(); j !== undefined; j = this.#rxIdle.pop()) {
      this.#rx.putRequest({ id: j, gref: this.#rxGref[j]! });
      n++;
    }
    if (n > 0 && this.#rx.pushRequests()) this.notifyBackend();
    return n;
  }

  /** Send one frame (MIN_FRAME..MAX_FRAME bytes, copied); waits for a free TX buffer; resolves with the response status. */
  async send(frame: Uint8Array): Promise<number> {
    if (frame.length < MIN_FRAME || frame.length > MAX_FRAME) throw new InvalidArgumentError('frame', `${frame.length} bytes is not ${MIN_FRAME}..${MAX_FRAME}`);
    return this.sendRaw({ bytes: frame });
  }

  /**
   * Send a TX request as a (possibly hostile) guest would: `bytes` are
   * copied into a free buffer (as far as they fit) and the request says
   * what `size`, `offset` (added to the buffer's), `gref` and `flags` say,
   * defaulting to the honest values.
   */
  async sendRaw(r: { bytes: Uint8Array; size?: number; offset?: number; gref?: number; flags?: number }): Promise<number> {
    const b = this.#freeTx.pop() ?? await new Promise<number>((resolve) => this.#txQueue.push(resolve));
    const at = (b % 2) * TX_BUFFER;
    const page = this.#txBase + (b >> 1);
    this.#mem.set(r.bytes.subarray(0, TX_BUFFER), page * PAGE_SIZE + at);
    const done = new Promise<number>((resolve) => { this.#txWaiting[b] = resolve; });
    this.#tx.putRequest({ id: b, gref: r.gref ?? this.#txGref[b >> 1]!, offset: at + (r.offset ?? 0), flags: r.flags ?? 0, size: r.size ?? r.bytes.length });
    if (this.#tx.pushRequests()) this.notifyBackend();
    return done;
  }

  /** TX requests published and not yet answered. */
  get txInFlight(): number { return this.#txWaiting.filter((w) => w !== undefined).length; }

  /** The backend answered: settle TX requests, take received frames, post their buffers again. */
  onNotify(): void {
    const settled: Array<[(s: number) => void, number]> = [];
    for (;;) {
      for (let r = this.#tx.takeResponse(); r !== undefined; r = this.#tx.takeResponse()) {
        const w = this.#txWaiting[r.id];
        if (w === undefined) continue; // not a request of ours: ignore it
        this.#txWaiting[r.id] = undefined;
        if (r.status === NetStatus.ERROR) this.stats.txErrors++;
        else if (r.status < 0) this.stats.txDropped++;
        else this.stats.sent++;
        this.#freeTx.push(r.id);
        settled.push([w, r.status]);
      }
      if (!this.#tx.finalCheckForResponses()) break;
    }
    for (;;) {
      for (let r = this.#rx.takeResponse(); r !== undefined; r = this.#rx.takeResponse()) {
        if (r.id >= this.#rxGref.length) continue;
        if (r.status < 0 || r.offset + r.status > PAGE_SIZE) this.stats.rxErrors++;
        else {
          const at = (this.#rxBase + r.id) * PAGE_SIZE + r.offset;
          this.stats.received++;
          this.onFrame(this.#mem.slice(at, at + r.status));
        }
        this.#rxIdle.push(r.id);
      }
      if (!this.#rx.finalCheckForResponses()) break;
    }
    if (this.autoRepost) this.postRx();
    for (const [w, s] of settled) w(s);
    while (this.#freeTx.length > 0 && this.#txQueue.length > 0) this.#txQueue.shift()!(this.#freeTx.pop()!);
  }

  /** The oldest frame received, if any. */
  take(): Uint8Array | undefined {
    return this.inbox.shift();
  }

  /** The next frame received, waiting for one (at most `timeoutMs`: then undefined). */
  async next(timeoutMs = 1000): Promise<Uint8Array | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.inbox.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return this.inbox.shift();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}
