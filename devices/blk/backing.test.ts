import t from 'tap';
import { mkdtempSync, writeFileSync, readFileSync, linkSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackingStore, SharingTable, SECTOR_SIZE } from './backing.ts';
import { parseDiskSpec } from './disk-spec.ts';

t.test('disk specs in xl and Demo CD forms', async (t) => {
  t.same(parseDiskSpec('file:/srv/root.img,xvda,w'), { kind: 'file', target: '/srv/root.img', vdev: 'xvda', readonly: false, spec: 'file:/srv/root.img,xvda,w' });
  t.match(parseDiskSpec('phy:cdrom,hdd,r'), { kind: 'phy', target: '/dev/cdrom', vdev: 'hdd', readonly: true });
  t.match(parseDiskSpec('phy:sda3,hda1,rw'), { kind: 'phy', target: '/dev/sda3', vdev: 'hda1', readonly: false });
  t.match(parseDiskSpec('/img/a.raw,xvdb'), { kind: 'file', target: '/img/a.raw', vdev: 'xvdb', readonly: false });
  t.match(parseDiskSpec('vd:data,xvdc,r'), { kind: 'vd', target: 'data', vdev: 'xvdc', readonly: true });
  t.match(parseDiskSpec('target=/img/b.raw,vdev=xvdd,access=ro,format=raw'), { kind: 'file', target: '/img/b.raw', vdev: 'xvdd', readonly: true });
  const bad: Array<[string, RegExp]> = [
    ['file:/a', /expected TYPE:TARGET,VDEV/],
    ['file:/a,xvda,x', /access "x" is not r or w/],
    ['file:/a,floppy,r', /"floppy" is not a virtual device name/],
    ['file:,xvda', /the target is empty/],
    ['vd:bad name,xvda', /is not a virtual disk name/],
    ['target=/a,vdev=xvda,format=qcow2', /format "qcow2" is not supported/],
    ['target=/a,xvda', /mixing the positional and keyed forms/],
    ['vdev=xvda', /no target/],
  ];
  for (const [s, why] of bad) t.throws(() => parseDiskSpec(s), { code: 'WV_ERR_INVALID_ARGUMENT', message: why }, s);
});

t.test('a file store: reads and writes sectors, flush makes them durable, bounds are checked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blk-'));
  const path = join(dir, 'disk.img');
  const init = new Uint8Array(64 * SECTOR_SIZE);
  for (let i = 0; i < init.length; i++) init[i] = (i * 7) & 0xff;
  writeFileSync(path, init);
  const s = await BackingStore.open(path, false);
  t.teardown(() => s.close());
  t.equal(s.info.sectors, 64n);
  t.equal(s.info.isBlockDevice, false);
  const buf = new Uint8Array(2 * SECTOR_SIZE);
  await s.read(3n, buf);
  t.same(buf, init.subarray(3 * SECTOR_SIZE, 5 * SECTOR_SIZE), 'read returns the file\'s bytes');
  const data = new Uint8Array(SECTOR_SIZE).fill(0xab);
  await s.write(10n, data);
  await s.flush();
  t.same(new Uint8Array(readFileSync(path).subarray(10 * SECTOR_SIZE, 11 * SECTOR_SIZE)), data, 'the write is in the file after flush');
  await t.rejects(s.read(63n, new Uint8Array(2 * SECTOR_SIZE)), { code: 'WV_ERR_BLOCK_IO', message: /ERANGE \(sectors 63\.\.65 past the end, 64 sectors\)/ });
  await t.rejects(s.write(-1n, data), { code: 'WV_ERR_BLOCK_IO', message: /ERANGE/ });
  await t.rejects(s.read(0n, new Uint8Array(100)), { code: 'WV_ERR_INVALID_ARGUMENT', message: /100 bytes is not a whole number of sectors/ });
  await s.discard(0n, 8n);
  await t.rejects(s.discard(60n, 8n), { message: /ERANGE/ });
});

t.test('a read-only store refuses writes; a missing or odd backing is named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blk-'));
  const path = join(dir, 'ro.img');
  writeFileSync(path, new Uint8Array(8 * SECTOR_SIZE));
  const s = await BackingStore.open(path, true);
  t.teardown(() => s.close());
  await t.rejects(s.write(0n, new Uint8Array(SECTOR_SIZE)), { code: 'WV_ERR_BLOCK_IO', message: /EROFS \(the device is read-only\)/ });
  await t.rejects(BackingStore.open(join(dir, 'missing.img'), true), { code: 'WV_ERR_BLOCK_BACKING', message: /missing\.img: it does not exist/ });
  await t.rejects(BackingStore.open(dir, true), { message: /neither a regular file nor a block device/ });
  await t.rejects(BackingStore.open('/dev/null', true), { message: /neither a regular file nor a block device/ });
});

