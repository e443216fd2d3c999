/**
 * Compile an AssemblyScript guest in memory with the reference guests' flags
 * (scripts/build-guests.ts), for tests whose guests are not shipped: hostile
 * frontends, checkers.
 */
import asc from 'assemblyscript/asc';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import vm from 'node:vm';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** `file` is relative to the repository root. */
export async function compileAs(file: string, optimize = '-O2'): Promise<Uint8Array<ArrayBuffer>> {
  const outputs = new Map<string, Uint8Array>();
  const stderr: string[] = [];
  const { error } = await asc.main([
    file, '--outFile', 'out.wasm',
    '--importMemory', '--sharedMemory', '--enable', 'threads',
    '--initialMemory', '1', '--maximumMemory', '16384', '--memoryBase', '4096',
    '--runtime', 'stub', '--exportStart', '_initialize',
    '--use', 'abort=wasm-guests/sdk/index/abort', '--debug', optimize,
  ], {
    stdout: { write: () => true } as never,
    stderr: { write: (s: string | Uint8Array) => { stderr.push(String(s)); return true; } } as never,
    readFile: (f: string, base: string) => { const p = join(root, base, f); return existsSync(p) ? readFileSync(p, 'utf8') : null; },
    writeFile: (f: string, data: Uint8Array | string) => { outputs.set(f, typeof data === 'string' ? new TextEncoder().encode(data) : data); },
    listFiles: (d: string, base: string) => { const p = join(root, base, d); return existsSync(p) ? readdirSync(p).filter((x) => x.endsWith('.ts')) : null; },
  } as never);
  if (error) throw new Error(`${error.message}\n${stderr.join('')}`);
  const wasm = outputs.get('out.wasm');
  if (!wasm) throw new Error(`no output: ${[...outputs.keys()].join(', ')}`);
  return new Uint8Array(wasm) as Uint8Array<ArrayBuffer>;
}

/**
 * Instantiate a test module with `memory` as `env.memory`, `test.*` imports
 * from `host`, console writes collected (and shown if the module calls
 * anything else, which throws), then run its `_initialize`.
 */
export function instantiateTestModule(module: WebAssembly.Module, memory: WebAssembly.Memory, host: Record<string, (...args: never[]) => unknown>): WebAssembly.Exports {
  const console: string[] = [];
  const imports: Record<string, Record<string, unknown>> = { env: { memory } };
  for (const i of WebAssembly.Module.imports(module)) {
    if (i.kind !== 'function') continue;
    const fn = i.module === 'test' && host[i.name] ? host[i.name]
      : i.name === 'write' && i.module.includes('/console@')
        ? (ptr: number, len: number) => { console.push(Buffer.from(new Uint8Array(memory.buffer, ptr, len)).toString()); return len; }
        : () => { throw new Error(`the module called ${i.module}.${i.name}: ${console.join('')}`); };
    (imports[i.module] ??= {})[i.name] = fn;
  }
  const instance = new WebAssembly.Instance(module, imports as WebAssembly.Imports);
  (instance.exports._initialize as () => void)();
  return instance.exports;
}

const boundedContext = vm.createContext({ f: undefined as unknown });
const runF = new vm.Script('f()');
let inBounded = false;

/**
 * Run `f` (a call into a test module) so that a loop that never returns
 * becomes an exception after `ms`. Calls made inside a bounded call share its
 * time (a vm timeout costs a watchdog thread, too much for every call).
 */
export function bounded<T>(f: () => T, ms: number): T {
  if (inBounded) return f();
  (boundedContext as { f: unknown }).f = f;
  inBounded = true;
  try {
    return runF.runInContext(boundedContext, { timeout: ms }) as T;
  } finally {
    inBounded = false;
  }
}
