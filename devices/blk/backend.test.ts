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
import { PvTable, PAGE_SIZE, GRANTS, GRANT_WORDS, GrantWord } from '../../kernel/pv-table.ts';
import { GrantTables, viewMemories } from '../../kernel/grant.ts';
import { Errno } from '../../kernel/errno.ts';
import { FrontRing, MemoryRingPage, initSharedRing } from '../../kernel/ring.ts';
import { BackingStore, SECTOR_SIZE } from './backing.ts';
import { BlkBackend } from './backend.ts';
import {
  BLK_SLOT_SIZE, MAX_INDIRECT_SEGMENTS, Op, SEGMENT_SIZE, Status, requestCodec, responseCodec, writeSegment, type BlkRequest, type BlkResponse, type Segment,
} from './protocol.ts';

const DOM = 1;
/** Another domain, for grants that are not the backend's. */
const OTHER = 2;
const PAGES = 32;

async function rig(t: Test, opts: { sectors?: number; readonly?: boolean; pages?: number; persistent?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blkbe-'));
  const path = join(dir, 'disk.img');
  const sectors = opts.sectors ?? 256;
  const init = new Uint8Array(sectors * SECTOR_SIZE);
  for (let i = 0; i < init.length; i++) init[i] = (i >> 9) & 0xff; // every byte of sector n is n & 0xff
  writeFileSync(path, init);
  const table = new PvTable(15, 1);
  table.claim(0, true);
  table.claim(DOM, false);
  table.claim(OTHER, false);
  const mem = new Uint8Array(new SharedArrayBuffer((opts.pages ?? PAGES) * PAGE_SIZE));
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
    notify: () => { notified++; }, onBroken: (e) => { broken = e; }, persistent: opts.persistent,
  });
  t.teardown(async () => { await back.close(); await store.close(); ringMap.release(); });
  const grant = (page: number, ro = false) => grants.grantAccess(DOM, 0, page, ro ? 1 : 0, mem.length);
  /** Send requests, kick, and wait for as many responses (or `expect`). */
  const roundTrip = async (reqs: BlkRequest[], expect = reqs.length): Promise<BlkResponse[]> => {
    for (const r of reqs) front.putRequest(r);
    front.pushRequests();
    back.kick();
    const got: BlkResponse[] = [];
    for (let i = 0; i < 500 && got.length < expect; i++) {
      for (let r = front.takeResponse(); r !== undefined; r = front.takeResponse()) got.push(r);
      if (got.length < expect) await new Promise((res) => setTimeout(res, 2));
    }
    return got;
  };
  const req = (op: number, id: number, sector: number, segments: BlkRequest['segments'] = [], nrSectors = 0n): BlkRequest =>
    ({ op, handle: 51712, id: BigInt(id), sector: BigInt(sector), segments, nrSectors, nrSegments: segments.length });
  /** An indirect request; its descriptors go in the indirect pages with `descriptors`. */
  const ind = (op: number, id: number, sector: number, nrSegments: number, indirectGrefs: number[]): BlkRequest =>
    ({ op: Op.INDIRECT, indirectOp: op, handle: 51712, id: BigInt(id), sector: BigInt(sector), segments: [], nrSectors: 0n, nrSegments, indirectGrefs });
  /** Write `segs` as descriptors into page `page` of the frontend's memory. */
  const descriptors = (page: number, segs: Segment[]): void => {
    const v = new DataView(mem.buffer, page * PAGE_SIZE, PAGE_SIZE);
    segs.forEach((s, i) => writeSegment(v, i * SEGMENT_SIZE, s));
  };
  return { path, mem, table, grants, front, back, grant, roundTrip, req, ind, descriptors, notified: () => notified, broken: () => broken };
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

/** Byte j of data page i of the indirect tests. */
const pattern = (i: number, j: number): number => (i * 31 + j * 7 + 3) & 0xff;
/** Rig for indirect requests: ring page 0, indirect page 1, data pages 2..257, spare pages after; a 4 MiB disk. */
const indirectRig = (t: Test, readonly = false) => rig(t, { sectors: 8192, pages: 2 + MAX_INDIRECT_SEGMENTS + 8, readonly });
const DATA = 2;

