/**
 * The NAT gateway end to end (devices/net/nat): real host clients (Node's
 * http and net sockets) reach netd through port forwards, and netclient
 * reaches a Node HTTP server on the host's loopback through the gateway;
 * UDP the same ways, with Node dgram sockets.
 * Guests use 169.254.0.1 as their default gateway; 169.254.0.2 is the host.
 */
import t from 'tap';
import http from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { until } from '../helpers/wat.ts';

const NETD_CMDLINE = 'ip=169.254.1.1::169.254.0.1:255.255.0.0::eth0:off';

function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
    }).on('error', reject);
  });
}

/** Send `data` to 127.0.0.1:`port`, half-close, and collect what comes back until the other side closes. */
function echo(port: number, data: Buffer): Promise<{ got: Buffer; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const parts: Buffer[] = [];
    let n = 0;
    s.on('data', (c: Buffer) => {
      parts.push(c);
      n += c.length;
      if (n >= data.length) s.end();
    });
    s.on('error', reject);
    s.on('close', () => resolve({ got: Buffer.concat(parts), ms: performance.now() - t0 }));
    s.write(data);
  });
}

/** Send `bytes` to 127.0.0.1:`port` and half-close; resolves with the time until the other side has closed too. */
function sink(port: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunk = Buffer.alloc(65536, 0x5a);
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        left -= chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    s.on('error', reject);
    s.on('end', () => s.end());
    s.on('close', () => resolve(performance.now() - t0));
    s.resume();
    pump();
  });
}

/** The same over loopback TCP between two Node sockets, for comparison. */
async function loopbackSink(bytes: number): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (c) => { c.resume(); c.on('end', () => c.end()); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    return await sink((server.address() as AddressInfo).port, bytes);
  } finally {
    server.close();
  }
}

/** What a connection to a refused forward sees: 'closed' (reset or end with no data) or the data. */
function tryConnect(port: number): Promise<{ error?: string; data: number }> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let data = 0;
    let error: string | undefined;
    s.on('data', (c: Buffer) => { data += c.length; });
    s.on('error', (e: NodeJS.ErrnoException) => { error = e.code; });
    s.on('close', () => resolve({ ...(error ? { error } : {}), data }));
    s.write('hello\n');
  });
}

/** A UDP socket on 127.0.0.1 (any port). */
async function udpSocket(): Promise<DgramSocket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

/** Send `data` to 127.0.0.1:`port` from `s` and wait (up to `ms`) for one datagram back: it, or undefined. */
function udpAsk(s: DgramSocket, port: number, data: Buffer, ms = 3000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { s.off('message', on); resolve(undefined); }, ms);
    const on = (msg: Buffer): void => { clearTimeout(timer); s.off('message', on); resolve(msg); };
    s.on('message', on);
    s.send(data, port, '127.0.0.1');
  });
}

