/**
 * The network backend: serves one vif's two rings for one domain and
 * connects them to a port of the virtual switch.
 *
 * Transmit: on a kick it takes TX requests, checks each (flags, size,
 * offset and size inside the page, the grant is this frontend's and
 * granted to us), maps the page read-only, copies the frame out once into
 * a private buffer (the guest cannot change it while the switch checks it),
 * gives it to the switch and answers. While the port's rate limit holds
 * frames back the backend stops taking requests, so a fast sender fills its
 * own ring and waits (nothing is lost); the switch's onDrain resumes it. At
 * most one ring's worth of requests is taken per turn; the rest is taken
 * on a later turn (`defer`), so a guest refilling its ring as fast as it can
 * cannot keep the host's thread to itself.
 *
 * Receive: the switch delivers a frame by taking the oldest posted RX
 * buffer, mapping it writable, copying the frame in and answering with its
 * size. With no buffer posted the frame is refused (the switch counts it as
 * this port's `dropped`): a guest that stops consuming hurts only itself.
 *
 * A bad request gets an error status. A broken ring (the frontend corrupted
 * an index) stops this vif only: it neither sends nor receives again, and
 * `onBroken` is told once.
 */
import { BackRing, RingField, type RingPage } from '../../kernel/ring.ts';
import type { GrantTables } from '../../kernel/grant.ts';
import { PAGE_SIZE } from '../../kernel/pv-table.ts';
import {
  MAX_FRAME, MIN_FRAME, NetStatus, RX_OFFSET, RX_RING, TX_RING,
  type RxRequest, type RxResponse, type TxRequest, type TxResponse,
} from './protocol.ts';
import { Verdict, type PortOptions, type SwitchPort, type VirtualSwitch } from './switch.ts';

/** Errors in the frontend's requests (the switch's counters are in `port.stats`). */
export interface NetBackendStats {
  /** TX requests answered ERROR: bad flags, size, offset or grant. */
  txErrors: number;
  /** RX buffers returned ERROR: their grant could not be mapped writable. */
  rxErrors: number;
}

export interface NetBackendOptions {
  /** The grant tables, and the backend's own domain id (0: the host). */
  grants: GrantTables;
  self: number;
  /** The frontend's domain. */
  domid: number;
  /** The TX and RX ring pages (mapped from the frontend's grants). */
  txPage: RingPage;
  rxPage: RingPage;
  switch: VirtualSwitch;
  /**
   * The vif's switch port: options to create one (the backend supplies
   * delivery and removes it on close), or a port its owner made, whose
   * delivery calls `receive` and whose onDrain calls `kick` (the toolstack's
   * vifs keep their port, addresses and counters across reconnections).
   */
  port: Omit<PortOptions, 'deliver' | 'onDrain'> | SwitchPort;
  /** Tell the frontend there are responses (its event channel). */
  notify: () => void;
  /** Called once if the frontend breaks either ring. */
  onBroken?: (err: Error) => void;
  /** Run `fn` on a later turn of the event loop; default setImmediate. */
  defer?: (fn: () => void) => void;
  /**
   * The rings are in use already (a restored domain's): start each from the
   * responses it has published, so TX requests published but not answered
   * are sent (again) and RX buffers posted but not filled are used.
   * Default false (new rings, from 0).
   */
  resumed?: boolean;
}

export class NetBackend {
  readonly stats: NetBackendStats = { txErrors: 0, rxErrors: 0 };
  readonly port: SwitchPort;
  readonly #o: NetBackendOptions;
  readonly #sw: VirtualSwitch;
  readonly #tx: BackRing<TxRequest, TxResponse>;
  readonly #rx: BackRing<RxRequest, RxResponse>;
  readonly #defer: (fn: () => void) => void;
  /** One frame, copied out of the guest's page. */
  readonly #frame = new Uint8Array(MAX_FRAME);
  #broken: Error | undefined;
  #closed = false;
  readonly #ownsPort: boolean;
  /** Inside kick: responses wait for its end and go out together. */
  #running = false;
  /** A kick came while running (a delivery to ourselves woke our frontend): take requests again. */
  #again = false;
  #deferred = false;
  #rxDirty = false;
  /** Quiesced (a save is writing the frontend's memory): nothing is taken or delivered until `resume`. */
  #paused = false;

  constructor(o: NetBackendOptions) {
    this.#o = o;
    this.#sw = o.switch;
    this.#defer = o.defer ?? ((fn) => { setImmediate(fn); });
    this.#tx = new BackRing(o.txPage, o.resumed ? { ...TX_RING, start: o.txPage.load32(RingField.RSP_PROD) } : TX_RING);
    this.#rx = new BackRing(o.rxPage, o.resumed ? { ...RX_RING, start: o.rxPage.load32(RingField.RSP_PROD) } : RX_RING);
    if ('stats' in o.port) {
      this.port = o.port;
      this.#ownsPort = false;
    } else {
      this.port = o.switch.addPort({
        ...o.port,
        deliver: (frame) => this.receive(frame),
        onDrain: () => this.kick(),
      });
      this.#ownsPort = true;
    }
  }

