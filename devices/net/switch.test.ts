/**
 * The virtual switch alone, without rings: delivery, proxy ARP,
 * anti-spoofing, every kind of malformed frame, unroutable frames, run-time
 * addresses, counters, and the token bucket on a manual clock.
 */
import t from 'tap';
import { ManualClock } from './clock.ts';
import { ArpOp, arpFrame, formatIp, inetChecksum, ipv4Frame, parseIp } from './frame.ts';
import { MAX_FRAME } from './protocol.ts';
import { NetAddressInUseError, Verdict, VirtualSwitch, type PortOptions, type PortStats, type SwitchPort } from './switch.ts';

const A = { mac: '00:16:3e:00:01:00', ip: '169.254.1.1' };
const B = { mac: '00:16:3e:00:02:00', ip: '169.254.1.2' };
const C = { mac: '00:16:3e:00:03:00', ip: '10.0.0.3' };
const GW = { mac: '00:16:3e:ff:ff:00', ip: '169.254.1.254' };
const BCAST = 'ff:ff:ff:ff:ff:ff';

function zero(): PortStats {
  return { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, dropped: 0, spoofed: 0, malformed: 0, unroutable: 0, rateLimited: 0, delayed: 0, arpReplies: 0 };
}

function rig(o: { holdFrames?: number; timerGranularityUs?: number } = {}) {
  const clock = new ManualClock({ timerGranularityUs: o.timerGranularityUs });
  const sw = new VirtualSwitch({ clock, holdFrames: o.holdFrames });
  const got = new Map<SwitchPort, Uint8Array[]>();
  const refuse = new Set<SwitchPort>();
  const port = (name: string, p: { mac: string; ip: string }, extra: Partial<PortOptions> = {}): SwitchPort => {
    const box: Uint8Array[] = [];
    const self: SwitchPort = sw.addPort({
      name, mac: p.mac, ips: [p.ip], ...extra,
      deliver: (f) => {
        if (refuse.has(self)) return false;
        box.push(f.slice());
        return true;
      },
    });
    got.set(self, box);
    return self;
  };
  return { clock, sw, got: (p: SwitchPort) => got.get(p)!, refuse, port };
}

/** A UDP-ish IPv4 frame from `from` to `to` with `n` payload bytes. */
const ip4 = (from: { mac: string; ip: string }, toIp: string, n = 32, dstMac = BCAST) =>
  ipv4Frame({ srcMac: from.mac, dstMac, src: from.ip, dst: toIp, payload: Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff) });

t.test('IPv4 goes to the port owning the destination, with the destination MAC rewritten, byte-exact otherwise', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A);
  const b = r.port('vif2.0', B);
  const f = ip4(A, B.ip, 100, GW.mac);
  t.equal(r.sw.send(a, f), Verdict.SENT);
  t.equal(r.got(b).length, 1);
  const expect = f.slice();
  expect.set([0x00, 0x16, 0x3e, 0x00, 0x02, 0x00], 0);
  t.same(r.got(b)[0], expect, 'only the destination MAC changed');
  t.equal(r.got(a).length, 0);
  t.same(a.stats, { ...zero(), txPackets: 1, txBytes: f.length });
  t.same(b.stats, { ...zero(), rxPackets: 1, rxBytes: f.length });
  // And back: link-local and other addresses alike.
  const c = r.port('vif3.0', C);
  t.equal(r.sw.send(c, ip4(C, A.ip, 10)), Verdict.SENT);
  t.equal(r.got(a).length, 1);
  t.equal(r.sw.owner(C.ip), c);
  t.equal(r.sw.owner('169.254.9.9'), undefined);
});

