/**
 * CPU figures: safepoint overhead (the same guest, instrumented by the
 * loader vs as compiled, both run directly on this thread), and guest code
 * speed (the cpubench guest in a domain vs the same C compiled natively).
 */
import { readFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../runtime/index.ts';
import { guestPath } from '../runtime/guests.ts';
import { FLAGS_NAME, SAFEPOINT_MODULE, SAFEPOINT_NAME } from '../runtime/loader/instrument.ts';
import { writeStartInfo } from '../kernel/start-info.ts';

export interface CpuFigure { name: string; value: number; unit: string; baseline?: number; baselineName?: string; baselineUnit?: string; ratio?: number; note?: string }

const KERNELS = ['fib', 'sieve', 'matmul'] as const;
const STOP = new Error('poweroff');

/** Run a cpubench module directly (no kernel): returns the fastest run's ns as the guest measured it. */
export function runDirect(bytes: Uint8Array, cmdline: string, instrumented: boolean): number {
  const module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  const memory = new WebAssembly.Memory({ initial: 256, maximum: 1024, shared: true });
  const cmd = new TextEncoder().encode(cmdline);
  writeStartInfo(new Uint8Array(memory.buffer), 0, { domid: 1, privileged: false, memoryBytes: 64 << 20, createdNs: 0n, cmdline: cmd });
  let out = '';
  const hc = 'wasmvisor:hypercall/';
  const imports: WebAssembly.Imports = {
    env: { memory },
    [`${hc}console@0.1.0`]: { write: (p: number, l: number) => { out += new TextDecoder().decode(new Uint8Array(memory.buffer).slice(p, p + l)); return l; } },
    [`${hc}start-info@0.1.0`]: { cmdline: (p: number, cap: number) => { new Uint8Array(memory.buffer).set(cmd.subarray(0, cap), p); return cmd.length; } },
    [`${hc}time@0.1.0`]: { 'monotonic-now': () => BigInt(Math.round(performance.now() * 1e6)) },
    [`${hc}sched@0.1.0`]: { shutdown: () => { throw STOP; } },
  };
  if (instrumented) imports[SAFEPOINT_MODULE] = { [SAFEPOINT_NAME]: () => 0, [FLAGS_NAME]: new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }) };
  const inst = new WebAssembly.Instance(module, imports);
  const exports = inst.exports as Record<string, () => void>;
  try {
    for (const name of ['wv$start', '_initialize']) exports[name]?.();
    exports.start!();
  } catch (err) {
    if (err !== STOP) throw err;
  }
  return Number(/ns (\d+)/.exec(out)?.[1]);
}

export async function cpuFigures(quick: boolean, log: (s: string) => void): Promise<CpuFigure[]> {
  const out: CpuFigure[] = [];
  let path: string;
  try { path = guestPath('cpubench'); } catch { log('cpu figures skipped: the cpubench guest needs clang and wasm-ld'); return out; }
  const repeat = quick ? 3 : 10;
  const original = readFileSync(path);
  const hv = new Hypervisor({ cpus: 1 });
  try {
    const image = await hv.loadImage(path);
    log(`safepoint overhead and guest code speed: 3 kernels, best of ${repeat}`);
    const cc = spawnSync('clang', ['--version']).status === 0;
    const native = join(tmpdir(), `wv-native-cpubench-${process.pid}`);
    if (cc) {
      const src = fileURLToPath(new URL('./native-cpubench.c', import.meta.url));
      const r = spawnSync('clang', ['-O2', '-o', native, src], { encoding: 'utf8' });
      if (r.status !== 0) log(`native build failed: ${r.stderr}`);
    }
    for (const [k, kernel] of KERNELS.entries()) {
      const cmdline = `kernel=${kernel} repeat=${repeat}`;
      const plain = runDirect(original, cmdline, false);
      const rewritten = runDirect(image.bytes, cmdline, true);
      out.push({ name: `safepoint overhead, ${kernel}`, value: (rewritten / plain - 1) * 100, unit: '%', baseline: plain / 1e6, baselineName: 'the uninstrumented module', baselineUnit: 'ms', ratio: rewritten / plain, note: 'target < 5 %' });
      const dom = await hv.createDomain({ image, memory: 64, cmdline });
      await dom.waitForExit();
      const inDomain = Number(/ns (\d+)/.exec(dom.consoleText())?.[1]);
      if (cc && existsSync(native)) {
        const r = spawnSync(native, [String(k), String(repeat)], { encoding: 'utf8' });
        const nat = Number(/ns (\d+)/.exec(r.stdout)?.[1]);
        out.push({ name: `guest code speed, ${kernel}`, value: inDomain / 1e6, unit: 'ms', baseline: nat / 1e6, baselineName: 'the same C, native clang -O2', ratio: inDomain / nat, note: 'target <= 1.5x native' });
      }
    }
  } finally {
    await hv.close();
  }
  return out;
}
