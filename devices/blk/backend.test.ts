/**
 * The block backend against a frontend built from the real ring and grant
 * code over a domain's memory (the SDK's blkfront will speak the same
 * protocol): reads and writes through grants, flush durability, and every
 * bad request.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PvTable, PAGE_SIZE } from '../../kernel/pv-table.ts';
import { GrantTables, viewMemories } from '../../kernel/grant.ts';
import { FrontRing, MemoryRingPage, initSharedRing } from '../../kernel/ring.ts';
import { BackingStore, SECTOR_SIZE } from './backing.ts';
import { BlkBackend } from './backend.ts';
import { BLK_SLOT_SIZE, Op, Status, requestCodec, responseCodec, type BlkRequest, type BlkResponse } from './protocol.ts';

const DOM = 1;
const PAGES = 32;

async function rig(t: Test, opts: { sectors?: number; readonly?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blkbe-'));
  const path = join(dir, 'disk.img');
  const sectors = opts.sectors ?? 256;
  const init = new Uint8Array(sectors * SECTOR_SIZE);
  for (let i = 0; i < init.length; i++) init[i] = (i >> 9) & 0xff; // every byte of sector n is n & 0xff
  writeFileSync(path, init);
  const table = new PvTable(15, 1);
  table.claim(0, true);
  table.claim(DOM, false);
  const mem = new Uint8Array(new SharedArrayBuffer(PAGES * PAGE_SIZE));
  const grants = new GrantTables(table, viewMemories((d) => (d === DOM ? mem : undefined)));
  // Frontend: ring in page 0, granted to the backend.
  initSharedRing(new MemoryRingPage(mem, 0));
  const ringGref = grants.grantAccess(DOM, 0, 0, 0, mem.length);
  const ringMap = grants.map(0, DOM, ringGref, true);
  if (typeof ringMap === 'number') throw new Error(`ring map ${ringMap}`);
  const front = new FrontRing<BlkRequest, BlkResponse>(new MemoryRingPage(mem, 0), { request: requestCodec, response: responseCodec, slotSize: BLK_SLOT_SIZE });
  const store = await BackingStore.open(path, opts.readonly ?? false);
  let notified = 0;
  let broken: Error | undefined;
  const back = new BlkBackend({
    grants, self: 0, domid: DOM, page: new MemoryRingPage(ringMap.bytes, 0), store,
    notify: () => { notified++; }, onBroken: (e) => { broken = e; },
  });
  t.teardown(async () => { await back.close(); await store.close(); ringMap.release(); });
  const grant = (page: number, ro = false) => grants.grantAccess(DOM, 0, page, ro ? 1 : 0, mem.length);
  /** Send requests, kick, and wait for as many responses. */
  const roundTrip = async (reqs: BlkRequest[]): Promise<BlkResponse[]> => {
    for (const r of reqs) front.putRequest(r);
    front.pushRequests();
    back.kick();
    const got: BlkResponse[] = [];
    for (let i = 0; i < 500 && got.length < reqs.length; i++) {
      for (let r = front.takeResponse(); r !== undefined; r = front.takeResponse()) got.push(r);
      if (got.length < reqs.length) await new Promise((res) => setTimeout(res, 2));
    }
    return got;
  };
  const req = (op: number, id: number, sector: number, segments: BlkRequest['segments'] = [], nrSectors = 0n): BlkRequest =>
    ({ op, handle: 51712, id: BigInt(id), sector: BigInt(sector), segments, nrSectors, nrSegments: segments.length });
  return { path, mem, grants, front, back, grant, roundTrip, req, notified: () => notified, broken: () => broken };
}

t.test('reads fill the granted pages, writes come from them, flush makes writes durable', async (t) => {
  const r = await rig(t);
  const g1 = r.grant(1);
  const g2 = r.grant(2);
  // One request: sectors 10..17 into page 1 (all 8 sectors) and 18..19 into page 2, sectors 2..3.
  const [rsp] = await r.roundTrip([r.req(Op.READ, 7, 10, [{ gref: g1, firstSect: 0, lastSect: 7 }, { gref: g2, firstSect: 2, lastSect: 3 }])]);
  t.same(rsp, { id: 7n, op: Op.READ, status: Status.OKAY });
  t.equal(r.mem[PAGE_SIZE], 10, 'page 1 starts with sector 10');
  t.equal(r.mem[PAGE_SIZE + 7 * SECTOR_SIZE], 17);
  t.equal(r.mem[2 * PAGE_SIZE + 2 * SECTOR_SIZE], 18, 'page 2 sector 2 holds sector 18');
  t.equal(r.mem[2 * PAGE_SIZE], 0, 'outside the segment untouched');
  t.ok(r.notified() >= 1, 'the frontend was notified');

  r.mem.fill(0xee, 3 * PAGE_SIZE, 4 * PAGE_SIZE);
  const g3 = r.grant(3, true); // a write only needs a read-only grant
  const rs = await r.roundTrip([r.req(Op.WRITE, 8, 100, [{ gref: g3, firstSect: 0, lastSect: 3 }]), r.req(Op.FLUSH, 9, 0)]);
  t.same(rs.map((x) => [x.id, x.status]), [[8n, 0], [9n, 0]]);
  const disk = readFileSync(r.path);
  t.equal(disk[100 * SECTOR_SIZE], 0xee);
  t.equal(disk[104 * SECTOR_SIZE - 1], 0xee);
  t.equal(disk[104 * SECTOR_SIZE], 104, 'exactly four sectors written');
  t.match(r.back.stats, { reads: 1, writes: 1, flushes: 1, bytesRead: 10 * SECTOR_SIZE, bytesWritten: 4 * SECTOR_SIZE, errors: 0 });
  t.equal(r.grants.endAccess(DOM, g1), 0, 'grants are released after each request');
});

