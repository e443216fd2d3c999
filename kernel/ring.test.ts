import t from 'tap';
import {
  BackRing, FrontRing, MemoryRingPage, RING_HEADER_SIZE, RING_PAGE_SIZE, RING_PROTOCOL_CODE, RingField, RingProtocolError,
  bytesCodec, initSharedRing, ringLayout, ringSlotOffset,
  type RingCodec, type RingPage,
} from './ring.ts';
import { InvalidArgumentError, WvError } from './errors.ts';
import { prng } from '../test/fuzz/prng.ts';

interface Req { id: number; op: number; sector: bigint }
interface Rsp { id: number; status: number }

const reqCodec: RingCodec<Req> = {
  size: 16,
  write(v, m) { v.setUint32(0, m.id, true); v.setUint8(4, m.op); v.setBigUint64(8, m.sector, true); },
  read(v) { return { id: v.getUint32(0, true), op: v.getUint8(4), sector: v.getBigUint64(8, true) }; },
};
const rspCodec: RingCodec<Rsp> = {
  size: 8,
  write(v, m) { v.setUint32(0, m.id, true); v.setInt32(4, m.status, true); },
  read(v) { return { id: v.getUint32(0, true), status: v.getInt32(4, true) }; },
};

/** Three pages of shared memory with the ring in the middle one and 0xAA canaries around it. */
function memory(): { mem: Uint8Array; page: MemoryRingPage; canariesIntact: () => boolean } {
  const mem = new Uint8Array(new SharedArrayBuffer(3 * RING_PAGE_SIZE));
  mem.fill(0xaa, 0, RING_PAGE_SIZE);
  mem.fill(0xaa, 2 * RING_PAGE_SIZE);
  const canariesIntact = () => mem.subarray(0, RING_PAGE_SIZE).every((b) => b === 0xaa)
    && mem.subarray(2 * RING_PAGE_SIZE).every((b) => b === 0xaa);
  return { mem, page: new MemoryRingPage(mem, RING_PAGE_SIZE), canariesIntact };
}