t.test('indirect: a 1 MiB write and read move exact bytes, with one request each', async (t) => {
  const r = await indirectRig(t);
  const indirect = r.grant(1, true); // the backend only reads descriptors
  const data = Array.from({ length: MAX_INDIRECT_SEGMENTS }, (_, i) => r.grant(DATA + i));
  for (let i = 0; i < MAX_INDIRECT_SEGMENTS; i++) for (let j = 0; j < PAGE_SIZE; j++) r.mem[(DATA + i) * PAGE_SIZE + j] = pattern(i, j);
  r.descriptors(1, data.map((gref) => ({ gref, firstSect: 0, lastSect: 7 })));
  const before = readFileSync(r.path);
  const [w] = await r.roundTrip([r.ind(Op.WRITE, 1, 1000, MAX_INDIRECT_SEGMENTS, [indirect])]);
  t.same(w, { id: 1n, op: Op.INDIRECT, status: Status.OKAY }, 'the answer carries op 6');
  const disk = readFileSync(r.path);
  const MiB = 1 << 20;
  const at = 1000 * SECTOR_SIZE;
  let wrong = 0;
  for (let i = 0; i < MAX_INDIRECT_SEGMENTS; i++) for (let j = 0; j < PAGE_SIZE; j++) if (disk[at + i * PAGE_SIZE + j] !== pattern(i, j)) wrong++;
  t.equal(wrong, 0, 'every byte of the 1 MiB on disk');
  t.same(disk.subarray(0, at), before.subarray(0, at), 'nothing before it changed');
  t.same(disk.subarray(at + MiB), before.subarray(at + MiB), 'nothing after it changed');

  r.mem.fill(0, DATA * PAGE_SIZE, (DATA + MAX_INDIRECT_SEGMENTS) * PAGE_SIZE);
  const [rd] = await r.roundTrip([r.ind(Op.READ, 2, 1000, MAX_INDIRECT_SEGMENTS, [indirect])]);
  t.same(rd, { id: 2n, op: Op.INDIRECT, status: Status.OKAY });
  t.same(r.mem.subarray(DATA * PAGE_SIZE, (DATA + MAX_INDIRECT_SEGMENTS) * PAGE_SIZE), disk.subarray(at, at + MiB), 'the pages hold exactly the disk\'s bytes');
  t.equal(r.mem[DATA * PAGE_SIZE + 5], pattern(0, 5));
  t.match(r.back.stats, { reads: 1, writes: 1, bytesRead: MiB, bytesWritten: MiB, errors: 0 });
  t.equal(r.grants.endAccess(DOM, indirect), 0, 'the indirect page is released');
  t.same(data.map((g) => r.grants.endAccess(DOM, g)), data.map(() => 0), 'every data grant is released');
});

t.test('indirect: partial sectors and pages out of order land where the descriptors say', async (t) => {
  const r = await indirectRig(t);
  const indirect = r.grant(1, true);
  // 20 segments: sectors 2..4 of pages DATA+19, DATA+18, ..., DATA+0 (3 sectors each, 60 in all).
  const segs = Array.from({ length: 20 }, (_, i) => ({ gref: r.grant(DATA + 19 - i), firstSect: 2, lastSect: 4 }));
  r.descriptors(1, segs);
  const [rsp] = await r.roundTrip([r.ind(Op.READ, 3, 16, 20, [indirect])]);
  t.equal(rsp!.status, Status.OKAY);
  // Segment i holds disk sectors 16 + 3i .. 16 + 3i + 2; the disk's sector n is filled with n & 0xff.
  const got = segs.map((_, i) => [0, 1, 2].map((k) => r.mem[(DATA + 19 - i) * PAGE_SIZE + (2 + k) * SECTOR_SIZE]));
  t.same(got, segs.map((_, i) => [0, 1, 2].map((k) => (16 + 3 * i + k) & 0xff)));
  t.equal(r.mem[(DATA + 19) * PAGE_SIZE + 2 * SECTOR_SIZE - 1], 0, 'sector 1 of the page is untouched');
  t.equal(r.mem[(DATA + 19) * PAGE_SIZE + 5 * SECTOR_SIZE], 0, 'sector 5 of the page is untouched');
});

