/**
 * Save, restore, migration and clone figures (issue 9):
 * - save (`hv.save --checkpoint`) and restore (`hv.restore`) of a 16 MiB and a
 *   256 MiB domain, in MiB/s of guest memory, against Node writing the same
 *   bytes to a file on the same filesystem and fsyncing it (for save), and
 *   reading them back into a fresh shared memory (for restore);
 * - live migration downtime to a second hypervisor on loopback, against the
 *   save and restore of the same memory (what a migration by file would stop
 *   the guest for);
 * - clone latency per domain, against creating a fresh domain from the same
 *   image and letting it reach the same point.
 *
 * The guest fills all of its memory with pseudo-random bytes and then blocks,
 * so compression and zero-page elision gain nothing: the honest case. A second
 * 256 MiB figure uses a guest that writes one page in four (the rest stay
 * zero), closer to a domain that has not touched most of its memory.
 *
 * Rounds alternate the wasmvisor side and the baseline, and the ratio is the
 * median of the per-round ratios (the machine is shared and noisy).
 * Migration and clone are being built alongside this bench: when the
 * Hypervisor has no `migrate` (or `clone`), the figure is skipped with a note.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../runtime/index.ts';
import type { Domain, GuestImage } from '../runtime/index.ts';
import { filler } from '../test/helpers/wat.ts';
import type { CpuFigure } from './cpu.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Pieces the baselines write and read in (the save writer itself works in 1 MiB chunks, four compressions in flight). */
const IO_PIECE = 16 * MiB;

/** The surface of the migration and clone APIs this bench uses (they land in runtime/hypervisor.ts separately). */
interface MigrationHost {
  listenForMigrations(opts: { host?: string; port?: number }): Promise<{ port: number; close(): Promise<void> }>;
  migrate(ref: number | string, target: string, opts?: { onProgress?: (...args: unknown[]) => void }): Promise<{ domid: number; name: string; downtimeMs: number; rounds: number; bytesSent: number; memoryBytes: number }>;
}
interface CloneHost {
  clone(ref: number | string, n: number, opts?: { names?: string[] }): Promise<Domain[]>;
}

/**
 * A guest that grows its memory to all its domain allows, writes every
 * `stride`-th 4 KiB page above the first 64 KiB with xorshift64 output,
 * prints "filled" and blocks forever (where it can be captured).
 */
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`save bench: ${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Milliseconds `fn` takes. */
async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** The baseline of a save: the same bytes written to a new file with plain fs calls, then fsync. */
async function directWrite(path: string, bytes: Uint8Array): Promise<void> {
  const fh = await open(path, 'w', 0o600);
  try {
    for (let at = 0; at < bytes.byteLength;) at += (await fh.write(bytes, at, Math.min(IO_PIECE, bytes.byteLength - at), at)).bytesWritten;
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The baseline of a restore: the same bytes read back from that file into a fresh shared memory, as a restore must allocate one. */
async function directRead(path: string, length: number): Promise<void> {
  const into = new Uint8Array(new SharedArrayBuffer(length));
  const fh = await open(path, 'r');
  try {
    for (let at = 0; at < length;) {
      const n = (await fh.read(into, at, Math.min(IO_PIECE, length - at), at)).bytesRead;
      if (n === 0) throw new Error(`save bench: ${path} is shorter than ${length} bytes`);
      at += n;
    }
  } finally {
    await fh.close();
  }
}

/** A domain of `mib` MiB from `image`, once its guest has filled its memory and blocked. */
async function filled(hv: Hypervisor, image: GuestImage, mib: number, name: string): Promise<Domain> {
  const d = await hv.createDomain({ image, name, memory: mib });
  await until(() => d.consoleText().includes('filled') && d.phase === 'blocked', 60_000, `${name} filling its ${mib} MiB`);
  return d;
}

interface SaveRun { save: number; restore: number; write: number; read: number; saveRatio: number; restoreRatio: number; fileBytes: number; memoryLength: number }

/**
 * `rounds` rounds (after one that is not counted) of: checkpoint save of the
 * domain, direct write of its memory, restore of the save, direct read; the
 * order of each pair alternates between rounds.
 */
async function saveRestore(hv: Hypervisor, dom: Domain, dir: string, rounds: number): Promise<SaveRun> {
  const file = join(dir, `${dom.name}.save`);
  const raw = join(dir, `${dom.name}.raw`);
  const memory = new Uint8Array(dom.memory!.buffer);
  const length = memory.byteLength;
  const saves: number[] = [];
  const restores: number[] = [];
  const writes: number[] = [];
  const reads: number[] = [];
  let restored = 0;
  const doSave = (): Promise<number> => time(() => hv.save(dom.id, file, { checkpoint: true }));
  const doWrite = (): Promise<number> => time(() => directWrite(raw, memory));
  const doRestore = async (): Promise<number> => {
    let copy: Domain | undefined;
    const ms = await time(async () => { copy = await hv.restore(file, { name: `${dom.name}-r${restored++}` }); });
    // Not timed: the copy really resumed (it goes back to its block), then it goes, freeing its memory for the next round.
    await until(() => copy!.phase === 'blocked', 30_000, `${copy!.name} resuming`);
    // Once, the copy's filled memory is checked against the original's (above 64 KiB: below is the start-info page, which has a new domain id).
    if (restored === 1 && !Buffer.from(copy!.memory!.buffer, 65536).equals(Buffer.from(memory.buffer, 65536))) {
      throw new Error(`save bench: the restored ${copy!.name} does not have ${dom.name}'s memory`);
    }
    await hv.destroy(copy!.id);
    return ms;
  };
  const doRead = (): Promise<number> => time(() => directRead(raw, length));
  /** Both, `ours` first in even rounds and second in odd ones; the times in the order (ours, baseline). */
  const pair = async (r: number, ours: () => Promise<number>, base: () => Promise<number>): Promise<[number, number]> => {
    if (r % 2 === 0) { const a = await ours(); return [a, await base()]; }
    const b = await base();
    return [await ours(), b];
  };
  for (let r = -1; r < rounds; r++) {
    const [s, w] = await pair(r, doSave, doWrite);
    const [rs, rd] = await pair(r, doRestore, doRead);
    if (r < 0) continue;
    saves.push(s); writes.push(w); restores.push(rs); reads.push(rd);
  }
  return {
    save: median(saves), restore: median(restores), write: median(writes), read: median(reads),
    saveRatio: median(writes.map((w, i) => w / saves[i]!)), restoreRatio: median(reads.map((x, i) => x / restores[i]!)),
    fileBytes: statSync(file).size, memoryLength: length,
  };
}