t.test('proxy ARP: the switch answers for addresses it knows and floods nothing', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A);
  const b = r.port('vif2.0', B);
  const req = arpFrame({ op: ArpOp.REQUEST, senderMac: A.mac, senderIp: A.ip, targetIp: B.ip });
  t.equal(r.sw.send(a, req), Verdict.SENT);
  t.same(r.got(a), [arpFrame({ op: ArpOp.REPLY, dstMac: A.mac, senderMac: B.mac, senderIp: B.ip, targetMac: A.mac, targetIp: A.ip })], 'the reply, byte for byte');
  t.equal(r.got(b).length, 0, 'the owner never sees the request');
  t.same(a.stats, { ...zero(), txPackets: 1, txBytes: 42, rxPackets: 1, rxBytes: 42, arpReplies: 1 });

  t.equal(r.sw.send(a, arpFrame({ op: ArpOp.REQUEST, senderMac: A.mac, senderIp: A.ip, targetIp: '169.254.7.7' })), Verdict.UNROUTABLE, 'an unknown address');
  t.equal(r.sw.send(a, arpFrame({ op: ArpOp.REQUEST, senderMac: A.mac, senderIp: A.ip, targetIp: A.ip })), Verdict.SENT, 'an announcement of its own address');
  // An RFC 5227 probe (sender 0.0.0.0) for a taken address is answered to 0.0.0.0.
  t.equal(r.sw.send(a, arpFrame({ op: ArpOp.REQUEST, senderMac: A.mac, senderIp: '0.0.0.0', targetIp: B.ip })), Verdict.SENT);
  t.same(r.got(a)[1], arpFrame({ op: ArpOp.REPLY, dstMac: A.mac, senderMac: B.mac, senderIp: B.ip, targetMac: A.mac, targetIp: '0.0.0.0' }));
  // A reply goes by destination MAC; a broadcast reply goes nowhere.
  const reply = arpFrame({ op: ArpOp.REPLY, dstMac: B.mac, senderMac: A.mac, senderIp: A.ip, targetMac: B.mac, targetIp: B.ip });
  t.equal(r.sw.send(a, reply), Verdict.SENT);
  t.same(r.got(b), [reply]);
  t.equal(r.sw.send(a, arpFrame({ op: ArpOp.REPLY, senderMac: A.mac, senderIp: A.ip, targetIp: B.ip })), Verdict.UNROUTABLE);
  t.same(a.stats, { ...zero(), txPackets: 4, txBytes: 4 * 42, rxPackets: 2, rxBytes: 84, arpReplies: 2, unroutable: 2 });
  t.same(b.stats, { ...zero(), rxPackets: 1, rxBytes: 42 });
});

t.test('an ARP storm reaches nobody but its sender', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A);
  const b = r.port('vif2.0', B);
  const c = r.port('vif3.0', C);
  for (let i = 0; i < 10000; i++) {
    r.sw.send(c, arpFrame({ op: ArpOp.REQUEST, senderMac: C.mac, senderIp: C.ip, targetIp: i % 2 ? B.ip : formatIp(parseIp('169.254.100.0') + i) }));
  }
  t.equal(r.got(a).length + r.got(b).length, 0, 'no other port received anything');
  t.match(c.stats, { txPackets: 5000, unroutable: 5000, arpReplies: 5000, rxPackets: 5000 });
  t.equal(r.sw.send(a, ip4(A, B.ip)), Verdict.SENT, 'the others still talk');
  t.equal(r.got(b).length, 1);
});