t.test('indirect: a held page cannot be ended while its I/O is in flight', async (t) => {
  const r = await indirectRig(t);
  const indirect = r.grant(1, true);
  const data = Array.from({ length: 16 }, (_, i) => r.grant(DATA + i));
  r.descriptors(1, data.map((gref) => ({ gref, firstSect: 0, lastSect: 7 })));
  r.front.putRequest(r.ind(Op.READ, 4, 0, 16, [indirect]));
  r.front.pushRequests();
  r.back.kick(); // the request is checked and its pages held synchronously; the I/O is in flight
  t.equal(r.back.inflight, 1);
  t.equal(r.grants.endAccess(DOM, data[7]!), -Errno.EBUSY, 'a data page in use');
  t.equal(r.grants.endAccess(DOM, indirect), 0, 'the indirect page is let go once its descriptors are copied');
  const [rsp] = await r.roundTrip([], 1);
  t.equal(rsp?.status, Status.OKAY);
  t.equal(r.grants.endAccess(DOM, data[7]!), 0, 'free once the request is answered');
});

t.test('indirect: bad requests get an error, change nothing, hold nothing; the device serves the next one', async (t) => {
  const r = await indirectRig(t);
  const disk = 8192;
  const indirect = r.grant(1, true);
  const data = Array.from({ length: 8 }, (_, i) => r.grant(DATA + i));
  const good = data.map((gref) => ({ gref, firstSect: 0, lastSect: 7 }));
  // Descriptor pages for the bad cases: each its own page, granted read-only to the backend.
  let page = DATA + MAX_INDIRECT_SEGMENTS;
  const withDescriptors = (segs: Segment[]): number => {
    r.descriptors(page, segs);
    return r.grant(page++, true);
  };
  const notGranted = 1000;
  const toOther = r.grants.grantAccess(DOM, OTHER, 1, 1, r.mem.length);
  const roData = r.grant(DATA + 9, true);
  const badSeg = (s: Partial<Segment>) => withDescriptors([...good.slice(0, 3), { ...good[3]!, ...s }, ...good.slice(4)]);
  const cases: Array<[string, BlkRequest]> = [
    ['too many segments (257)', r.ind(Op.READ, 10, 0, MAX_INDIRECT_SEGMENTS + 1, [indirect])],
    ['no segments', r.ind(Op.READ, 11, 0, 0, [indirect])],
    ['an indirect operation that is not read or write', { ...r.ind(Op.READ, 12, 0, 8, [indirect]), indirectOp: Op.FLUSH }],
    ['an indirect page that was never granted', r.ind(Op.READ, 13, 0, 8, [notGranted])],
    ['an indirect page granted to another domain', r.ind(Op.READ, 14, 0, 8, [toOther])],
    ['a descriptor whose grant does not exist', r.ind(Op.READ, 15, 0, 8, [badSeg({ gref: notGranted })])],
    ['a descriptor whose grant is another domain\'s', r.ind(Op.READ, 16, 0, 8, [badSeg({ gref: toOther })])],
    ['a read into a read-only page', r.ind(Op.READ, 17, 0, 8, [badSeg({ gref: roData })])],
    ['a descriptor with first after last', r.ind(Op.READ, 18, 0, 8, [badSeg({ firstSect: 5, lastSect: 2 })])],
    ['a descriptor with last sector 8', r.ind(Op.READ, 19, 0, 8, [badSeg({ firstSect: 0, lastSect: 8 })])],
    ['past the end of the device', r.ind(Op.READ, 20, disk - 63, 8, [withDescriptors(good)])],
    ['a write past the end of the device', r.ind(Op.WRITE, 21, disk - 8, 8, [withDescriptors(good)])],
  ];
  r.mem.fill(0x5a, DATA * PAGE_SIZE, (DATA + 8) * PAGE_SIZE);
  const before = readFileSync(r.path);
  const pages = Buffer.from(r.mem.subarray(DATA * PAGE_SIZE, (DATA + 8) * PAGE_SIZE));
  for (const [what, q] of cases) {
    const [rsp] = await r.roundTrip([q]);
    t.same(rsp, { id: q.id, op: Op.INDIRECT, status: Status.ERROR }, what);
    // The device keeps serving: the next good request succeeds.
    const [next] = await r.roundTrip([r.req(Op.READ, 100 + Number(q.id), 0, [{ gref: data[0]!, firstSect: 0, lastSect: 0 }])]);
    t.equal(next!.status, Status.OKAY, `a good request after ${what}`);
    r.mem.fill(0x5a, DATA * PAGE_SIZE, (DATA + 1) * PAGE_SIZE);
  }
  t.same(readFileSync(r.path), before, 'the disk is unchanged');
  t.same(Buffer.from(r.mem.subarray(DATA * PAGE_SIZE, (DATA + 8) * PAGE_SIZE)), pages, 'the data pages are unchanged');
  t.equal(r.back.stats.errors, cases.length);
  t.equal(r.broken(), undefined, 'no bad request breaks the ring');
  t.same([indirect, toOther, roData, ...data].map((g) => r.grants.endAccess(DOM, g)), [indirect, toOther, roData, ...data].map(() => 0), 'nothing is left held');
});

