import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDiskSpec } from './disk-spec.ts';
import {
  copySparse, formatVdSize, NoSuchVirtualDiskError, parseVdSize, VD_MAX_BYTES, VirtualDiskExistsError, VirtualDiskInUseError,
  VirtualDiskIoError, VirtualDiskMissingError, VirtualDisks, type VirtualDisksOptions,
} from './vdisk.ts';

const MiB = 1024 * 1024;

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'wv-vd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function store(t: Test, dir: string, opts: VirtualDisksOptions = {}): VirtualDisks {
  const vd = VirtualDisks.open(dir, opts);
  t.teardown(() => vd.close());
  return vd;
}

/** Host bytes a file takes (allocated blocks). */
function used(path: string): number {
  return statSync(path).blocks * 512;
}

function writeAt(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try { writeSync(fd, data, 0, data.length, offset); } finally { closeSync(fd); }
}

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally { closeSync(fd); }
}

t.test('sizes: K, M, G, T and bytes, whole sectors, positive, at most 2T', async (t) => {
  const ok: Array<[string | number, number]> = [
    ['512K', 512 * 1024], ['64M', 64 * MiB], ['1G', 1024 * MiB], ['1536', 1536], [4096, 4096], ['1.5G', 1536 * MiB], ['64MiB', 64 * MiB], ['2m', 2 * MiB], ['2T', VD_MAX_BYTES],
  ];
  for (const [s, n] of ok) t.equal(parseVdSize(s, 'size'), n, String(s));
  const bad: Array<[unknown, RegExp]> = [
    ['0', /not a positive/], ['-1M', /not a size/], ['1000', /multiple of 512/], ['1.0001K', /not a positive whole number/], ['abc', /not a size/],
    ['3T', /larger than the most a virtual disk can be, 2T/], [1.5, /not a positive whole/], [null, /not a size/], ['', /not a size/], ['1P', /not a size/],
  ];
  for (const [s, why] of bad) t.throws(() => parseVdSize(s, 'size of virtual disk "x"'), { code: 'WV_ERR_INVALID_ARGUMENT', message: why }, String(s));
  t.same([formatVdSize(64 * MiB), formatVdSize(1024 * MiB), formatVdSize(1536 * MiB), formatVdSize(512), formatVdSize(512 * 1024)], ['64M', '1G', '1.5G', '512B', '512K']);
});

t.test('create: a sparse image of the size asked, recorded; names follow vd:NAME', async (t) => {
  const dir = tmp(t);
  const vd = store(t, dir);
  const before = Date.now();
  const d = await vd.create('web', '64M');
  t.match(d, { name: 'web', sizeBytes: 64 * MiB, usedBytes: 0, parent: null, parentDeleted: false, path: join(dir, 'web.img'), state: 'ok' });
  t.ok(Date.parse(d.created) >= before - 1000 && Date.parse(d.created) <= Date.now() + 1000, 'created is now');
  const st = statSync(d.path);
  t.equal(st.size, 64 * MiB);
  t.equal(st.blocks, 0, 'no block allocated: the image is sparse');
  t.equal(st.mode & 0o777, 0o600);
  t.same(readdirSync(dir).sort(), ['vd.db', 'web.img'], 'nothing else is left behind');
  t.equal(vd.pathOf('web'), join(dir, 'web.img'));
  t.ok(parseDiskSpec('vd:web,xvda').target === 'web', 'the name is one disk specs accept');

  for (const name of ['', '.hidden', 'a/b', '../x', 'x'.repeat(65), 'sp ace', '-dash']) {
    await t.rejects(vd.create(name, '1M'), { code: 'WV_ERR_INVALID_ARGUMENT', message: /invalid virtual disk name/ }, JSON.stringify(name));
    t.throws(() => parseDiskSpec(`vd:${name},xvda`), { code: 'WV_ERR_INVALID_ARGUMENT' }, `disk-spec refuses ${JSON.stringify(name)} too`);
  }
  await t.rejects(vd.create('big', '4T'), { code: 'WV_ERR_INVALID_ARGUMENT', message: /invalid size of virtual disk "big": "4T" is larger/ });
  await t.rejects(vd.create('odd', 1000), { message: /multiple of 512/ });
  t.same(vd.list().map((r) => r.name), ['web'], 'refused creates left nothing');
  t.same(readdirSync(dir).sort(), ['vd.db', 'web.img']);
});