t.test('anti-spoofing: source MAC, ARP sender and IPv4 source must be the port\'s own', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A);
  const b = r.port('vif2.0', B);
  const gw = r.port('nat', GW, { gateway: true });
  const cases: Array<[string, Uint8Array]> = [
    ['an IPv4 source of another port', ipv4Frame({ srcMac: A.mac, dstMac: BCAST, src: B.ip, dst: B.ip })],
    ['an IPv4 source nobody owns', ipv4Frame({ srcMac: A.mac, dstMac: BCAST, src: '169.254.1.77', dst: B.ip })],
    ['source 0.0.0.0', ipv4Frame({ srcMac: A.mac, dstMac: BCAST, src: '0.0.0.0', dst: B.ip })],
    ['an Ethernet source MAC of another port', ipv4Frame({ srcMac: B.mac, dstMac: BCAST, src: A.ip, dst: B.ip })],
    ['an ARP sender IP not its own', arpFrame({ op: ArpOp.REQUEST, senderMac: A.mac, senderIp: B.ip, targetIp: GW.ip })],
    ['an ARP sender MAC not its own', arpFrame({ op: ArpOp.REQUEST, srcMac: A.mac, senderMac: B.mac, senderIp: A.ip, targetIp: GW.ip })],
    ['an ARP reply from 0.0.0.0', arpFrame({ op: ArpOp.REPLY, dstMac: B.mac, senderMac: A.mac, senderIp: '0.0.0.0', targetIp: B.ip })],
  ];
  for (const [what, f] of cases) t.equal(r.sw.send(a, f), Verdict.SPOOFED, what);
  t.same(a.stats, { ...zero(), spoofed: cases.length });
  t.equal(r.got(b).length + r.got(gw).length + r.got(a).length, 0, 'nothing was delivered');
  // The gateway speaks for the outside world, but not for the ports.
  t.equal(r.sw.send(gw, ipv4Frame({ srcMac: GW.mac, dstMac: A.mac, src: '93.184.216.34', dst: A.ip })), Verdict.SENT);
  t.equal(r.sw.send(gw, ipv4Frame({ srcMac: GW.mac, dstMac: A.mac, src: B.ip, dst: A.ip })), Verdict.SPOOFED);
  t.equal(gw.stats.spoofed, 1);
  t.equal(r.got(a).length, 1);
});

t.test('every kind of malformed frame is dropped and counted', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A);
  const b = r.port('vif2.0', B);
  const good = ip4(A, B.ip, 20); // total length 40
  /** `good` with header bytes changed (the checksum fixed unless `keepSum`). */
  const patched = (edit: (f: Uint8Array) => void, keepSum = false): Uint8Array => {
    const f = good.slice();
    edit(f);
    if (!keepSum) {
      const ihl = Math.max(20, (f[14]! & 15) * 4);
      f[24] = 0; f[25] = 0;
      const s = inetChecksum(f, 14, Math.min(ihl, f.length - 14));
      f[24] = s >> 8; f[25] = s & 0xff;
    }
    return f;
  };
  const arp = arpFrame({ op: ArpOp.REQUEST, senderMac: A.mac, senderIp: A.ip, targetIp: B.ip });
  const arpWith = (at: number, v: number) => { const f = arp.slice(); f[at] = v; return f; };
  const cases: Array<[string, Uint8Array]> = [
    ['shorter than an Ethernet header', good.subarray(0, 13)],
    ['longer than 1514 bytes', new Uint8Array(MAX_FRAME + 1).fill(0).map((_, i) => good[i] ?? 0)],
    ['an IPv4 frame shorter than an IPv4 header', good.subarray(0, 33)],
    ['IP version 6 in an IPv4 EtherType', patched((f) => { f[14] = 0x65; })],
    ['an IHL of 4 words', patched((f) => { f[14] = 0x44; })],
    ['an IHL past the total length', patched((f) => { f[14] = 0x4f; })],
    ['a total length below the header', patched((f) => { f[16] = 0; f[17] = 19; })],
    ['a total length past the frame', patched((f) => { f[16] = 0; f[17] = 41; })],
    ['a bad header checksum', patched((f) => { f[25] = f[25]! ^ 1; }, true)],
    ['a short ARP packet', arp.subarray(0, 41)],
    ['ARP for a hardware type that is not Ethernet', arpWith(15, 6)],
    ['ARP for a protocol that is not IPv4', arpWith(16, 0x86)],
    ['ARP with 8-byte hardware addresses', arpWith(18, 8)],
    ['ARP operation 3', arpWith(21, 3)],
  ];
  for (const [what, f] of cases) t.equal(r.sw.send(a, f), Verdict.MALFORMED, what);
  t.same(a.stats, { ...zero(), malformed: cases.length });
  t.equal(r.got(b).length, 0);
  // Ethernet padding after the IPv4 total length is fine.
  const padded = new Uint8Array(good.length + 10);
  padded.set(good);
  t.equal(r.sw.send(a, padded), Verdict.SENT, 'a padded frame');
  t.equal(r.got(b)[0]!.length, good.length + 10);
});

