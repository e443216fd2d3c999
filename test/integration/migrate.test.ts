/**
 * Live migration between two hypervisors on loopback, and clones (issue 9):
 * the domain goes on at the target from where it stopped, a domain that
 * dirties its memory all the time still arrives whole, the downtime is
 * measured, and a target that refuses or goes away halfway leaves the
 * domain running on the source.
 */
import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { YIELD, wat, until } from '../helpers/wat.ts';
import type { WvError } from '../../kernel/errors.ts';

function ticks(text: string): number[] {
  return [...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
}

async function rejection(p: Promise<unknown>): Promise<WvError> {
  try {
    await p;
  } catch (err) {
    return err as WvError;
  }
  throw new Error('it did not fail');
}

// 4 MiB: bumps the counter at 8192 and writes it into 600 pages from 64 KiB on, then yields; again and again.
const dirtier = wat(`(module (import "env" "memory" (memory 64 64 shared)) ${YIELD}
  (func (export "start") (local $i i32) (local $n i32)
    (loop $round
      (local.set $n (i32.add (i32.load (i32.const 8192)) (i32.const 1)))
      (local.set $i (i32.const 0))
      (loop $page
        (i32.store (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 4096))) (local.get $n))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $page (i32.lt_u (local.get $i) (i32.const 600))))
      (i32.store (i32.const 8192) (local.get $n))
      (drop (call $yield))
      (br $round))))`);

t.test('a ticker migrated to another hypervisor on loopback counts on there; the downtime is measured', async (t) => {
  const a = new Hypervisor({ cpus: 1 });
  const b = new Hypervisor({ cpus: 1 });
  t.teardown(async () => { await a.close(); await b.close(); });
  const listener = await b.listenForMigrations({ port: 0 });
  const d = await a.createDomain({ image: guestPath('ticker'), name: 'clock', memory: 4, cmdline: 'count=1000 period=20' });
  t.ok(await until(() => ticks(d.consoleText()).length >= 3, 20_000));
  const progress: boolean[] = [];
  const r = await a.migrate('clock', `127.0.0.1:${listener.port}`, { onProgress: (p) => progress.push(p.final) });
  const last = ticks(d.consoleText()).at(-1)!;
  t.equal(r.name, 'clock');
  t.ok(r.rounds >= 1, `${r.rounds} pre-copy round(s)`);
  t.ok(r.downtimeMs > 0, `downtime ${r.downtimeMs.toFixed(1)} ms`);
  t.ok(r.bytesSent > 0 && r.bytesSent < 4.5 * 1024 * 1024, `${r.bytesSent} bytes sent for a 4 MiB domain`);
  t.equal(progress.at(-1), true, 'progress ends with the stop-and-copy step');
  t.same(a.list().map((x) => x.name), ['Domain-0'], 'it is gone from the source');
  const there = b.domain('clock');
  t.equal(there.id, r.domid);
  t.ok(await until(() => ticks(there.consoleText()).filter((n) => n > last).length >= 3, 20_000), there.consoleText());
  t.equal(ticks(there.consoleText()).find((n) => n > last), last + 1, 'it goes on at the next tick');
});

t.test('a domain that writes 600 pages between yields arrives whole after several rounds', async (t) => {
  const a = new Hypervisor({ cpus: 1 });
  const b = new Hypervisor({ cpus: 1 });
  t.teardown(async () => { await a.close(); await b.close(); });
  const listener = await b.listenForMigrations({ port: 0 });
  const d = await a.createDomain({ image: dirtier, name: 'busy', memory: 4 });
  const view = (): DataView => new DataView(d.memory!.buffer);
  t.ok(await until(() => view().getUint32(8192, true) > 10));
  const r = await a.migrate(d.id, `127.0.0.1:${listener.port}`, { paused: true, maxRounds: 4 });
  t.ok(r.rounds >= 2, `${r.rounds} rounds: the pages kept changing`);
  t.comment(`${r.finalPages} pages sent while it was stopped, downtime ${r.downtimeMs.toFixed(1)} ms`);
  const there = b.domain('busy');
  t.equal(there.phase, 'paused', 'it arrived paused, as asked');
  const mem = new DataView(there.memory!.buffer);
  const n = mem.getUint32(8192, true);
  t.ok(n > 10, `its counter is ${n}`);
  const pages = Array.from({ length: 600 }, (_, i) => mem.getUint32(65536 + i * 4096, true));
  t.same(pages.filter((v) => v !== n), [], 'every page holds the counter of the round it stopped in');
  await there.unpause();
  t.ok(await until(() => new DataView(there.memory!.buffer).getUint32(8192, true) > n + 5), 'it runs on there');
});

t.test('a target that goes away halfway, refuses, or is not there: the domain keeps running on the source', async (t) => {
  const a = new Hypervisor({ cpus: 1 });
  t.teardown(() => a.close());
  const d = await a.createDomain({ image: dirtier, name: 'stay', memory: 4 });
  const counter = (): number => new DataView(d.memory!.buffer).getUint32(8192, true);
  t.ok(await until(() => counter() > 5));

  const b = new Hypervisor({ cpus: 1 });
  const listener = await b.listenForMigrations({ port: 0 });
  let closing: Promise<void> | undefined;
  const gone = await rejection(a.migrate(d.id, `127.0.0.1:${listener.port}`, { onProgress: () => { closing ??= b.close(); } }));
  await closing;
  t.equal(gone.code, 'WV_ERR_MIGRATE');
  t.match(gone.message, new RegExp(`domain ${d.id} was not migrated to 127\\.0\\.0\\.1:${listener.port}: .*; it keeps running here`));
  const at = counter();
  t.ok(await until(() => counter() > at + 5), 'it goes on running on the source');
  t.equal(a.domain('stay').id, d.id);

  const c = new Hypervisor({ cpus: 1 });
  t.teardown(() => c.close());
  const l2 = await c.listenForMigrations({ port: 0 });
  await c.createDomain({ image: dirtier, name: 'stay', memory: 4 });
  const taken = await rejection(a.migrate(d.id, `127.0.0.1:${l2.port}`));
  t.equal(taken.code, 'WV_ERR_MIGRATE');
  t.match(taken.message, /it refused: a domain named "stay" exists here/);
  t.match(c.kernel.log.lines().join('\n'), /migration from .* \(stay\) abandoned: a domain named "stay" exists here/);

  const big = await rejection(a.migrate(d.id, `127.0.0.1:${l2.port}`, { maxRounds: 0 }));
  t.equal(big.code, 'WV_ERR_INVALID_ARGUMENT');
  await l2.close();
  const refused = await rejection(a.migrate(d.id, `127.0.0.1:${l2.port}`));
  t.match(refused, { code: 'WV_ERR_MIGRATE', message: /cannot connect: ECONNREFUSED/ });
  t.match((await rejection(a.migrate(d.id, 'no:such:host'))).message, /"no:such:host" is not HOST or HOST:PORT/);
  const at2 = counter();
  t.ok(await until(() => counter() > at2 + 5), 'after every failure it still runs');
  t.same(c.list().map((x) => x.name), ['Domain-0', 'stay'], 'the target holds nothing of it');
});

t.test('a target checks what it is sent: a stream that is not a migration is refused, nothing is created', async (t) => {
  const b = new Hypervisor({ cpus: 1 });
  t.teardown(() => b.close());
  const listener = await b.listenForMigrations({ port: 0 });
  const { connect } = await import('node:net');
  const send = (bytes: Buffer): Promise<string> => new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port: listener.port }, () => sock.write(bytes));
    let got = '';
    sock.on('data', (c) => { got += c.toString('latin1'); });
    sock.on('close', () => resolve(got));
    sock.on('error', () => resolve(got));
  });
  t.match(await send(Buffer.from('GET / HTTP/1.0\r\n\r\n')), /frame of \d+ bytes is larger|did not begin with HELLO/);
  const hello = (json: unknown): Buffer => {
    const j = Buffer.from(JSON.stringify(json));
    const head = Buffer.alloc(9);
    head[0] = 1;
    head.writeUInt32BE(4 + j.length, 1);
    head.writeUInt32BE(j.length, 5);
    return Buffer.concat([head, j]);
  };
  t.match(await send(hello({ protocol: 9 })), /speaks migration protocol 9/);
  t.match(await send(hello({ protocol: 1, name: 'x', memoryBytes: 2 ** 40, memoryLength: 65536 })), /do not fit/);
  t.match(await send(hello({ protocol: 1, name: 'x', memoryBytes: 65536, memoryLength: 65536 })), /guest image does not load here/);
  t.same(b.list().map((x) => x.name), ['Domain-0']);
});