/** A RingPage that checks every access the rings make against the layout and records violations. */
class CheckedPage implements RingPage {
  readonly violations: string[] = [];
  readonly inner: RingPage;
  readonly slotSize: number;
  readonly slots: number;
  afterStore: ((offset: number) => void) | undefined;
  constructor(inner: RingPage, slotSize: number) {
    this.inner = inner;
    this.slotSize = slotSize;
    this.slots = ringLayout(slotSize).slots;
  }
  #header(offset: number, what: string): void {
    if (![0, 4, 8, 12].includes(offset)) this.violations.push(`${what} at header offset ${offset}`);
  }
  #slot(offset: number, len: number, what: string): void {
    const rel = offset - RING_HEADER_SIZE;
    if (rel < 0 || rel % this.slotSize !== 0 || len !== this.slotSize || rel / this.slotSize >= this.slots) {
      this.violations.push(`${what} of ${len} bytes at ${offset}`);
    }
  }
  load32(offset: number): number { this.#header(offset, 'load'); return this.inner.load32(offset); }
  store32(offset: number, value: number): void {
    this.#header(offset, 'store');
    this.inner.store32(offset, value);
    this.afterStore?.(offset);
  }
  readBytes(offset: number, dst: Uint8Array): void { this.#slot(offset, dst.length, 'read'); this.inner.readBytes(offset, dst); }
  writeBytes(offset: number, src: Uint8Array): void { this.#slot(offset, src.length, 'write'); this.inner.writeBytes(offset, src); }
}

function pair(page: RingPage, start = 0, slotSize?: number) {
  initSharedRing(page instanceof CheckedPage ? page.inner : page, start);
  const opts = { request: reqCodec, response: rspCodec, start, ...(slotSize === undefined ? {} : { slotSize }) };
  return { front: new FrontRing(page, opts), back: new BackRing(page, opts) };
}

t.test('layout: header offsets and slot counts', async (t) => {
  t.equal(RING_PAGE_SIZE, 4096);
  t.equal(RING_HEADER_SIZE, 64);
  t.same(RingField, { REQ_PROD: 0, REQ_EVENT: 4, RSP_PROD: 8, RSP_EVENT: 12 });
  const expected: [number, number][] = [
    [8, 256], [16, 128], [24, 128], [32, 64], [40, 64], [48, 64], [56, 64], [64, 32], [112, 32], [120, 32],
    [128, 16], [200, 16], [256, 8], [504, 8], [512, 4], [1008, 4], [1016, 2], [2016, 2], [2024, 1], [4032, 1],
  ];
  for (const [size, slots] of expected) {
    const l = ringLayout(size);
    t.equal(l.slots, slots, `slot size ${size}: ${slots} slots`);
    t.ok(RING_HEADER_SIZE + l.slots * size <= RING_PAGE_SIZE && RING_HEADER_SIZE + 2 * l.slots * size > RING_PAGE_SIZE, `${size}: the largest power of two that fits`);
  }
  for (const bad of [0, 4, 12, -8, 8.5, 4040, 4096, NaN]) {
    t.throws(() => ringLayout(bad), InvalidArgumentError, `slot size ${bad} is refused`);
  }
  const l = ringLayout(112);
  t.equal(ringSlotOffset(l, 0), 64);
  t.equal(ringSlotOffset(l, 31), 64 + 31 * 112);
  t.equal(ringSlotOffset(l, 32), 64, 'index 32 wraps to slot 0');
  t.equal(ringSlotOffset(l, 0xffffffff), 64 + 31 * 112, 'index 2^32-1 is the last slot');
  t.equal(ringSlotOffset(l, -1), 64 + 31 * 112, 'indexes are taken modulo 2^32');
});

t.test('initSharedRing writes the header little-endian and zeroes the reserved bytes', async (t) => {
  const { mem, page } = memory();
  mem.fill(0x5c, RING_PAGE_SIZE, 2 * RING_PAGE_SIZE);
  initSharedRing(page, 0x12345678);
  const h = Buffer.from(mem.subarray(RING_PAGE_SIZE, RING_PAGE_SIZE + RING_HEADER_SIZE));
  t.equal(h.toString('hex', 0, 16), '78563412' + '79563412' + '78563412' + '79563412');
  t.ok(h.subarray(16).every((b) => b === 0), 'reserved bytes are zero');
  t.equal(mem[RING_PAGE_SIZE + RING_HEADER_SIZE], 0x5c, 'slots are left alone');
  initSharedRing(page, 0xffffffff);
  t.equal(page.load32(RingField.REQ_PROD), 0xffffffff);
  t.equal(page.load32(RingField.REQ_EVENT), 0, 'the event index wraps');
});

t.test('messages land in the slots the layout says', async (t) => {
  for (const slotSize of [8, 24, 112, 4032]) {
    const { mem, page, canariesIntact } = memory();
    initSharedRing(page);
    const codec = bytesCodec(slotSize);
    const front = new FrontRing(page, { request: codec, response: codec });
    const back = new BackRing(page, { request: codec, response: codec });
    t.equal(front.slotSize, slotSize);
    for (let i = 0; i < front.slots; i++) t.ok(front.putRequest(new Uint8Array(slotSize).fill(i + 1)));
    t.notOk(front.putRequest(new Uint8Array(slotSize)), 'full');
    front.pushRequests();
    const base = RING_PAGE_SIZE + RING_HEADER_SIZE;
    t.equal(mem[base], 1);
    t.equal(mem[base + slotSize - 1], 1);
    t.equal(mem[base + (front.slots - 1) * slotSize], front.slots & 0xff, 'the last slot');
    t.equal(page.load32(RingField.REQ_PROD), front.slots);
    // One round trip so the next request wraps to slot 0.
    t.same(back.takeRequest(), new Uint8Array(slotSize).fill(1));
    back.putResponse(new Uint8Array(slotSize).fill(0xee));
    back.pushResponses();
    t.equal(mem[base], 0xee, 'the response reuses the request\'s slot');
    t.same(front.takeResponse(), new Uint8Array(slotSize).fill(0xee));
    t.ok(front.putRequest(new Uint8Array(slotSize).fill(0x77)));
    t.equal(mem[base], 0x77, `slot size ${slotSize}: index ${front.slots} wraps to slot 0`);
    t.ok(canariesIntact(), 'nothing outside the page changed');
  }
});

t.test('request/response round trips', async (t) => {
  const { page, canariesIntact } = memory();
  const { front, back } = pair(page);
  t.equal(front.slotSize, 16, 'default slot size: the larger codec, rounded up to 8');
  t.equal(front.slots, 128);
  t.equal(front.freeSlots(), 128);
  for (let i = 0; i < 3; i++) t.ok(front.putRequest({ id: i, op: 2, sector: 1n << BigInt(40 + i) }));
  t.equal(front.freeSlots(), 125);
  t.equal(back.unconsumedRequests(), 0, 'nothing is visible before the push');
  front.pushRequests();
  t.equal(back.unconsumedRequests(), 3);
  const got: Req[] = [];
  for (let r = back.takeRequest(); r !== undefined; r = back.takeRequest()) got.push(r);
  t.same(got, [0, 1, 2].map((i) => ({ id: i, op: 2, sector: 1n << BigInt(40 + i) })));
  t.equal(back.pendingResponses(), 3);
  t.notOk(back.finalCheckForRequests(), 'no more requests');
  for (const r of got) t.ok(back.putResponse({ id: r.id, status: -r.id }));
  t.notOk(back.putResponse({ id: 99, status: 0 }), 'no response without a request');
  t.equal(front.unconsumedResponses(), 0, 'nothing is visible before the push');
  back.pushResponses();
  t.equal(front.unconsumedResponses(), 3);
  t.same([front.takeResponse(), front.takeResponse(), front.takeResponse(), front.takeResponse()],
    [{ id: 0, status: 0 }, { id: 1, status: -1 }, { id: 2, status: -2 }, undefined]);
  t.equal(front.freeSlots(), 128);
  t.equal(front.rspCons, 3);
  t.equal(back.reqCons, 3);
  t.equal(back.rspProdPvt, 3);
  t.ok(canariesIntact());
});

t.test('a full ring refuses requests until responses are consumed', async (t) => {
  const { page } = memory();
  const { front, back } = pair(page, 0, 1008);
  t.equal(front.slots, 4);
  for (let i = 0; i < 4; i++) t.ok(front.putRequest({ id: i, op: 0, sector: 0n }));
  t.ok(front.full());
  t.notOk(front.putRequest({ id: 4, op: 0, sector: 0n }));
  front.pushRequests();
  while (back.takeRequest() !== undefined) back.putResponse({ id: 0, status: 0 });
  t.ok(front.full(), 'answered but not published: still full');
  back.pushResponses();
  t.ok(front.full(), 'published but not consumed: still full');
  front.takeResponse();
  t.equal(front.freeSlots(), 1);
  t.ok(front.putRequest({ id: 4, op: 0, sector: 0n }));
});

t.test('free-running indexes wrap around 2^32', async (t) => {
  for (const start of [0xffffffff, 0xfffffff0, 0xfffffffd]) {
    const { page, canariesIntact } = memory();
    const { front, back } = pair(page, start, 1008);
    const rand = prng(start);
    let sent = 0;
    let answered = 0;
    let received = 0;
    for (let round = 0; round < 40; round++) {
      const n = 1 + Math.floor(rand() * front.freeSlots());
      for (let i = 0; i < n; i++) t.ok(front.putRequest({ id: sent++, op: 1, sector: BigInt(sent) }), 'room');
      front.pushRequests();
      t.equal(page.load32(RingField.REQ_PROD), (start + sent) >>> 0, 'req_prod is start + sent, modulo 2^32');
      for (let r = back.takeRequest(); r !== undefined; r = back.takeRequest()) {
        t.equal(r.id, answered);
        back.putResponse({ id: r.id, status: 7 });
        answered++;
      }
      back.pushResponses();
      for (let r = front.takeResponse(); r !== undefined; r = front.takeResponse()) t.equal(r.id, received++);
    }
    t.equal(received, sent, `start ${start.toString(16)}: every request answered in order`);
    t.ok(sent > 16, 'went well past the wrap');
    t.equal(front.rspCons, (start + sent) >>> 0);
    t.ok(front.rspCons < 200, 'the index wrapped to a small number');
    t.ok(canariesIntact());
  }
});

t.test('notification suppression', async (t) => {
  const { page } = memory();
  const { front, back } = pair(page);
  const req = (id: number): Req => ({ id, op: 0, sector: 0n });

  t.ok(front.putRequest(req(1)));
  t.ok(front.pushRequests(), 'the first request notifies (req_event starts at 1)');
  t.notOk(front.pushRequests(), 'pushing nothing never notifies');
  front.putRequest(req(2));
  t.notOk(front.pushRequests(), 'the back end has not asked again: no notification');

  t.ok(back.takeRequest());
  t.ok(back.finalCheckForRequests(), 'a final check with requests left says so');
  t.equal(page.load32(RingField.REQ_EVENT), 1, '...and does not move req_event');
  t.ok(back.takeRequest());
  t.notOk(back.finalCheckForRequests(), 'all consumed');
  t.equal(page.load32(RingField.REQ_EVENT), 3, 'req_event = req_cons + 1');

  front.putRequest(req(3));
  front.putRequest(req(4));
  front.putRequest(req(5));
  t.ok(front.pushRequests(), 'a batch that crosses req_event notifies once');
  front.putRequest(req(6));
  t.notOk(front.pushRequests(), 'the next one does not');

  // Responses: the same rules the other way.
  back.putResponse({ id: 1, status: 0 });
  t.ok(back.pushResponses(), 'the first response notifies (rsp_event starts at 1)');
  back.putResponse({ id: 2, status: 0 });
  t.notOk(back.pushResponses(), 'the front end has not asked again');
  front.takeResponse();
  front.takeResponse();
  t.notOk(front.finalCheckForResponses());
  t.equal(page.load32(RingField.RSP_EVENT), 3);
  while (back.takeRequest()) back.putResponse({ id: 0, status: 0 });
  t.ok(back.pushResponses(), 'notifies after the front end asked');

  // A consumer may ask for a notification further ahead (Xen's blkfront does for batching).
  front.takeResponse();
  page.store32(RingField.REQ_EVENT, back.reqCons + 3);
  front.putRequest(req(7));
  t.notOk(front.pushRequests(), 'short of req_event');
  front.putRequest(req(8));
  front.putRequest(req(9));
  t.ok(front.pushRequests(), 'reaching req_event');
});

t.test('the final check catches work published while it armed the event', async (t) => {
  const { page: mem } = memory();
  const page = new CheckedPage(mem, 16);
  const { front, back } = pair(page);
  let notified = false;
  page.afterStore = (offset) => {
    if (offset !== RingField.REQ_EVENT) return;
    page.afterStore = undefined;
    // The front end runs between the back end's store of req_event and its second look.
    front.putRequest({ id: 1, op: 0, sector: 0n });
    notified = front.pushRequests();
  };
  t.ok(back.finalCheckForRequests(), 'the second look sees the request');
  t.ok(notified, 'and the producer was told to notify as well (a spurious wake-up is harmless)');
  page.afterStore = (offset) => {
    if (offset !== RingField.RSP_EVENT) return;
    page.afterStore = undefined;
    back.takeRequest();
    back.putResponse({ id: 1, status: 0 });
    back.pushResponses();
  };
  t.ok(front.finalCheckForResponses(), 'the same for responses');
  t.same(page.violations, []);
});

t.test('notify-only-when-asked never loses a wake-up (random interleavings)', async (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    const rand = prng(seed);
    const { page } = memory();
    const start = seed % 2 === 0 ? 0xfffffff8 : 0;
    const { front, back } = pair(page, start, 1008); // 4 slots, so the ring is often full
    let backPending = false;
    let frontPending = false;
    let backAwake = false;
    let frontAwake = false;
    let notifications = 0;
    let sent = 0;
    let received = 0;
    let outOfOrder = 0;
    const total = 200;
    let unpushedResponses = false;
    const step = (): void => {
      const r = rand();
      if (r < 0.3 && sent < total) {
        // Producer: queue up to 3 requests and push.
        for (let k = 1 + Math.floor(rand() * 3); k > 0 && sent < total; k--) {
          if (!front.putRequest({ id: sent, op: 0, sector: 0n })) break;
          sent++;
        }
        if (front.pushRequests()) { backPending = true; notifications++; }
      } else if (r < 0.65) {
        // Back end: woken by its port, then one step of its loop.
        if (!backAwake && backPending) { backPending = false; backAwake = true; }
        if (!backAwake) return;
        const req = back.takeRequest();
        if (req) { back.putResponse({ id: req.id, status: 0 }); unpushedResponses = true; return; }
        if (unpushedResponses) {
          unpushedResponses = false;
          if (back.pushResponses()) { frontPending = true; notifications++; }
          return;
        }
        if (!back.finalCheckForRequests()) backAwake = false;
      } else {
        // Front end's response handler.
        if (!frontAwake && frontPending) { frontPending = false; frontAwake = true; }
        if (!frontAwake) return;
        const rsp = front.takeResponse();
        if (rsp) { if (rsp.id !== received++) outOfOrder++; return; }
        if (!front.finalCheckForResponses()) frontAwake = false;
      }
    };
    let steps = 0;
    while ((received < total || backAwake || frontAwake || backPending || frontPending) && steps < 100_000) {
      step();
      steps++;
    }
    t.equal(received, total, `seed ${seed}: every response arrived, nobody slept on work (${steps} steps)`);
    t.equal(outOfOrder, 0, 'in order');
    t.ok(notifications < 2 * total, `seed ${seed}: ${notifications} notifications for ${2 * total} messages`);
  }
});

t.test('a corrupted req_prod is a protocol error, latched, with no stray access', async (t) => {
  const cases: [string, (slots: number, reqCons: number, rspProdPvt: number) => number][] = [
    ['more unanswered requests than slots', (slots, _c, rsp) => rsp + slots + 1],
    ['just past the ring, far ahead', (_s, c) => c + 0x7fffffff],
    ['gone back before req_cons', (_s, c) => c - 1],
    ['gone back a long way', (_s, c) => c - 1000],
    ['2^32 - 1', () => 0xffffffff],
  ];
  for (const [name, bad] of cases) {
    const { page: mem, canariesIntact } = memory();
    const page = new CheckedPage(mem, 16);
    const { front, back } = pair(page, 5);
    for (let i = 0; i < 3; i++) front.putRequest({ id: i, op: 0, sector: 0n });
    front.pushRequests();
    back.takeRequest();
    back.takeRequest();
    back.putResponse({ id: 0, status: 0 });
    const value = bad(back.slots, back.reqCons, back.rspProdPvt) >>> 0;
    page.inner.store32(RingField.REQ_PROD, value);
    const err = t.throws(() => back.takeRequest(), RingProtocolError, name) as RingProtocolError;
    t.ok(err instanceof WvError);
    t.equal(err.code, RING_PROTOCOL_CODE);
    t.equal(err.code, 'WV_ERR_RING_PROTOCOL');
    t.equal(err.name, 'RingProtocolError');
    t.equal(err.field, 'req_prod');
    t.equal(err.value, value);
    t.match(err.message, /front end/);
    t.equal(back.broken, err);
    page.inner.store32(RingField.REQ_PROD, back.reqCons);
    for (const op of [() => back.unconsumedRequests(), () => back.takeRequest(), () => back.putResponse({ id: 1, status: 0 }),
      () => back.pushResponses(), () => back.finalCheckForRequests(), () => back.pendingResponses()]) {
      t.throws(op, err, 'the ring stays broken even after the value is repaired');
    }
    t.same(page.violations, []);
    t.ok(canariesIntact());
  }
  // The largest legal value is accepted.
  const { page } = memory();
  const { front, back } = pair(page, 0xfffffffe);
  page.store32(RingField.REQ_PROD, (0xfffffffe + back.slots) >>> 0);
  t.equal(back.unconsumedRequests(), back.slots, 'req_prod = rsp_prod_pvt + slots is legal');
  t.equal(front.broken, undefined);
});

t.test('a corrupted rsp_prod is a protocol error, latched, with no stray access', async (t) => {
  const cases: [string, (published: number, rspCons: number) => number][] = [
    ['a response to a request never published', (p) => p + 1],
    ['far ahead', (p) => p + 1000],
    ['gone back before rsp_cons', (_p, c) => c - 1],
    ['2^32 - 1 ahead', (_p, c) => c + 0xffffffff],
  ];
  for (const [name, bad] of cases) {
    const { page: mem, canariesIntact } = memory();
    const page = new CheckedPage(mem, 16);
    const { front, back } = pair(page, 0xfffffffe);
    for (let i = 0; i < 3; i++) front.putRequest({ id: i, op: 0, sector: 0n });
    front.pushRequests();
    front.putRequest({ id: 3, op: 0, sector: 0n }); // written, not published: the back end cannot answer it
    back.takeRequest();
    back.putResponse({ id: 0, status: 0 });
    back.pushResponses();
    front.takeResponse();
    const value = bad(page.load32(RingField.REQ_PROD), front.rspCons) >>> 0;
    page.inner.store32(RingField.RSP_PROD, value);
    const err = t.throws(() => front.takeResponse(), RingProtocolError, name) as RingProtocolError;
    t.equal(err.code, 'WV_ERR_RING_PROTOCOL');
    t.equal(err.field, 'rsp_prod');
    t.equal(err.value, value);
    t.match(err.message, /back end/);
    for (const op of [() => front.freeSlots(), () => front.putRequest({ id: 9, op: 0, sector: 0n }), () => front.pushRequests(),
      () => front.unconsumedResponses(), () => front.finalCheckForResponses()]) {
      t.throws(op, err, 'the ring stays broken');
    }
    t.same(page.violations, []);
    t.ok(canariesIntact());
  }
  // rsp_prod may not cover the written but unpublished request, but may cover every published one.
  const { page } = memory();
  const { front } = pair(page, 7);
  front.putRequest({ id: 0, op: 0, sector: 0n });
  front.putRequest({ id: 1, op: 0, sector: 0n });
  front.pushRequests();
  page.store32(RingField.RSP_PROD, 9);
  t.equal(front.unconsumedResponses(), 2, 'responses to every published request are legal');
});

t.test('hostile event fields only change who is notified', async (t) => {
  const { page } = memory();
  const { front, back } = pair(page);
  for (const ev of [0, 0xffffffff, 0x80000000, 12345]) {
    page.store32(RingField.REQ_EVENT, ev);
    page.store32(RingField.RSP_EVENT, ev);
    front.putRequest({ id: ev, op: 0, sector: 0n });
    t.type(front.pushRequests(), 'boolean');
    const r = back.takeRequest();
    t.equal(r?.id, ev);
    back.putResponse({ id: ev, status: 0 });
    t.type(back.pushResponses(), 'boolean');
    t.equal(front.takeResponse()?.id, ev);
  }
});

t.test('MemoryRingPage checks its window', async (t) => {
  const mem = new Uint8Array(new SharedArrayBuffer(3 * RING_PAGE_SIZE));
  for (const [off, why] of [[-1, 'negative'], [2 * RING_PAGE_SIZE + 1, 'past the end'], [1.5, 'fractional'], [2, 'unaligned'],
    [NaN, 'NaN'], [2 ** 53, 'huge']] as const) {
    t.throws(() => new MemoryRingPage(mem, off), InvalidArgumentError, why);
  }
  t.throws(() => new MemoryRingPage(mem.subarray(1), 4), InvalidArgumentError, 'aligned in the view but not in the buffer');
  t.throws(() => new MemoryRingPage(new Uint8Array(new SharedArrayBuffer(4095)), 0), InvalidArgumentError, 'a memory smaller than a page');
  const page = new MemoryRingPage(mem, 2 * RING_PAGE_SIZE);
  t.equal(page.offset, 2 * RING_PAGE_SIZE);
  t.ok(new MemoryRingPage(mem.subarray(4), 0), 'a view offset by 4 is fine');
  t.ok(new MemoryRingPage(new Uint8Array(RING_PAGE_SIZE), 0), 'an unshared buffer works too (single thread)');
  for (const off of [-4, 2, 64, 4096, 1.5]) {
    t.throws(() => page.load32(off), InvalidArgumentError, `load32(${off})`);
    t.throws(() => page.store32(off, 1), InvalidArgumentError, `store32(${off})`);
  }
  t.throws(() => page.readBytes(4090, new Uint8Array(8)), InvalidArgumentError);
  t.throws(() => page.writeBytes(-1, new Uint8Array(1)), InvalidArgumentError);
  page.writeBytes(4088, new Uint8Array(8).fill(3));
  t.equal(mem[3 * RING_PAGE_SIZE - 1], 3, 'the last byte of the page is reachable');
  page.store32(12, 0x1_0000_0005);
  t.equal(page.load32(12), 5, 'values are taken modulo 2^32');
  t.equal(mem[2 * RING_PAGE_SIZE + 12], 5, 'little-endian');
});

t.test('codecs must fit the slot', async (t) => {
  const { page } = memory();
  t.throws(() => new FrontRing(page, { request: bytesCodec(24), response: bytesCodec(8), slotSize: 16 }), InvalidArgumentError);
  t.throws(() => new BackRing(page, { request: bytesCodec(8), response: bytesCodec(5000) }), InvalidArgumentError);
  t.throws(() => new BackRing(page, { request: bytesCodec(-1), response: bytesCodec(16) }), InvalidArgumentError, 'a negative codec size');
  t.throws(() => new FrontRing(page, { request: bytesCodec(8), response: bytesCodec(8), slotSize: 12 }), InvalidArgumentError, 'a bad slot size');
  const r = new FrontRing(page, { request: bytesCodec(9), response: bytesCodec(1) });
  t.equal(r.slotSize, 16);
  t.throws(() => r.putRequest(new Uint8Array(10)), InvalidArgumentError, 'a message longer than its codec');
  t.equal(r.reqProdPvt, 0, 'nothing was queued');
});

t.test('seeded fuzz: random index corruption between operations', async (t) => {
  const sizes = [8, 16, 24, 112, 1008, 4032];
  let protocolErrors = 0;
  let checkedMessages = 0;
  for (let seed = 1; seed <= 150; seed++) {
    const rand = prng(seed * 7919);
    const u32 = () => Math.floor(rand() * 2 ** 32);
    const { page: mem, canariesIntact } = memory();
    const slotSize = sizes[Math.floor(rand() * sizes.length)]!;
    const page = new CheckedPage(mem, slotSize);
    const start = rand() < 0.5 ? (0xffffffff - Math.floor(rand() * 64)) >>> 0 : u32();
    initSharedRing(page.inner, start);
    const codec = bytesCodec(slotSize);
    const front = new FrontRing(page, { request: codec, response: codec, start });
    const back = new BackRing(page, { request: codec, response: codec, start });
    const msg = (n: number) => { const b = new Uint8Array(slotSize); new DataView(b.buffer).setUint32(0, n, true); b[slotSize - 1] = n & 0xff; return b; };
    const idOf = (b: Uint8Array) => new DataView(b.buffer).getUint32(0, true);
    const requests: number[] = []; // written by the front end, not yet taken by the back end
    const answered: number[] = []; // answered by the back end, not yet taken by the front end
    const problems: string[] = [];
    let tainted = false; // a producer index was overwritten and accepted: contents may no longer match
    let next = 0;
    let failure: unknown;
    for (let step = 0; step < 400 && failure === undefined; step++) {
      try {
        switch (Math.floor(rand() * 9)) {
          case 0: { // now and then, overwrite a header field (or a raw header byte)
            if (rand() < 0.9) break;
            if (rand() < 0.2) {
              page.inner.writeBytes(Math.floor(rand() * 16), new Uint8Array([Math.floor(rand() * 256)]));
              tainted = true;
            } else {
              const field = [0, 4, 8, 12][Math.floor(rand() * 4)]!;
              const value = rand() < 0.5 ? page.inner.load32(field) + Math.floor(rand() * 9) - 4 : u32();
              page.inner.store32(field, value);
              if (field === RingField.REQ_PROD || field === RingField.RSP_PROD) tainted = true;
            }
            break;
          }
          case 1: case 2:
            if (front.putRequest(msg(next))) requests.push(next++);
            break;
          case 3: front.pushRequests(); break;
          case 4: {
            let guard = 0;
            for (let r = back.takeRequest(); r !== undefined; r = back.takeRequest()) {
              if (++guard > back.slots) { problems.push('a request drain went past the slot count'); break; }
              const want = requests.shift();
              if (!tainted) { checkedMessages++; if (idOf(r) !== want) problems.push(`request ${idOf(r)} instead of ${want}`); }
              back.putResponse(r);
              answered.push(idOf(r));
            }
            break;
          }
          case 5: back.pushResponses(); break;
          case 6: {
            let guard = 0;
            for (let r = front.takeResponse(); r !== undefined; r = front.takeResponse()) {
              if (++guard > front.slots) { problems.push('a response drain went past the slot count'); break; }
              const want = answered.shift();
              if (!tainted) { checkedMessages++; if (idOf(r) !== want) problems.push(`response ${idOf(r)} instead of ${want}`); }
            }
            break;
          }
          case 7: back.finalCheckForRequests(); break;
          case 8: front.finalCheckForResponses(); break;
        }
        const free = front.freeSlots();
        const pending = back.pendingResponses();
        if (!(free >= 0 && free <= front.slots && pending >= 0 && pending <= back.slots)) {
          problems.push(`counts out of range: free ${free}, pending ${pending}`);
        }
      } catch (err) {
        failure = err;
      }
    }
    if (failure !== undefined) {
      if (failure instanceof RingProtocolError) {
        protocolErrors++;
        if (front.broken !== failure && back.broken !== failure) problems.push('the ring that raised the error is not broken');
      } else {
        problems.push(`not a protocol error: ${String(failure)}`);
      }
    }
    t.same(problems, [], `seed ${seed}: only correct operation or a RingProtocolError`);
    t.same(page.violations, [], `seed ${seed}: every access was a header field or a whole slot`);
    t.ok(canariesIntact(), `seed ${seed}: nothing outside the page was written`);
  }
  t.ok(protocolErrors > 20 && protocolErrors < 140, `${protocolErrors} of 150 runs ended in a protocol error`);
  t.ok(checkedMessages > 1000, `${checkedMessages} messages checked while the page was honest`);
});

t.test('seeded fuzz: a front end that changes req_prod at every read', async (t) => {
  let survived = 0;
  let failed = 0;
  for (let seed = 1; seed <= 50; seed++) {
    const rand = prng(seed);
    const { page: mem, canariesIntact } = memory();
    const inner = new CheckedPage(mem, 64);
    let back: BackRing<Uint8Array, Uint8Array> | undefined;
    // Mostly a legal value that jumps around (even backwards) from read to read, now and then anything.
    const hostile = (): number => rand() < 0.0001
      ? Math.floor(rand() * 2 ** 32)
      : (back!.reqCons + Math.floor(rand() * (back!.slots - back!.pendingResponses() + 1))) >>> 0;
    const page: RingPage = {
      load32: (off) => (off === RingField.REQ_PROD ? hostile() : inner.load32(off)),
      store32: (off, v) => inner.store32(off, v),
      readBytes: (off, dst) => inner.readBytes(off, dst),
      writeBytes: (off, src) => inner.writeBytes(off, src),
    };
    initSharedRing(mem, seed);
    back = new BackRing(page, { request: bytesCodec(64), response: bytesCodec(64), start: seed });
    let taken = 0;
    let maxPending = 0;
    let failure: unknown;
    for (let i = 0; i < 5_000 && failure === undefined; i++) {
      try {
        const r = back.takeRequest();
        if (r) { taken++; if (rand() < 0.5) back.putResponse(r); } else if (back.finalCheckForRequests() === false && rand() < 0.3) {
          while (back.pendingResponses() > 0) back.putResponse(new Uint8Array(64));
          back.pushResponses();
        }
        maxPending = Math.max(maxPending, back.pendingResponses());
      } catch (err) {
        failure = err;
      }
    }
    t.ok(failure === undefined || failure instanceof RingProtocolError, `seed ${seed}: ${failure === undefined ? 'survived' : 'protocol error'} after ${taken} requests`);
    if (failure === undefined) survived++; else failed++;
    t.ok(maxPending <= back.slots, 'never more unanswered requests than slots');
    t.same(inner.violations, []);
    t.ok(canariesIntact());
  }
  t.ok(survived > 0 && failed > 0, `${survived} runs survived, ${failed} ended in a protocol error`);
});
