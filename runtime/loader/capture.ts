/**
 * Capture points: what lets the kernel save a running domain (issue 9).
 *
 * A guest's state is its memory (the kernel's already), its mutable
 * globals, and its call stack. The stack lives in the engine, so the loader
 * makes it capturable with binaryen's Asyncify pass: the calls to the
 * scheduler hypercalls where a guest gives up the CPU (`sched.block`,
 * `sched.yield`, `sched.shutdown`) may unwind the whole call stack into
 * memory and later rewind it, in this instance or in a fresh one built from
 * a save file. Only functions that can reach those calls are rewritten, so a
 * guest's compute loops are untouched.
 *
 * The unwound stack is written to the CPU's kernel memory (`wasmvisor:kernel.flags`,
 * which every instrumented guest already imports), past its first page,
 * never to guest memory: the guest owns all of that. One guest runs at a
 * time on a CPU, and unwinding and rewinding are synchronous, so one area
 * per CPU is enough; the kernel copies the bytes out (or in) at once.
 *
 * Mutable globals are exported as `wv$g<N>` so the kernel can read and set
 * them. A guest whose state cannot be captured (a reference-typed global or
 * local, which Asyncify cannot store) still runs; it is marked not saveable,
 * with the reason.
 */
import type { Binaryen, BinaryenModule } from './binaryen.ts';
import { FLAGS_NAME, SAFEPOINT_MODULE } from './instrument.ts';

/** Where the unwound stack goes in the flags memory: page 1 onwards (page 0 holds the attention words). */
export const CAPTURE_AREA_OFFSET = 65536;
/** Pages the flags memory has, so the capture area is this minus one page (the most a guest's stack may unwind to). */
export const FLAGS_MEMORY_PAGES = 17;
/** The export names of a guest's mutable globals: `wv$g0`, `wv$g1`, ... */
export const GLOBAL_EXPORT_PREFIX = 'wv$g';
/** The hypercalls at which a guest may be captured. */
export const CAPTURE_IMPORTS = ['block', 'yield', 'shutdown'].map((n) => `wasmvisor:hypercall/sched@0.1.0.${n}`);

const CAPTURE_MEMORY_EXPORT = 'wv$capture';

/** What the kernel needs to capture and restore a guest of this image. */
export interface CaptureInfo {
  /** Whether domains of the image can be saved; `why` says why not. */
  saveable: boolean;
  why?: string;
  /** The mutable globals, in order: export name and value type. */
  globals: Array<{ name: string; type: 'i32' | 'i64' | 'f32' | 'f64' }>;
}

/**
 * Export the mutable globals of `mod` and run Asyncify on it, in place.
 * `flagsName` is the internal name of the flags memory import. Throws when
 * binaryen cannot instrument the module (the caller then keeps the module
 * without capture points).
 */
export function addCapturePoints(binaryen: Binaryen, mod: BinaryenModule, flagsName: string): CaptureInfo {
  const globals: CaptureInfo['globals'] = [];
  const types = new Map<number, 'i32' | 'i64' | 'f32' | 'f64'>([
    [binaryen.i32, 'i32'], [binaryen.i64, 'i64'], [binaryen.f32, 'f32'], [binaryen.f64, 'f64'],
  ]);
  for (let i = 0; i < mod.getNumGlobals(); i++) {
    const info = binaryen.getGlobalInfo(mod.getGlobalByIndex(i)) as { name: string; module: string; type: number; mutable: boolean };
    if (!info.mutable || info.module) continue;
    const type = types.get(info.type);
    if (type === undefined) {
      return { saveable: false, why: `its global "${info.name}" holds a reference or vector value, which cannot be saved`, globals: [] };
    }
    const name = `${GLOBAL_EXPORT_PREFIX}${globals.length}`;
    mod.addGlobalExport(info.name, name);
    globals.push({ name, type });
  }
  mod.addMemoryExport(flagsName, CAPTURE_MEMORY_EXPORT);
  binaryen.setPassArgument('asyncify-imports', CAPTURE_IMPORTS.join(','));
  binaryen.setPassArgument('asyncify-memory', CAPTURE_MEMORY_EXPORT);
  try {
    mod.runPasses(['asyncify']);
  } finally {
    binaryen.clearPassArguments();
  }
  mod.removeExport(CAPTURE_MEMORY_EXPORT);
  return { saveable: true, globals };
}

/** The flags memory import's module and name (for messages). */
export const FLAGS_IMPORT = `${SAFEPOINT_MODULE}.${FLAGS_NAME}`;
