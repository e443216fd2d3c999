/**
 * The ticker: a thread that sets every CPU's attention word a few times per
 * slice, so a guest computing without hypercalls reaches a safepoint and the
 * scheduler can take the CPU back (runtime/loader/instrument.ts). It sleeps
 * in Atomics.wait between ticks; word 0 of `control` is the period in µs
 * (0 stops it).
 */
import { workerData } from 'node:worker_threads';

export interface TickerInit {
  readonly flags: readonly WebAssembly.Memory[];
  readonly control: SharedArrayBuffer;
}

const init = workerData as TickerInit;
const control = new Int32Array(init.control);
const words = init.flags.map((m) => new Int32Array(m.buffer, 0, 1));
const sleeper = new Int32Array(new SharedArrayBuffer(4));
for (;;) {
  const us = Atomics.load(control, 0);
  if (us <= 0) break;
  Atomics.wait(sleeper, 0, 0, us / 1000);
  for (const w of words) Atomics.or(w, 0, 1); // Attention.TICK, keeping a CONTROL bit that may be set
}