t.test('indirect: a write to a read-only device fails and writes nothing', async (t) => {
  const r = await indirectRig(t, true);
  const indirect = r.grant(1, true);
  r.descriptors(1, Array.from({ length: 16 }, (_, i) => ({ gref: r.grant(DATA + i, true), firstSect: 0, lastSect: 7 })));
  const before = readFileSync(r.path);
  const [w] = await r.roundTrip([r.ind(Op.WRITE, 1, 0, 16, [indirect])]);
  t.same(w, { id: 1n, op: Op.INDIRECT, status: Status.ERROR });
  t.same(readFileSync(r.path), before);
  const [rd] = await r.roundTrip([r.ind(Op.READ, 2, 0, 16, [indirect])]);
  t.equal(rd!.status, Status.ERROR, 'read-only data grants cannot take a read either');
  const g = r.grant(DATA + 20);
  const [ok] = await r.roundTrip([r.req(Op.READ, 3, 8, [{ gref: g, firstSect: 0, lastSect: 7 }])]);
  t.equal(ok!.status, Status.OKAY, 'reads still work');
  t.equal(r.mem[(DATA + 20) * PAGE_SIZE], 8);
});

t.test('the request codec round-trips indirect requests and clamps what it decodes', async (t) => {
  const bytes = new Uint8Array(BLK_SLOT_SIZE);
  const v = new DataView(bytes.buffer);
  const q: BlkRequest = { op: Op.INDIRECT, indirectOp: Op.WRITE, handle: 51712, id: 77n, sector: 1234n, segments: [], nrSectors: 0n, nrSegments: 600, indirectGrefs: [9, 10] };
  requestCodec.write(v, q);
  t.same({ op: bytes[0], indirectOp: bytes[1], nr: v.getUint16(2, true), handle: v.getUint16(24, true), g0: v.getUint32(28, true), g1: v.getUint32(32, true) },
    { op: 6, indirectOp: 1, nr: 600, handle: 51712, g0: 9, g1: 10 }, 'Xen\'s layout');
  t.same(requestCodec.read(v), q);
  v.setUint16(2, 0xffff, true); // needs 128 indirect pages: only 8 are decoded
  t.equal(requestCodec.read(v).indirectGrefs!.length, 8);
});

