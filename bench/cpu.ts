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
import { spinner, wat } from '../test/helpers/wat.ts';

/** A guest that sleeps 2 ms `n` times and stores how late each wake-up was (ns, u32) at 65536 + 4i. */
function lateness(n: number): Uint8Array<ArrayBuffer> {
  return wat(`(module (import "env" "memory" (memory 8 256 shared))
    (import "wasmvisor:hypercall/time@0.1.0" "monotonic-now" (func $now (result i64)))
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (import "wasmvisor:hypercall/sched@0.1.0" "shutdown" (func $shutdown (param i32) (result i32)))
    (func (export "start") (local $i i32) (local $due i64)
      (loop $l
        (local.set $due (i64.add (call $now) (i64.const 2000000)))
        (drop (call $block (local.get $due)))
        (i32.store (i32.add (i32.const 65536) (i32.shl (local.get $i) (i32.const 2)))
          (i32.wrap_i64 (i64.sub (call $now) (local.get $due))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const ${n}))))
      (drop (call $shutdown (i32.const 0)))))`);
}

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

export function quantiles(xs: number[]): { median: number; p99: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, p99: s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]! };
}

/**
 * Pause latency (request -> the vCPU host confirms the spinning domain is
 * parked) and preemption latency (a blocked domain's timer fires -> it runs,
 * while another domain spins on the same CPU), in ms.
 */
async function latencies(samples: number): Promise<{ pause: number[]; preempt: number[]; destroy: number[] }> {
  const hv = new Hypervisor({ cpus: 1 });
  const pause: number[] = [];
  const preempt: number[] = [];
  const destroy: number[] = [];
  try {
    const spin = await hv.createDomain({ image: spinner(), memory: 1 });
    while (spin.cpuTimeNs < 20e6) await new Promise((r) => setTimeout(r, 5));
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      await spin.pause();
      pause.push(performance.now() - t0);
      await spin.unpause();
      await new Promise((r) => setTimeout(r, 3));
    }
    // A guest that sleeps 2 ms at a time and records how late it woke (ns), `samples` times.
    const sleeper = await hv.createDomain({ image: lateness(samples), memory: 1, onPoweroff: 'preserve' });
    await sleeper.waitForExit();
    const late = new Uint32Array(sleeper.memory!.buffer, 65536, samples);
    for (const ns of late) preempt.push(ns / 1e6);
    for (let i = 0; i < Math.min(samples, 50); i++) {
      const d = await hv.createDomain({ image: spinner(), memory: 1 });
      while (d.cpuTimeNs < 2e6) await new Promise((r) => setTimeout(r, 2));
      const t0 = performance.now();
      await d.destroy();
      destroy.push(performance.now() - t0);
    }
    return { pause, preempt, destroy };
  } finally {
    await hv.close();
  }
}

export async function cpuFigures(quick: boolean, log: (s: string) => void): Promise<CpuFigure[]> {
  const out: CpuFigure[] = [];
  log('pause, preemption and destroy latency beside a spinning domain');
  const lat = await latencies(quick ? 50 : 200);
  for (const [name, xs, target] of [['pause latency', lat.pause, '< 10 ms'], ['preemption latency (timer wake-up beside a spinner)', lat.preempt, 'within a slice (10 ms)'], ['destroy latency', lat.destroy, '< 50 ms']] as const) {
    const q = quantiles(xs);
    out.push({ name: `${name}, median`, value: q.median, unit: 'ms', note: `target ${target}` });
    out.push({ name: `${name}, p99`, value: q.p99, unit: 'ms' });
  }
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