t.test('unroutable: unknown addresses, broadcast, other EtherTypes, a vif MAC that is not the destination\'s', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A);
  const b = r.port('vif2.0', B);
  const gw = r.port('nat', GW, { gateway: true });
  const ipv6 = ip4(A, B.ip);
  ipv6[12] = 0x86; ipv6[13] = 0xdd;
  const cases: Array<[string, Uint8Array]> = [
    ['an address nobody owns', ip4(A, '169.254.1.99')],
    ['the limited broadcast', ip4(A, '255.255.255.255')],
    ['multicast', ip4(A, '224.0.0.251')],
    ['IPv6', ipv6],
    ['a foreign address sent to a vif\'s MAC (vifs do not route)', ip4(A, '8.8.8.8', 32, B.mac)],
  ];
  for (const [what, f] of cases) t.equal(r.sw.send(a, f), Verdict.UNROUTABLE, what);
  t.same(a.stats, { ...zero(), unroutable: cases.length });
  t.equal(r.got(b).length + r.got(gw).length, 0);
  // A foreign address sent to the gateway's MAC goes to the gateway.
  const out = ip4(A, '8.8.8.8', 32, GW.mac);
  t.equal(r.sw.send(a, out), Verdict.SENT);
  t.same(r.got(gw), [out]);
});

t.test('a receiver that takes nothing: its frames are dropped and counted on it', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A);
  const b = r.port('vif2.0', B);
  r.refuse.add(b);
  for (let i = 0; i < 5; i++) t.equal(r.sw.send(a, ip4(A, B.ip, 50)), Verdict.SENT);
  t.same(b.stats, { ...zero(), dropped: 5 });
  t.equal(a.stats.txPackets, 5, 'the sender\'s counters are its own');
});

t.test('addresses at run time (vif-addip), conflicts, and bad addresses', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A);
  const b = r.port('vif2.0', B);
  const extra = '169.254.1.3';
  t.equal(r.sw.send(a, ip4(A, extra)), Verdict.UNROUTABLE);
  t.equal(r.sw.send(b, ip4({ ...B, ip: extra }, A.ip)), Verdict.SPOOFED);
  r.sw.addAddress(b, extra);
  r.sw.addAddress(b, extra); // again: no-op
  t.same(b.addresses, [B.ip, extra]);
  t.equal(r.sw.send(a, ip4(A, extra)), Verdict.SENT);
  t.equal(r.sw.send(b, ip4({ ...B, ip: extra }, A.ip)), Verdict.SENT, 'B may now send from it');
  t.throws(() => r.sw.addAddress(a, extra), NetAddressInUseError);
  t.throws(() => r.sw.addAddress(a, extra), { code: 'WV_ERR_NET_ADDRESS_IN_USE', message: /169\.254\.1\.3 is already in use by vif2\.0/ });
  t.equal(r.sw.removeAddress(b, extra), true);
  t.equal(r.sw.removeAddress(b, extra), false);
  t.equal(r.sw.send(a, ip4(A, extra)), Verdict.UNROUTABLE, 'gone again');
  for (const bad of ['127.0.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '1.2.3', '300.1.1.1']) {
    t.throws(() => r.sw.addAddress(a, bad), { code: 'WV_ERR_INVALID_ARGUMENT' }, bad);
  }
  t.throws(() => r.port('dup', { mac: A.mac, ip: '169.254.1.50' }), { code: 'WV_ERR_NET_ADDRESS_IN_USE' }, 'a MAC in use');
  t.throws(() => r.port('dup', { mac: '00:16:3e:00:09:00', ip: A.ip }), { code: 'WV_ERR_NET_ADDRESS_IN_USE' }, 'an address in use');
  t.throws(() => r.port('mc', { mac: '01:00:5e:00:00:01', ip: '169.254.1.51' }), { code: 'WV_ERR_INVALID_ARGUMENT' }, 'a multicast MAC');
  t.throws(() => r.port('bad', { mac: '00:16:3e:00:09', ip: '169.254.1.51' }), { code: 'WV_ERR_INVALID_ARGUMENT' }, 'five octets');
  t.equal(r.sw.ports.length, 2, 'failed adds add nothing');
  // A removed port's addresses and MAC are free.
  r.sw.removePort(b);
  t.equal(b.removed, true);
  t.equal(r.sw.send(a, ip4(A, B.ip)), Verdict.UNROUTABLE);
  t.throws(() => r.sw.send(b, ip4(B, A.ip)), { code: 'WV_ERR_INVALID_ARGUMENT' }, 'a removed port cannot send');
  const b2 = r.port('vif2.1', B);
  t.equal(r.sw.send(a, ip4(A, B.ip)), Verdict.SENT);
  t.equal(r.got(b2).length, 1);
});