t.test('many concurrent requests are all answered, each once', async (t) => {
  const r = await rig(t);
  const reqs = Array.from({ length: 32 }, (_, i) => r.req(Op.READ, 1000 + i, i * 8, [{ gref: r.grant(1 + (i % 30)), firstSect: 0, lastSect: 7 }]));
  const rs = await r.roundTrip(reqs);
  t.equal(rs.length, 32);
  t.same(rs.map((x) => x.id).sort(), reqs.map((x) => x.id).sort());
  t.ok(rs.every((x) => x.status === Status.OKAY));
});

t.test('bad requests get an error status and change nothing; the ring keeps working', async (t) => {
  const r = await rig(t, { sectors: 64 });
  const g = r.grant(1);
  const ro = r.grant(2, true);
  const before = readFileSync(r.path);
  const bad: Array<[string, BlkRequest, number]> = [
    ['past the end', r.req(Op.READ, 1, 60, [{ gref: g, firstSect: 0, lastSect: 7 }]), Status.ERROR],
    ['a segment past its page', r.req(Op.READ, 2, 0, [{ gref: g, firstSect: 4, lastSect: 8 }]), Status.ERROR],
    ['first after last', r.req(Op.READ, 3, 0, [{ gref: g, firstSect: 5, lastSect: 2 }]), Status.ERROR],
    ['no segments', r.req(Op.READ, 4, 0, []), Status.ERROR],
    ['a grant that does not exist', r.req(Op.READ, 5, 0, [{ gref: 200, firstSect: 0, lastSect: 0 }]), Status.ERROR],
    ['a read into a read-only grant', r.req(Op.READ, 6, 0, [{ gref: ro, firstSect: 0, lastSect: 0 }]), Status.ERROR],
    ['an unknown operation', r.req(42, 7, 0), Status.NOT_SUPPORTED],
    ['a discard past the end', r.req(Op.DISCARD, 8, 60, [], 8n), Status.ERROR],
  ];
  const rs = await r.roundTrip(bad.map(([, q]) => q));
  for (const [what, q, status] of bad) t.equal(rs.find((x) => x.id === q.id)?.status, status, what);
  t.same(readFileSync(r.path), before, 'the disk is unchanged');
  t.equal(r.back.stats.errors, 8);
  // A segment count above 11 in the slot itself is refused (only 11 are decoded).
  r.front.putRequest(r.req(Op.READ, 10, 0, [{ gref: g, firstSect: 0, lastSect: 0 }]));
  const slot = 64 + ((r.front.reqProdPvt - 1) & 31) * BLK_SLOT_SIZE;
  r.mem[slot + 1] = 12;
  const [over] = await r.roundTrip([]).then(async () => {
    r.front.pushRequests();
    r.back.kick();
    for (let i = 0; i < 200; i++) { const x = r.front.takeResponse(); if (x) return [x]; await new Promise((res) => setTimeout(res, 2)); }
    return [];
  });
  t.equal(over?.status, Status.ERROR, 'nr_segments 12');
  const [one] = await r.roundTrip([r.req(Op.READ, 9, 0, [{ gref: g, firstSect: 0, lastSect: 0 }])]);
  t.equal(one!.status, Status.OKAY, 'a good request after the bad ones');
  t.equal(r.broken(), undefined);
});

t.test('writes to a read-only VBD fail; a corrupted ring stops only this device', async (t) => {
  const r = await rig(t, { readonly: true });
  const g = r.grant(1);
  const [w] = await r.roundTrip([r.req(Op.WRITE, 1, 0, [{ gref: g, firstSect: 0, lastSect: 0 }])]);
  t.equal(w!.status, Status.ERROR);
  // The frontend claims 1000 requests: a protocol error.
  new DataView(r.mem.buffer).setUint32(0, 1000, true);
  r.back.kick();
  t.match(r.broken()?.message ?? '', /req_prod/, 'reported as a broken ring');
  r.back.kick();
  t.pass('kicking a broken device does nothing');
});
