/**
 * Save and restore of domains with devices (issue 9): a guest writing to
 * its disk is saved mid-work and restored on the same host and on another
 * (or migrated there), and goes on writing without knowing (every block
 * lands right); a TCP
 * server with a vif is checkpointed while it serves, saved and restored,
 * and keeps serving, even a TCP connection opened before the save; a block
 * request in flight at the save completes first; restores that cannot
 * reopen a disk or read the devices section are refused, naming why.
 */
import t, { type Test } from 'tap';
import http from 'node:http';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { SaveReader, SaveWriter, type SectionKind } from '../../runtime/save/format.ts';
import { BackingStore } from '../../devices/blk/backing.ts';
import { until } from '../helpers/wat.ts';

const dir = mkdtempSync(join(tmpdir(), 'wv-save-dev-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const BLOCKS = 512;

function disk(name: string, bytes = 4 << 20): string {
  const path = join(dir, name);
  writeFileSync(path, new Uint8Array(bytes));
  return path;
}

/** blkwrite's blocks in `file` that do not hold its pattern (block i, byte j = (i * 31 + j * 7 + seed) & 255), of the first `n`. */
function wrongBlocks(path: string, n: number, seed: number): number[] {
  const file = readFileSync(path);
  const bad: number[] = [];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 4096; j++) {
      if (file[i * 4096 + j] !== ((i * 31 + j * 7 + seed) & 255)) { bad.push(i); break; }
    }
  }
  return bad;
}

/** The last "durable N" blkwrite printed. */
function durable(text: string): number {
  return Number([...text.matchAll(/durable (\d+)/g)].at(-1)?.[1] ?? 0);
}

/** blkwrite's cmdline; it binds the shutdown virq but answers it only when done, so saves take it at a block (force). */
const SAVE = { force: true, timeoutMs: 150 } as const;

/**
 * Slows host writes down on request: `slowNext(ms)` makes the next
 * write to a backing store wait `ms` before it starts, and says when it has
 * begun waiting (so a test knows a request is in flight); `pace` makes
 * every write wait that many ms (so a guest is still writing when the save
 * comes, however fast the machine).
 */
const vectored = BackingStore.prototype.vectored;
let slow: { ms: number; started?: () => void } | undefined;
let pace = 0;
BackingStore.prototype.vectored = function (this: BackingStore, write, sector, buffers, done) {
  const s = slow;
  if (write && s) {
    slow = undefined;
    s.started?.();
    setTimeout(() => vectored.call(this, write, sector, buffers, done), s.ms);
    return;
  }
  if (write && pace > 0) {
    setTimeout(() => vectored.call(this, write, sector, buffers, done), pace);
    return;
  }
  vectored.call(this, write, sector, buffers, done);
};
/** Writes wait `ms` each for the rest of test `t`. */
function paced(t: Test, ms: number): void {
  pace = ms;
  t.teardown(() => { pace = 0; });
}
t.teardown(() => { BackingStore.prototype.vectored = vectored; });
function slowNext(ms: number): Promise<void> {
  return new Promise((resolve) => { slow = { ms, started: resolve }; });
}

t.test('a guest writing its disk, saved mid-work and restored on the same host, goes on; every block is right', async (t) => {
  const path = disk('same.img');
  paced(t, 2);
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: guestPath('blkwrite'), name: 'w', memory: 4, cmdline: `blocks=${BLOCKS} flush=16 seed=3`, disks: [`file:${path},xvda,w`] });
  t.ok(await until(() => durable(d.consoleText()) >= 64, 30_000), d.consoleText());
  const file = join(dir, 'same.save');
  const saved = await hv.save(d.id, file, SAVE);
  const at = durable(d.consoleText());
  t.ok(at >= 64 && at < BLOCKS, `saved mid-work, after block ${at}`);
  t.same(hv.blk.list(), [], 'the disk went with the saved domain');
  const r = await SaveReader.open(file);
  const section = await r.readJson('devices') as { version: number; vbds: Array<Record<string, unknown>>; vifs: unknown[] };
  await r.close();
  t.equal(section.version, 1);
  t.match(section.vbds, [{ vdev: 'xvda', devid: 51712, kind: 'file', path, readonly: false, frontend: { state: '4' }, connection: { grefs: [Number], port: Number } }]);
  t.same(section.vifs, []);

  const back = await hv.restore(file);
  t.equal(back.id, saved.domid, 'it keeps its id');
  t.ok(await until(() => back.consoleText().includes(`done ${BLOCKS} blocks, durable ${BLOCKS}`), 30_000), back.consoleText());
  t.ok(durable(back.consoleText()) > at, 'it went on from where it was');
  const [vbd] = hv.blk.list(back.id);
  t.match(vbd, { vdev: 'xvda', path, state: 'connected', frontendState: 'connected', inflight: 0 });
  t.equal(vbd!.stats.errors, 0);
  t.equal(hv.store.read(0, `/local/domain/${back.id}/device/vbd/51712/ring-ref`), String((section.vbds[0]!.connection as { grefs: number[] }).grefs[0]));
  t.notMatch(hv.dmesg().join('\n'), /restore: /, 'everything came back');
  await hv.destroy(back.id);
  t.same(wrongBlocks(path, BLOCKS, 3), [], 'the file holds every block');
});