/**
 * Run A at `rate`, sending frames of the sizes `size(i)` for `seconds` of
 * simulated time in steps of `stepUs`: each step it offers frames while its
 * port holds none (as NetBackend does), or `offer` frames regardless.
 * Returns the bytes B received, per second.
 */
function measure(o: { bytes: number; usecs: number; seconds: number; stepUs: number; size: (i: number) => number; offer?: number; holdFrames?: number; timerGranularityUs?: number }) {
  const r = rig(o);
  const a = r.port('vif1.0', A, { rate: { bytes: o.bytes, usecs: o.usecs } });
  let received = 0;
  const b = r.sw.addPort({ name: 'vif2.0', mac: B.mac, ips: [B.ip], deliver: (f) => { received += f.length; return true; } });
  const perSecond: number[] = [];
  let i = 0;
  let mark = 0;
  const frames = new Map<number, Uint8Array>();
  const frame = (size: number): Uint8Array => {
    let f = frames.get(size);
    if (!f) frames.set(size, f = ip4(A, B.ip, size - 34));
    return f.slice();
  };
  for (let now = 0; now < o.seconds * 1e6; now += o.stepUs) {
    if (o.offer === undefined) {
      while (a.held === 0) r.sw.send(a, frame(o.size(i++)));
    } else for (let k = 0; k < o.offer; k++) r.sw.send(a, frame(o.size(i++)));
    r.clock.advance(o.stepUs);
    if (r.clock.now() >= (perSecond.length + 1) * 1e6) { perSecond.push(received - mark); mark = received; }
  }
  return { perSecond, a, b, received };
}

t.test('token bucket: a sender that waits for its port gets the limit, within 10%, every second', async (t) => {
  const rate = 1_000_000; // 100 kB per 100 ms, as vif_setsched 1 0 100000 100000
  const m = measure({ bytes: 100_000, usecs: 100_000, seconds: 5, stepUs: 1000, size: (i) => 64 + ((i * 97) % (MAX_FRAME - 63)) });
  t.equal(m.perSecond.length, 5);
  // The first second also carries the full bucket (100 kB); the others are the rate.
  for (const [s, bytes] of m.perSecond.entries()) {
    const expect = rate + (s === 0 ? 100_000 : 0);
    t.ok(Math.abs(bytes - expect) / expect < 0.1, `second ${s}: ${bytes} bytes, limit ${expect}`);
  }
  const steady = m.perSecond.slice(1).reduce((x, y) => x + y) / 4;
  t.ok(Math.abs(steady - rate) / rate < 0.02, `steady state ${steady} B/s`);
  t.equal(m.a.stats.rateLimited, 0, 'nothing dropped: the sender waited');
  t.ok(m.a.stats.delayed > 0);
  t.equal(m.a.stats.txBytes, m.received);
});

t.test('token bucket: a short period on millisecond timers still gets its rate', async (t) => {
  // 1514 bytes per 100 µs = 15.14 MB/s, with timers that fire every millisecond at best.
  const m = measure({ bytes: MAX_FRAME, usecs: 100, seconds: 3, stepUs: 1000, size: () => MAX_FRAME, timerGranularityUs: 1000 });
  const rate = MAX_FRAME * 10_000;
  for (const [s, bytes] of m.perSecond.slice(1).entries()) t.ok(Math.abs(bytes - rate) / rate < 0.1, `second ${s + 1}: ${bytes} bytes, limit ${rate}`);
});