t.test('create refuses an existing name and leaves the disk alone', async (t) => {
  const vd = store(t, tmp(t));
  const d = await vd.create('data', '1M');
  writeAt(d.path, 0, Buffer.from('keep me'));
  const err = await vd.create('data', '2M').catch((e: unknown) => e);
  t.ok(err instanceof VirtualDiskExistsError);
  t.match(err, { code: 'WV_ERR_VD_EXISTS', message: 'a virtual disk named "data" already exists', disk: 'data' });
  t.equal(statSync(d.path).size, 1 * MiB);
  t.equal(readAt(d.path, 0, 7).toString(), 'keep me');
  // Two creates at once: one wins, the other is refused.
  const both = await Promise.allSettled([vd.create('race', '1M'), vd.create('race', '2M')]);
  t.same(both.map((r) => r.status), ['fulfilled', 'rejected']);
  t.equal(vd.get('race').sizeBytes, 1 * MiB);
});

t.test('list, get and pathOf', async (t) => {
  const dir = tmp(t);
  const vd = store(t, dir);
  t.same(vd.list(), []);
  await vd.create('b', '2M');
  await vd.create('a', '1M');
  t.same(vd.list().map((r) => [r.name, r.sizeBytes, r.state]), [['a', MiB, 'ok'], ['b', 2 * MiB, 'ok']], 'sorted by name');
  t.equal(vd.get('b').path, join(dir, 'b.img'));
  t.throws(() => vd.get('c'), NoSuchVirtualDiskError);
  const err = (() => { try { vd.pathOf('nope'); } catch (e) { return e; } })();
  t.match(err, { code: 'WV_ERR_NO_SUCH_VD', message: /no virtual disk named "nope"/, disk: 'nope' });
  t.throws(() => vd.pathOf('../etc/passwd'), { code: 'WV_ERR_INVALID_ARGUMENT' });
});

t.test('delete removes the image and the record; its snapshots stay', async (t) => {
  const dir = tmp(t);
  const vd = store(t, dir);
  const base = await vd.create('base', '4M');
  writeAt(base.path, MiB, Buffer.from('base data'));
  const snap = await vd.snapshot('base', 'copy');
  t.same(await vd.delete('base'), { name: 'base', path: base.path });
  t.notOk(existsSync(base.path));
  t.same(vd.list().map((r) => [r.name, r.parent, r.parentDeleted]), [['copy', 'base', true]]);
  t.equal(readAt(snap.path, MiB, 9).toString(), 'base data', 'the snapshot is a full copy');
  await t.rejects(vd.delete('base'), { code: 'WV_ERR_NO_SUCH_VD' });
  // A new disk of the old name is not the snapshot's parent.
  await vd.create('base', '1M');
  t.equal(vd.get('copy').parentDeleted, true);
});

