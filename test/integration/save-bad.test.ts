/**
 * Save and restore given bad input, through the Hypervisor (issue 9's "Bad
 * input"), beyond what test/integration/save.test.ts (truncated, corrupt and
 * foreign files, memory that does not fit, a guest that never blocks) and
 * runtime/save/format.test.ts (the format's own checks, at the writer and
 * reader) cover: a save from another format version, a full disk under a
 * running domain, a second save while one is under way, wild values in a
 * file's domain record, and one file restored twice.
 *
 * Files with wild values are built from a real save, section by section,
 * with SaveWriter, so every checksum is right and only the value is wrong.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../../runtime/index.ts';
import type { Domain } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { WvError } from '../../kernel/errors.ts';
import { VERSION } from '../../runtime/toolstack/controller.ts';
import { SAVE_FORMAT_VERSION, SaveReader, SaveVersionError, SaveIoError, SaveWriter, type SaveWriterOptions, type SectionKind } from '../../runtime/save/format.ts';
import { RestoreError } from '../../runtime/save/errors.ts';
import { filler, until } from '../helpers/wat.ts';

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'wv-save-bad-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** The ticks a ticker printed, in order. */
function ticks(text: string): number[] {
  return [...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
}

/** The ticks are 0, 1, 2, ... with none missing or repeated. */
function consecutive(xs: number[]): boolean {
  return xs.every((x, i) => x === i);
}

/** The error `p` rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<WvError> {
  try {
    await p;
  } catch (err) {
    return err as WvError;
  }
  throw new Error('expected a rejection, it resolved');
}

/** A ticker that ticks every 20 ms for a long while, once it has ticked `n` times. */
async function ticker(hv: Hypervisor, name: string, n = 3): Promise<Domain> {
  const d = await hv.createDomain({ image: guestPath('ticker'), name, memory: 4, cmdline: 'count=100000 period=20' });
  if (!(await until(() => ticks(d.consoleText()).length >= n, 20_000))) throw new Error(`${name} did not tick ${n} times: ${d.consoleText()}`);
  return d;
}

/** A guest that fills its memory with pseudo-random bytes (so a save of it is as large as its memory), prints "filled" and blocks forever. */
const FILLER = filler();

async function filled(hv: Hypervisor, name: string, mib: number): Promise<Domain> {
  const d = await hv.createDomain({ image: FILLER, name, memory: mib });
  if (!(await until(() => d.consoleText().includes('filled') && d.phase === 'blocked', 30_000))) throw new Error(`${name} did not fill its memory: ${d.phase}`);
  return d;
}

/**
 * Copies the save `src` to `dst` section by section, with the domain record
 * changed by `domain`, some sections replaced, and the writer's options (a
 * format version) as given. Checksums are all valid in the copy.
 */
async function rewrite(src: string, dst: string, change: { domain?: (d: Record<string, unknown>) => unknown; sections?: Partial<Record<SectionKind, Uint8Array>>; writer?: SaveWriterOptions } = {}): Promise<string> {
  const r = await SaveReader.open(src);
  try {
    const w = await SaveWriter.create(dst, change.writer ?? {});
    for (const s of r.sections) {
      const kind = s.kind as SectionKind;
      const given = change.sections?.[kind];
      if (given !== undefined) {
        await w.addSection(kind, given);
      } else if (kind === 'domain' && change.domain) {
        const d = await r.readJson('domain') as Record<string, unknown>;
        const edited = change.domain(d);
        await w.addJson('domain', edited === undefined ? d : edited);
      } else {
        await w.addSection(kind, await r.read(kind));
      }
    }
    await w.commit();
  } finally {
    await r.close();
  }
  return dst;
}

// One real save of a running ticker, the base of the files built below.
const base = join(dir, 'base.save');
let baseLast = 0;
{
  const hv = new Hypervisor({ cpus: 1 });
  const d = await ticker(hv, 'clock');
  await hv.save(d.id, base);
  baseLast = ticks(d.consoleText()).at(-1)!;
  await hv.close();
}
const baseDomain = await (async () => {
  const r = await SaveReader.open(base);
  try {
    return await r.readJson('domain') as Record<string, unknown> & { memoryBytes: number; memoryLength: number; cpu: Record<string, unknown> };
  } finally {
    await r.close();
  }
})();

/** What must be unchanged after a refused restore: the domains and the free memory. */
function snapshot(hv: Hypervisor): { names: string[]; free: number } {
  return { names: hv.list().map((d) => d.name), free: hv.kernel.budget.freeBytes };
}

t.test('a save from another format version is refused, naming the file, its version and the versions this build reads', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const { major, minor } = SAVE_FORMAT_VERSION;
  const reads = `this wasmvisor ${VERSION} reads save format ${major}.x (it writes ${major}.${minor})`;
  const before = snapshot(hv);

  const newer = await rewrite(base, join(dir, 'newer.save'), { writer: { formatVersion: { major: major + 1, minor: 3 }, wasmvisorVersion: '7.0.1' } });
  const e1 = await rejection(hv.restore(newer));
  t.ok(e1 instanceof SaveVersionError, 'a SaveVersionError');
  t.match(e1, { code: 'WV_ERR_SAVE_VERSION', path: newer });
  t.equal(e1.message, `save file ${newer} cannot be read by this wasmvisor: it is save format ${major + 1}.3 (written by wasmvisor 7.0.1); ${reads}`);

  const older = await rewrite(base, join(dir, 'older.save'), { writer: { formatVersion: { major: major - 1, minor: 9 }, wasmvisorVersion: '0.0.1' } });
  const e2 = await rejection(hv.restore(older));
  t.equal(e2.code, 'WV_ERR_SAVE_VERSION');
  t.equal(e2.message, `save file ${older} cannot be read by this wasmvisor: it is save format ${major - 1}.9 (written by wasmvisor 0.0.1); ${reads}`);

  // A future format may change everything after the first 60 bytes: the version is still named, not "corrupt".
  const future = join(dir, 'future.save');
  const bytes = Buffer.from(readFileSync(base));
  bytes.writeUInt16LE(0xfffe, 8);
  bytes.writeUInt16LE(0, 10);
  bytes.fill(0xa5, 60);
  writeFileSync(future, bytes);
  const e3 = await rejection(hv.restore(future));
  t.equal(e3.code, 'WV_ERR_SAVE_VERSION');
  t.equal(e3.message, `save file ${future} cannot be read by this wasmvisor: it is save format 65534.0 (written by wasmvisor ${VERSION}); ${reads}`);
  t.same(snapshot(hv), before, 'no domain was created and no memory is held');

  // A newer minor only adds optional things: it is read, and the ticker counts on.
  const minorNewer = await rewrite(base, join(dir, 'minor.save'), { writer: { formatVersion: { major, minor: minor + 7 }, wasmvisorVersion: '0.9.0' } });
  const d = await hv.restore(minorNewer);
  t.ok(await until(() => ticks(d.consoleText()).filter((n) => n > baseLast).length >= 2, 20_000), d.consoleText());
  t.equal(ticks(d.consoleText()).find((n) => n > baseLast), baseLast + 1, `format ${major}.${minor + 7} restores and goes on at the next tick`);
});

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

