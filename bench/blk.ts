/**
 * Block device figures: sequential 1 MiB reads and writes and random 4 KiB
 * reads through a VBD (the backend serving a ring, driven by HostBlkFront
 * over a domain's memory and grants), each against the same I/O done
 * directly by Node on the same file in the same run.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PvTable, PAGE_SIZE } from '../kernel/pv-table.ts';
import { GrantTables, viewMemories } from '../kernel/grant.ts';
import { MemoryRingPage } from '../kernel/ring.ts';
import { BackingStore, SECTOR_SIZE } from '../devices/blk/backing.ts';
import { BlkBackend } from '../devices/blk/backend.ts';
import { FRONT_PAGES, HostBlkFront, MAX_REQUEST_BYTES } from '../devices/blk/host-front.ts';
import type { CpuFigure } from './cpu.ts';

const MiB = 1024 * 1024;

export async function blkFigures(quick: boolean, log: (s: string) => void): Promise<CpuFigure[]> {
  const size = (quick ? 32 : 128) * MiB;
  const randomOps = quick ? 5000 : 20000;
  const dir = mkdtempSync(join(tmpdir(), 'wv-blkbench-'));
  const path = join(dir, 'disk.img');
  writeFileSync(path, new Uint8Array(size).fill(7));
  const table = new PvTable(15, 1);
  table.claim(0, true);
  table.claim(1, false);
  const mem = new Uint8Array(new SharedArrayBuffer(FRONT_PAGES * PAGE_SIZE));
  const grants = new GrantTables(table, viewMemories((d) => (d === 1 ? mem : undefined)));
  const front = new HostBlkFront(grants, 1, 0, mem, 0);
  const ring = grants.map(0, 1, front.ringGref, true);
  if (typeof ring === 'number') throw new Error(`ring map ${ring}`);
  const store = await BackingStore.open(path, false);
  const back = new BlkBackend({ grants, self: 0, domid: 1, page: new MemoryRingPage(ring.bytes, 0), store, notify: () => front.onNotify() });
  front.notifyBackend = () => back.kick();
  const fh = await open(path, 'r+');
  const out: CpuFigure[] = [];
  const buf = new Uint8Array(MiB);
  try {
    const time = async (fn: () => Promise<void>): Promise<number> => { const t0 = performance.now(); await fn(); return performance.now() - t0; };
    /** 1 MiB through the VBD: as many ring requests as it takes, all in flight. */
    const vbdMiB = async (op: 'read' | 'write', at: number): Promise<void> => {
      const parts: Promise<number>[] = [];
      for (let off = 0; off < MiB; off += MAX_REQUEST_BYTES) {
        const len = Math.min(MAX_REQUEST_BYTES, MiB - off);
        const sector = BigInt((at + off) / SECTOR_SIZE);
        parts.push(op === 'read' ? front.read(sector, buf.subarray(off, off + len)) : front.write(sector, buf.subarray(off, off + len)));
      }
      const st = await Promise.all(parts);
      if (st.some((s) => s !== 0)) throw new Error(`VBD ${op} failed`);
    };
    log(`block: sequential 1 MiB reads and writes over ${size / MiB} MiB, random 4 KiB reads (${randomOps}, 16 in flight)`);
    // Warm both paths once (page cache, JIT).
    for (let at = 0; at < size; at += MiB) await fh.read(buf, 0, MiB, at);
    for (let at = 0; at < 8 * MiB; at += MiB) await vbdMiB('read', at);
    const best = async (fn: () => Promise<void>): Promise<number> => Math.min(await time(fn), await time(fn), await time(fn));

    const rawRead = await best(async () => { for (let at = 0; at < size; at += MiB) await fh.read(buf, 0, MiB, at); });
    const vbdRead = await best(async () => { for (let at = 0; at < size; at += MiB) await vbdMiB('read', at); });
    out.push({ name: 'VBD sequential read, 1 MiB requests', value: size / MiB / (vbdRead / 1000), unit: 'MiB/s', baseline: size / MiB / (rawRead / 1000), baselineName: 'Node reading the same file directly', baselineUnit: 'MiB/s', ratio: rawRead / vbdRead, note: 'target >= 0.8' });

    const rawWrite = await best(async () => { for (let at = 0; at < size; at += MiB) await fh.write(buf, 0, MiB, at); await fh.datasync(); });
    const vbdWrite = await best(async () => { for (let at = 0; at < size; at += MiB) await vbdMiB('write', at); if (await front.flush() !== 0) throw new Error('flush failed'); });
    out.push({ name: 'VBD sequential write + flush, 1 MiB requests', value: size / MiB / (vbdWrite / 1000), unit: 'MiB/s', baseline: size / MiB / (rawWrite / 1000), baselineName: 'Node writing the same file directly, then fdatasync', baselineUnit: 'MiB/s', ratio: rawWrite / vbdWrite, note: 'target >= 0.8' });

    let seed = 12345;
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
    const sectors = size / 4096;
    const small = Array.from({ length: 16 }, () => new Uint8Array(4096));
    const randomRun = async (one: (b: Uint8Array, at: number) => Promise<unknown>): Promise<number> => time(async () => {
      let issued = 0;
      await Promise.all(small.map(async (b) => { while (issued < randomOps) { issued++; await one(b, (rnd() % sectors) * 4096); } }));
    });
    const rawRand = Math.min(await randomRun((b, at) => fh.read(b, 0, 4096, at)), await randomRun((b, at) => fh.read(b, 0, 4096, at)));
    const vbdRand = Math.min(await randomRun((b, at) => front.read(BigInt(at / SECTOR_SIZE), b)), await randomRun((b, at) => front.read(BigInt(at / SECTOR_SIZE), b)));
    out.push({ name: 'VBD random 4 KiB reads, 16 in flight', value: randomOps / (vbdRand / 1000), unit: 'IOPS', baseline: randomOps / (rawRand / 1000), baselineName: 'Node reading the same file directly, 16 in flight', baselineUnit: 'IOPS', ratio: rawRand / vbdRand, note: 'target >= 0.5' });
  } finally {
    await fh.close();
    await back.close();
    await store.close();
    ring.release();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}
