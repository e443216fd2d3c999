/**
 * Lazy access to binaryen's JS build (it is large and has top-level await,
 * so it is loaded on first use, once per process; it holds no state of ours).
 */
import type binaryenNs from 'binaryen';

export type Binaryen = typeof binaryenNs;
export type BinaryenModule = InstanceType<Binaryen['Module']>;

let loading: Promise<Binaryen> | undefined;

export function loadBinaryen(): Promise<Binaryen> {
  loading ??= import('binaryen').then((m) => m.default);
  return loading;
}

/** The Wasm features V8 (our engine) runs, which the loader lets guests use. */
export function v8Features(binaryen: Binaryen): number {
  const f = binaryen.Features;
  return f.MVP | f.Atomics | f.MutableGlobals | f.NontrappingFPToInt | f.SIMD128 | f.BulkMemory | f.SignExt
    | f.ExceptionHandling | f.TailCall | f.ReferenceTypes | f.Multivalue | f.GC | f.Memory64 | f.RelaxedSIMD
    | f.ExtendedConst | f.MultiMemory | f.BulkMemoryOpt | f.CallIndirectOverlong;
}
