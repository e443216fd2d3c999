/** The vif protocol's byte layout, the frame helpers and the clocks. */
import t from 'tap';
import {
  MAX_FRAME, MTU, RX_RING_SLOTS, RX_SLOT_SIZE, TX_RING_SLOTS, TX_SLOT_SIZE,
  rxRequestCodec, rxResponseCodec, txRequestCodec, txResponseCodec,
} from './protocol.ts';
import {
  BROADCAST_MAC, arpFrame, defaultMac, formatIp, formatMac, inetChecksum, ipv4Frame, isGroupMac, macAt, parseIp, parseMac,
} from './frame.ts';
import { ManualClock, systemClock } from './clock.ts';

const bytes = (size: number) => {
  const b = new Uint8Array(size);
  return { b, v: new DataView(b.buffer) };
};

t.test('constants and ring geometry', async (t) => {
  t.same({ MTU, MAX_FRAME, TX_SLOT_SIZE, TX_RING_SLOTS, RX_SLOT_SIZE, RX_RING_SLOTS }, { MTU: 1500, MAX_FRAME: 1514, TX_SLOT_SIZE: 16, TX_RING_SLOTS: 128, RX_SLOT_SIZE: 8, RX_RING_SLOTS: 256 });
});

t.test('the codecs put every field where the doc comment says', async (t) => {
  let { b, v } = bytes(16);
  txRequestCodec.write(v, { gref: 0x01020304, offset: 0x0506, flags: 0x0708, id: 0x090a, size: 0x0b0c });
  t.same([...b.subarray(0, 12)], [4, 3, 2, 1, 6, 5, 8, 7, 0x0a, 9, 0x0c, 0x0b], 'TX request: gref, offset, flags, id, size');
  t.same(txRequestCodec.read(v), { gref: 0x01020304, offset: 0x0506, flags: 0x0708, id: 0x090a, size: 0x0b0c });
  ({ b, v } = bytes(16));
  txResponseCodec.write(v, { id: 0x0102, status: -2 });
  t.same([...b.subarray(0, 4)], [2, 1, 0xfe, 0xff], 'TX response: id, status');
  t.same(txResponseCodec.read(v), { id: 0x0102, status: -2 });
  ({ b, v } = bytes(8));
  rxRequestCodec.write(v, { id: 0x0102, gref: 0x03040506 });
  t.same([...b], [2, 1, 0, 0, 6, 5, 4, 3], 'RX request: id, pad, gref');
  t.same(rxRequestCodec.read(v), { id: 0x0102, gref: 0x03040506 });
  ({ b, v } = bytes(8));
  rxResponseCodec.write(v, { id: 7, offset: 2, flags: 0, status: 1514 });
  t.same([...b], [7, 0, 2, 0, 0, 0, 0xea, 0x05], 'RX response: id, offset, flags, status');
  t.same(rxResponseCodec.read(v), { id: 7, offset: 2, flags: 0, status: 1514 });
  rxResponseCodec.write(v, { id: 7, offset: 0, flags: 0, status: -1 });
  t.equal(rxResponseCodec.read(v).status, -1);
});

t.test('addresses: parse, format, group bit, Xen default MACs', async (t) => {
  t.equal(formatMac(parseMac('00:16:3E:0a:ff:01')), '00:16:3e:0a:ff:01');
  t.equal(parseMac('ff-ff-ff-ff-ff-ff'), BROADCAST_MAC);
  t.equal(macAt(Uint8Array.from([0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54]), 0), 0xfedcba987654);
  t.equal(isGroupMac(parseMac('01:00:5e:00:00:fb')), true);
  t.equal(isGroupMac(parseMac('00:16:3e:00:00:01')), false);
  t.equal(isGroupMac(parseMac('02:00:00:00:00:01')), false, 'locally administered is still unicast');
  for (const bad of ['00:16:3e:00:00', '00:16:3e:00:00:0g', '00:16-3e:00:00:00', '']) t.throws(() => parseMac(bad), { code: 'WV_ERR_INVALID_ARGUMENT' }, bad);
  t.equal(defaultMac(1, 0), '00:16:3e:00:01:00');
  t.equal(defaultMac(0x7fff, 3), '00:16:3e:7f:ff:03');
  t.throws(() => defaultMac(0x8000, 0));
  t.equal(parseIp('169.254.1.2'), 0xa9fe0102);
  t.equal(formatIp(0xffffffff), '255.255.255.255');
  for (const bad of ['1.2.3', '1.2.3.256', '01.2.3.4.5', 'a.b.c.d']) t.throws(() => parseIp(bad), { code: 'WV_ERR_INVALID_ARGUMENT' }, bad);
});

t.test('checksum and builders', async (t) => {
  // A well-known header (checksum 0xb861).
  const h = Uint8Array.from([0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7]);
  t.equal(inetChecksum(h, 0, 20), 0xb861);
  h[10] = 0xb8; h[11] = 0x61;
  t.equal(inetChecksum(h, 0, 20), 0, 'a header with its checksum sums to 0');
  t.equal(inetChecksum(Uint8Array.from([1, 2, 3]), 0, 3), ~(0x0102 + 0x0300) & 0xffff, 'odd lengths pad with 0');
  const f = ipv4Frame({ srcMac: '00:16:3e:00:01:00', dstMac: '00:16:3e:00:02:00', src: '169.254.1.1', dst: '169.254.1.2', payload: new Uint8Array(6) });
  t.equal(f.length, 40);
  t.same([...f.subarray(12, 18)], [8, 0, 0x45, 0, 0, 26]);
  t.equal(inetChecksum(f, 14, 20), 0);
  const a = arpFrame({ op: 1, senderMac: '00:16:3e:00:01:00', senderIp: '169.254.1.1', targetIp: '169.254.1.2' });
  t.same([...a.subarray(0, 22)], [255, 255, 255, 255, 255, 255, 0, 0x16, 0x3e, 0, 1, 0, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
  t.same([...a.subarray(38, 42)], [169, 254, 1, 2]);
});

t.test('ManualClock fires timers in time order, honours cancel and granularity', async (t) => {
  const c = new ManualClock();
  const seen: string[] = [];
  c.after(300, () => seen.push(`b@${c.now()}`));
  c.after(100, () => { seen.push(`a@${c.now()}`); c.after(50, () => seen.push(`a2@${c.now()}`)); });
  const cancel = c.after(200, () => seen.push('never'));
  cancel();
  c.advance(299);
  t.same(seen, ['a@100', 'a2@150']);
  c.advance(1);
  t.same(seen, ['a@100', 'a2@150', 'b@300']);
  t.equal(c.pending, 0);
  const g = new ManualClock({ timerGranularityUs: 1000 });
  let at = -1;
  g.after(10, () => { at = g.now(); });
  g.advance(999);
  t.equal(at, -1, 'not before one granule');
  g.advance(1);
  t.equal(at, 1000);
});

t.test('systemClock: microseconds, timers that fire and cancel', async (t) => {
  const c = systemClock();
  // Its timers are unref'd: keep the test's event loop alive meanwhile.
  const keep = setTimeout(() => {}, 10_000);
  t.teardown(() => clearTimeout(keep));
  const t0 = c.now();
  let fired = false;
  const cancelled = c.after(1000, () => { fired = true; });
  cancelled();
  await new Promise<void>((resolve) => c.after(2000, resolve));
  t.ok(c.now() - t0 >= 1500, `${c.now() - t0} µs passed`);
  t.equal(fired, false);
});
