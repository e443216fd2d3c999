/**
 * Seeded, deterministic fuzzing of the switch's frame checks and of the TX
 * request decoding: mutated frames and random requests never throw, never
 * reach a port that should not see them, and every frame is counted once.
 */
import t from 'tap';
import { prng } from '../../test/fuzz/prng.ts';
import { PvTable, PAGE_SIZE } from '../../kernel/pv-table.ts';
import { GrantTables, viewMemories } from '../../kernel/grant.ts';
import { FrontRing, MemoryRingPage } from '../../kernel/ring.ts';
import { ManualClock } from './clock.ts';
import { ArpOp, arpFrame, ipAt, ipv4Frame } from './frame.ts';
import { NetBackend } from './backend.ts';
import { HostNetFront, netFrontPages } from './host-front.ts';
import { MAX_FRAME, NetStatus, TX_RING } from './protocol.ts';
import { VirtualSwitch, type PortStats, type SwitchPort } from './switch.ts';

const SEEDS = [1, 2, 3, 0xdecaf];
const A = { mac: '00:16:3e:00:01:00', ip: '169.254.1.1' };
const B = { mac: '00:16:3e:00:02:00', ip: '169.254.1.2' };

const outcomes = (s: PortStats) => s.txPackets + s.spoofed + s.malformed + s.unroutable + s.rateLimited;

