/**
 * Event channels for the host (domain 0): backends in the host register a
 * handler for one of domain 0's ports, and it runs on the main thread when
 * a guest notifies that port. The main thread never blocks: it waits on the
 * host doorbell with Atomics.waitAsync and, when woken, takes domain 0's
 * pending ports and calls their handlers.
 */
import type { EventChannels } from '../kernel/evtchn.ts';
import { NR_PORTS } from '../kernel/pv-table.ts';

export class HostEvents {
  readonly #evtchn: EventChannels;
  readonly #handlers = new Map<number, () => void>();
  #running = false;
  /** Ports whose handler threw (each is reported once, then the handler is removed). */
  onHandlerError: (port: number, err: unknown) => void = () => {};

  constructor(evtchn: EventChannels) {
    this.#evtchn = evtchn;
  }

  /** Call `fn` whenever domain 0's port `port` is notified. Returns a function that removes it. */
  on(port: number, fn: () => void): () => void {
    this.#handlers.set(port, fn);
    this.#start();
    return () => { if (this.#handlers.get(port) === fn) this.#handlers.delete(port); };
  }

  #start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#loop();
  }

  /** Stop waiting (the hypervisor is closing). */
  stop(): void {
    this.#running = false;
    const w = this.#evtchn.table.words;
    Atomics.add(w, this.#evtchn.table.hostDoorbell, 1);
    Atomics.notify(w, this.#evtchn.table.hostDoorbell);
  }

  async #loop(): Promise<void> {
    const w = this.#evtchn.table.words;
    const bell = this.#evtchn.table.hostDoorbell;
    while (this.#running) {
      const seen = Atomics.load(w, bell);
      this.#dispatch();
      const r = Atomics.waitAsync(w, bell, seen);
      if (r.async) await r.value;
    }
  }

  #dispatch(): void {
    const pending: number[] = [];
    this.#evtchn.takePending(0, NR_PORTS / 32, (index, bits) => {
      for (let b = 0; b < 32; b++) if (bits & (1 << b)) pending.push(index * 32 + b);
    });
    for (const port of pending) {
      const fn = this.#handlers.get(port);
      if (!fn) continue;
      try {
        fn();
      } catch (err) {
        this.#handlers.delete(port);
        this.onHandlerError(port, err);
      }
    }
  }
}
