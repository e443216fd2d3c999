/**
 * NetBackend and the switch with frontends built from the real ring and
 * grant code over domains' memories (the SDK's netfront will speak the same
 * protocol): frames between domains, bad requests, a guest that takes
 * nothing, an ARP storm, broken rings, and the rate limit through the rings.
 */
import t, { type Test } from 'tap';
import { PvTable, PAGE_SIZE } from '../../kernel/pv-table.ts';
import { GrantTables, viewMemories, type GrantMapping } from '../../kernel/grant.ts';
import { MemoryRingPage, RingField } from '../../kernel/ring.ts';
import { ManualClock } from './clock.ts';
import { ArpOp, arpFrame, formatIp, ipv4Frame, parseIp } from './frame.ts';
import { NetBackend } from './backend.ts';
import { HostNetFront, netFrontPages, type HostNetFrontOptions } from './host-front.ts';
import { MAX_FRAME, NetStatus, TX_RING_SLOTS } from './protocol.ts';
import { VirtualSwitch, type Rate } from './switch.ts';

interface Vif {
  domid: number;
  mac: string;
  ip: string;
  mem: Uint8Array;
  front: HostNetFront;
  back: NetBackend;
  broken: () => Error | undefined;
}

/**
 * A switch and a vif per domain. `async` wiring delivers every notification
 * on a later turn (as event channels do); otherwise calls are direct.
 */
function rig(t: Test, o: { async?: boolean; clock?: ManualClock } = {}) {
  const table = new PvTable(15, 1);
  table.claim(0, true);
  const mems = new Map<number, Uint8Array>();
  const grants = new GrantTables(table, viewMemories((d) => mems.get(d)));
  const sw = new VirtualSwitch({ clock: o.clock });
  const maps: GrantMapping[] = [];
  t.teardown(() => { for (const m of maps) m.release(); });
  const later = (fn: () => void) => (o.async ? () => { setImmediate(fn); } : fn);
  const vif = (domid: number, fo: HostNetFrontOptions & { rate?: Rate; wire?: boolean } = {}): Vif => {
    table.claim(domid, false);
    const mem = new Uint8Array(new SharedArrayBuffer((netFrontPages(fo) + 4) * PAGE_SIZE));
    mems.set(domid, mem);
    const front = new HostNetFront(grants, domid, 0, mem, 0, fo);
    const map = (gref: number): MemoryRingPage => {
      const m = grants.map(0, domid, gref, true);
      if (typeof m === 'number') throw new Error(`ring map ${m}`);
      maps.push(m);
      return new MemoryRingPage(m.bytes, 0);
    };
    let broken: Error | undefined;
    const mac = `00:16:3e:00:${domid.toString(16).padStart(2, '0')}:00`;
    const ip = `169.254.1.${domid}`;
    const back = new NetBackend({
      grants, self: 0, domid, txPage: map(front.txRingGref), rxPage: map(front.rxRingGref), switch: sw,
      port: { name: `vif${domid}.0`, mac, ips: [ip], rate: fo.rate },
      notify: fo.wire === false ? () => {} : later(() => front.onNotify()),
      onBroken: (e) => { broken = e; },
    });
    front.notifyBackend = later(() => back.kick());
    return { domid, mac, ip, mem, front, back, broken: () => broken };
  };
  return { table, grants, sw, vif };
}

/** A frame from `from` to `to` whose payload encodes `n` and is `size` bytes in all. */
function frame(from: Vif, to: Vif | { mac: string; ip: string }, n: number, size = 100): Uint8Array {
  const payload = Uint8Array.from({ length: size - 34 }, (_, i) => (n * 31 + i * 7) & 0xff);
  return ipv4Frame({ srcMac: from.mac, dstMac: to.mac, src: from.ip, dst: to.ip, payload });
}

const tick = () => new Promise<void>((r) => setImmediate(r));