t.test('persistent grants: held from first use, checked like the others, dropped with the frontend\'s domain', async (t) => {
  const r = await rig(t, { persistent: true });
  const rw = r.grant(1);
  const ro = r.grant(2, true);
  const [a, b] = await r.roundTrip([r.req(Op.READ, 1, 8, [{ gref: rw, firstSect: 0, lastSect: 7 }]), r.req(Op.WRITE, 2, 16, [{ gref: ro, firstSect: 0, lastSect: 7 }])]);
  t.same([a!.status, b!.status], [Status.OKAY, Status.OKAY]);
  t.equal(r.mem[PAGE_SIZE], 8, 'the read landed');
  t.equal(r.back.persistentGrants, 2);
  t.equal(r.grants.endAccess(DOM, rw), -Errno.EBUSY, 'kept held after the answer');
  const [c] = await r.roundTrip([r.req(Op.READ, 3, 24, [{ gref: ro, firstSect: 0, lastSect: 7 }])]);
  t.equal(c!.status, Status.ERROR, 'a read into a read-only grant is refused, held or not');
  const [d] = await r.roundTrip([r.req(Op.READ, 4, 0, [{ gref: 5000, firstSect: 0, lastSect: 0 }])]);
  t.equal(d!.status, Status.ERROR, 'a reference past the table');
  const [e] = await r.roundTrip([r.req(Op.READ, 5, 32, [{ gref: rw, firstSect: 0, lastSect: 7 }])]);
  t.equal(e!.status, Status.OKAY, 'the device keeps serving');
  t.equal(r.mem[PAGE_SIZE], 32);
  // The frontend's domain goes and its id is reused: the holds went with it.
  r.grants.endAll(DOM);
  r.table.claim(DOM, false);
  r.grant(0); // as the old domain's ring grant came first
  const fresh = r.grant(1);
  t.equal(fresh, rw, 'the new domain gets the same reference');
  const [f] = await r.roundTrip([r.req(Op.READ, 6, 40, [{ gref: fresh, firstSect: 0, lastSect: 7 }])]);
  t.equal(f!.status, Status.OKAY, 'its grant is held afresh');
  t.equal(r.mem[PAGE_SIZE], 40);
  t.equal(r.back.persistentGrants, 1);
  await r.back.close();
  t.equal(r.grants.endAccess(DOM, fresh), 0, 'closing lets go exactly once');
  const busy = Array.from({ length: 8 }, (_, g) => r.table.words[r.table.slot(DOM) + GRANTS + g * GRANT_WORDS + GrantWord.BUSY]);
  t.same(busy, [0, 0, 0, 0, 0, 0, 0, 0], 'no hold left behind, none taken off the new domain\'s entries');
});

t.test('pause waits for requests in flight and takes no more until resume; a resumed backend redoes what was not answered', async (t) => {
  const r = await rig(t);
  const g1 = r.grant(1);
  const g2 = r.grant(2);
  // One read in flight, then pause.
  r.front.putRequest(r.req(Op.READ, 1, 8, [{ gref: g1, firstSect: 0, lastSect: 7 }]));
  r.front.pushRequests();
  r.back.kick();
  t.equal(r.back.inflight, 1);
  t.equal(await r.back.pause(), 1, 'the pause waited for one request in flight');
  t.equal(r.back.inflight, 0);
  t.same(r.front.takeResponse(), { id: 1n, op: Op.READ, status: Status.OKAY }, 'its answer is published before the pause ends');
  t.equal(r.mem[PAGE_SIZE], 8);
  // A request published while paused waits in the ring.
  r.front.putRequest(r.req(Op.READ, 2, 16, [{ gref: g2, firstSect: 0, lastSect: 7 }]));
  r.front.pushRequests();
  r.back.kick();
  await new Promise((res) => setTimeout(res, 20));
  t.equal(r.front.takeResponse(), undefined, 'nothing is taken while paused');
  t.equal(r.mem[2 * PAGE_SIZE], 0);

  // As after a restore: a new backend on the same ring starts from the responses published and takes request 2.
  const ringGref = r.grants.grantAccess(DOM, 0, 0, 0, r.mem.length);
  const ring = r.grants.map(0, DOM, ringGref, true);
  if (typeof ring === 'number') throw new Error(`ring map ${ring}`);
  const store = await BackingStore.open(r.path, false);
  const again = new BlkBackend({ grants: r.grants, self: 0, domid: DOM, page: new MemoryRingPage(ring.bytes, 0), store, notify: () => {}, resumed: true });
  t.teardown(async () => { await again.close(); await store.close(); ring.release(); });
  again.kick();
  let rsp: BlkResponse | undefined;
  for (let i = 0; i < 200 && rsp === undefined; i++) {
    rsp = r.front.takeResponse();
    if (rsp === undefined) await new Promise((res) => setTimeout(res, 2));
  }
  t.same(rsp, { id: 2n, op: Op.READ, status: Status.OKAY }, 'the request left in the ring is answered, once');
  t.equal(r.mem[2 * PAGE_SIZE], 16);
  t.equal(again.stats.reads, 1, 'request 1 (answered before) was not redone');
});
