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