t.test('frames between two domains arrive byte-exact, in order, both ways', async (t) => {
  const r = rig(t);
  const a = r.vif(1, { rxBuffers: 8 });
  const b = r.vif(2, { rxBuffers: 8 });
  const sizes = Array.from({ length: 60 }, (_, i) => [64, 1514, 34 + i * 23][i % 3]!);
  const ab = sizes.map((s, i) => frame(a, b, i, s));
  const ba = sizes.map((s, i) => frame(b, a, 1000 + i, s));
  const status = await Promise.all([...ab.map((f) => a.front.send(f)), ...ba.map((f) => b.front.send(f))]);
  t.same(status, status.map(() => NetStatus.OKAY));
  t.same(b.front.inbox, ab, 'B got every frame of A\'s, byte for byte, in order');
  t.same(a.front.inbox, ba);
  const bytes = sizes.reduce((x, y) => x + y);
  t.match(a.back.port.stats, { txPackets: 60, txBytes: bytes, rxPackets: 60, rxBytes: bytes, dropped: 0 });
  t.match(b.back.port.stats, { txPackets: 60, txBytes: bytes, rxPackets: 60, rxBytes: bytes, dropped: 0 });
  t.same(a.back.stats, { txErrors: 0, rxErrors: 0 });
  // ARP through the rings: the switch answers with B's MAC.
  a.front.inbox.length = 0;
  t.equal(await a.front.send(arpFrame({ op: ArpOp.REQUEST, senderMac: a.mac, senderIp: a.ip, targetIp: b.ip })), NetStatus.OKAY);
  t.same(a.front.inbox, [arpFrame({ op: ArpOp.REPLY, dstMac: a.mac, senderMac: b.mac, senderIp: b.ip, targetMac: a.mac, targetIp: a.ip })]);
  t.equal(a.broken(), undefined);
  t.equal(b.broken(), undefined);
});

t.test('bad TX requests get ERROR, frames the switch refuses get DROPPED; the next good one passes', async (t) => {
  const r = rig(t);
  const a = r.vif(1, { txBuffers: 4 });
  const b = r.vif(2);
  const c = r.vif(3);
  const good = frame(a, b, 1, 200);
  // A page of A's granted to domain 3, not to the backend.
  const notOurs = r.grants.grantAccess(1, 3, netFrontPages({ txBuffers: 4 }) + 1, 1, a.mem.length);
  t.ok(notOurs > 0);
  const bad: Array<[string, Parameters<HostNetFront['sendRaw']>[0]]> = [
    ['size 13 (shorter than an Ethernet header)', { bytes: good, size: 13 }],
    ['size 1515 (more than 1514)', { bytes: new Uint8Array(1600), size: MAX_FRAME + 1 }],
    ['size 0', { bytes: good, size: 0 }],
    ['offset + size past the page', { bytes: good, offset: 4096 - 100 }],
    ['a grant that does not exist', { bytes: good, gref: 999 }],
    ['a grant to another domain', { bytes: good, gref: notOurs }],
    ['reference 0', { bytes: good, gref: 0 }],
    ['flags set (more_data)', { bytes: good, flags: 4 }],
  ];
  for (const [what, req] of bad) {
    t.equal(await a.front.sendRaw(req), NetStatus.ERROR, what);
    t.equal(await a.front.send(frame(a, b, 2, 80)), NetStatus.OKAY, `a good frame after ${what}`);
  }
  t.equal(a.back.stats.txErrors, bad.length);
  t.equal(b.front.inbox.length, bad.length, 'B got the good frames only');
  t.ok(b.front.inbox.every((f) => f.length === 80));
  // Well-formed requests whose frames the switch refuses.
  t.equal(await a.front.send(frame({ ...a, ip: c.ip }, b, 3)), NetStatus.DROPPED, 'spoofed source');
  const bent = frame(a, b, 4);
  bent[24] = bent[24]! ^ 0xff;
  t.equal(await a.front.send(bent), NetStatus.DROPPED, 'bad IPv4 checksum');
  t.equal(await a.front.send(frame(a, { mac: b.mac, ip: '169.254.9.9' }, 5)), NetStatus.DROPPED, 'unroutable');
  t.match(a.back.port.stats, { txPackets: bad.length, spoofed: 1, malformed: 1, unroutable: 1 });
  t.equal(c.front.inbox.length, 0);
  t.equal(await a.front.send(good), NetStatus.OKAY);
  t.same(b.front.inbox.at(-1), good);
  t.equal(a.broken(), undefined, 'bad requests do not break the ring');
});