t.test('token bucket: an overloaded sender is held to the limit; what the queue cannot hold is dropped as rateLimited', async (t) => {
  // Offers 2 MB/s (2 x 1000-byte frames per ms) into a 1 MB/s limit.
  const m = measure({ bytes: 50_000, usecs: 50_000, seconds: 4, stepUs: 1000, size: () => 1000, offer: 2, holdFrames: 16 });
  for (const [s, bytes] of m.perSecond.slice(1).entries()) t.ok(Math.abs(bytes - 1e6) / 1e6 < 0.1, `second ${s + 1}: ${bytes} bytes`);
  const offered = 4 * 1000 * 2;
  t.equal(m.a.stats.txPackets + m.a.stats.rateLimited + m.a.held, offered, 'every frame offered is sent, dropped or still held');
  t.ok(m.a.stats.rateLimited > offered / 3, `${m.a.stats.rateLimited} dropped`);
  t.ok(m.a.held <= 16, 'the queue stays within its bound');
});

t.test('rates change at run time; rejected frames take no tokens; lifting the limit sends what was held', async (t) => {
  const r = rig();
  let drained = 0;
  const a = r.port('vif1.0', A, { onDrain: () => { drained++; } });
  const b = r.port('vif2.0', B);
  t.same(a.rate, { bytes: 0, usecs: 0 });
  r.sw.setRate(a, { bytes: 1000, usecs: 1_000_000 });
  t.same(a.rate, { bytes: 1000, usecs: 1_000_000 });
  // The bucket holds MAX_FRAME (a frame must fit): one 1000-byte frame passes, the next waits.
  t.equal(r.sw.send(a, ip4(A, B.ip, 966)), Verdict.SENT);
  for (let i = 0; i < 20; i++) r.sw.send(a, ip4(A, '169.254.1.1', 966, BCAST).map((x, j) => (j === 30 ? 0 : x)));
  t.equal(a.stats.malformed, 20, 'bad frames are refused before the limit');
  t.equal(r.sw.send(a, ip4(A, B.ip, 966)), Verdict.HELD);
  t.equal(r.sw.send(a, ip4(A, B.ip, 966)), Verdict.HELD);
  t.equal(a.held, 2);
  t.equal(r.got(b).length, 1);
  r.clock.advance(400_000); // 514 + 400 tokens: not yet
  t.equal(r.got(b).length, 1);
  r.clock.advance(100_000); // 1000 tokens at 486 ms: one frame
  t.equal(r.got(b).length, 2);
  t.equal(a.held, 1);
  t.equal(drained, 0);
  r.sw.setRate(a, { bytes: 0, usecs: 0 });
  t.equal(r.got(b).length, 3, 'the last held frame went at once');
  t.equal(drained, 1, 'and the owner was told');
  t.equal(a.held, 0);
  t.equal(r.clock.pending, 0, 'no timer left');
  t.same(a.stats, { ...zero(), txPackets: 3, txBytes: 3000, malformed: 20, delayed: 2 });
  t.throws(() => r.sw.setRate(a, { bytes: -1, usecs: 10 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
  t.throws(() => r.sw.setRate(a, { bytes: 1.5, usecs: 10 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
});

t.test('removing a rate-limited port cancels its timer and discards what it held', async (t) => {
  const r = rig();
  const a = r.port('vif1.0', A, { rate: { bytes: 2000, usecs: 1_000_000 } });
  const b = r.port('vif2.0', B);
  for (let i = 0; i < 5; i++) r.sw.send(a, ip4(A, B.ip, 966));
  t.equal(a.held, 3);
  r.sw.removePort(a);
  t.equal(r.clock.pending, 0);
  r.clock.advance(10_000_000);
  t.equal(r.got(b).length, 2);
});