t.test('a backing file that shrinks under a reader gives that request an I/O error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blk-'));
  const path = join(dir, 'shrink.img');
  writeFileSync(path, new Uint8Array(16 * SECTOR_SIZE));
  const s = await BackingStore.open(path, false);
  t.teardown(() => s.close());
  truncateSync(path, 4 * SECTOR_SIZE);
  await t.rejects(s.read(8n, new Uint8Array(SECTOR_SIZE)), { code: 'WV_ERR_BLOCK_IO', message: /EIO \(the backing store is shorter than it was\)/ });
  rmSync(path);
  const ok = new Uint8Array(SECTOR_SIZE);
  await s.read(0n, ok);
  t.pass('a deleted but open file still reads (the host keeps it until the VBD is detached)');
});

t.test('close waits for requests in flight; later requests fail', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blk-'));
  const path = join(dir, 'd.img');
  writeFileSync(path, new Uint8Array(256 * SECTOR_SIZE));
  const s = await BackingStore.open(path, false);
  const writes = Array.from({ length: 32 }, (_, i) => s.write(BigInt(i * 8), new Uint8Array(8 * SECTOR_SIZE).fill(i + 1)));
  await s.close();
  await Promise.all(writes);
  const back = readFileSync(path);
  t.ok(Array.from({ length: 32 }, (_, i) => back[i * 8 * SECTOR_SIZE] === i + 1).every(Boolean), 'every write acknowledged before the close landed');
  await t.rejects(s.read(0n, new Uint8Array(SECTOR_SIZE)), { message: /the device is detached/ });
});

t.test('sharing: many readers or one writer, never both; two paths to one file are one store', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blk-'));
  const path = join(dir, 'shared.img');
  writeFileSync(path, new Uint8Array(8 * SECTOR_SIZE));
  linkSync(path, join(dir, 'alias.img'));
  const a = await BackingStore.open(path, true);
  const b = await BackingStore.open(join(dir, 'alias.img'), true);
  t.teardown(async () => { await a.close(); await b.close(); });
  t.equal(a.info.identity, b.info.identity, 'a hard link is the same store');
  const table = new SharingTable();
  table.claim(a.info, { domid: 1, name: 'web', readonly: true, vdev: 'xvda' });
  table.claim(b.info, { domid: 2, name: 'db', readonly: true, vdev: 'xvdb' });
  t.throws(() => table.claim(b.info, { domid: 3, name: 'new', readonly: false, vdev: 'xvda' }),
    { code: 'WV_ERR_BLOCK_SHARING', message: /attached read-only to domain 1 \(web\) as xvda and 1 more/ });
  table.release(a.info.identity, 1, 'xvda');
  table.release(a.info.identity, 2, 'xvdb');
  table.claim(a.info, { domid: 3, name: 'new', readonly: false, vdev: 'xvda' });
  t.throws(() => table.claim(a.info, { domid: 4, name: 'reader', readonly: true, vdev: 'xvdz' }),
    { message: /attached read-write to domain 3 \(new\) as xvda/ });
  t.equal(table.holders(a.info.identity).length, 1);
});

t.test('a full host disk fails that write with ENOSPC; acknowledged writes stay', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const mnt = mkdtempSync(join(tmpdir(), 'wv-full-'));
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]).status !== 0) {
    t.comment('cannot mount a small tmpfs here (needs root): not tested');
    if (process.env.WV_DISK_FULL_TEST === 'required') t.fail('the disk-full test is required here');
    return;
  }
  t.teardown(() => { spawnSync('umount', [mnt]); });
  const path = join(mnt, 'sparse.img');
  writeFileSync(path, '');
  truncateSync(path, 1024 * SECTOR_SIZE); // 512 KiB, sparse, on a 64 KiB filesystem
  const s = await BackingStore.open(path, false);
  t.teardown(() => s.close());
  const first = new Uint8Array(16 * SECTOR_SIZE).fill(1);
  await s.write(0n, first);
  await s.flush();
  await t.rejects(s.write(64n, new Uint8Array(256 * SECTOR_SIZE).fill(2)), { code: 'WV_ERR_BLOCK_IO', message: /write failed: ENOSPC/ });
  const back = new Uint8Array(16 * SECTOR_SIZE);
  await s.read(0n, back);
  t.same(back, first, 'the acknowledged write is intact');
});