t.test('a guest without RX buffers, or that stops consuming, loses only its own frames', async (t) => {
  const r = rig(t);
  const a = r.vif(1);
  const b = r.vif(2);
  const none = r.vif(3, { rxBuffers: 0 });
  const asleep = r.vif(4, { rxBuffers: 4, wire: false }); // never looks at its rings
  for (let i = 0; i < 20; i++) {
    t.equal(await a.front.send(frame(a, none, i)), NetStatus.OKAY, 'the switch took it');
    t.equal(await a.front.send(frame(a, asleep, i)), NetStatus.OKAY);
    await a.front.send(frame(a, b, i));
    await b.front.send(frame(b, a, i));
  }
  t.equal(b.front.inbox.length, 20, 'A and B kept exchanging');
  t.equal(a.front.inbox.length, 20);
  t.same(b.front.inbox[19], frame(a, b, 19));
  t.match(none.back.port.stats, { rxPackets: 0, dropped: 20 });
  t.match(asleep.back.port.stats, { rxPackets: 4, dropped: 16 }, 'its four posted buffers filled, then drops');
  t.match(a.back.port.stats, { txPackets: 60, dropped: 0, rxPackets: 20 });
  // The sleeper wakes: it finds the first four frames; then it receives again.
  asleep.front.onNotify();
  t.same(asleep.front.inbox, [0, 1, 2, 3].map((i) => frame(a, asleep, i)));
  await a.front.send(frame(a, asleep, 99));
  asleep.front.onNotify();
  t.same(asleep.front.inbox.at(-1), frame(a, asleep, 99));
  t.equal(asleep.back.port.stats.rxPackets, 5);
});

t.test('an ARP storm from one domain does not starve the others', async (t) => {
  const r = rig(t, { async: true });
  const a = r.vif(1);
  const b = r.vif(2);
  const c = r.vif(3, { rxBuffers: 16 });
  const STORM = 12_000;
  const unknown = parseIp('169.254.200.0');
  const storm = Promise.all(Array.from({ length: STORM }, (_, i) => c.front.send(arpFrame({
    op: ArpOp.REQUEST, senderMac: c.mac, senderIp: c.ip, targetIp: i % 2 ? b.ip : formatIp(unknown + (i % 1000)),
  }))));
  let stormDone = false;
  void storm.then(() => { stormDone = true; });
  // Ping-pong between A and B while C storms.
  const PINGS = 20;
  for (let i = 0; i < PINGS; i++) {
    t.equal(await a.front.send(frame(a, b, i)), NetStatus.OKAY);
    t.same(await b.front.next(5000), frame(a, b, i), `ping ${i}`);
    await b.front.send(frame(b, a, i));
    t.same(await a.front.next(5000), frame(b, a, i), `pong ${i}`);
  }
  t.notOk(stormDone, 'the pings finished while the storm was still going');
  const progress = c.back.port.stats.txPackets + c.back.port.stats.unroutable;
  t.ok(progress < STORM, `storm at ${progress} of ${STORM}`);
  const statuses = await storm;
  t.equal(statuses.filter((s) => s === NetStatus.OKAY).length, STORM / 2, 'answered requests');
  t.equal(statuses.filter((s) => s === NetStatus.DROPPED).length, STORM / 2, 'requests for nobody');
  const s = c.back.port.stats;
  t.match(s, { txPackets: STORM / 2, unroutable: STORM / 2, arpReplies: STORM / 2 });
  t.equal(s.rxPackets + s.dropped, STORM / 2, 'every reply went to C, taken or dropped');
  t.equal(b.back.port.stats.rxPackets, PINGS, 'B received only A\'s frames');
  t.equal(a.back.port.stats.rxPackets, PINGS);
});