t.test('resize grows with a hole, shrinks only with force', async (t) => {
  const vd = store(t, tmp(t));
  const d = await vd.create('r', '4M');
  writeAt(d.path, 3 * MiB, Buffer.alloc(4096, 0xab));
  const usedBefore = used(d.path);
  const g = await vd.resize('r', '1G');
  t.match(g, { name: 'r', sizeBytes: 1024 * MiB, previousBytes: 4 * MiB });
  t.equal(statSync(d.path).size, 1024 * MiB);
  t.equal(used(d.path), usedBefore, 'growing allocates nothing');
  t.same(readAt(d.path, 3 * MiB, 4096), Buffer.alloc(4096, 0xab), 'the data stays');

  const err = await vd.resize('r', '2M').catch((e: unknown) => e);
  t.match(err, { code: 'WV_ERR_INVALID_ARGUMENT', message: 'invalid size of virtual disk "r": 2M is smaller than its 1G; shrinking loses the data past 2M, so it needs --force' });
  t.equal(statSync(d.path).size, 1024 * MiB, 'a refused shrink changes nothing');
  const s = await vd.resize('r', '2M', { force: true });
  t.match(s, { sizeBytes: 2 * MiB, previousBytes: 1024 * MiB });
  t.equal(statSync(d.path).size, 2 * MiB);
  t.equal(vd.get('r').sizeBytes, 2 * MiB);
  await t.rejects(vd.resize('r', '3000'), { message: /multiple of 512/ });
  await t.rejects(vd.resize('none', '1M'), { code: 'WV_ERR_NO_SUCH_VD' });
});

t.test('snapshot: an independent copy, as sparse as its source', async (t) => {
  const dir = tmp(t);
  const vd = store(t, dir);
  const src = await vd.create('gold', '256M');
  const a = Buffer.alloc(8192, 0x11);
  const b = Buffer.alloc(512, 0x22);
  writeAt(src.path, 0, a);
  writeAt(src.path, 200 * MiB + 512, b);
  const snap = await vd.snapshot('gold', 'work');
  t.match(snap, { name: 'work', sizeBytes: 256 * MiB, parent: 'gold', parentDeleted: false, path: join(dir, 'work.img'), state: 'ok' });
  t.ok(used(snap.path) <= 64 * 1024, `the copy takes ${used(snap.path)} bytes, not 256M`);
  t.equal(snap.usedBytes, used(snap.path));
  t.same(readAt(snap.path, 0, 8192), a);
  t.same(readAt(snap.path, 200 * MiB + 512, 512), b);
  t.same(readAt(snap.path, 100 * MiB, 4096), Buffer.alloc(4096), 'holes read as zeros');
  writeAt(snap.path, 0, Buffer.from('changed'));
  t.same(readAt(src.path, 0, 7), Buffer.alloc(7, 0x11), 'writing the snapshot leaves the source alone');
  await t.rejects(vd.snapshot('gold', 'work'), { code: 'WV_ERR_VD_EXISTS', message: /"work" already exists/ });
  await t.rejects(vd.snapshot('nope', 'x'), { code: 'WV_ERR_NO_SUCH_VD' });
  await t.rejects(vd.snapshot('gold', '.x'), { code: 'WV_ERR_INVALID_ARGUMENT' });
  t.same(readdirSync(dir).sort(), ['gold.img', 'vd.db', 'work.img']);
});

t.test('the copy without reflink or cp: reads everything, writes only non-zero blocks', async (t) => {
  const dir = tmp(t);
  const src = join(dir, 'src');
  writeFileSync(src, '');
  truncateSync(src, 64 * MiB + 1024); // not a whole number of copy chunks
  writeAt(src, 5 * MiB + 100, Buffer.from('middle'));
  writeAt(src, 64 * MiB + 512, Buffer.alloc(512, 0x5a));
  const dst = join(dir, 'dst');
  t.equal(await copySparse(src, dst, 64 * MiB + 1024, 'read'), 'read');
  t.equal(statSync(dst).size, 64 * MiB + 1024);
  t.ok(used(dst) <= 16 * 1024, `only the written blocks: ${used(dst)} bytes`);
  t.same(readFileSync(dst), readFileSync(src), 'the same bytes');
  t.equal(await copySparse(src, join(dir, 'dst2'), 64 * MiB + 1024), process.platform === 'linux' ? (spawnSync('cp', ['--version']).status === 0 ? 'cp' : 'read') : 'read',
    'the default path, on a filesystem without reflinks, is cp');
  t.ok(used(join(dir, 'dst2')) <= 16 * 1024);
  await t.rejects(copySparse(src, dst, 1024, 'read'), { code: 'EEXIST' }, 'never overwrites');
});

