/**
 * `npm run bench`: wasmvisor's figures, each with a baseline measured in the
 * same run (the machines are shared and noisy, so ratios are what compare).
 * `npm run bench -- --json` prints JSON only; `--quick` uses smaller counts;
 * `--only=toolstack,cpu` runs some sections (creation, density, max, pv, cpu, toolstack, blk, net, save, iso).
 */
import { Hypervisor } from '../runtime/index.ts';
import type { Domain } from '../runtime/index.ts';
import { printer, idler } from '../test/helpers/wat.ts';
import { pvFigures } from './pv.ts';
import { cpuFigures } from './cpu.ts';
import { toolstackFigures } from './toolstack.ts';
import { blkFigures } from './blk.ts';
import { netFigures } from './net.ts';
import { saveFigures } from './save.ts';
import { isoFigures } from './iso.ts';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

interface Figure { name: string; value: number; unit: string; baseline?: number; baselineName?: string; baselineUnit?: string; ratio?: number; note?: string }
const figures: Figure[] = [];
const log = (s: string): void => { if (!json) process.stderr.write(`${s}\n`); };

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

const rss = (): number => process.memoryUsage.rss();
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) {
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
};

async function creation(): Promise<void> {
  const N = quick ? 50 : 200;
  log(`domain creation: ${N} creates, create -> first console byte`);
  const hv = new Hypervisor({ memoryBytes: 8 * GiB });
  const image = await hv.loadImage(printer('x'));
  const times: number[] = [];
  for (let i = 0; i < N + 10; i++) {
    const t0 = performance.now();
    let dom: Domain | undefined;
    const first = new Promise<void>((resolve) => {
      const off = hv.kernel.events.on('console', ({ domain }) => { if (domain.id === dom?.id || dom === undefined) { off(); resolve(); } });
    });
    dom = await hv.createDomain({ image, memory: 1 });
    await first;
    if (i >= 10) times.push(performance.now() - t0);
    await dom.waitForExit();
  }
  await hv.close();
  // Baseline: the same module instantiated and run directly on this thread (no kernel, no thread hop).
  const raw: number[] = [];
  const plain = new WebAssembly.Module(printer('x'));
  for (let i = 0; i < N + 10; i++) {
    const t0 = performance.now();
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true });
    let wrote = false;
    const inst = new WebAssembly.Instance(plain, {
      env: { memory },
      'wasmvisor:hypercall/console@0.1.0': { write: () => { wrote = true; return 1; } },
      'wasmvisor:hypercall/sched@0.1.0': { shutdown: () => 0 },
    });
    (inst.exports.start as () => void)();
    if (wrote && i >= 10) raw.push(performance.now() - t0);
  }
  const med = quantile(times, 0.5);
  figures.push({ name: 'domain creation, median', value: med, unit: 'ms', baseline: quantile(raw, 0.5), baselineName: 'raw instantiate+run on one thread', ratio: med / quantile(raw, 0.5) });
  figures.push({ name: 'domain creation, p99', value: quantile(times, 0.99), unit: 'ms', note: 'target < 1 ms median' });
}