t.test('a ring with corrupted indexes stops only that vif', async (t) => {
  const r = rig(t);
  const a = r.vif(1);
  const b = r.vif(2);
  const c = r.vif(3);
  const d = r.vif(4);
  // C claims 1000 TX requests: more than the 128 slots.
  new DataView(c.mem.buffer).setUint32(RingField.REQ_PROD, 1000, true);
  c.back.kick();
  t.match(c.broken(), { code: 'WV_ERR_RING_PROTOCOL', message: /req_prod/ });
  c.back.kick();
  t.pass('kicking a broken vif does nothing');
  // D's RX ring (page 1) claims 5000 posted buffers: found when a frame arrives.
  new DataView(d.mem.buffer).setUint32(PAGE_SIZE + RingField.REQ_PROD, 5000, true);
  t.equal(await a.front.send(frame(a, d, 1)), NetStatus.OKAY);
  t.match(d.broken(), { code: 'WV_ERR_RING_PROTOCOL' });
  t.equal(await a.front.send(frame(a, c, 2)), NetStatus.OKAY);
  t.equal(await a.front.send(frame(a, d, 3)), NetStatus.OKAY);
  t.match(c.back.port.stats, { dropped: 1, rxPackets: 0 });
  t.match(d.back.port.stats, { dropped: 2, rxPackets: 0 });
  for (let i = 0; i < 10; i++) {
    t.equal(await a.front.send(frame(a, b, i)), NetStatus.OKAY);
    t.equal(await b.front.send(frame(b, a, i)), NetStatus.OKAY);
  }
  t.equal(b.front.inbox.length, 10, 'the others are unaffected');
  t.equal(a.front.inbox.length, 10);
  t.equal(a.broken(), undefined);
  t.equal(b.broken(), undefined);
  // Closing the broken vif frees its addresses.
  c.back.close();
  t.equal(r.sw.owner(c.ip), undefined);
});

t.test('rate limit through the rings: the sender waits on its own ring and gets the limit', async (t) => {
  const clock = new ManualClock({ timerGranularityUs: 1000 });
  const r = rig(t, { clock });
  const rate = 1_000_000; // 10 kB per 10 ms
  const a = r.vif(1, { rate: { bytes: 10_000, usecs: 10_000 } });
  const b = r.vif(2, { rxBuffers: 256 });
  let received = 0;
  b.front.onFrame = (f) => { received += f.length; };
  const FRAMES = 400;
  const sent = Promise.all(Array.from({ length: FRAMES }, (_, i) => a.front.send(frame(a, b, i, 1000))));
  await tick();
  // The bucket starts full: 10 frames go, the 11th is held, and the backend stops taking requests.
  t.equal(received, 10_000);
  t.equal(a.back.port.held, 1);
  t.equal(a.front.txInFlight, TX_RING_SLOTS, 'A\'s ring is full: the sender waits');
  const samples: number[] = [];
  for (let ms = 1; ms <= 300; ms++) {
    clock.advance(1000);
    await tick();
    if (ms % 100 === 0) samples.push(received);
  }
  // After the initial bucket, 1 MB/s: 100 kB per 100 ms.
  const perWindow = samples.map((x, i) => x - (i === 0 ? 10_000 : samples[i - 1]!));
  for (const [i, bytes] of perWindow.entries()) t.ok(Math.abs(bytes - rate / 10) / (rate / 10) < 0.1, `window ${i}: ${bytes} bytes in 100 ms`);
  clock.advance(200_000);
  await tick();
  t.same(await sent, Array(FRAMES).fill(NetStatus.OKAY), 'every frame went, none was dropped');
  t.equal(received, FRAMES * 1000);
  t.match(a.back.port.stats, { txPackets: FRAMES, rateLimited: 0 });
});

t.test('a paused vif takes no TX request and receives nothing; resumed, it sends what waited', async (t) => {
  const r = rig(t, { async: true });
  const a = r.vif(1, { rxBuffers: 8 });
  const b = r.vif(2, { rxBuffers: 8 });
  t.equal(await a.front.send(frame(a, b, 1)), NetStatus.OKAY);
  t.equal(b.front.inbox.length, 1);
  a.back.pause();
  b.back.pause();
  const waiting = a.front.send(frame(a, b, 2));
  for (let i = 0; i < 5; i++) await tick();
  t.equal(a.back.port.stats.txPackets, 1, 'the request waits in the ring');
  t.equal(b.front.inbox.length, 1);
  b.back.resume();
  a.back.resume();
  t.equal(await waiting, NetStatus.OKAY);
  t.equal(b.front.inbox.length, 2);
  t.same(b.front.inbox[1], frame(a, b, 2), 'sent once the backend resumed');
  // Delivered to a paused vif: dropped and counted.
  b.back.pause();
  t.equal(await a.front.send(frame(a, b, 3)), NetStatus.OKAY);
  t.equal(b.back.port.stats.dropped, 1);
  t.equal(b.front.inbox.length, 2);
});
