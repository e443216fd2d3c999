/**
 * Save file throughput, for docs/save-format.md:
 *   node runtime/save/format.bench.ts [--codecs]
 * Writes and reads 16 MiB and 256 MiB guest memories of realistic content
 * and compares with writing/reading the same bytes with plain fs in the same
 * run. With --codecs, also compares the codecs on the 256 MiB image.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SaveReader, SaveWriter, type SaveCodec } from './format.ts';

const MiB = 1 << 20;
const PAGE = 4096;

/**
 * Guest memory as it looks after a while: 70% of pages never touched (zero),
 * 10% text (console buffers, strings), 10% heap (small integers and
 * pointers), 10% high-entropy (keys, compressed data, hashes).
 */
function guestMemory(bytes: number): Uint8Array {
  const mem = new Uint8Array(new SharedArrayBuffer(bytes));
  const dv = new DataView(mem.buffer);
  let s = 0x9e3779b9;
  const rnd = (): number => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
  const words = 'the quick domain ticker event channel grant table ring request response page memory console block net'.split(' ');
  for (let p = 0; p < bytes / PAGE; p++) {
    const kind = p % 10;
    const base = p * PAGE;
    if (kind === 1) {
      let o = 0;
      let text = '';
      while (text.length < PAGE) text += `${words[rnd() % words.length]} ${o++} `;
      mem.set(Buffer.from(text.slice(0, PAGE)), base);
    } else if (kind === 2) {
      for (let i = 0; i < PAGE; i += 4) dv.setUint32(base + i, rnd() % 4 === 0 ? 0x10000 + (rnd() % 4096) * 8 : rnd() % 256, true);
    } else if (kind === 3) {
      for (let i = 0; i < PAGE; i += 4) dv.setUint32(base + i, rnd(), true);
    }
  }
  return mem;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, (performance.now() - t0) / 1000];
}

async function plainWrite(path: string, mem: Uint8Array): Promise<void> {
  const fh = await open(path, 'w');
  try {
    let o = 0;
    while (o < mem.byteLength) o += (await fh.write(mem, o, Math.min(16 * MiB, mem.byteLength - o), o)).bytesWritten;
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Reads a raw image back into a memory of its size, 16 MiB at a time (what a restore does with guest memory). */
async function plainRead(path: string, size: number): Promise<void> {
  const mem = new Uint8Array(new SharedArrayBuffer(size));
  const fh = await open(path, 'r');
  try {
    let o = 0;
    while (o < size) o += (await fh.read(mem, o, Math.min(16 * MiB, size - o), o)).bytesRead;
  } finally {
    await fh.close();
  }
}

/** Restores into a memory of the section's size, as a restore would. */
async function restore(path: string): Promise<number> {
  const r = await SaveReader.open(path);
  const mem = new Uint8Array(new SharedArrayBuffer(r.section('memory')!.rawLength));
  const n = await r.readInto('memory', mem, { zeroed: true });
  await r.close();
  return n;
}

/** One warm-up pass, then the best of three (the machine is shared; the best run is the least disturbed). */
async function best(fn: () => Promise<unknown>): Promise<number> {
  await fn();
  let b = Infinity;
  for (let i = 0; i < 3; i++) b = Math.min(b, (await timed(fn))[1]);
  return b;
}

async function save(path: string, mem: Uint8Array, codec: SaveCodec, parallelism?: number): Promise<void> {
  const w = await SaveWriter.create(path, { codec, ...(parallelism ? { parallelism } : {}) });
  await w.addJson('domain', { name: 'bench', memoryBytes: mem.byteLength });
  await w.addSection('memory', mem);
  await w.commit();
}

const dir = mkdtempSync(join(tmpdir(), 'wv-save-bench-'));
const rate = (bytes: number, s: number): string => (bytes / MiB / s).toFixed(0);
try {
  console.log(`node ${process.version}`);
  console.log('| memory | save MiB/s | fs write MiB/s | ratio | restore MiB/s | fs read MiB/s | ratio | file size |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const size of [16 * MiB, 256 * MiB]) {
    const mem = guestMemory(size);
    const raw = join(dir, 'raw.bin');
    const sv = join(dir, 'mem.save');
    const fw = await best(() => plainWrite(raw, mem));
    const fr = await best(() => plainRead(raw, size));
    const sw = await best(() => save(sv, mem, 'zstd'));
    const sr = await best(() => restore(sv));
    const fileSize = statSync(sv).size;
    console.log(`| ${size / MiB} MiB | ${rate(size, sw)} | ${rate(size, fw)} | ${(fw / sw).toFixed(2)} | ${rate(size, sr)} | ${rate(size, fr)} | ${(fr / sr).toFixed(2)} | ${(fileSize / MiB).toFixed(1)} MiB (${(100 * fileSize / size).toFixed(1)}%) |`);
  }
  if (process.argv.includes('--codecs')) {
    const mem = guestMemory(256 * MiB);
    console.log('\n| codec (256 MiB) | save MiB/s | restore MiB/s | file size |');
    console.log('| --- | --- | --- | --- |');
    for (const [codec, par] of [['zstd', 4], ['zstd', 1], ['deflate', 4], ['brotli', 4], ['none', 4]] as [SaveCodec, number][]) {
      const sv = join(dir, `${codec}.save`);
      const w = await best(() => save(sv, mem, codec, par));
      const r = await best(() => restore(sv));
      console.log(`| ${codec}${par === 1 ? ' (1 in flight)' : ''} | ${rate(mem.byteLength, w)} | ${rate(mem.byteLength, r)} | ${(statSync(sv).size / MiB).toFixed(1)} MiB |`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