for (const seed of SEEDS) {
  t.test(`switch, seed ${seed}: mutated frames`, async (t) => {
    const rand = prng(seed);
    const clock = new ManualClock();
    const sw = new VirtualSwitch({ clock, holdFrames: 8 });
    const delivered = new Map<string, Uint8Array[]>([['a', []], ['b', []], ['c', []]]);
    const port = (name: string, mac: string, ip: string): SwitchPort =>
      sw.addPort({ name, mac, ips: [ip], deliver: (f) => { delivered.get(name)!.push(f.slice()); return rand() < 0.8; } });
    const a = port('a', A.mac, A.ip);
    port('b', B.mac, B.ip);
    port('c', '00:16:3e:00:03:00', '10.1.1.3');
    if (seed % 2) sw.setRate(a, { bytes: 20_000, usecs: 10_000 });
    const seeds = [
      ipv4Frame({ srcMac: A.mac, dstMac: B.mac, src: A.ip, dst: B.ip, payload: new Uint8Array(40) }),
      arpFrame({ op: ArpOp.REQUEST, senderMac: A.mac, senderIp: A.ip, targetIp: B.ip }),
      arpFrame({ op: ArpOp.REPLY, dstMac: B.mac, senderMac: A.mac, senderIp: A.ip, targetIp: B.ip }),
    ];
    const N = 20_000;
    for (let i = 0; i < N; i++) {
      const base = seeds[Math.floor(rand() * seeds.length)]!;
      let f: Uint8Array = base.slice();
      const flips = Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) f[Math.floor(rand() * f.length)] = Math.floor(rand() * 256);
      const r = rand();
      if (r < 0.05) f = f.subarray(0, Math.floor(rand() * f.length));
      else if (r < 0.1) { const g = new Uint8Array(Math.floor(rand() * (MAX_FRAME + 100))); g.set(f.subarray(0, g.length)); f = g; }
      sw.send(a, f);
      if (i % 100 === 0) clock.advance(1000);
    }
    clock.advance(10_000_000);
    t.equal(outcomes(a.stats) + a.held, N, 'every frame counted exactly once');
    t.equal(a.held, 0);
    // B and C only ever received IPv4 to their own address or an ARP reply sent to their MAC; A only ARP replies.
    t.ok(delivered.get('b')!.every((f) => (((f[12]! << 8) | f[13]!) === 0x0806 ? f[21] === ArpOp.REPLY : ipAt(f, 30) === ipAt(seeds[0]!, 30))), 'b got only what is addressed to it');
    t.ok(delivered.get('c')!.every((f) => ((f[12]! << 8) | f[13]!) === 0x0806 || ipAt(f, 30) === 0x0a010103), 'c likewise');
    t.ok(delivered.get('a')!.every((f) => f[21] === ArpOp.REPLY && ipAt(f, 38) === ipAt(seeds[1]!, 28)), 'a got only proxy ARP replies');
    t.ok(a.stats.malformed > N / 10 && a.stats.txPackets > N / 10, `a mix: ${JSON.stringify(a.stats)}`);
  });

  t.test(`backend, seed ${seed}: random TX requests`, async (t) => {
    const rand = prng(seed);
    const table = new PvTable(15, 1);
    table.claim(0, true);
    table.claim(1, false);
    table.claim(2, false);
    const memA = new Uint8Array(new SharedArrayBuffer((netFrontPages() + 2) * PAGE_SIZE));
    const memB = new Uint8Array(new SharedArrayBuffer(netFrontPages() * PAGE_SIZE));
    const grants = new GrantTables(table, viewMemories((d) => (d === 1 ? memA : d === 2 ? memB : undefined)));
    const sw = new VirtualSwitch({ clock: new ManualClock() });
    const front = new HostNetFront(grants, 1, 0, memA, 0);
    const frontB = new HostNetFront(grants, 2, 0, memB, 0);
    const mapPage = (dom: number, gref: number) => {
      const m = grants.map(0, dom, gref, true);
      if (typeof m === 'number') throw new Error(`map ${m}`);
      return new MemoryRingPage(m.bytes, 0);
    };
    const back = new NetBackend({ grants, self: 0, domid: 1, txPage: mapPage(1, front.txRingGref), rxPage: mapPage(1, front.rxRingGref), switch: sw, port: { name: 'a', mac: A.mac, ips: [A.ip] }, notify: () => {} });
    const backB = new NetBackend({ grants, self: 0, domid: 2, txPage: mapPage(2, frontB.txRingGref), rxPage: mapPage(2, frontB.rxRingGref), switch: sw, port: { name: 'b', mac: B.mac, ips: [B.ip] }, notify: () => frontB.onNotify() });
    // Drive A's TX ring by hand with random requests over its pages (a hostile guest).
    const ring = new FrontRing(new MemoryRingPage(memA, 0), TX_RING);
    const good = ipv4Frame({ srcMac: A.mac, dstMac: B.mac, src: A.ip, dst: B.ip, payload: new Uint8Array(100) });
    memA.set(good, 2 * PAGE_SIZE + 512);
    const statuses = new Map<number, number>();
    let sent = 0;
    for (let round = 0; round < 300; round++) {
      const n = 1 + Math.floor(rand() * 16);
      for (let i = 0; i < n && !ring.full(); i++) {
        const honest = rand() < 0.3;
        ring.putRequest({
          id: sent++ & 0xffff,
          gref: honest ? 3 : Math.floor(rand() * 8), // grant 3 is A's first TX buffer page; 0 is never valid
          offset: honest ? 512 : Math.floor(rand() * (rand() < 0.7 ? 4096 : 65536)),
          flags: honest ? 0 : (rand() < 0.8 ? 0 : Math.floor(rand() * 65536)),
          size: honest ? good.length : Math.floor(rand() * (rand() < 0.7 ? 1600 : 65536)),
        });
      }
      ring.pushRequests();
      back.kick();
      for (let r = ring.takeResponse(); r !== undefined; r = ring.takeResponse()) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
    t.equal(back.broken, undefined, 'random requests never break the ring');
    t.equal([...statuses.values()].reduce((x, y) => x + y, 0), sent, 'every request answered once');
    t.same([...statuses.keys()].sort(), [NetStatus.DROPPED, NetStatus.ERROR, NetStatus.OKAY].sort());
    t.equal(frontB.inbox.length + backB.port.stats.dropped, back.port.stats.txPackets, 'B got every frame that went');
    t.ok(frontB.inbox.every((f) => f.length === good.length), 'only the honest frame reached B');
    t.equal(back.stats.txErrors, statuses.get(NetStatus.ERROR));
  });
}
