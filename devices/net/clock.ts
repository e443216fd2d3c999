/**
 * Time for the switch's rate limiters, injectable so that tests and
 * benchmarks can run a limiter on simulated time and check its accuracy
 * exactly.
 */

/** Monotonic time in microseconds and one-shot timers. */
export interface NetClock {
  /** Microseconds since an arbitrary origin; never goes back. */
  now(): number;
  /** Run `fn` once after at least `delayUs` microseconds; returns a function that cancels it. */
  after(delayUs: number, fn: () => void): () => void;
}

/**
 * The host's clock: performance.now() and setTimeout (millisecond
 * granularity, so a limiter's bucket holds at least MIN_BURST_US of traffic).
 * Timers are unref'd: frames held back by a limiter do not keep a process
 * alive.
 */
export function systemClock(): NetClock {
  return {
    now: () => performance.now() * 1000,
    after(delayUs, fn) {
      // setTimeout counts from the event loop's cached time, so it can fire
      // before `delayUs` have passed by performance.now(): wait out the rest.
      const due = performance.now() * 1000 + delayUs;
      let t: NodeJS.Timeout;
      const arm = (us: number): void => {
        t = setTimeout(() => {
          const left = due - performance.now() * 1000;
          if (left > 0) arm(left);
          else fn();
        }, Math.max(1, Math.ceil(us / 1000)));
        t.unref();
      };
      arm(delayUs);
      return () => clearTimeout(t);
    },
  };
}

/**
 * A clock that moves only when told (tests, deterministic benchmarks).
 * Timers fire in time order inside `advance`. With `timerGranularityUs` a
 * timer fires only on a multiple of it after it was set, and never sooner
 * than one, as setTimeout's milliseconds do.
 */
export class ManualClock implements NetClock {
  #now = 0;
  #seq = 0;
  readonly #granularity: number;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  constructor(o: { timerGranularityUs?: number } = {}) {
    this.#granularity = o.timerGranularityUs ?? 0;
  }

  now(): number { return this.#now; }

  after(delayUs: number, fn: () => void): () => void {
    const id = this.#seq++;
    const g = this.#granularity;
    const delay = g > 0 ? Math.max(g, Math.ceil(delayUs / g) * g) : Math.max(0, delayUs);
    this.#timers.set(id, { at: this.#now + delay, fn });
    return () => { this.#timers.delete(id); };
  }

  /** Timers not yet fired. */
  get pending(): number { return this.#timers.size; }

  /** Move time forward by `us`, firing every timer due on the way (at its own time; timers they set fire too if due). */
  advance(us: number): void {
    const end = this.#now + us;
    for (;;) {
      let next: number | undefined;
      let at = Infinity;
      for (const [id, t] of this.#timers) if (t.at < at || (t.at === at && id < next!)) { at = t.at; next = id; }
      if (next === undefined || at > end) break;
      const t = this.#timers.get(next)!;
      this.#timers.delete(next);
      this.#now = Math.max(this.#now, t.at);
      t.fn();
    }
    this.#now = end;
  }
}
