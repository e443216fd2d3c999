/**
 * HostBlkFront against the real backend: 1 MiB requests go indirect and
 * move exact bytes, small ones go direct, more requests than slots or pages
 * wait their turn, and a persistent backend keeps the data grants held.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PvTable, PAGE_SIZE } from '../../kernel/pv-table.ts';
import { GrantTables, viewMemories } from '../../kernel/grant.ts';
import { MemoryRingPage } from '../../kernel/ring.ts';
import { Errno } from '../../kernel/errno.ts';
import { BackingStore, SECTOR_SIZE } from './backing.ts';
import { BlkBackend } from './backend.ts';
import { MAX_INDIRECT_SEGMENTS, Op, Status } from './protocol.ts';
import { HostBlkFront, frontPages, type HostBlkFrontOptions } from './host-front.ts';

const MiB = 1 << 20;

async function rig(t: Test, o: HostBlkFrontOptions & { persistent?: boolean; sectors?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blkfront-'));
  const path = join(dir, 'disk.img');
  const sectors = o.sectors ?? 8192;
  const init = new Uint8Array(sectors * SECTOR_SIZE);
  for (let i = 0; i < init.length; i++) init[i] = (i * 13 + (i >> 9)) & 0xff;
  writeFileSync(path, init);
  const table = new PvTable(15, 1);
  table.claim(0, true);
  table.claim(1, false);
  const mem = new Uint8Array(new SharedArrayBuffer((2 + frontPages(o)) * PAGE_SIZE));
  const grants = new GrantTables(table, viewMemories((d) => (d === 1 ? mem : undefined)));
  const front = new HostBlkFront(grants, 1, 0, mem, 2, o); // from page 2: the front need not start at 0
  const ring = grants.map(0, 1, front.ringGref, true);
  if (typeof ring === 'number') throw new Error(`ring map ${ring}`);
  const store = await BackingStore.open(path, false);
  const back = new BlkBackend({ grants, self: 0, domid: 1, page: new MemoryRingPage(ring.bytes, 0), store, notify: () => front.onNotify(), persistent: o.persistent });
  front.notifyBackend = () => back.kick();
  t.teardown(async () => { await back.close(); await store.close(); ring.release(); rmSync(dir, { recursive: true, force: true }); });
  return { path, init, mem, grants, front, back };
}

t.test('1 MiB writes and reads go indirect, one request each, and move exact bytes', async (t) => {
  const r = await rig(t);
  t.equal(r.front.maxRequestBytes, MAX_INDIRECT_SEGMENTS * PAGE_SIZE);
  const data = new Uint8Array(MiB);
  for (let i = 0; i < MiB; i++) data[i] = (i * 7 + 1) & 0xff;
  t.equal(await r.front.write(2048n, data), Status.OKAY);
  t.equal(await r.front.flush(), Status.OKAY);
  const disk = readFileSync(r.path);
  t.same(disk.subarray(2048 * SECTOR_SIZE, 2048 * SECTOR_SIZE + MiB), Buffer.from(data), 'on disk');
  t.same(disk.subarray(0, 2048 * SECTOR_SIZE), Buffer.from(r.init.subarray(0, 2048 * SECTOR_SIZE)), 'nothing before it');
  const back = new Uint8Array(MiB);
  t.equal(await r.front.read(2048n, back), Status.OKAY);
  t.same(back, data, 'read back');
  t.match(r.back.stats, { reads: 1, writes: 1, flushes: 1, bytesRead: MiB, bytesWritten: MiB, errors: 0 });
  // In place: a lease is the domain's memory, no copy.
  const lease = await r.front.lease(12 * PAGE_SIZE + SECTOR_SIZE);
  t.equal(await r.front.submit(Op.READ, 0n, lease), Status.OKAY);
  t.same(lease.bytes, r.init.subarray(0, 12 * PAGE_SIZE + SECTOR_SIZE), '13 pages, the last one a single sector');
  r.front.release(lease);
  await t.rejects(r.front.lease(MiB + PAGE_SIZE), /invalid block request/, 'more than one request moves');
  await t.rejects(r.front.lease(100), /invalid block request/, 'not whole sectors');
});

t.test('small requests go direct; more requests than slots wait for one', async (t) => {
  const r = await rig(t, { slots: 4, dataPages: 64 });
  const reads = Array.from({ length: 40 }, (_, i) => {
    const into = new Uint8Array(PAGE_SIZE);
    return r.front.read(BigInt(i * 8), into).then((status) => ({ status, ok: Buffer.compare(into, r.init.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)) === 0 }));
  });
  const got = await Promise.all(reads);
  t.same(got, got.map(() => ({ status: Status.OKAY, ok: true })), 'every read right');
  t.equal(r.back.stats.reads, 40);
  t.equal(r.back.inflight, 0);
});

t.test('requests wait for data pages when the pool is short', async (t) => {
  const r = await rig(t, { dataPages: MAX_INDIRECT_SEGMENTS });
  const a = await r.front.lease(MiB);
  let got = false;
  const b = r.front.lease(PAGE_SIZE).then((x) => { got = true; return x; });
  await new Promise((res) => setTimeout(res, 10));
  t.equal(got, false, 'no page free');
  r.front.release(a);
  const lease = await b;
  t.equal(lease.bytes.length, PAGE_SIZE);
  r.front.release(lease);
});

t.test('with persistent grants the backend keeps data pages held until it closes', async (t) => {
  const r = await rig(t, { persistent: true, dataPages: 300 });
  t.equal(r.front.persistent, true);
  const data = new Uint8Array(MiB).fill(0x42);
  t.equal(await r.front.write(0n, data), Status.OKAY);
  t.equal(await r.front.write(0n, data), Status.OKAY, 'again, with the pages already held');
  t.equal(r.back.persistentGrants, MAX_INDIRECT_SEGMENTS);
  const into = new Uint8Array(MiB);
  t.equal(await r.front.read(0n, into), Status.OKAY, 'a read through pages first held for a write');
  t.same(into, data);
  // The data pages' grants are references 1 + slots + 1 on (ring, indirect pages, data).
  const firstData = 1 + 32 + 1;
  t.equal(r.grants.endAccess(1, firstData), -Errno.EBUSY, 'a held grant cannot end');
  await r.back.close();
  t.equal(r.back.persistentGrants, 0);
  t.equal(r.grants.endAccess(1, firstData), 0, 'free once the backend closed');
});