t.test('a disk in use cannot be deleted, resized or snapshotted; the error names the holder', async (t) => {
  const held = new Map<string, string>();
  const vd = store(t, tmp(t), { inUse: (name) => held.get(name) });
  const d = await vd.create('busy', '8M');
  held.set('busy', 'domain 3 (web) as xvda');
  for (const [action, op] of [
    ['delete', () => vd.delete('busy')], ['resize', () => vd.resize('busy', '16M')], ['snapshot', () => vd.snapshot('busy', 'copy')],
  ] as const) {
    const err = await op().catch((e: unknown) => e);
    t.ok(err instanceof VirtualDiskInUseError, action);
    t.match(err, { code: 'WV_ERR_VD_IN_USE', message: `cannot ${action} virtual disk "busy": it is in use by domain 3 (web) as xvda (detach it or stop the domain first)`, holder: 'domain 3 (web) as xvda' });
  }
  t.equal(statSync(d.path).size, 8 * MiB);
  t.same(vd.list().map((r) => r.name), ['busy']);
  t.equal(vd.pathOf('busy'), d.path, 'attaching (pathOf) is not refused');
  held.delete('busy');
  await vd.delete('busy');
  t.same(vd.list(), []);
});

t.test('a record whose image is gone is listed as missing, and can be deleted', async (t) => {
  const dir = tmp(t);
  let vd = VirtualDisks.open(dir);
  const d = await vd.create('lost', '1M');
  await vd.create('fine', '1M');
  unlinkSync(d.path);
  t.match(vd.list().find((r) => r.name === 'lost'), { state: 'missing', usedBytes: 0, sizeBytes: MiB });
  const err = (() => { try { vd.pathOf('lost'); } catch (e) { return e; } })();
  t.ok(err instanceof VirtualDiskMissingError);
  t.match(err, { code: 'WV_ERR_VD_MISSING', message: `virtual disk "lost": its image ${d.path} is missing (remove the record with: wv vd delete lost)` });
  await t.rejects(vd.resize('lost', '2M'), { code: 'WV_ERR_VD_MISSING' });
  await t.rejects(vd.snapshot('lost', 'x'), { code: 'WV_ERR_VD_MISSING' });
  await vd.close();
  vd = VirtualDisks.open(dir); // reopening does not trip over it
  t.teardown(() => vd.close());
  t.same(vd.list().map((r) => [r.name, r.state]), [['fine', 'ok'], ['lost', 'missing']]);
  await vd.delete('lost');
  t.same(vd.list().map((r) => r.name), ['fine']);
});

t.test('the database survives a reopen; opening repairs what a crash left', async (t) => {
  const dir = tmp(t);
  let vd = VirtualDisks.open(dir);
  await vd.create('one', '2M');
  writeAt(join(dir, 'one.img'), 0, Buffer.from('x'));
  await vd.snapshot('one', 'two');
  const before = vd.list();
  await vd.close();
  await t.rejects(vd.create('late', '1M'), { code: 'WV_ERR_VD_IO', message: /the store is closed/ });

  // What a crash can leave: a temporary image, an image linked in whose row was rolled back, an interrupted resize.
  writeFileSync(join(dir, '.three.img.tmp-00ff00ff00ff'), 'half');
  writeFileSync(join(dir, 'orphan.img'), '');
  truncateSync(join(dir, 'orphan.img'), 3 * MiB);
  truncateSync(join(dir, 'one.img'), 4 * MiB);
  writeFileSync(join(dir, 'notes.txt'), 'not a disk');
  vd = VirtualDisks.open(dir);
  t.teardown(() => vd.close());
  const after = vd.list();
  t.same(after.filter((r) => r.name !== 'orphan' && r.name !== 'one'), before.filter((r) => r.name !== 'one'), 'rows come back as they were');
  t.match(after.find((r) => r.name === 'one'), { sizeBytes: 4 * MiB, created: before[0]!.created }, 'the row follows the image\'s size');
  t.equal(vd.get('two').parent, 'one');
  t.match(vd.get('orphan'), { sizeBytes: 3 * MiB, parent: null, state: 'ok' }, 'an image without a row is adopted');
  t.notOk(existsSync(join(dir, '.three.img.tmp-00ff00ff00ff')), 'the temporary file is gone');
  t.ok(existsSync(join(dir, 'notes.txt')), 'other files are left alone');
});

