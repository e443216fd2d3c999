/**
 * Block device figures: sequential 1 MiB reads and writes and random 4 KiB
 * reads through a VBD (the backend serving a ring, driven by HostBlkFront
 * over a domain's memory and grants), each against the same I/O done
 * directly by Node on the same file in the same run.
 *
 * Like with like: both sides issue the same requests (1 MiB, one at a time,
 * for sequential; 4 KiB at the same queue depth for random), each into its
 * own memory (Node into a Buffer, the VBD into the domain's pages: the
 * frontend reads in place, it does not copy the data out), through the same
 * Node API (the callback fs calls the backing store uses), sharing libuv's
 * thread pool. Rounds alternate between the two sides and the ratio is the
 * median of each round's ratio, so a burst of noise on a shared machine
 * hits one round, not one side.
 */
import { mkdtempSync, rmSync, writeFileSync, read, write, fdatasync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PvTable, PAGE_SIZE } from '../kernel/pv-table.ts';
import { GrantTables, viewMemories } from '../kernel/grant.ts';
import { MemoryRingPage } from '../kernel/ring.ts';
import { BackingStore, SECTOR_SIZE } from '../devices/blk/backing.ts';
import { BlkBackend } from '../devices/blk/backend.ts';
import { Op } from '../devices/blk/protocol.ts';
import { HostBlkFront, frontPages } from '../devices/blk/host-front.ts';
import type { CpuFigure } from './cpu.ts';