t.test('clone: three copies of a running ticker go on from one snapshot; the original goes on too', async (t) => {
  const hv = new Hypervisor({ cpus: 2, memoryBytes: 256 * 1024 * 1024, dom0MemoryBytes: 64 * 1024 * 1024 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: guestPath('ticker'), name: 'orig', memory: 2, cmdline: 'count=1000 period=20' });
  t.ok(await until(() => ticks(d.consoleText()).length >= 3, 20_000));
  const t0 = performance.now();
  const copies = await hv.clone('orig', 3);
  const ms = performance.now() - t0;
  t.comment(`3 clones in ${ms.toFixed(1)} ms`);
  t.same(copies.map((c) => c.name), ['orig-1', 'orig-2', 'orig-3']);
  t.equal(new Set(copies.map((c) => c.id)).size, 3);
  t.ok(copies.every((c) => c.image === d.image), 'they share the compiled image');
  const snap = Math.max(...copies.map((c) => ticks(c.consoleText()).filter((n) => n <= ticks(d.consoleText()).at(-1)!).at(-1) ?? -1));
  for (const c of copies) {
    t.ok(await until(() => ticks(c.consoleText()).length >= 3 + 3, 20_000), c.consoleText());
  }
  const at = ticks(d.consoleText()).at(-1)!;
  t.ok(await until(() => ticks(d.consoleText()).at(-1)! >= at + 2, 20_000), 'the original goes on ticking');
  t.ok(snap >= 2, `the snapshot was taken at tick ${snap}`);
  t.same(hv.list().map((x) => x.name), ['Domain-0', 'orig', 'orig-1', 'orig-2', 'orig-3']);

  t.match(await rejection(hv.clone('orig', 0)), { code: 'WV_ERR_INVALID_ARGUMENT', message: /clone count.*0 is not in 1-256/ });
  t.match(await rejection(hv.clone('orig', 1)), { code: 'WV_ERR_DOMAIN_EXISTS', message: /orig-1/ });
  t.match(await rejection(hv.clone('orig', 2, { names: ['a', 'a'] })), { code: 'WV_ERR_INVALID_ARGUMENT', message: /given twice/ });
  t.match(await rejection(hv.clone('orig', 100, { names: Array.from({ length: 100 }, (_, i) => `c${i}`) })), { code: 'WV_ERR_RESTORE', message: /100 copies of 2 MiB do not fit: \d+ MiB are free/ });
  t.same(hv.list().length, 5, 'the refused clones made nothing');
});