t.test('a store that cannot be opened says where and why', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'file'), '');
  const err = (() => { try { VirtualDisks.open(join(dir, 'file', 'vd')); } catch (e) { return e; } })();
  t.ok(err instanceof VirtualDiskIoError);
  t.match(err, { code: 'WV_ERR_VD_IO', message: `virtual disk store ${join(dir, 'file', 'vd')}: open failed: ENOTDIR`, errno: 'ENOTDIR' });
  mkdirSync(join(dir, 'bad'));
  writeFileSync(join(dir, 'bad', 'vd.db'), 'this is not a database, and it is long enough to be read as a header '.repeat(10));
  t.throws(() => VirtualDisks.open(join(dir, 'bad')), { code: 'WV_ERR_VD_IO', message: /open failed: SQLITE_/ });
});

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

t.test('a full host disk: the snapshot fails naming the disk and ENOSPC, and leaves nothing behind', { skip: isRoot ? false : 'needs root to mount a 1 MiB tmpfs' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-vd-full-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1M,mode=0700', 'wv-vd-test', dir], { encoding: 'utf8' });
  if (m.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    t.plan(0, `skipped: mount -t tmpfs failed here: ${(m.stderr || m.error?.message || '').trim()}`);
    return;
  }
  let vd: VirtualDisks | undefined;
  t.teardown(async () => {
    await vd?.close();
    // Unmount first (lazily if busy), then remove the mount point: nothing stays behind.
    if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  vd = VirtualDisks.open(dir);
  const d = await vd.create('full', '16M');
  t.equal(d.usedBytes, 0, 'a 16M disk fits on a 1M filesystem while it is empty');
  writeAt(d.path, 0, Buffer.alloc(600 * 1024, 0x33));
  const err = await vd.snapshot('full', 'copy').catch((e: unknown) => e);
  t.ok(err instanceof VirtualDiskIoError);
  t.match(err, { code: 'WV_ERR_VD_IO', errno: 'ENOSPC', disk: 'full', message: 'virtual disk "full": snapshot to "copy" failed: ENOSPC (the host filesystem is full)' });
  t.same(vd.list().map((r) => r.name), ['full'], 'no record for the failed copy');
  t.same(readdirSync(dir).filter((f) => f !== 'vd.db-journal').sort(), ['full.img', 'vd.db'], 'no temporary file left');
  await t.rejects(copySparse(d.path, join(dir, 'direct'), d.sizeBytes, 'read'), { code: 'ENOSPC' }, 'the fallback copy reports ENOSPC too');
  rmSync(join(dir, 'direct'), { force: true });
  // The store still works once there is room.
  await vd.delete('full');
  const again = await vd.create('small', '1M');
  t.equal(again.state, 'ok');
});

t.test('every error code here is in docs/errors.md', async (t) => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const source = readFileSync(new URL('./vdisk.ts', import.meta.url), 'utf8');
  const codes = [...source.matchAll(/'(WV_ERR_[A-Z_]+)'/g)].map((m) => m[1]!);
  t.same(codes, ['WV_ERR_NO_SUCH_VD', 'WV_ERR_VD_EXISTS', 'WV_ERR_VD_MISSING', 'WV_ERR_VD_IN_USE', 'WV_ERR_VD_IO']);
  for (const c of codes) t.match(doc, `\`${c}\``, c);
  for (const cls of ['NoSuchVirtualDiskError', 'VirtualDiskExistsError', 'VirtualDiskMissingError', 'VirtualDiskInUseError', 'VirtualDiskIoError']) t.match(doc, `\`${cls}\``, cls);
});