const MiB = 1024 * 1024;
/** Random reads in flight, on both sides. */
const RANDOM_DEPTH = 16;
/** 1 MiB reads each side does before anything is timed. */
const WARM_REQUESTS = 1024;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function blkFigures(quick: boolean, log: (s: string) => void): Promise<CpuFigure[]> {
  const size = (quick ? 32 : 128) * MiB;
  const randomOps = quick ? 5000 : 20000;
  const rounds = quick ? 3 : 7;
  const dir = mkdtempSync(join(tmpdir(), 'wv-blkbench-'));
  const path = join(dir, 'disk.img');
  writeFileSync(path, new Uint8Array(size).fill(7));
  const table = new PvTable(15, 1);
  table.claim(0, true);
  table.claim(1, false);
  const mem = new Uint8Array(new SharedArrayBuffer(frontPages() * PAGE_SIZE));
  const grants = new GrantTables(table, viewMemories((d) => (d === 1 ? mem : undefined)));
  const front = new HostBlkFront(grants, 1, 0, mem, 0);
  const ring = grants.map(0, 1, front.ringGref, true);
  if (typeof ring === 'number') throw new Error(`ring map ${ring}`);
  const store = await BackingStore.open(path, false);
  // HostBlkFront grants its pages once: the backend keeps them held (persistent grants, as Linux's blkfront and blkback negotiate).
  const back = new BlkBackend({ grants, self: 0, domid: 1, page: new MemoryRingPage(ring.bytes, 0), store, notify: () => front.onNotify(), persistent: front.persistent });
  front.notifyBackend = () => back.kick();
  const fd = openSync(path, 'r+');
  const out: CpuFigure[] = [];
  const nodeRead = (b: Uint8Array, at: number): Promise<number> => new Promise((res, rej) => read(fd, b, 0, b.length, at, (e, n) => (e ? rej(e) : res(n))));
  const nodeWrite = (b: Uint8Array, at: number): Promise<number> => new Promise((res, rej) => write(fd, b, 0, b.length, at, (e, n) => (e ? rej(e) : res(n))));
  const nodeSync = (): Promise<void> => new Promise((res, rej) => fdatasync(fd, (e) => (e ? rej(e) : res())));
  const check = (status: number, what: string): void => { if (status !== 0) throw new Error(`VBD ${what} failed: status ${status}`); };
  const time = async (fn: () => Promise<void>): Promise<number> => { const t0 = performance.now(); await fn(); return performance.now() - t0; };
  /**
   * `rounds` pairs of runs, alternating which side goes first, after two
   * pairs that are not counted (warming each kind of request). Median times
   * and the median of the per-round ratios.
   */
  const paired = async (node: () => Promise<void>, vbd: () => Promise<void>): Promise<{ node: number; vbd: number; ratio: number }> => {
    const n: number[] = [];
    const v: number[] = [];
    for (let r = -2; r < rounds; r++) {
      const pair = r % 2 === 0 ? [await time(node), await time(vbd)] : [await time(vbd), await time(node)].reverse();
      if (r >= 0) { n.push(pair[0]!); v.push(pair[1]!); }
    }
    return { node: median(n), vbd: median(v), ratio: median(n.map((x, i) => x / v[i]!)) };
  };
  try {
    const buf = new Uint8Array(MiB);
    const lease = await front.lease(MiB);
    log(`block: sequential 1 MiB reads (${2 * size / MiB} MiB a round) and writes (${size / MiB} MiB + flush), one request at a time; random 4 KiB reads (${randomOps}, ${RANDOM_DEPTH} in flight); ${rounds} rounds each side; UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`);
    // Warm both paths (page cache, JIT): the VBD's takes some 600 requests to be fully compiled.
    for (let i = 0; i < WARM_REQUESTS; i++) await nodeRead(buf, (i * MiB) % size);
    for (let i = 0; i < WARM_REQUESTS; i++) check(await front.submit(Op.READ, BigInt(((i * MiB) % size) / SECTOR_SIZE), lease), 'read');

    const seqRead = await paired(
      async () => { for (let pass = 0; pass < 2; pass++) for (let at = 0; at < size; at += MiB) await nodeRead(buf, at); },
      async () => { for (let pass = 0; pass < 2; pass++) for (let at = 0; at < size; at += MiB) check(await front.submit(Op.READ, BigInt(at / SECTOR_SIZE), lease), 'read'); },
    );
    const readMiB = (2 * size) / MiB;
    out.push({ name: 'VBD sequential read, 1 MiB requests', value: readMiB / (seqRead.vbd / 1000), unit: 'MiB/s', baseline: readMiB / (seqRead.node / 1000), baselineName: 'Node reading the same file directly', baselineUnit: 'MiB/s', ratio: seqRead.ratio, note: 'target >= 0.8' });

    const seqWrite = await paired(
      async () => { for (let at = 0; at < size; at += MiB) await nodeWrite(buf, at); await nodeSync(); },
      async () => { for (let at = 0; at < size; at += MiB) check(await front.submit(Op.WRITE, BigInt(at / SECTOR_SIZE), lease), 'write'); check(await front.flush(), 'flush'); },
    );
    out.push({ name: 'VBD sequential write + flush, 1 MiB requests', value: size / MiB / (seqWrite.vbd / 1000), unit: 'MiB/s', baseline: size / MiB / (seqWrite.node / 1000), baselineName: 'Node writing the same file directly, then fdatasync', baselineUnit: 'MiB/s', ratio: seqWrite.ratio, note: 'target >= 0.8' });
    front.release(lease);

    let seed = 12345;
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
    const blocks = size / 4096;
    const small = Array.from({ length: RANDOM_DEPTH }, () => new Uint8Array(4096));
    const leases = await Promise.all(small.map(() => front.lease(4096)));
    /** RANDOM_DEPTH workers, each with its own buffer, until randomOps reads are done. */
    const randomRun = (one: (i: number, at: number) => Promise<unknown>) => async (): Promise<void> => {
      let issued = 0;
      await Promise.all(small.map(async (_, i) => { while (issued < randomOps) { issued++; await one(i, (rnd() % blocks) * 4096); } }));
    };
    const rand = await paired(
      randomRun((i, at) => nodeRead(small[i]!, at)),
      randomRun(async (i, at) => check(await front.submit(Op.READ, BigInt(at / SECTOR_SIZE), leases[i]!), 'read')),
    );
    for (const l of leases) front.release(l);
    out.push({ name: `VBD random 4 KiB reads, ${RANDOM_DEPTH} in flight`, value: randomOps / (rand.vbd / 1000), unit: 'IOPS', baseline: randomOps / (rand.node / 1000), baselineName: `Node reading the same file directly, ${RANDOM_DEPTH} in flight`, baselineUnit: 'IOPS', ratio: rand.ratio, note: 'target >= 0.5' });
  } finally {
    closeSync(fd);
    await back.close();
    await store.close();
    ring.release();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}