async function density(): Promise<void> {
  const N = quick ? 1000 : 5000;
  log(`density: ${N} idle domains, host RSS per domain`);
  // Baseline first, while the heap is quiet: bare instances, each with its own shared memory, on one thread.
  await settle();
  const before0 = rss();
  const plain = new WebAssembly.Module(idler());
  const keep: WebAssembly.Instance[] = [];
  for (let i = 0; i < N; i++) {
    keep.push(new WebAssembly.Instance(plain, {
      env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true }) },
      'wasmvisor:hypercall/console@0.1.0': { write: () => 0 },
      'wasmvisor:hypercall/sched@0.1.0': { block: () => 0 },
    }));
  }
  await settle();
  const rawPer = (rss() - before0) / N;
  const before = rss();
  const hv = new Hypervisor({ memoryBytes: 24 * GiB, dom0MemoryBytes: GiB });
  const image = await hv.loadImage(idler());
  const doms: Domain[] = [];
  for (let i = 0; i < N; i++) doms.push(await hv.createDomain({ image, memory: 1 }));
  while (doms.some((d) => d.phase !== 'blocked')) await new Promise((r) => setTimeout(r, 20));
  await settle();
  const perDomain = (rss() - before) / N;
  await hv.close();
  keep.length = 0;
  figures.push({ name: 'host RSS per idle domain', value: perDomain / 1024, unit: 'KiB', baseline: rawPer / 1024, baselineName: 'bare instance + shared memory', ratio: perDomain / rawPer });
  figures.push({ name: 'idle domains per GiB of host RSS', value: Math.floor(GiB / perDomain), unit: 'domains', note: 'target: 10,000 in 24 GiB' });
}

async function maxDomains(): Promise<void> {
  const LIMIT = quick ? 2000 : 20_000;
  log(`most idle domains in one hypervisor (stop at ${LIMIT})`);
  const hv = new Hypervisor({ memoryBytes: 24 * GiB, dom0MemoryBytes: GiB });
  const image = await hv.loadImage(idler());
  let n = 0;
  let stop = 'reached the limit';
  const t0 = performance.now();
  try {
    for (; n < LIMIT; n++) {
      await hv.createDomain({ image, memory: 1 });
      if (n % 2000 === 1999) log(`  ${n + 1} domains, RSS ${(rss() / MiB).toFixed(0)} MiB`);
    }
  } catch (err) {
    stop = `create ${n + 1} failed: ${(err as Error).message}`;
  }
  const doms = hv.list().filter((d) => d.id !== 0);
  while (hv.list().some((d) => d.id !== 0 && d.phase !== 'blocked')) await new Promise((r) => setTimeout(r, 50));
  const secs = (performance.now() - t0) / 1000;
  figures.push({ name: 'idle domains held by one hypervisor', value: doms.length, unit: 'domains', note: `${stop}; ${secs.toFixed(1)} s to create and settle; RSS ${(rss() / MiB).toFixed(0)} MiB` });
  await hv.close();
}

// `--only=NAME[,NAME]` runs some sections: creation, density, max, pv, cpu, toolstack, blk, net, save, iso.
const want = (name: string): boolean => only === undefined || only.split(',').includes(name);
if (want('creation')) await creation();
if (want('density')) await density();
if (want('max')) await maxDomains();
if (want('pv')) figures.push(...(await pvFigures(quick, log)));
if (want('cpu')) figures.push(...(await cpuFigures(quick, log)));
if (want('toolstack')) figures.push(...(await toolstackFigures(quick, log)));
if (want('blk')) figures.push(...(await blkFigures(quick, log)));
if (want('net')) figures.push(...(await netFigures(quick, log)));
if (want('save')) figures.push(...(await saveFigures(quick, log)));
if (want('iso')) figures.push(...(await isoFigures(quick, log)));

if (json) {
  process.stdout.write(`${JSON.stringify({ node: process.version, cpus: (await import('node:os')).availableParallelism(), figures }, null, 2)}\n`);
} else {
  const rows = figures.map((f) => [f.name, `${f.value.toFixed(f.unit === 'ms' ? 3 : f.unit === 'MiB/s' ? 1 : f.unit === 'KiB' || f.unit === 'µs' || f.unit === '%' ? 1 : f.unit === 'GB/s' ? 2 : 0)} ${f.unit}`, f.ratio !== undefined ? `${f.ratio.toFixed(2)}x ${f.baselineName} (${f.baseline!.toFixed(3)} ${f.baselineUnit ?? f.unit})` : '', f.note ?? '']);
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(`${r[0]!.padEnd(w[0]!)}  ${r[1]!.padStart(w[1]!)}  ${r[2]!.padEnd(w[2]!)}  ${r[3]}\n`);
}

