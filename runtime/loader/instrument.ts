/**
 * Safepoint instrumentation. At every function entry and loop header the
 * guest loads one word of a small kernel-owned memory it imports
 * (`wasmvisor:kernel.flags`, the attention word of its CPU) and, when the
 * word is set, calls the kernel's `safepoint` import, which may suspend it
 * (end of slice, pause, a more urgent domain) or never resume it (destroy).
 * A ticker thread sets the word every fraction of a slice, and the kernel
 * sets it at once for a pause, a kill or a wake-up that may preempt; so the
 * time between two chances for the kernel to take the CPU back is bounded
 * without relying on the guest making hypercalls, and the check on the hot
 * path is one atomic load and a branch (an epoch check, as in wasmtime).
 *
 * Binaryen's `log-execution` pass inserts a call at those points (and at
 * returns and function exits, which `pruneChecks` removes again, with the
 * entries of functions that only call from inside their loops: see
 * prune.ts); we replace the logger it imports with the check and inline it,
 * so the rewrite is done by well-tested passes and the result is validated
 * before use.
 */
import type { BinaryenModule } from './binaryen.ts';
import { loadBinaryen, v8Features } from './binaryen.ts';
import { pruneChecks } from './prune.ts';

export const SAFEPOINT_MODULE = 'wasmvisor:kernel';
export const SAFEPOINT_NAME = 'safepoint';
/** The memory holding the attention word (offset 0) the instrumented code polls. */
export const FLAGS_NAME = 'flags';

const LOGGER = 'log_execution';
/** The flags memory import's internal name in an instrumented module. */
export const FLAGS = 'wv$flags';
const SAFEPOINT = 'wv$safepoint';

/** Names we add; a guest that already uses one is refused by the caller. */
export const RESERVED_NAMES = [LOGGER, FLAGS, SAFEPOINT] as const;

/** The name our check function has in backtraces (filtered out of guest traces). */
export const TICK_FUNCTION = LOGGER;

/** What `addSafepoints` did. */
export interface Instrumented {
  /** Checks left in the code (loop headers and the function entries that need one). */
  checks: number;
  /** Checks `log-execution` placed that were not needed (exits, returns, entries). */
  dropped: number;
  /** Why the unneeded checks were kept, if they were (an expression kind the pruning walk does not know). */
  fallback?: string;
}

/**
 * Instrument `mod` in place; it must be validated by the caller afterwards.
 * Binaryen's pass places more checks than needed; `pruneChecks` turns the
 * surplus into `nop`s. On code the walk cannot see into, every check stays
 * (slower, equally correct).
 */
export async function addSafepoints(mod: BinaryenModule): Promise<Instrumented> {
  const binaryen = await loadBinaryen();
  // Keep every guest function as it is (no inlining of guest code, so
  // backtraces keep their frames); only our check is inlined below.
  binaryen.setPassArgument('no-inline', '*');
  mod.runPasses(['no-inline']);
  binaryen.clearPassArguments();
  mod.runPasses(['log-execution']);
  const pruned = pruneChecks(binaryen, mod, LOGGER);
  // The pass imported the logger; we define a function under the same name
  // (binaryen calls by name) that polls the attention word instead.
  mod.removeFunction(LOGGER);
  mod.addMemoryImport(FLAGS, SAFEPOINT_MODULE, FLAGS_NAME, true);
  mod.addFunctionImport(SAFEPOINT, SAFEPOINT_MODULE, SAFEPOINT_NAME, binaryen.none, binaryen.none);
  mod.addFunction(LOGGER, binaryen.createType([binaryen.i32]), binaryen.none, [],
    mod.if(mod.i32.atomic.load(0, mod.i32.const(0), FLAGS), mod.call(SAFEPOINT, [], binaryen.none)));
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
  return pruned.unknown === undefined
    ? { checks: pruned.kept, dropped: pruned.dropped }
    : { checks: pruned.kept, dropped: pruned.dropped, fallback: pruned.unknown };
}

/**
 * Instrument any core module (not only a guest): what the loader does to a
 * guest's code, without its ABI checks. The result imports the flags memory
 * and the safepoint function from `wasmvisor:kernel`. Used to prove the
 * rewrite keeps behaviour on external test programs and by the benchmarks.
 * Throws if binaryen cannot read the module or the result does not validate;
 * `report` learns how many checks were kept and dropped.
 */
export async function rewriteWithSafepoints(bytes: Uint8Array, report?: (done: Instrumented) => void): Promise<Uint8Array> {
  const binaryen = await loadBinaryen();
  const mod = binaryen.readBinary(bytes);
  try {
    mod.setFeatures(v8Features(binaryen));
    const inst = await addSafepoints(mod);
    if (!mod.validate()) throw new Error('safepoint instrumentation produced an invalid module');
    report?.(inst);
    return mod.emitBinary();
  } finally {
    mod.dispose();
  }
}