t.test('disk full during hv.save: the domain keeps running, the error says ENOSPC and names the file, nothing is left behind', { skip: isRoot ? false : 'needs root to mount a 2 MiB tmpfs' }, async (t) => {
  const small = mkdtempSync(join(tmpdir(), 'wv-save-full-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'wv-save-bad', small], { encoding: 'utf8' });
  if (m.status !== 0) {
    rmSync(small, { recursive: true, force: true });
    t.plan(0, `skipped: mount -t tmpfs failed here: ${(m.stderr || m.error?.message || '').trim()}`);
    return;
  }
  t.teardown(() => {
    if (spawnSync('umount', [small]).status !== 0) spawnSync('umount', ['-l', small]);
    rmSync(small, { recursive: true, force: true });
  });
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());

  // A domain whose save is bigger than the whole filesystem: the first save there fails.
  const big = await filled(hv, 'big', 4);
  const bigFile = join(small, 'big.save');
  const e0 = await rejection(hv.save(big.id, bigFile));
  t.ok(e0 instanceof SaveIoError, 'a SaveIoError');
  t.match(e0, { code: 'WV_ERR_SAVE_IO', errno: 'ENOSPC', path: bigFile, operation: 'write' });
  t.equal(e0.message, `save file ${bigFile}: write failed: ENOSPC (the host filesystem is full); nothing was written under ${bigFile}`);
  t.same(readdirSync(small), [], 'no file under the final name, no temporary file');
  t.equal(hv.domain('big').phase, 'blocked', 'the domain is still there, back at its block');
  const elsewhere = await hv.save(big.id, join(dir, 'big.save'), { checkpoint: true });
  t.ok(elsewhere.bytes > 3.9 * MiB, `and a save of it where there is room works (${elsewhere.bytes} bytes)`);
  await hv.destroy(big.id);

  // A ticker with a checkpoint on the disk, then the disk filled up: a save over the checkpoint fails.
  const d = await ticker(hv, 'clock');
  const file = join(small, 'clock.save');
  await hv.save(d.id, file, { checkpoint: true });
  const checkpoint = readFileSync(file);
  const free = statfsSync(small);
  writeFileSync(join(small, 'ballast'), Buffer.alloc(free.bavail * free.bsize - 4096, 1));
  const lastBefore = ticks(d.consoleText()).at(-1)!;
  const e = await rejection(hv.save(d.id, file));
  t.match(e, { code: 'WV_ERR_SAVE_IO', errno: 'ENOSPC', path: file, operation: 'write' });
  t.equal(e.message, `save file ${file}: write failed: ENOSPC (the host filesystem is full); nothing was written under ${file}`);
  t.same(readdirSync(small).sort(), ['ballast', 'clock.save'], 'no temporary file is left');
  t.ok(readFileSync(file).equals(checkpoint), 'the checkpoint under that name is byte for byte the old one');
  t.match(hv.kernel.log.lines().join('\n'), `save to ${file} failed, it goes on running: ${e.message}`);

  t.ok(await until(() => ticks(d.consoleText()).at(-1)! >= lastBefore + 3, 20_000), `it goes on ticking: ${d.consoleText()}`);
  t.ok(consecutive(ticks(d.consoleText())), 'no tick was lost or repeated across the failed save');
  t.same(hv.list().map((x) => x.name), ['Domain-0', 'clock']);

  // With room again, the same save succeeds, and what it wrote restores.
  unlinkSync(join(small, 'ballast'));
  const saved = await hv.save(d.id, file);
  const at = ticks(d.consoleText()).at(-1)!;
  t.equal(saved.path, file);
  t.same(readdirSync(small), ['clock.save']);
  t.same(hv.list().map((x) => x.name), ['Domain-0'], 'the saved domain is gone');
  const r = await hv.restore(file);
  t.ok(await until(() => ticks(r.consoleText()).filter((n) => n > at).length >= 2, 20_000), r.consoleText());
  t.equal(ticks(r.consoleText()).find((n) => n > at), at + 1);
});

t.test('a second save of a domain whose save is being captured is refused; the first completes', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const d = await filled(hv, 'busy', 16);
  const first = join(dir, 'busy-1.save');
  const second = join(dir, 'busy-2.save');
  const a = hv.save(d.id, first, { checkpoint: true });
  const b = rejection(hv.save(d.id, second, { checkpoint: true }));
  const e = await b;
  t.match(e, { code: 'WV_ERR_SAVE_UNSUPPORTED' });
  t.equal(e.message, `domain ${d.id} cannot be saved: a save of it is already under way`);
  const s = await a;
  t.equal(s.path, first);
  t.ok(s.bytes > 15.9 * MiB, `the first is whole (${s.bytes} bytes for 16 MiB of random memory)`);
  t.notOk(existsSync(second), 'the refused save wrote nothing');
  t.equal(d.phase, 'blocked', 'the domain runs on');
  const again = await hv.save(d.id, second, { checkpoint: true });
  t.equal(again.path, second, 'once the first is done, a save works');
});

