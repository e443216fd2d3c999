/**
 * Network figures (issue 7):
 * - TCP throughput between two domains through the switch (netclient's
 *   bulk mode into netd's discard port, measured by the guest), against
 *   loopback TCP between two Node processes moving the same bytes in the
 *   same run;
 * - TCP throughput from a guest to the host through the NAT gateway
 *   (netclient's bulk mode to a Node sink on 127.0.0.1), against the same;
 * - ping round trip between two domains (median, p99), as the guest
 *   measures it;
 * - frames per second through the switch for 64-byte frames: two
 *   TypeScript frontends over domains' memories and grants, one sending,
 *   one receiving, through two NetBackends and the switch (no guest
 *   threads: the switch and backends alone).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { Hypervisor } from '../runtime/index.ts';
import { guestPath } from '../runtime/guests.ts';
import { PvTable, PAGE_SIZE } from '../kernel/pv-table.ts';
import { GrantTables, viewMemories } from '../kernel/grant.ts';
import { MemoryRingPage } from '../kernel/ring.ts';
import { VirtualSwitch } from '../devices/net/switch.ts';
import { NetBackend } from '../devices/net/backend.ts';
import { HostNetFront, netFrontPages } from '../devices/net/host-front.ts';
import { ipv4Frame } from '../devices/net/frame.ts';
import type { CpuFigure } from './cpu.ts';

const MiB = 1024 * 1024;

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Loopback TCP between this process and a child Node process: bytes/s for `bytes` written in 64 KiB pieces, until the receiver has them all. */
async function loopbackTcp(bytes: number): Promise<number> {
  const child = spawn(process.execPath, ['-e', `
    const net = require('node:net');
    const srv = net.createServer((s) => { let n = 0; s.on('data', (d) => { n += d.length; }); s.on('end', () => { s.end(String(n)); }); });
    srv.listen(0, '127.0.0.1', () => process.stdout.write(srv.address().port + '\\n'));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
    const chunk = Buffer.alloc(65536, 7);
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const t0 = performance.now();
    const done = new Promise<string>((resolve) => { let s = ''; sock.on('data', (d) => { s += d; }); sock.on('end', () => resolve(s)); });
    let sent = 0;
    while (sent < bytes) {
      const n = Math.min(chunk.length, bytes - sent);
      if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await new Promise((r) => sock.once('drain', r));
      sent += n;
    }
    sock.end();
    const got = Number(await done);
    const secs = (performance.now() - t0) / 1000;
    if (got !== bytes) throw new Error(`loopback receiver got ${got} of ${bytes} bytes`);
    return bytes / secs;
  } finally {
    child.kill();
  }
}

async function domainTcp(hv: Hypervisor, mib: number): Promise<number> {
  const srv = await hv.createDomain({ image: guestPath('netd'), name: 'sink', memory: 32, vifs: ['ip=169.254.1.1'] });
  await until(() => srv.consoleText().includes('up on vif 0'), 30_000);
  const cli = await hv.createDomain({ image: guestPath('netclient'), name: 'bulk', memory: 32, cmdline: `target=169.254.1.1 bulk=${mib}`, vifs: ['ip=169.254.1.2'], onPoweroff: 'preserve' });
  if (!(await until(() => /sent \d+ bytes in \d+ us/.test(cli.consoleText()), 120_000))) throw new Error(`bulk transfer did not finish: ${cli.consoleText()}`);
  const m = /sent (\d+) bytes in (\d+) us/.exec(cli.consoleText())!;
  await Promise.all([hv.destroy(srv.id), hv.destroy(cli.id)]);
  return Number(m[1]) / (Number(m[2]) / 1e6);
}

/** A guest's bulk send to a Node sink on the host's 127.0.0.1 through the NAT gateway (netclient to 169.254.0.2): bytes/s as the guest times it. */
async function natTcp(hv: Hypervisor, mib: number): Promise<number> {
  let got = 0;
  const sink = net.createServer((s) => { s.on('data', (d: Buffer) => { got += d.length; }); });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  try {
    hv.net.enableNat();
    const port = (sink.address() as net.AddressInfo).port;
    const cli = await hv.createDomain({ image: guestPath('netclient'), name: 'nat-bulk', memory: 32, cmdline: `target=169.254.0.2 port=${port} bulk=${mib} ip=169.254.1.3::169.254.0.1:255.255.0.0::eth0:off`, vifs: ['ip=169.254.1.3'], onPoweroff: 'preserve' });
    if (!(await until(() => /sent \d+ bytes in \d+ us/.test(cli.consoleText()), 120_000))) throw new Error(`bulk transfer through NAT did not finish: ${cli.consoleText()}`);
    const m = /sent (\d+) bytes in (\d+) us/.exec(cli.consoleText())!;
    await hv.destroy(cli.id);
    if (got < Number(m[1])) await until(() => got >= Number(m[1]), 5_000);
    if (got !== Number(m[1])) throw new Error(`the host sink got ${got} of ${m[1]} bytes`);
    return Number(m[1]) / (Number(m[2]) / 1e6);
  } finally {
    sink.close();
  }
}

async function pingRtts(hv: Hypervisor, count: number): Promise<number[]> {
  const srv = await hv.createDomain({ image: guestPath('netd'), name: 'echo', memory: 32, vifs: ['ip=169.254.1.1'] });
  await until(() => srv.consoleText().includes('up on vif 0'), 30_000);
  const cli = await hv.createDomain({ image: guestPath('netclient'), name: 'ping', memory: 32, cmdline: `target=169.254.1.1 count=${count} port=9 path=/`, vifs: ['ip=169.254.1.2'], onPoweroff: 'preserve' });
  if (!(await until(() => cli.consoleText().includes('packets transmitted'), 120_000))) throw new Error(`ping did not finish: ${cli.consoleText()}`);
  const rtts = [...cli.consoleText().matchAll(/time=(\d+\.\d+) ms/g)].map((m) => Number(m[1]));
  await Promise.all([hv.destroy(srv.id), hv.destroy(cli.id)]);
  return rtts.slice(Math.min(10, rtts.length >> 2)); // the first pings warm the JIT and ARP
}

/** 64-byte frames per second from one TypeScript frontend to another through the switch. */
async function switchFps(frames: number): Promise<number> {
  const table = new PvTable(15, 1);
  table.claim(0, true);
  const mems = new Map<number, Uint8Array>();
  const grants = new GrantTables(table, viewMemories((d) => mems.get(d)));
  const sw = new VirtualSwitch();
  const vif = (domid: number) => {
    table.claim(domid, false);
    const mem = new Uint8Array(new SharedArrayBuffer((netFrontPages({ rxBuffers: 256 }) + 4) * PAGE_SIZE));
    mems.set(domid, mem);
    const front = new HostNetFront(grants, domid, 0, mem, 0, { rxBuffers: 256 });
    const page = (gref: number): MemoryRingPage => {
      const m = grants.map(0, domid, gref, true);
      if (typeof m === 'number') throw new Error(`ring map ${m}`);
      return new MemoryRingPage(m.bytes, 0);
    };
    const mac = `00:16:3e:00:0${domid}:00`;
    const ip = `169.254.1.${domid}`;
    const back = new NetBackend({ grants, self: 0, domid, txPage: page(front.txRingGref), rxPage: page(front.rxRingGref), switch: sw, port: { name: `vif${domid}.0`, mac, ips: [ip] }, notify: () => front.onNotify() });
    front.notifyBackend = () => back.kick();
    return { front, mac, ip };
  };
  const a = vif(1);
  const b = vif(2);
  let got = 0;
  b.front.onFrame = () => { got++; };
  const f = ipv4Frame({ srcMac: a.mac, dstMac: b.mac, src: a.ip, dst: b.ip, payload: new Uint8Array(64 - 34) });
  const burst = 64;
  const run = async (n: number): Promise<number> => {
    got = 0;
    const t0 = performance.now();
    for (let sent = 0; sent < n; sent += burst) await Promise.all(Array.from({ length: Math.min(burst, n - sent) }, () => a.front.send(f)));
    const secs = (performance.now() - t0) / 1000;
    if (got !== n) throw new Error(`switch bench: ${got} of ${n} frames arrived`);
    return n / secs;
  };
  await run(Math.min(frames, 20000)); // warm up
  return run(frames);
}

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

export async function netFigures(quick: boolean, log: (s: string) => void): Promise<CpuFigure[]> {
  const out: CpuFigure[] = [];
  const mib = quick ? 16 : 64;
  log(`net: TCP ${mib} MiB between two domains vs loopback TCP between two Node processes; ping between two domains; 64-byte frames through the switch`);
  const hv = new Hypervisor({ cpus: 2 });
  try {
    const loop = await loopbackTcp(mib * MiB);
    const dom = await domainTcp(hv, mib);
    out.push({ name: 'TCP between two domains through the switch', value: dom / MiB, unit: 'MiB/s', baseline: loop / MiB, baselineName: 'loopback TCP between two Node processes', baselineUnit: 'MiB/s', ratio: dom / loop, note: `${mib} MiB into netd's discard port, timed by the sender until all is acknowledged` });
    const viaNat = await natTcp(hv, mib);
    out.push({ name: 'TCP from a guest to the host through NAT', value: viaNat / MiB, unit: 'MiB/s', baseline: loop / MiB, baselineName: 'loopback TCP between two Node processes', baselineUnit: 'MiB/s', ratio: viaNat / loop, note: `${mib} MiB from netclient to a Node sink on 127.0.0.1 via 169.254.0.2, timed by the sender until all is acknowledged` });
    const rtts = await pingRtts(hv, quick ? 50 : 200);
    out.push({ name: 'ping between two domains, median', value: quantile(rtts, 0.5), unit: 'ms', note: `${rtts.length} pings after warm-up; p99 ${quantile(rtts, 0.99).toFixed(3)} ms` });
  } finally {
    await hv.close();
  }
  const fps = await switchFps(quick ? 100_000 : 400_000);
  out.push({ name: '64-byte frames through the switch', value: fps, unit: 'frames/s', note: 'TypeScript frontends over domain memory and grants, two NetBackends, one thread' });
  return out;
}