t.test('restored on another host whose domain id is taken: a new id, the same disk, and it goes on', async (t) => {
  const path = disk('other.img');
  paced(t, 2);
  const a = new Hypervisor({ cpus: 1 });
  t.teardown(() => a.close());
  const d = await a.createDomain({ image: guestPath('blkwrite'), name: 'mover', memory: 4, cmdline: `blocks=${BLOCKS} flush=16 seed=7`, disks: [`file:${path},xvda,w`] });
  t.ok(await until(() => durable(d.consoleText()) >= 32, 30_000), d.consoleText());
  const file = join(dir, 'other.save');
  await a.save(d.id, file, SAVE);
  await a.close();

  const b = new Hypervisor({ cpus: 2 });
  t.teardown(() => b.close());
  const squatter = await b.createDomain({ image: guestPath('ticker'), name: 'squatter', memory: 4, cmdline: 'count=100000 interval=50' });
  t.equal(squatter.id, d.id, 'the saved id is taken there');
  const back = await b.restore(file);
  t.not(back.id, d.id, `it gets a new id (${back.id})`);
  t.ok(await until(() => back.consoleText().includes(`done ${BLOCKS} blocks, durable ${BLOCKS}`), 30_000), back.consoleText());
  t.match(b.blk.list(back.id), [{ domid: back.id, vdev: 'xvda', state: 'connected', stats: { errors: 0 } }]);
  t.notMatch(b.dmesg().join('\n'), /restore: |not brought back/, 'every device channel came back');
  await b.destroy(back.id);
  t.same(wrongBlocks(path, BLOCKS, 7), [], 'the file holds every block');
});

t.test('migrated to another hypervisor mid-work, a guest writing its disk goes on there', async (t) => {
  const path = disk('migrate.img');
  paced(t, 2);
  const a = new Hypervisor({ cpus: 1 });
  t.teardown(() => a.close());
  const b = new Hypervisor({ cpus: 1 });
  t.teardown(() => b.close());
  const listener = await b.listenForMigrations({ port: 0 });
  t.teardown(() => listener.close());
  const d = await a.createDomain({ image: guestPath('blkwrite'), name: 'nomad', memory: 4, cmdline: `blocks=${BLOCKS} flush=16 seed=5`, disks: [`file:${path},xvda,w`] });
  t.ok(await until(() => durable(d.consoleText()) >= 32, 30_000), d.consoleText());
  const m = await a.migrate(d.id, `127.0.0.1:${listener.port}`, SAVE);
  t.same(a.blk.list(), [], 'the source let go of the disk');
  const there = b.domain(m.domid);
  t.ok(await until(() => there.consoleText().includes(`done ${BLOCKS} blocks, durable ${BLOCKS}`), 30_000), there.consoleText());
  t.match(b.blk.list(m.domid), [{ vdev: 'xvda', path, state: 'connected', stats: { errors: 0 } }]);
  t.comment(`downtime ${m.downtimeMs.toFixed(1)} ms`);
  await b.destroy(m.domid);
  t.same(wrongBlocks(path, BLOCKS, 5), [], 'the file holds every block');
});

t.test('a save while a block write is in flight waits for it; the restored guest sees it answered and goes on', async (t) => {
  const path = disk('inflight.img');
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: guestPath('blkwrite'), name: 'busy', memory: 4, cmdline: `blocks=${BLOCKS} flush=16 seed=11`, disks: [`file:${path},xvda,w`] });
  t.ok(await until(() => durable(d.consoleText()) >= 16, 30_000), d.consoleText());
  // The next write waits 1.2 s in the host: the capture (150 ms of asking, then the next block) comes first.
  await slowNext(1200);
  t.equal(hv.blk.list(d.id)[0]!.inflight, 1, 'a write is in flight');
  const file = join(dir, 'inflight.save');
  await hv.save(d.id, file, SAVE);
  t.match(hv.dmesg().join('\n'), /block: domain \d+ xvda: 1 request in flight completed before the save/);
  const back = await hv.restore(file);
  t.ok(await until(() => back.consoleText().includes(`done ${BLOCKS} blocks, durable ${BLOCKS}`), 30_000), back.consoleText());
  t.notMatch(back.consoleText(), /failed/);
  await hv.destroy(back.id);
  t.same(wrongBlocks(path, BLOCKS, 11), [], 'the file holds every block');
});