t.test('a second save while the first is writing its file is refused', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const d = await filled(hv, 'busy', 16);
  let second: Promise<WvError | string> | undefined;
  const s = await hv.save(d.id, join(dir, 'writing-1.save'), {
    checkpoint: true,
    onProgress: () => {
      second ??= hv.save(d.id, join(dir, 'writing-2.save'), { checkpoint: true, timeoutMs: 5000 }).then((x) => `accepted, wrote ${x.path}`, (err: WvError) => err);
    },
  });
  t.ok(s.bytes > 15.9 * MiB);
  t.ok(second !== undefined, 'the second save was started while the memory was written');
  t.match(await second, { code: 'WV_ERR_SAVE_UNSUPPORTED', message: `domain ${d.id} cannot be saved: a save of it is already under way` }, 'refused');
  t.equal(d.phase, 'blocked', 'the domain runs on');
});

t.test('wild values in the domain record: a RestoreError naming the field, and nothing is created', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const before = snapshot(hv);
  type Wild = Record<string, unknown> & { cpu?: Record<string, unknown> };
  const cases: Array<[string, string, (d: Wild) => unknown]> = [
    ['memoryLength larger than memoryBytes', 'memoryLength', (d) => { d.memoryLength = baseDomain.memoryBytes + 65536; }],
    ['memoryLength not a multiple of 64 KiB', 'memoryLength', (d) => { d.memoryLength = 65537; }],
    ['memoryLength zero', 'memoryLength', (d) => { d.memoryLength = 0; }],
    ['memoryLength a string', 'memoryLength', (d) => { d.memoryLength = '65536'; }],
    ['memoryBytes not a multiple of 64 KiB', 'memoryBytes', (d) => { d.memoryBytes = 1000; }],
    ['memoryBytes negative', 'memoryBytes', (d) => { d.memoryBytes = -4 * MiB; }],
    ['memoryBytes past 2^53', 'memoryBytes', (d) => { d.memoryBytes = 2 ** 60; }],
    ['an entry index past the image\'s entries', 'cpu.entry', (d) => { d.cpu!.entry = 999; }],
    ['a negative entry index', 'cpu.entry', (d) => { d.cpu!.entry = -1; }],
    ['a fractional entry index', 'cpu', (d) => { d.cpu!.entry = 0.5; }],
    ['an unknown capture point', 'cpu', (d) => { d.cpu!.at = 'elsewhere'; }],
    ['no cpu at all', 'cpu', (d) => { delete d.cpu; }],
    ['a clock that is not a number', 'cpu clock', (d) => { d.cpu!.nowNs = 'soon'; }],
    ['a name that is not a string', 'name', (d) => { d.name = 7; }],
    ['a record that is null', 'not an object', () => null],
  ];
  for (const [what, field, edit] of cases) {
    const file = await rewrite(base, join(dir, `wild-${field.replace(/\W/g, '_')}-${cases.findIndex((c) => c[0] === what)}.save`), { domain: (d) => edit(d as Wild) });
    const e = await rejection(hv.restore(file));
    t.ok(e instanceof RestoreError, `${what}: a RestoreError (${e.code})`);
    t.equal(e.message, `cannot restore ${file}: its domain record is malformed (${field})`, what);
  }

  const huge = await rewrite(base, join(dir, 'wild-huge.save'), { domain: (d) => { d.memoryBytes = 2 ** 40; } });
  t.match(await rejection(hv.restore(huge)), { code: 'WV_ERR_RESTORE', message: new RegExp(`^cannot restore ${huge.replace(/[.]/g, '\\.')}: its 1048576 MiB do not fit: \\d+ MiB are free$`) });

  const ports = await rewrite(base, join(dir, 'wild-evtchn.save'), { sections: { evtchn: Buffer.from('{"port":1}') } });
  t.match(await rejection(hv.restore(ports)), { code: 'WV_ERR_RESTORE', message: `cannot restore ${ports}: its domain record is malformed (evtchn)` });

  const globals = await rewrite(base, join(dir, 'wild-globals.save'), { sections: { globals: Buffer.from('{"types":["f64","f64","f64"],"values":["1","2","3"]}') } });
  const eg = await rejection(hv.restore(globals));
  t.equal(eg.code, 'WV_ERR_RESTORE');
  t.match(eg.message, `cannot restore ${globals}: its globals (f64, f64, f64) do not match its image's (`);

  const noImage = await rewrite(base, join(dir, 'wild-image.save'), { sections: { image: new Uint8Array(0) } });
  t.match(await rejection(hv.restore(noImage)), { code: 'WV_ERR_RESTORE', message: `cannot restore ${noImage}: it holds no guest image` });

  t.same(snapshot(hv), before, 'no domain was created and no memory is held');
  // The same hypervisor still restores the unaltered file.
  const ok = await hv.restore(base);
  t.ok(await until(() => ticks(ok.consoleText()).some((n) => n > baseLast), 20_000), ok.consoleText());
});

