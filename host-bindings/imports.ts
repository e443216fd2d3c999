/**
 * The type of the object a host hands to WebAssembly as a guest's hypercall
 * imports: keyed by core import module (`wasmvisor:hypercall/console@0.1.0`,
 * ...) and core field name (the WIT function name, kebab-case: `domain-id`),
 * each a function with the call's core signature (i32 is `number`, i64 is
 * `bigint`).
 *
 * The type is derived from host-bindings/generated/ (jco's declarations for
 * the imports of WIT world `guest`, made by `npm run gen`), so it follows the
 * WIT: a changed signature changes this type and breaks the code that
 * implements it, and the checks below break when the WIT leaves what the core
 * ABI can carry or disagrees with host-bindings/abi.ts. Type-only: this file
 * emits nothing at run time.
 */
import type { ImportObject } from './generated/guest.js';
import type { ABI_PACKAGE, ABI_VERSION, HypercallSpec } from './abi.ts';

/** `domainId` -> `domain-id`: jco's camelCase name back to the WIT (core import field) name. */
type KebabCase<S extends string> = S extends `${infer C}${infer Rest}`
  ? `${C extends Lowercase<C> ? C : `-${Lowercase<C>}`}${KebabCase<Rest>}`
  : S;

/** The host-side implementation of a guest's hypercall imports. */
export type HypercallImports = {
  readonly [M in keyof ImportObject]: {
    readonly [F in keyof ImportObject[M] as F extends string ? KebabCase<F> : never]: ImportObject[M][F];
  };
};

/** A core import module name, e.g. `wasmvisor:hypercall/console@0.1.0`. */
export type HypercallModule = keyof HypercallImports;

/** The host function for field `F` of module `M`, e.g. `HypercallFunction<'wasmvisor:hypercall/time@0.1.0', 'set-timer'>`. */
export type HypercallFunction<M extends HypercallModule, F extends keyof HypercallImports[M]> = HypercallImports[M][F];

/**
 * As HypercallImports, but each import may instead be a `Wrapper` around the
 * function, as a host passes a call that suspends the guest: for JSPI,
 * `HostHypercallImports<WebAssembly.Suspending>`.
 */
export type HostHypercallImports<Wrapper> = {
  readonly [M in HypercallModule]: {
    readonly [F in keyof HypercallImports[M]]: HypercallImports[M][F] | Wrapper;
  };
};

// ---------------------------------------------------------------------------
// Compile-time checks: `npx tsc --noEmit -p .` fails here when they do not hold.

type Assert<T extends true> = T;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** A core Wasm value as JavaScript sees it: i32 is a number, i64 a bigint. */
type CoreValue = number | bigint;
/** True when every hypercall takes and returns core values only (no strings, lists, records...). */
type AllCore<T> = {
  [M in keyof T]: {
    [F in keyof T[M]]: T[M][F] extends (...args: infer P) => infer R
      ? P extends readonly CoreValue[]
        ? [R] extends [CoreValue]
          ? true
          : false
        : false
      : false;
  }[keyof T[M]];
}[keyof T];

/**
 * Every hypercall's parameters and result are plain integers: the ABI passes
 * nothing the canonical ABI would lower to pointers into guest memory.
 */
export type CheckCoreValuesOnly = Assert<Same<AllCore<HypercallImports>, true>>;

/** The import modules are exactly those host-bindings/abi.ts names (`importModule(iface)`). */
export type CheckModules = Assert<
  Same<HypercallModule, `${typeof ABI_PACKAGE}/${HypercallSpec['iface']}@${typeof ABI_VERSION}`>
>;