/** GET / from 127.0.0.1:`port`. */
function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
    }).on('error', reject);
  });
}

/** A TCP connection through a forward to netd's echo port, and everything echoed on it. */
async function echoConnection(port: number): Promise<{ socket: Socket; echoed: () => string }> {
  const socket = connect({ host: '127.0.0.1', port });
  let got = '';
  socket.on('data', (c: Buffer) => { got += c.toString(); });
  await new Promise<void>((resolve, reject) => { socket.once('connect', () => resolve()); socket.once('error', reject); });
  return { socket, echoed: () => got };
}

const NETD = { image: guestPath('netd'), name: 'web', memory: 32, cmdline: 'ip=169.254.1.1::169.254.0.1:255.255.0.0::eth0:off', vifs: ['ip=169.254.1.1'] };

t.test('a TCP server checkpointed while it serves, then saved and restored, keeps serving, even a connection opened before', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const srv = await hv.createDomain(NETD);
  hv.net.enableNat();
  t.ok(await until(() => srv.consoleText().includes('up on vif 0'), 30_000), srv.consoleText());
  const web = await hv.net.forward(0, srv.id, 80);
  const echo = await hv.net.forward(0, srv.id, 7);
  t.equal((await get(web.port)).status, 200);
  const conn = await echoConnection(echo.port);
  t.teardown(() => conn.socket.destroy());
  conn.socket.write('one\n');
  t.ok(await until(() => conn.echoed() === 'one\n', 10_000), conn.echoed());

  // A checkpoint while pages are being fetched: they all arrive, and the server goes on.
  const checkpoint = join(dir, 'web-checkpoint.save');
  const pages = Array.from({ length: 4 }, () => get(web.port));
  const cp = await hv.save(srv.id, checkpoint, { checkpoint: true });
  t.same((await Promise.all(pages)).map((p) => p.status), [200, 200, 200, 200], 'requests around the checkpoint are answered');
  conn.socket.write('two\n');
  t.ok(await until(() => conn.echoed() === 'one\ntwo\n', 10_000), conn.echoed());
  t.equal(hv.net.list(srv.id)[0]!.state, 'connected');
  t.comment(`checkpoint downtime ${cp.downtimeMs.toFixed(1)} ms`);

  // Saved (the domain goes), data sent meanwhile, restored: the same connection carries on.
  const file = join(dir, 'web.save');
  await hv.save(srv.id, file);
  t.same(hv.net.list(), [], 'its vif went with it');
  conn.socket.write('three\n');
  const back = await hv.restore(file);
  t.equal(back.id, srv.id);
  t.match(hv.net.list(back.id), [{ name: `vif${back.id}.0`, mac: hv.net.list(back.id)[0]!.mac, ips: ['169.254.1.1'], state: 'connected', frontendState: 'connected' }]);
  t.ok(await until(() => conn.echoed() === 'one\ntwo\nthree\n', 20_000), `sent while it was away, echoed after: ${JSON.stringify(conn.echoed())}`);
  conn.socket.write('four\n');
  t.ok(await until(() => conn.echoed() === 'one\ntwo\nthree\nfour\n', 10_000), conn.echoed());
  const page = await get(web.port);
  t.equal(page.status, 200);
  t.match(page.body, `Served by domain ${back.id} (web) at 169.254.1.1`);
  t.notMatch(hv.dmesg().join('\n'), /restore: /, 'everything came back');

  // The checkpoint, restored on another host, serves a client there from the state it had.
  const b = new Hypervisor({ cpus: 2 });
  t.teardown(() => b.close());
  const copy = await b.restore(checkpoint);
  const cli = await b.createDomain({ image: guestPath('netclient'), name: 'cli', memory: 32, cmdline: 'target=169.254.1.1 count=2 wait=5000 ip=169.254.1.2::169.254.1.254:255.255.0.0::eth0:off', vifs: ['ip=169.254.1.2'], onPoweroff: 'preserve' });
  t.ok(await until(() => cli.consoleText().includes('fetched'), 30_000), cli.consoleText());
  t.match(cli.consoleText(), /2 packets transmitted, 2 received/);
  t.match(cli.consoleText(), `Served by domain ${copy.id} (web) at 169.254.1.1 over its vif`);
  t.equal(b.net.list(copy.id)[0]!.mac, hv.net.list(back.id)[0]!.mac, 'the same MAC on the other host');

  // The same checkpoint cannot come back next to the original: its MAC and address are taken.
  const before = hv.kernel.budget.freeBytes;
  await t.rejects(hv.restore(checkpoint, { name: 'twin' }), { code: 'WV_ERR_RESTORE', message: /vif 0: its MAC [0-9a-f:]+ is in use by vif\d+\.0/ });
  t.equal(hv.kernel.budget.freeBytes, before, 'no memory is held');
  t.same(hv.list().map((x) => x.name), ['Domain-0', 'web']);
});