t.test('wild values deeper in the record and the memory section: a RestoreError naming the field', async (t) => {
  const hv = new Hypervisor({ cpus: 1, memoryBytes: 16 * 1024 * MiB });
  t.teardown(() => hv.close());
  const expectRefused = async (name: string, field: RegExp, change: Parameters<typeof rewrite>[2]): Promise<void> => {
    await t.test(name, async (t) => {
      const file = await rewrite(base, join(dir, `loose-${name.replace(/\W+/g, '-')}.save`), change);
      let got: WvError | Domain;
      try {
        got = await hv.restore(file, { name: `loose${Math.random().toString(36).slice(2, 8)}` });
      } catch (err) {
        got = err as WvError;
      }
      if (!(got instanceof WvError)) {
        await hv.destroy(got.id);
        t.fail(`restored as domain ${got.id}`);
        return;
      }
      t.equal(got.code, 'WV_ERR_RESTORE', got.message);
      t.match(got.message, field);
    });
  };
  const mem = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);
  await expectRefused('a memory section larger than memoryLength', /memoryLength|memory section/, { sections: { memory: mem(baseDomain.memoryLength + 65536, 1) } });
  await expectRefused('a memory section shorter than memoryLength', /memoryLength|memory section/, { sections: { memory: mem(4096, 0) } });
  await expectRefused('memoryLength past the image\'s maximum', /memoryLength/, { domain: (d) => { d.memoryBytes = 2048 * MiB; d.memoryLength = 2048 * MiB; } });
  await expectRefused('scheduling parameters that are not numbers', /\bsched\b/, { domain: (d) => { d.sched = 'fast'; } });
  await expectRefused('a clock past 2^64 ns', /cpu clock/, { domain: (d) => { (d.cpu as Record<string, unknown>).nowNs = String(2n ** 70n); } });
  await expectRefused('an unknown on_crash action', /onCrash/, { domain: (d) => { d.onCrash = 'explode'; } });
  await expectRefused('a command line that is not a string', /cmdline/, { domain: (d) => { d.cmdline = 42; } });
  await expectRefused('a timer deadline below zero', /cpu clock/, { domain: (d) => { (d.cpu as Record<string, unknown>).timerNs = '-1'; } });
});