t.test('port forwards: HTTP and a 1 MiB echo through the gateway; a forward to a destroyed domain refuses', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const srv = await hv.createDomain({ image: guestPath('netd'), name: 'web', memory: 32, cmdline: NETD_CMDLINE, vifs: ['ip=169.254.1.1'] });
  const nat = hv.net.enableNat();
  t.equal(nat.address, '169.254.0.1');
  t.same(nat.port.addresses, ['169.254.0.1', '169.254.0.2']);
  t.ok(await until(() => srv.consoleText().includes('up on vif 0'), 20_000), srv.consoleText());
  const web = await hv.net.forward(0, srv.id, 80);
  const sev = await hv.net.forward(0, srv.id, 7);
  t.ok(web.port > 0 && web.host === '127.0.0.1', `listening on ${web.host}:${web.port}`);

  const page = await get(web.port);
  t.equal(page.status, 200);
  t.match(page.body, /Served by domain \d+ \(web\) at 169\.254\.1\.1 over its vif/);
  t.equal(web.stats.total, 1);
  t.equal(web.stats.bytesFromGuest > page.body.length, true, `${web.stats.bytesFromGuest} bytes from the guest`);
  t.ok(web.stats.bytesToGuest > 20, 'the request went to the guest');

  const data = randomBytes(1 << 20);
  const { got, ms } = await echo(sev.port, data);
  t.equal(got.length, data.length, 'all of it came back');
  t.ok(got.equals(data), 'byte-exact');
  t.comment(`1 MiB echoed through a forward in ${ms.toFixed(0)} ms (${((2 * data.length) / 1e3 / ms).toFixed(1)} MB/s both ways)`);
  t.equal(sev.stats.bytesToGuest, data.length);
  t.equal(sev.stats.bytesFromGuest, data.length);
  t.ok(await until(() => sev.stats.open === 0 && web.stats.open === 0, 5_000), 'connections closed');
  t.equal(sev.stats.refused, 0);

  // One way, to netd's discard port: a throughput figure against loopback TCP in the same process.
  const discard = await hv.net.forward(0, srv.id, 9);
  const BULK = 16 << 20;
  const msNat = await sink(discard.port, BULK);
  const msLo = await loopbackSink(BULK);
  t.equal(discard.stats.bytesToGuest, BULK, 'every byte reached the guest');
  t.comment(`16 MiB host -> guest through a forward: ${(BULK / 1e3 / msNat).toFixed(1)} MB/s; loopback TCP: ${(BULK / 1e3 / msLo).toFixed(1)} MB/s (ratio ${(msLo / msNat).toFixed(3)})`);

  // Nothing listens on port 23 of the guest: the guest's RST refuses the host connection.
  const nine = await hv.net.forward(0, srv.id, 23);
  const r9 = await tryConnect(nine.port);
  t.equal(r9.data, 0);
  t.equal(nine.stats.refused, 1, 'refused by the guest');

  await hv.destroy(srv.id);
  t.ok(await until(() => hv.net.list().length === 0, 5_000), 'the vif left the switch');
  const r = await tryConnect(web.port);
  t.equal(r.data, 0, 'no data from a domain that is gone');
  t.equal(web.stats.refused, 1, 'counted as refused');
  t.ok(hv.dmesg().some((l) => /NAT: refused .* domain \d+ port 80: it has no address/.test(l)), 'and logged');
  t.equal(nat.connectionsInUse >= 0, true);
});

t.test('default forwards like xen_nat_enable: 127.0.0.1:8000+N to port 80; a taken port is reported', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const srv = await hv.createDomain({ image: guestPath('netd'), name: 'web', memory: 32, cmdline: NETD_CMDLINE, vifs: ['ip=169.254.1.1'] });
  hv.net.enableNat();
  // Take 2200+N first, so one default forward cannot bind.
  const blocker = http.createServer();
  const taken = await new Promise<boolean>((r) => {
    blocker.once('error', () => r(false));
    blocker.listen(2200 + srv.id, '127.0.0.1', () => r(true));
  });
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())));
  const { forwards, failed } = await hv.net.natDomain(srv.id);
  if (taken) {
    t.equal(failed.length, 1, 'the taken port is reported');
    t.match(failed[0], /WV_ERR_NAT_FORWARD|EADDRINUSE|cannot forward 127\.0\.0\.1:22\d+/);
  }
  const web = forwards.find((f) => f.port === 8000 + srv.id);
  if (!web) {
    t.ok(failed.some((m) => m.includes(`${8000 + srv.id}`)), `port ${8000 + srv.id} is taken on this host: ${failed.join('; ')}`);
    return;
  }
  t.ok(await until(() => srv.consoleText().includes('up on vif 0'), 20_000));
  const page = await get(web.port);
  t.equal(page.status, 200);
  t.match(page.body, /Served by domain/);
});

