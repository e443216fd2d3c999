/**
 * The loader: validates a guest image against the ABI, instruments it with
 * safepoints and compiles it once. A GuestImage is immutable and shared by
 * every domain created from it.
 */
import { createHash } from 'node:crypto';
import {
  ImageForbiddenImportError,
  ImageInvalidError,
  ImageMemoryShapeError,
  ImageMissingExportError,
  ImageNotWasmError,
  ImageOwnMemoryError,
  ImageStartPageOverlapError,
  WvError,
} from '../../kernel/errors.ts';
import {
  ENTRY_EXPORT,
  HYPERCALLS,
  INIT_EXPORT,
  MEMORY_IMPORT,
  START_INFO_ADDR,
  START_INFO_SIZE,
  importModule,
} from '../../host-bindings/abi.ts';
import type { HypercallSpec } from '../../host-bindings/abi.ts';
import { loadBinaryen, v8Features } from './binaryen.ts';
import type { Binaryen, BinaryenModule } from './binaryen.ts';
import { FLAGS, RESERVED_NAMES, addSafepoints } from './instrument.ts';
import { GLOBAL_EXPORT_PREFIX, addCapturePoints, type CaptureInfo } from './capture.ts';
import { binaryKind, bufferSource, extractActiveData, summariseSections, type DataSegment } from './sections.ts';
import { extractComponentCore } from './component.ts';

export const WASM_PAGE = 65536;

/** The export a former start section's function is given. */
export const START_SECTION_EXPORT = 'wv$start';

/** A validated, instrumented, compiled guest image. Immutable. */
export class GuestImage {
  /** Content hash of the original bytes (hex), the cache key. */
  readonly id: string;
  /** Where it came from, for messages (a path or a label). */
  readonly label: string;
  /** The compiled, instrumented module. */
  readonly module: WebAssembly.Module;
  /** The instrumented bytes (what the module was compiled from). */
  readonly bytes: Uint8Array;
  /** Memory pages the module needs at start. */
  readonly minPages: number;
  /** Maximum pages the module's memory import accepts. */
  readonly maxPages: number;
  /** Whether it exports `_initialize`. */
  readonly hasInit: boolean;
  /** Exports the kernel calls, in order, to run the domain (ends with `start`). */
  readonly entries: readonly string[];
  /** Static data a fresh domain's memory starts with (the image's active data segments, taken out of its module). */
  readonly data: readonly DataSegment[];
  /** 'core' or 'component' (the core module inside a component is what runs). */
  readonly format: 'core' | 'component';
  /** The bytes it was built from (a save file carries them, so it restores on another host). */
  readonly original: Uint8Array | undefined;
  /** Whether its domains can be saved, and the globals a save holds (runtime/loader/capture.ts). */
  readonly capture: CaptureInfo;

  constructor(init: {
    id: string; label: string; module: WebAssembly.Module; bytes: Uint8Array;
    minPages: number; maxPages: number; hasInit: boolean; entries: readonly string[]; format: 'core' | 'component';
    capture?: CaptureInfo; original?: Uint8Array; data?: readonly DataSegment[];
  }) {
    this.original = init.original;
    this.data = init.data ?? [];
    this.capture = init.capture ?? { saveable: false, why: 'it was built without capture points', globals: [] };
    this.id = init.id;
    this.label = init.label;
    this.module = init.module;
    this.bytes = init.bytes;
    this.minPages = init.minPages;
    this.maxPages = init.maxPages;
    this.hasInit = init.hasInit;
    this.entries = init.entries;
    this.format = init.format;
  }
}

const ALLOWED = new Map<string, HypercallSpec>(
  HYPERCALLS.map((h) => [`${importModule(h.iface)}\u0000${h.name}`, h]),
);