  /** The error that stopped this vif, if any. */
  get broken(): Error | undefined { return this.#broken; }

  /** The frontend notified (or the port drained): take TX requests, up to one ring's worth this turn. */
  kick(): void {
    if (this.#closed || this.#broken || this.#paused) return;
    if (this.#running) { this.#again = true; return; }
    this.#running = true;
    let budget = this.#tx.slots;
    try {
      do {
        this.#again = false;
        for (;;) {
          for (; budget > 0 && this.port.held === 0; budget--) {
            const req = this.#tx.takeRequest();
            if (req === undefined) break;
            this.#transmit(req);
          }
          // Stopped by the rate limit (onDrain kicks again) or the budget (deferred below).
          if (budget === 0 || this.port.held > 0) break;
          if (!this.#tx.finalCheckForRequests()) break;
        }
      } while (this.#again && budget > 0 && this.port.held === 0 && !this.#broken);
      // Out of budget: finish on a later turn, which also re-arms req_event (finalCheckForRequests), so no kick is missed.
      if (budget === 0 && !this.#deferred && !this.#broken) {
        this.#deferred = true;
        this.#defer(() => { this.#deferred = false; this.kick(); });
      }
    } catch (err) {
      this.#break(err as Error);
    } finally {
      this.#running = false;
    }
    this.#push();
  }

  #transmit(req: TxRequest): void {
    const { grants, self, domid } = this.#o;
    let status: number = NetStatus.ERROR;
    if (req.flags === 0 && req.size >= MIN_FRAME && req.size <= MAX_FRAME && req.offset + req.size <= PAGE_SIZE) {
      const m = grants.map(self, domid, req.gref, false);
      if (typeof m !== 'number') {
        const frame = this.#frame.subarray(0, req.size);
        frame.set(m.bytes.subarray(req.offset, req.offset + req.size));
        m.release();
        const v = this.#sw.send(this.port, frame);
        status = v === Verdict.SENT || v === Verdict.HELD ? NetStatus.OKAY : NetStatus.DROPPED;
      }
    }
    if (status === NetStatus.ERROR) this.stats.txErrors++;
    // takeRequest just consumed it, so there is a slot for its answer.
    this.#tx.putResponse({ id: req.id, status });
  }

  /** The switch's delivery to this vif: false (dropped) when no usable buffer is posted. */
  receive(frame: Uint8Array): boolean {
    if (this.#closed || this.#broken || this.#paused) return false;
    const { grants, self, domid } = this.#o;
    try {
      for (;;) {
        const req = this.#rx.takeRequest();
        if (req === undefined) return false;
        const m = grants.map(self, domid, req.gref, true);
        if (typeof m === 'number') {
          this.stats.rxErrors++;
          this.#rx.putResponse({ id: req.id, offset: 0, flags: 0, status: NetStatus.ERROR });
          this.#rxDirty = true;
          continue;
        }
        m.bytes.set(frame, RX_OFFSET);
        m.release();
        this.#rx.putResponse({ id: req.id, offset: RX_OFFSET, flags: 0, status: frame.length });
        this.#rxDirty = true;
        return true;
      }
    } catch (err) {
      this.#break(err as Error);
      return false;
    } finally {
      if (!this.#running) this.#push();
    }
  }

  /** Publish the responses written on both rings; notify once if the frontend asked on either. */
  #push(): void {
    if (this.#broken) return;
    try {
      let notify = this.#tx.pushResponses();
      if (this.#rxDirty) {
        this.#rxDirty = false;
        if (this.#rx.pushResponses()) notify = true;
      }
      if (notify) this.#o.notify();
    } catch (err) {
      this.#break(err as Error);
    }
  }

  #break(err: Error): void {
    if (this.#broken) return;
    this.#broken = err;
    this.#o.onBroken?.(err);
  }

  /**
   * Stop touching the frontend's rings and pages (a save is writing its
   * memory): TX requests wait in the ring, frames for the vif are dropped
   * (counted as the port's `dropped`, as for a frontend with no buffer
   * posted). Every answer written so far is published already.
   */
  pause(): void {
    this.#paused = true;
  }

  /** Take TX requests and deliver frames again after `pause`. */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.kick();
  }

  /** Detach: the port leaves the switch (its addresses are free again) and the rings are no longer served. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsPort) this.#sw.removePort(this.port);
  }
}