t.test('one save file restored twice gives two independent domains', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const orig = await ticker(hv, 'twin');
  const file = join(dir, 'twin.save');
  await hv.save(orig.id, file);
  const last = ticks(orig.consoleText()).at(-1)!;

  const a = await hv.restore(file);
  t.equal(a.name, 'twin');
  const before = snapshot(hv);
  const clash = await rejection(hv.restore(file));
  t.match(clash, { code: 'WV_ERR_DOMAIN_EXISTS', message: 'a domain named "twin" already exists' }, 'the saved name is taken by the first copy');
  t.same(snapshot(hv), before, 'the refused restore holds nothing');
  const b = await hv.restore(file, { name: 'twin2' });
  t.not(a.id, b.id, `different ids (${a.id}, ${b.id})`);
  t.not(a.memory!.buffer, b.memory!.buffer, 'each has its own memory');
  t.same(hv.list().map((x) => x.name), ['Domain-0', 'twin', 'twin2']);

  for (const d of [a, b]) {
    t.ok(await until(() => ticks(d.consoleText()).filter((n) => n > last).length >= 3, 20_000), `${d.name}: ${d.consoleText()}`);
    t.same(ticks(d.consoleText()).filter((n) => n > last).slice(0, 3), [last + 1, last + 2, last + 3], `${d.name} counts on from the save`);
    t.ok(consecutive(ticks(d.consoleText())), `${d.name}: the history came along, no tick lost or repeated`);
  }

  // Each answers its own shutdown virq: shutting one down leaves the other ticking.
  const exit = await hv.shutdown(a.id, { timeoutMs: 10_000 });
  t.equal(exit.reason, 'poweroff');
  // The history holds one request already: the save's suspend request, which the ticker logs as it suspends.
  const requests = (d: Domain): number => d.consoleText().match(/ticker: shutdown requested after \d+ ticks/g)?.length ?? 0;
  t.equal(requests(a), 2, 'the copy shut down saw the request');
  t.equal(requests(b), 1, 'the other copy did not');
  const bAt = ticks(b.consoleText()).at(-1)!;
  t.ok(await until(() => ticks(b.consoleText()).at(-1)! >= bAt + 3, 20_000), 'the other copy goes on ticking');
  t.same(hv.list().map((x) => x.name), ['Domain-0', 'twin2']);
});