/** Validate, instrument and compile `bytes`; throws one specific WvError per refusal. */
export async function buildImage(bytes: Uint8Array, label: string): Promise<GuestImage> {
  const id = createHash('sha256').update(bytes).digest('hex');
  const kind = binaryKind(bytes);
  if (kind === 'not-wasm') {
    const why = bytes.length < 8 ? `only ${bytes.length} bytes` : 'it does not start with the Wasm magic "\\0asm"';
    throw new ImageNotWasmError(label, why);
  }
  if (kind === 'unknown') {
    throw new ImageNotWasmError(label, `unsupported binary version ${[...bytes.subarray(4, 8)].join('.')}`);
  }
  let core = bytes;
  if (kind === 'component') core = await extractComponentCore(bytes, label);

  let original: WebAssembly.Module;
  try {
    original = new WebAssembly.Module(bufferSource(core));
  } catch (err) {
    throw new ImageInvalidError(label, (err as Error).message);
  }
  const sections = summariseSections(core);
  if (!sections) throw new ImageInvalidError(label, 'section headers are malformed');

  // Imports: one memory, env.memory; every function from the ABI table.
  let memoryImports = 0;
  for (const imp of WebAssembly.Module.imports(original)) {
    if (imp.kind === 'memory') {
      if (imp.module !== MEMORY_IMPORT.module || imp.name !== MEMORY_IMPORT.name) {
        throw new ImageForbiddenImportError(label, imp.module, imp.name, 'memory');
      }
      memoryImports++;
      continue;
    }
    if (imp.kind !== 'function' || !ALLOWED.has(`${imp.module}\u0000${imp.name}`)) {
      throw new ImageForbiddenImportError(label, imp.module, imp.name, imp.kind);
    }
  }
  if (sections.definedMemories > 0) throw new ImageOwnMemoryError(label);
  if (memoryImports === 0) {
    throw new ImageMemoryShapeError(label, `it imports no memory; import ${MEMORY_IMPORT.module}.${MEMORY_IMPORT.name} (shared)`);
  }

  const exports = new Map(WebAssembly.Module.exports(original).map((e) => [e.name, e.kind]));
  const entry = exports.get(ENTRY_EXPORT);
  if (entry !== 'function') {
    throw new ImageMissingExportError(label, ENTRY_EXPORT, entry === undefined ? 'it is missing' : `it is a ${entry}`);
  }
  const init = exports.get(INIT_EXPORT);
  if (init !== undefined && init !== 'function') {
    throw new ImageMissingExportError(label, INIT_EXPORT, `it is a ${init}`);
  }

  const binaryen = await loadBinaryen();
  binaryen.setDebugInfo(true);
  let mod: BinaryenModule;
  try {
    mod = binaryen.readBinary(core);
  } catch (err) {
    throw new ImageInvalidError(label, `binaryen could not read it: ${(err as Error).message}`);
  }
  try {
    mod.setFeatures(v8Features(binaryen));
    const mem = checkMemory(mod, label);
    checkImportSignatures(binaryen, mod, label);
    checkEntrySignature(binaryen, mod, label, ENTRY_EXPORT);
    if (init) checkEntrySignature(binaryen, mod, label, INIT_EXPORT);
    checkDataSegments(mod, label);
    for (const e of exports.keys()) {
      if (e.startsWith(GLOBAL_EXPORT_PREFIX) || e.startsWith('asyncify_')) throw new ImageInvalidError(label, `it exports "${e}", a name the loader reserves`);
    }
    for (const name of RESERVED_NAMES) {
      if (hasFunctionOrGlobal(binaryen, mod, name)) {
        throw new ImageInvalidError(label, `it uses the name "${name}", which the loader reserves for safepoints`);
      }
    }
    // A start section (wasm-ld emits one to initialise shared memory) would
    // run inside instantiation, outside the scheduler; it becomes the first
    // entry the vCPU host calls instead, with the same effect.
    const entries: string[] = [];
    if (sections.hasStart) {
      if (exports.has(START_SECTION_EXPORT)) {
        throw new ImageInvalidError(label, `it exports "${START_SECTION_EXPORT}", a name the loader reserves`);
      }
      const startFn = binaryen.getFunctionInfo(mod.getStart()).name;
      mod.setStart(0 as never);
      mod.addFunctionExport(startFn, START_SECTION_EXPORT);
      entries.push(START_SECTION_EXPORT);
    }
    if (init) entries.push(INIT_EXPORT);
    entries.push(ENTRY_EXPORT);
    await addSafepoints(mod);
    if (!mod.validate()) throw new ImageInvalidError(label, 'safepoint instrumentation produced an invalid module');
    let out = mod.emitBinary();
    let capture: CaptureInfo;
    let data: DataSegment[] = [];
    try {
      capture = addCapturePoints(binaryen, mod, FLAGS);
      if (capture.saveable) {
        if (!mod.validate()) throw new Error('capture instrumentation produced an invalid module');
        out = mod.emitBinary();
        // Static data goes into a fresh domain's memory from the image, not by instantiation, which would write it again over a restored memory.
        const extracted = kind === 'core' ? extractActiveData(out) : undefined;
        if (!extracted) throw new Error('its data segments could not be separated from the module');
        for (const seg of extracted.segments) {
          if (seg.offset + seg.bytes.length > mem.initial * WASM_PAGE) {
            throw new ImageInvalidError(label, `a data segment at ${seg.offset} (${seg.bytes.length} bytes) does not fit its initial memory of ${mem.initial * WASM_PAGE} bytes`);
          }
        }
        out = extracted.bytes;
        data = extracted.segments;
      }
    } catch (err) {
      if (err instanceof WvError) throw err;
      data = [];
      // The guest still runs, from the module without capture points; it cannot be saved.
      const why = typeof err === 'object' && err !== null && !(err instanceof Error) ? (binaryen as unknown as { getExceptionMessage(e: unknown): string[] }).getExceptionMessage(err).join(': ') : (err as Error).message;
      capture = { saveable: false, why: `the loader could not make its stack capturable (${why})`, globals: [] };
    }
    const module = new WebAssembly.Module(bufferSource(out));
    // (errors below this point are ours, not the image's)
    return new GuestImage({
      id, label, module, bytes: out, minPages: mem.initial, maxPages: mem.max,
      hasInit: init !== undefined, entries, format: kind, capture, original: bytes, data,
    });
  } catch (err) {
    if (err instanceof WvError) throw err;
    // binaryen aborts with non-Error values on input it cannot handle.
    throw new ImageInvalidError(label, `the loader could not process it: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    mod.dispose();
  }
}

function checkMemory(mod: BinaryenModule, label: string): { initial: number; max: number } {
  const info = mod.getMemoryInfo(null as never) as { initial: number; max?: number; shared: boolean; is64: boolean };
  if (info.is64) throw new ImageMemoryShapeError(label, 'it is a 64-bit memory; the ABI uses 32-bit addresses');
  if (!info.shared) {
    throw new ImageMemoryShapeError(label, 'it is not shared; declare (import "env" "memory" (memory MIN MAX shared)), the kernel shares it with its backends');
  }
  return { initial: info.initial, max: info.max ?? 65536 };
}

function checkImportSignatures(binaryen: Binaryen, mod: BinaryenModule, label: string): void {
  for (let i = 0; i < mod.getNumFunctions(); i++) {
    const info = binaryen.getFunctionInfo(mod.getFunctionByIndex(i));
    if (!info.module) continue;
    const spec = ALLOWED.get(`${info.module}\u0000${info.base}`);
    if (!spec) throw new ImageForbiddenImportError(label, info.module, info.base ?? '', 'function');
    const params = binaryen.expandType(info.params).map((t) => typeName(binaryen, t));
    const results = binaryen.expandType(info.results).map((t) => typeName(binaryen, t));
    const want = `(${spec.params.join(', ')}) -> (${spec.results.join(', ')})`;
    const got = `(${params.join(', ')}) -> (${results.join(', ')})`;
    if (want !== got) {
      throw new ImageInvalidError(label, `import "${info.module}"."${info.base}" has type ${got}, the ABI says ${want}`);
    }
  }
}

function checkEntrySignature(binaryen: Binaryen, mod: BinaryenModule, label: string, name: string): void {
  const exp = binaryen.getExportInfo(mod.getExport(name));
  const fn = binaryen.getFunctionInfo(mod.getFunction(exp.value));
  if (binaryen.expandType(fn.params).length !== 0 || binaryen.expandType(fn.results).length !== 0) {
    throw new ImageMissingExportError(label, name, 'it must take no parameters and return nothing');
  }
}

function checkDataSegments(mod: BinaryenModule, label: string): void {
  const end = START_INFO_ADDR + START_INFO_SIZE;
  // binaryen.js has these at run time but not in its type declarations.
  const segs = mod as unknown as {
    getNumDataSegments(): number;
    getDataSegmentByIndex(i: number): number;
    getDataSegmentInfo(seg: number): { offset: number | null; data: ArrayBuffer; passive: boolean };
  };
  for (let i = 0; i < segs.getNumDataSegments(); i++) {
    const info = segs.getDataSegmentInfo(segs.getDataSegmentByIndex(i));
    if (info.passive || info.offset === null) continue;
    const start = info.offset >>> 0;
    const length = info.data.byteLength;
    if (length > 0 && start < end && start + length > START_INFO_ADDR) {
      throw new ImageStartPageOverlapError(label, start, length, end);
    }
  }
}

function hasFunctionOrGlobal(binaryen: Binaryen, mod: BinaryenModule, name: string): boolean {
  for (let i = 0; i < mod.getNumFunctions(); i++) {
    if (binaryen.getFunctionInfo(mod.getFunctionByIndex(i)).name === name) return true;
  }
  for (let i = 0; i < mod.getNumGlobals(); i++) {
    if (binaryen.getGlobalInfo(mod.getGlobalByIndex(i)).name === name) return true;
  }
  return false;
}

/** The Wasm features V8 ships (and so a guest may use); binaryen must not emit encodings beyond them. */
function typeName(binaryen: Binaryen, t: number): string {
  switch (t) {
    case binaryen.i32: return 'i32';
    case binaryen.i64: return 'i64';
    case binaryen.f32: return 'f32';
    case binaryen.f64: return 'f64';
    case binaryen.v128: return 'v128';
    default: return `type#${t}`;
  }
}
