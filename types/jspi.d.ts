// JavaScript Promise Integration (JSPI), shipped in V8 and so in the pinned
// Node, is not yet in TypeScript's DOM library.
declare namespace WebAssembly {
  /** Wraps an async host function so that a Wasm caller suspends until its promise settles. */
  class Suspending {
    constructor(fn: (...args: never[]) => unknown);
  }
  /** Wraps a Wasm export so that calling it returns a promise and it may suspend. */
  function promising<F extends (...args: never[]) => unknown>(fn: F): (...args: Parameters<F>) => Promise<ReturnType<F>>;
}
