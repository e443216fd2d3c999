/**
 * Safepoint instrumentation. Every function entry and loop header of a guest
 * is made to spend one unit of fuel from a module-private global; when the
 * fuel runs out the guest calls the kernel's `safepoint` import, which may
 * suspend it (end of slice, pause) or never resume it (destroy). This bounds
 * the time between two chances for the kernel to take the CPU back, without
 * relying on the guest making hypercalls.
 *
 * Binaryen's `log-execution` pass inserts a call at exactly those points; we
 * then replace the logger it imports with a small function that does the
 * fuel accounting, so the rewrite is done by a well-tested pass and the
 * result is validated before use.
 */
import type { BinaryenModule } from './binaryen.ts';
import { loadBinaryen } from './binaryen.ts';

export const SAFEPOINT_MODULE = 'wasmvisor:kernel';
export const SAFEPOINT_NAME = 'safepoint';
/** Loop iterations and calls between two safepoint calls. */
export const FUEL_PER_CHECK = 4096;

const LOGGER = 'log_execution';
const FUEL = 'wv$fuel';
const SAFEPOINT = 'wv$safepoint';

/** Names we add; a guest that already uses one is refused by the caller. */
export const RESERVED_NAMES = [LOGGER, FUEL, SAFEPOINT] as const;

/** The name our fuel function has in backtraces (filtered out of guest traces). */
export const TICK_FUNCTION = LOGGER;

/** Instrument `mod` in place; it must be validated by the caller afterwards. */
export async function addSafepoints(mod: BinaryenModule): Promise<void> {
  const binaryen = await loadBinaryen();
  // Keep every guest function as it is (no inlining of guest code, so
  // backtraces keep their frames); only our fuel function is inlined below.
  binaryen.setPassArgument('no-inline', '*');
  mod.runPasses(['no-inline']);
  binaryen.clearPassArguments();
  mod.runPasses(['log-execution']);
  // The pass imported the logger; we define a function under the same name
  // (binaryen calls by name) that spends fuel instead.
  mod.removeFunction(LOGGER);
  mod.addGlobal(FUEL, binaryen.i32, true, mod.i32.const(FUEL_PER_CHECK));
  mod.addFunctionImport(SAFEPOINT, SAFEPOINT_MODULE, SAFEPOINT_NAME, binaryen.none, binaryen.none);
  const fuel = () => mod.global.get(FUEL, binaryen.i32);
  mod.addFunction(LOGGER, binaryen.createType([binaryen.i32]), binaryen.none, [], mod.block(null, [
    mod.global.set(FUEL, mod.i32.sub(fuel(), mod.i32.const(1))),
    mod.if(
      mod.i32.le_s(fuel(), mod.i32.const(0)),
      mod.block(null, [
        mod.global.set(FUEL, mod.i32.const(FUEL_PER_CHECK)),
        mod.call(SAFEPOINT, [], binaryen.none),
      ]),
    ),
  ]));
  // A call per loop iteration costs more than the check itself: inline it.
  const saved = [binaryen.getAlwaysInlineMaxSize(), binaryen.getFlexibleInlineMaxSize(), binaryen.getOneCallerInlineMaxSize()] as const;
  binaryen.setAlwaysInlineMaxSize(64);
  binaryen.setFlexibleInlineMaxSize(0);
  binaryen.setOneCallerInlineMaxSize(0);
  try {
    mod.runPasses(['inlining']);
  } finally {
    binaryen.setAlwaysInlineMaxSize(saved[0]);
    binaryen.setFlexibleInlineMaxSize(saved[1]);
    binaryen.setOneCallerInlineMaxSize(saved[2]);
  }
}