export async function saveFigures(quick: boolean, log: (s: string) => void): Promise<CpuFigure[]> {
  const out: CpuFigure[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'wv-savebench-'));
  const hv = new Hypervisor({ cpus: 2, memoryBytes: 8 * GiB, dom0MemoryBytes: GiB });
  const rate = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);
  try {
    const random = await hv.loadImage(filler(1));
    const sparse = await hv.loadImage(filler(4));
    const runs: Array<{ mib: number; image: GuestImage; label: string; rounds: number }> = [
      { mib: 16, image: random, label: 'random', rounds: quick ? 3 : 7 },
      { mib: 256, image: random, label: 'random', rounds: quick ? 1 : 3 },
      { mib: 256, image: sparse, label: '1/4 pages written', rounds: quick ? 1 : 2 },
    ];
    /** Save + restore time of each fully random size, the baseline of the migration downtime. */
    const byFile = new Map<number, number>();
    log(`save/restore: checkpoint saves and restores of filled domains in ${dir} (${tmpdir()}), against direct fs write+fsync and read of the same bytes; ${runs.map((r) => `${r.mib} MiB ${r.label}: ${r.rounds} rounds`).join(', ')}`);
    for (const run of runs) {
      const dom = await filled(hv, run.image, run.mib, `save${run.mib}${run.image === sparse ? 's' : ''}`);
      const r = await saveRestore(hv, dom, dir, run.rounds);
      await hv.destroy(dom.id);
      const what = `${run.mib} MiB domain, ${run.label}`;
      const file = `file ${(r.fileBytes / MiB).toFixed(1)} MiB for ${(r.memoryLength / MiB).toFixed(0)} MiB of memory`;
      out.push({ name: `save (checkpoint), ${what}`, value: rate(r.memoryLength, r.save), unit: 'MiB/s', baseline: rate(r.memoryLength, r.write), baselineName: 'Node writing the same bytes to a file + fsync', baselineUnit: 'MiB/s', ratio: r.saveRatio, note: `${r.save.toFixed(0)} ms; ${file}` });
      out.push({ name: `restore, ${what}`, value: rate(r.memoryLength, r.restore), unit: 'MiB/s', baseline: rate(r.memoryLength, r.read), baselineName: 'Node reading the same bytes from a file', baselineUnit: 'MiB/s', ratio: r.restoreRatio, note: `${r.restore.toFixed(0)} ms` });
      if (run.image === random) byFile.set(run.mib, r.save + r.restore);
    }

    // Live migration: to a second hypervisor in this process, over loopback TCP.
    if (typeof (hv as unknown as Partial<MigrationHost>).migrate !== 'function') {
      log('migration: not built yet');
    } else {
      const target = new Hypervisor({ cpus: 2, memoryBytes: 4 * GiB, dom0MemoryBytes: GiB });
      try {
        const listener = await (target as unknown as MigrationHost).listenForMigrations({ host: '127.0.0.1', port: 0 });
        try {
          for (const mib of [16, 256]) {
            const rounds = mib === 16 ? (quick ? 2 : 5) : (quick ? 1 : 2);
            log(`migration: ${rounds} live migrations of a ${mib} MiB random domain to 127.0.0.1:${listener.port}`);
            const downs: number[] = [];
            let last = { rounds: 0, bytesSent: 0, memoryBytes: 0, total: 0 };
            for (let i = 0; i < rounds; i++) {
              const dom = await filled(hv, random, mib, `mig${mib}-${i}`);
              const t0 = performance.now();
              const m = await (hv as unknown as MigrationHost).migrate(dom.id, `127.0.0.1:${listener.port}`);
              last = { rounds: m.rounds, bytesSent: m.bytesSent, memoryBytes: m.memoryBytes, total: performance.now() - t0 };
              downs.push(m.downtimeMs);
              const moved = target.list().find((d) => d.name === m.name);
              if (moved === undefined) throw new Error(`save bench: migrated domain ${m.name} is not on the target`);
              await target.destroy(moved.id);
            }
            const base = byFile.get(mib)!;
            const down = median(downs);
            out.push({ name: `migration downtime, ${mib} MiB domain, random, blocked`, value: down, unit: 'ms', baseline: base, baselineName: 'save + restore of the same domain', baselineUnit: 'ms', ratio: down / base, note: `last: ${last.rounds} rounds, ${(last.bytesSent / MiB).toFixed(1)} MiB sent for ${(last.memoryBytes / MiB).toFixed(0)} MiB, ${last.total.toFixed(0)} ms in all` });
          }
          // The target's case: a 64 MiB domain that ticks (wakes every 10 ms and writes) while it moves.
          const ticking = await hv.loadImage(filler(1, 10));
          const rounds = quick ? 2 : 5;
          log(`migration: ${rounds} live migrations of a 64 MiB random domain ticking every 10 ms`);
          const downs: number[] = [];
          let last = { rounds: 0, finalPages: 0, total: 0 };
          for (let i = 0; i < rounds; i++) {
            const dom = await hv.createDomain({ image: ticking, name: `tick64-${i}`, memory: 64 });
            await until(() => dom.consoleText().includes('filled'), 60_000, 'the ticking 64 MiB domain filling its memory');
            const t0 = performance.now();
            const m = await (hv as unknown as MigrationHost).migrate(dom.id, `127.0.0.1:${listener.port}`) as Awaited<ReturnType<MigrationHost['migrate']>> & { finalPages: number };
            last = { rounds: m.rounds, finalPages: m.finalPages, total: performance.now() - t0 };
            downs.push(m.downtimeMs);
            const moved = target.list().find((d) => d.name === m.name);
            if (moved === undefined) throw new Error(`save bench: migrated domain ${m.name} is not on the target`);
            const mem = new DataView(target.domain(moved.id).memory!.buffer);
            const at = mem.getBigUint64(8256, true);
            await until(() => new DataView(target.domain(moved.id).memory!.buffer).getBigUint64(8256, true) > at, 10_000, 'the migrated domain ticking on the target');
            await target.destroy(moved.id);
          }
          out.push({ name: 'migration downtime, 64 MiB domain, ticking', value: median(downs), unit: 'ms', baseline: byFile.get(16)! * 4, baselineName: 'save + restore of 64 MiB (4x the 16 MiB figure)', baselineUnit: 'ms', ratio: median(downs) / (byFile.get(16)! * 4), note: `target < 50 ms; last: ${last.rounds} rounds, ${last.finalPages} pages copied while stopped, ${last.total.toFixed(0)} ms in all` });
        } finally {
          await listener.close();
        }
      } finally {
        await target.close();
      }
    }

    // Clone: N copies of a running domain from one checkpoint capture.
    if (typeof (hv as unknown as Partial<CloneHost>).clone !== 'function') {
      log('clone: not built yet');
    } else {
      for (const [mib, n] of [[16, quick ? 4 : 8], [256, 2]] as const) {
        log(`clone: ${n} clones of a running ${mib} MiB random domain, against ${n} fresh domains of the same image reaching the same point (filled, blocked)`);
        const dom = await filled(hv, random, mib, `orig${mib}`);
        const rounds = quick || mib === 256 ? 1 : 3;
        const perClone: number[] = [];
        const perFresh: number[] = [];
        for (let r = 0; r < rounds; r++) {
          let clones: Domain[] = [];
          perClone.push(await time(async () => { clones = await (hv as unknown as CloneHost).clone(dom.id, n, { names: Array.from({ length: n }, (_, i) => `c${mib}-${r}-${i}`) }); }) / n);
          if (clones.length !== n) throw new Error(`save bench: clone gave ${clones.length} domains, not ${n}`);
          for (const c of clones) await hv.destroy(c.id);
          const fresh: Domain[] = [];
          perFresh.push(await time(async () => { for (let i = 0; i < n; i++) fresh.push(await filled(hv, random, mib, `f${mib}-${r}-${i}`)); }) / n);
          for (const f of fresh) await hv.destroy(f.id);
        }
        await hv.destroy(dom.id);
        const c = median(perClone);
        const f = median(perFresh);
        out.push({ name: `clone latency per domain, ${mib} MiB random (${n} at once)`, value: c, unit: 'ms', baseline: f, baselineName: 'a fresh domain of the same image, to the same point', baselineUnit: 'ms', ratio: c / f });
      }
    }
  } finally {
    await hv.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}