t.test('wv migrate between two toolstack daemons on loopback, and wv clone', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const { mkdtempSync, existsSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { createServer } = await import('node:net');
  const wvPath = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
  const daemon = (name: string) => {
    const state = mkdtempSync(join(tmpdir(), `wv-mig-${name}-`));
    const wv = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', state, ...args], { encoding: 'utf8', timeout: 60_000, cwd: state });
    t.teardown(() => { if (existsSync(join(state, 'wv.sock'))) wv('shutdown-host', '--timeout', '1'); });
    return wv;
  };
  const a = daemon('a');
  const b = daemon('b');
  t.equal(a('boot').status, 0);
  const bb = b('boot', '-b', `migrate_listen=${port}`);
  t.equal(bb.status, 0, bb.stderr);
  t.match(b('dmesg').stdout, new RegExp(`listening for migrations on 127\\.0\\.0\\.1:${port}`));
  t.equal(a('create', guestPath('ticker'), '--name', 'tick', '-m', '4', '-c', 'count=1000 period=50').status, 0);
  await new Promise((r) => setTimeout(r, 400));
  const m = a('migrate', 'tick', `127.0.0.1:${port}`, '--json');
  t.equal(m.status, 0, m.stderr);
  const r = JSON.parse(m.stdout) as { name: string; remoteId: number; downtimeMs: number; rounds: number };
  t.match(r, { name: 'tick', target: `127.0.0.1:${port}` });
  t.ok(r.downtimeMs > 0 && r.rounds >= 1);
  t.notMatch(a('list').stdout, /tick/, 'gone from the source');
  t.match(b('list').stdout, /tick/, 'running on the target');
  const c = b('clone', 'tick', '2');
  t.equal(c.status, 0, c.stderr);
  t.match(c.stdout, /wv: domain \d+ \(tick\) cloned 2 time\(s\) in \d+ ms .*\(tick-1\), \d+ \(tick-2\)/);
  const again = a('migrate', 'tick', `127.0.0.1:${port}`);
  t.not(again.status, 0);
  t.match(again.stderr, /tick/);
  const none = a('create', guestPath('ticker'), '--name', 'tock', '-m', '4', '-c', 'count=1000');
  t.equal(none.status, 0);
  const closed = a('migrate', 'tock', '127.0.0.1:1');
  t.not(closed.status, 0);
  t.match(closed.stderr, /was not migrated to 127\.0\.0\.1:1: cannot connect: ECONNREFUSED; it keeps running here/);
  t.match(a('list').stdout, /tock/);
});