t.test('outbound: a guest fetches from a Node HTTP server on the host\'s loopback through the gateway', async (t) => {
  const server = http.createServer((req, res) => res.end(`hello from the host, you asked for ${req.url}\n`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const nat = hv.net.enableNat();
  const cli = await hv.createDomain({
    image: guestPath('netclient'), name: 'cli', memory: 32, onPoweroff: 'preserve', vifs: ['ip=169.254.1.2'],
    cmdline: `target=169.254.0.2 port=${port} path=/from-guest count=1 wait=3000 ip=169.254.1.2::169.254.0.1:255.255.0.0::eth0:off`,
  });
  t.ok(await until(() => cli.consoleText().includes('fetched'), 30_000), cli.consoleText());
  t.match(cli.consoleText(), /1 packets transmitted, 1 received/, 'the host alias answers ping');
  t.match(cli.consoleText(), /HTTP\/1\.1 200 OK/);
  t.match(cli.consoleText(), /hello from the host, you asked for \/from-guest/);
  t.equal(nat.outbound.total, 1);
  t.equal(nat.outbound.refused, 0);
  t.ok(nat.outbound.bytesFromGuest > 20 && nat.outbound.bytesToGuest > 40, `${nat.outbound.bytesFromGuest} up, ${nat.outbound.bytesToGuest} down`);
  t.ok(await until(() => nat.outbound.open === 0, 5_000), 'closed');
});

t.test('outbound bulk: a guest sends 8 MiB to a host sink through the gateway, every byte arrives', async (t) => {
  let got = 0;
  let ended = false;
  const server = createServer({ allowHalfOpen: true }, (c) => {
    c.on('data', (d: Buffer) => { got += d.length; });
    c.on('end', () => { ended = true; c.end(); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const nat = hv.net.enableNat();
  const cli = await hv.createDomain({
    image: guestPath('netclient'), memory: 32, onPoweroff: 'preserve', vifs: ['ip=169.254.1.2'],
    cmdline: `target=169.254.0.2 port=${port} bulk=8 ip=169.254.1.2::169.254.0.1:255.255.0.0::eth0:off`,
  });
  t.ok(await until(() => /sent \d+ bytes in \d+ us/.test(cli.consoleText()), 60_000), cli.consoleText());
  const m = /sent (\d+) bytes in (\d+) us/.exec(cli.consoleText())!;
  t.equal(Number(m[1]), 8 << 20);
  t.ok(await until(() => ended, 10_000), 'the guest\'s FIN reached the host');
  t.equal(got, 8 << 20, 'every byte reached the host');
  t.equal(nat.outbound.bytesFromGuest, 8 << 20);
  t.comment(`8 MiB guest -> host through the gateway: ${(Number(m[1]) / Number(m[2])).toFixed(1)} MB/s (timed by the guest until acknowledged)`);
});

t.test('outbound to a destination the allow-list does not permit is refused (RST) and logged', async (t) => {
  const server = http.createServer((_req, res) => res.end('should not be reached\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  let hits = 0;
  server.on('connection', () => { hits++; });
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  // Only port 1 on loopback: the server's port is not allowed.
  const nat = hv.net.enableNat({ allow: ['127.0.0.1:1'] });
  const cli = await hv.createDomain({
    image: guestPath('netclient'), memory: 32, onPoweroff: 'preserve', vifs: ['ip=169.254.1.2'],
    cmdline: `target=169.254.0.2 port=${port} count=1 wait=1000 ip=169.254.1.2::169.254.0.1:255.255.0.0::eth0:off`,
  });
  t.ok(await until(() => cli.consoleText().includes('cannot connect'), 30_000), cli.consoleText());
  t.match(cli.consoleText(), /cannot connect to 169\.254\.0\.2:\d+ \(-111\)/, 'the guest sees connection refused');
  t.equal(nat.outbound.refused, 1);
  t.equal(nat.outbound.total, 0);
  t.equal(hits, 0, 'nothing reached the host server');
  t.ok(hv.dmesg().some((l) => new RegExp(`NAT: refused 169\\.254\\.1\\.2:\\d+ -> 169\\.254\\.0\\.2:${port}: host address 127\\.0\\.0\\.1 port ${port} is not allowed \\(allow: 127\\.0\\.0\\.1:1\\)`).test(l)), hv.dmesg().filter((l) => l.includes('NAT')).join('\n'));
  // An address outside the switch, routed through the gateway, stands for itself on the host: 10.9.9.9 is not allowed either, and does not answer ping.
  const out = await hv.createDomain({
    image: guestPath('netclient'), memory: 32, onPoweroff: 'preserve', vifs: ['ip=169.254.1.3'],
    cmdline: 'target=10.9.9.9 port=80 count=1 wait=300 ip=169.254.1.3::169.254.0.1:255.255.0.0::eth0:off',
  });
  t.ok(await until(() => out.consoleText().includes('cannot connect'), 30_000), out.consoleText());
  t.match(out.consoleText(), /1 packets transmitted, 0 received/);
  t.match(out.consoleText(), /cannot connect to 10\.9\.9\.9:80 \(-111\)/);
  t.equal(nat.outbound.refused, 2);
  t.ok(hv.dmesg().some((l) => /NAT: refused 169\.254\.1\.3:\d+ -> 10\.9\.9\.9:80: host address 10\.9\.9\.9 port 80 is not allowed/.test(l)));
});

t.test('close() closes the forwards: the host port is free again', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  hv.net.enableNat();
  const srv = await hv.createDomain({ image: guestPath('netd'), memory: 32, cmdline: NETD_CMDLINE, vifs: ['ip=169.254.1.1'] });
  const f = await hv.net.forward(0, srv.id, 80);
  await hv.close();
  const r = await tryConnect(f.port);
  t.equal(r.error, 'ECONNREFUSED', 'nothing listens after close');
  await t.rejects(hv.net.nat!.forward({ port: 0 }, { ip: '169.254.1.1', port: 80 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
});

t.test('wv nat forward and wv nat list through the toolstack daemon', async (t) => {
  const wvPath = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'wv-nat-'));
  const wv = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', dir, ...args], { encoding: 'utf8', timeout: 60_000, cwd: dir });
  /** Without blocking the event loop (the test's own HTTP client runs in it). */
  const wvAsync = (...args: string[]) => new Promise<string>((resolve) => {
    const p = spawn(process.execPath, [wvPath, '--state-dir', dir, ...args], { cwd: dir });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d; });
    p.on('close', () => resolve(out));
  });
  t.teardown(() => { if (existsSync(join(dir, 'wv.sock'))) wv('shutdown-host', '--timeout', '1'); });
  t.equal(wv('boot').status, 0);
  writeFileSync(join(dir, 'web.cfg'), `name = "web"\nkernel = "netd"\nmemory = 32\ncmdline = "${NETD_CMDLINE}"\nvif = [ 'ip=169.254.1.1' ]\n`);
  t.equal(wv('create', '-f', join(dir, 'web.cfg')).status, 0);
  t.match(wv('nat', 'list').stdout, /NAT is not enabled/);
  const bad = wv('nat', 'forward', '127.0.0.1:0', 'web');
  t.not(bad.status, 0);
  t.match(bad.stderr, /expected DOMAIN:PORT/);
  const r = wv('nat', 'forward', '127.0.0.1:0', 'web:80', '--json');
  t.equal(r.status, 0, r.stderr);
  const f = JSON.parse(r.stdout) as { host: string; port: number; target: string };
  t.match(f, { host: '127.0.0.1', target: /^domain \d+ port 80$/ });
  let page = { status: 0, body: '' };
  for (let i = 0; i < 50 && page.status !== 200; i++) {
    page = await get(f.port).catch(() => page);
    if (page.status !== 200) await new Promise((res) => setTimeout(res, 200));
  }
  t.equal(page.status, 200);
  t.match(page.body, /Served by domain \d+ \(web\)/);
  const list = JSON.parse(await wvAsync('nat', 'list', '--json')) as { enabled: boolean; address: string; forwards: Array<{ port: number; stats: { total: number; bytesFromGuest: number } }> };
  t.equal(list.enabled, true);
  t.equal(list.address, '169.254.0.1');
  t.equal(list.forwards[0]!.port, f.port);
  t.ok(list.forwards[0]!.stats.total >= 1 && list.forwards[0]!.stats.bytesFromGuest > 100);
  t.match(await wvAsync('nat', 'list'), /FORWARD\s+OPEN\s+TOTAL\s+REFUSED\s+TO_GUEST\s+FROM_GUEST\ntcp 127\.0\.0\.1:\d+ -> domain \d+ port 80\s+0\s+\d+\s+0/);
  // The allow-list.
  t.equal(wv('nat', 'allow').stdout, '127.0.0.0/8\n');
  t.equal(wv('nat', 'allow', '10.0.0.0/8', '192.168.1.5:443').stdout, '127.0.0.0/8\n10.0.0.0/8\n192.168.1.5:443\n');
  const badAllow = wv('nat', 'allow', '10.0.0.0/99');
  t.not(badAllow.status, 0);
  t.match(badAllow.stderr, /NAT allow "10\.0\.0\.0\/99"/);
  t.same(JSON.parse(wv('nat', 'disallow', '127.0.0.0/8', '--json').stdout), { allow: ['10.0.0.0/8', '192.168.1.5:443'] });
  const notThere = wv('nat', 'disallow', '1.2.3.4');
  t.not(notThere.status, 0);
  t.match(notThere.stderr, /NAT allow "1\.2\.3\.4".*not on the list \(10\.0\.0\.0\/8, 192\.168\.1\.5:443\)/);
  t.equal(wv('nat', 'allow', '--only').stdout, 'wv: guests may reach no host address\n');
  t.match(await wvAsync('nat', 'list'), /guests may reach no host address/);
  // Removing the forward.
  const gone = wv('nat', 'unforward', `127.0.0.1:${f.port}`);
  t.equal(gone.status, 0, gone.stderr);
  t.match(gone.stdout, new RegExp(`removed the tcp forward 127\\.0\\.0\\.1:${f.port} to domain \\d+ port 80`));
  const again = wv('nat', 'unforward', String(f.port));
  t.not(again.status, 0);
  t.match(again.stderr, /there is no tcp forward from 127\.0\.0\.1:\d+ \(forwards: none\)/);
  t.equal((await tryConnect(f.port)).error, 'ECONNREFUSED');
});

t.test('UDP forward: host datagrams to netd\'s UDP echo come back byte-exact; each host peer has its own gateway port', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const srv = await hv.createDomain({ image: guestPath('netd'), name: 'echo', memory: 32, cmdline: NETD_CMDLINE, vifs: ['ip=169.254.1.1'] });
  const nat = hv.net.enableNat();
  t.ok(await until(() => srv.consoleText().includes('echo on 7 (tcp, udp)'), 20_000), srv.consoleText());
  const f = await hv.net.forward(0, srv.id, 7, '127.0.0.1', 'udp');
  t.equal(f.protocol, 'udp');
  t.match(f.target, /^domain \d+ udp port 7$/);
  const a = await udpSocket();
  const b = await udpSocket();
  t.teardown(() => { a.close(); b.close(); });
  let sent = 0;
  for (const size of [1, 100, 512, 1472]) {
    for (const s of [a, b]) {
      const data = randomBytes(size);
      const got = await udpAsk(s, f.port, data);
      t.ok(got !== undefined && got.equals(data), `${size} bytes echoed byte-exact`);
      sent += size;
    }
  }
  t.equal(f.stats.total, 2, 'two host peers');
  t.equal(f.stats.open, 2);
  t.equal(f.stats.bytesToGuest, sent);
  t.equal(f.stats.bytesFromGuest, sent);
  t.same(nat.udpFlows, { outbound: 0, peers: 2 });
  // Over one frame: dropped and counted, nothing comes back.
  t.equal(await udpAsk(a, f.port, Buffer.alloc(1473), 500), undefined);
  t.equal(f.stats.refused, 1);
  t.ok(hv.dmesg().some((l) => /NAT: refused udp 127\.0\.0\.1:\d+ -> domain \d+ udp port 7: 1473 bytes is over one frame/.test(l)));
  // A domain that is gone: refused, counted and logged.
  await hv.destroy(srv.id);
  t.ok(await until(() => hv.net.list().length === 0, 5_000), 'the vif left the switch');
  t.equal(await udpAsk(b, f.port, Buffer.from('anyone?'), 300), undefined);
  t.equal(f.stats.refused, 2);
  await f.close();
  t.same(nat.udpFlows, { outbound: 0, peers: 0 }, 'closing the forward forgets its peers');
  t.equal(f.stats.open, 0);
});

t.test('UDP outbound: netclient udp=3 reaches a Node dgram echo server on the host through 169.254.0.2', async (t) => {
  const server = createSocket('udp4');
  const seen: Array<{ from: string; text: string }> = [];
  server.on('message', (msg, rinfo) => {
    seen.push({ from: rinfo.address, text: msg.toString() });
    server.send(msg, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const port = server.address().port;
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const nat = hv.net.enableNat({ udpIdleMs: 1000 });
  const cli = await hv.createDomain({
    image: guestPath('netclient'), name: 'cli', memory: 32, onPoweroff: 'preserve', vifs: ['ip=169.254.1.2'],
    cmdline: `target=169.254.0.2 port=${port} udp=3 wait=3000 ip=169.254.1.2::169.254.0.1:255.255.0.0::eth0:off`,
  });
  t.ok(await until(() => cli.consoleText().includes('udp 3 sent'), 30_000), cli.consoleText());
  const text = cli.consoleText();
  t.match(text, /netclient: udp 3 sent, 3 replies, 3 matched/);
  for (let i = 1; i <= 3; i++) {
    t.match(text, new RegExp(`netclient: udp reply ${`netclient udp datagram ${i}`.length} bytes from 169\\.254\\.0\\.2:${port}: netclient udp datagram ${i}\n`), `reply ${i} came from the address and port the guest sent to`);
  }
  t.same(seen.map((s) => s.text), ['netclient udp datagram 1', 'netclient udp datagram 2', 'netclient udp datagram 3']);
  t.same(new Set(seen.map((s) => s.from)), new Set(['127.0.0.1']));
  const bytes = seen.reduce((n, s) => n + s.text.length, 0);
  t.same({ ...nat.udpOutbound }, { open: 1, total: 1, refused: 0, reset: 0, bytesToGuest: bytes, bytesFromGuest: bytes });
  t.ok(await until(() => nat.udpFlows.outbound === 0, 5_000), 'the idle flow closes');
  t.equal(nat.udpOutbound.open, 0);
});

t.test('UDP outbound to a destination the allow-list does not permit is dropped, counted and logged', async (t) => {
  const server = createSocket('udp4');
  let hits = 0;
  server.on('message', (msg, rinfo) => { hits++; server.send(msg, rinfo.port, rinfo.address); });
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const port = server.address().port;
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const nat = hv.net.enableNat({ allow: ['127.0.0.1:1'] });
  const cli = await hv.createDomain({
    image: guestPath('netclient'), memory: 32, onPoweroff: 'preserve', vifs: ['ip=169.254.1.2'],
    cmdline: `target=169.254.0.2 port=${port} udp=2 wait=300 ip=169.254.1.2::169.254.0.1:255.255.0.0::eth0:off`,
  });
  t.ok(await until(() => cli.consoleText().includes('udp 2 sent'), 30_000), cli.consoleText());
  t.match(cli.consoleText(), /netclient: udp 2 sent, 0 replies, 0 matched/);
  t.match(cli.consoleText(), /no udp reply to datagram 1/);
  t.equal(hits, 0, 'nothing reached the host server');
  t.equal(nat.udpOutbound.refused, 2);
  t.equal(nat.udpOutbound.total, 0);
  t.equal(nat.udpFlows.outbound, 0);
  t.equal(hv.dmesg().filter((l) => new RegExp(`NAT: refused udp 169\\.254\\.1\\.2:\\d+ -> 169\\.254\\.0\\.2:${port}: host address 127\\.0\\.0\\.1 port ${port} is not allowed \\(allow: 127\\.0\\.0\\.1:1\\)`).test(l)).length, 2, hv.dmesg().filter((l) => l.includes('NAT')).join('\n'));
});

t.test('the allow-list from the boot line and at run time: refused, then allowed, then nothing; bad entries change nothing', async (t) => {
  const server = http.createServer((_req, res) => res.end('hello from the host\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  t.throws(() => new Hypervisor({ boot: 'nat_allow=127.0.0.1/40' }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /NAT allow "127\.0\.0\.1\/40".*expected a\.b\.c\.d\[\/bits\]\[:port\]/ });
  t.throws(() => new Hypervisor({ natAllow: ['localhost'] }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /NAT allow "localhost"/ });
  const hv = new Hypervisor({ cpus: 2, boot: 'nat nat_allow=127.0.0.1:1' });
  t.teardown(() => hv.close());
  t.ok(hv.net.nat, 'the nat boot option put the gateway on the switch');
  t.same(hv.net.natInfo().allow, ['127.0.0.1:1']);
  const fetch = async (name: string): Promise<string> => {
    const d = await hv.createDomain({
      image: guestPath('netclient'), name, memory: 32, onPoweroff: 'preserve', vifs: ['ip=169.254.1.2'],
      cmdline: `target=169.254.0.2 port=${port} count=1 wait=200 ip=169.254.1.2::169.254.0.1:255.255.0.0::eth0:off`,
    });
    t.ok(await until(() => /cannot connect|fetched/.test(d.consoleText()), 30_000), d.consoleText());
    const text = d.consoleText();
    await hv.destroy(d.id);
    return text;
  };
  t.match(await fetch('before'), /cannot connect to 169\.254\.0\.2:\d+ \(-111\)/, 'refused: the port is not on the list');
  t.throws(() => hv.net.setNatAllow(['127.0.0.1:1', '10.0.0.0/33']), { code: 'WV_ERR_INVALID_ARGUMENT', message: /NAT allow "10\.0\.0\.0\/33"/ });
  t.same(hv.net.natAllow, ['127.0.0.1:1'], 'a bad list changes nothing');
  t.same(hv.net.setNatAllow(['127.0.0.1:1', `127.0.0.1:${port}`]), ['127.0.0.1:1', `127.0.0.1:${port}`]);
  t.match(await fetch('after'), /hello from the host/, 'allowed at run time: the fetch goes through');
  t.ok(hv.dmesg().some((l) => l.includes(`NAT: guests may reach 127.0.0.1:1, 127.0.0.1:${port}`)));
  hv.net.setNatAllow([]);
  t.match(await fetch('none'), /cannot connect/, 'an empty list allows nothing');
  t.ok(hv.dmesg().some((l) => /is not allowed \(allow: nothing\)/.test(l)));
});

t.test('a guest hammering a forbidden address: every refusal is counted, the log gets a few lines and a sum', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const nat = hv.net.enableNat({ allow: [], refusalLog: { lines: 3, windowMs: 400 } });
  const cli = await hv.createDomain({
    image: guestPath('netclient'), memory: 32, onPoweroff: 'preserve', vifs: ['ip=169.254.1.2'],
    cmdline: 'target=169.254.0.2 port=5353 udp=12 wait=5 ip=169.254.1.2::169.254.0.1:255.255.0.0::eth0:off',
  });
  t.ok(await until(() => cli.consoleText().includes('udp 12 sent'), 30_000), cli.consoleText());
  t.equal(nat.udpOutbound.refused, 12, 'every datagram was refused and counted');
  t.ok(await until(() => hv.dmesg().some((l) => l.includes('more refusals were not logged')), 5_000));
  const lines = hv.dmesg().filter((l) => l.includes('NAT: refused udp'));
  t.equal(lines.length <= 6, true, `few refusal lines (${lines.length})`);
  const sums = hv.dmesg().map((l) => /NAT: (\d+) more refusals were not logged \(at most 3 lines per 400 ms\)/.exec(l)).filter((m) => m !== null);
  t.equal(lines.length + sums.reduce((n, m) => n + Number(m[1]), 0), 12, 'lines plus the sums account for every refusal');
});

t.test('wv nat unforward removes a forward and resets its connections; unknown forwards are named', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  hv.net.enableNat();
  const srv = await hv.createDomain({ image: guestPath('netd'), memory: 32, cmdline: NETD_CMDLINE, vifs: ['ip=169.254.1.1'] });
  t.ok(await until(() => srv.consoleText().includes('up on vif 0'), 30_000));
  const f = await hv.net.forward(0, srv.id, 7);
  // A connection open through the forward.
  const s = connect({ host: '127.0.0.1', port: f.port });
  const closed = new Promise<string>((resolve) => {
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    s.on('close', () => resolve('closed'));
  });
  const first = new Promise<Buffer>((resolve) => s.once('data', resolve));
  s.write('ping\n');
  t.equal((await first).toString(), 'ping\n', 'the echo answers through the forward');
  const removed = await hv.net.unforward(f.port);
  t.match(removed, { protocol: 'tcp', host: '127.0.0.1', port: f.port });
  t.match(await closed, /ECONNRESET|closed/, 'the open connection was ended');
  t.equal((await tryConnect(f.port)).error, 'ECONNREFUSED', 'nothing listens on the port now');
  t.same(hv.net.natInfo().forwards, []);
  await t.rejects(hv.net.unforward(f.port), { code: 'WV_ERR_NET_DEVICE', message: new RegExp(`there is no tcp forward from 127\\.0\\.0\\.1:${f.port} \\(forwards: none\\)`) });
  const u = await hv.net.forward(0, srv.id, 7, '127.0.0.1', 'udp');
  await t.rejects(hv.net.unforward(u.port), { message: new RegExp(`no tcp forward .*\\(forwards: udp 127\\.0\\.0\\.1:${u.port}\\)`) });
  await hv.net.unforward(u.port, '127.0.0.1', 'udp');
  t.same(hv.net.natInfo().forwards, []);
  t.ok(hv.dmesg().some((l) => l.includes(`NAT forward udp 127.0.0.1:${u.port} to domain ${srv.id} udp port 7 removed`)));
});