/** Copy the save `src` to `dst` with the devices section replaced by `devices`. */
async function withDevices(src: string, dst: string, devices: unknown): Promise<string> {
  const r = await SaveReader.open(src);
  try {
    const w = await SaveWriter.create(dst);
    for (const s of r.sections) {
      const kind = s.kind as SectionKind;
      if (kind === 'devices') await w.addJson('devices', devices);
      else await w.addSection(kind, await r.read(kind));
    }
    await w.commit();
  } finally {
    await r.close();
  }
  return dst;
}

t.test('a restore whose disk is gone, or whose devices section is malformed, is refused naming it; nothing is created', async (t) => {
  const path = disk('gone.img');
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: guestPath('blkwrite'), name: 'g', memory: 4, cmdline: `blocks=${BLOCKS} flush=16`, disks: [`file:${path},xvda,w`] });
  t.ok(await until(() => durable(d.consoleText()) >= 16, 30_000), d.consoleText());
  const file = join(dir, 'gone.save');
  await hv.save(d.id, file, SAVE);
  const r = await SaveReader.open(file);
  const devices = await r.readJson('devices') as { vbds: Array<Record<string, unknown>> };
  await r.close();
  const free = hv.kernel.budget.freeBytes;
  const nothing = (what: string): void => {
    t.same(hv.list().map((x) => x.name), ['Domain-0'], `${what}: no domain`);
    t.equal(hv.kernel.budget.freeBytes, free, `${what}: no memory held`);
    t.same(hv.blk.list(), [], `${what}: no disk attached`);
    t.equal(hv.blk.holderOf(path), undefined, `${what}: the disk is not held`);
  };

  rmSync(path);
  await t.rejects(hv.restore(file), { code: 'WV_ERR_RESTORE', message: `disk xvda (${path}) cannot be opened` });
  nothing('missing disk');
  writeFileSync(path, new Uint8Array(4 << 20));

  const bad: Array<[string, unknown, RegExp]> = [
    ['not an object', [1, 2], /devices section is malformed: the section is not an object/],
    ['no vbds', { version: 1, vifs: [] }, /vbds is not a list/],
    ['newer version', { ...devices, version: 9 }, /version is 9, not 1/],
    ['bad vdev', { ...devices, vbds: [{ ...devices.vbds[0], vdev: 'floppy' }] }, /vbds\[0\]\.vdev is not xvdX/],
    ['bad grefs', { ...devices, vbds: [{ ...devices.vbds[0], connection: { grefs: [1, 2], port: 3 } }] }, /vbds\[0\]\.connection\.grefs is not a list of 1 grant reference/],
    ['bad port', { ...devices, vbds: [{ ...devices.vbds[0], connection: { grefs: [1], port: 'x' } }] }, /vbds\[0\]\.connection\.port is not a port number/],
    ['bad frontend', { ...devices, vbds: [{ ...devices.vbds[0], frontend: { state: 4 } }] }, /vbds\[0\]\.frontend\.state is not a string/],
    ['bad mac', { ...devices, vifs: [{ index: 0, mac: 'zz', ips: [], rate: { bytes: 0, usecs: 0 }, spec: '', frontend: {}, connection: null }] }, /vifs\[0\]\.mac is not a MAC address/],
    ['bad index', { ...devices, vifs: [{ index: 3, mac: '00:16:3e:00:00:01', ips: [], rate: { bytes: 0, usecs: 0 }, spec: '', frontend: {}, connection: null }] }, /vifs\[0\]\.index is 3, not 0/],
  ];
  for (const [what, section, message] of bad) {
    const copy = await withDevices(file, join(dir, 'bad-devices.save'), section);
    await t.rejects(hv.restore(copy), { code: 'WV_ERR_RESTORE', message }, what);
    nothing(what);
  }
});
