/**
 * Save and restore (issue 9): a guest captured at a block, written to a
 * save file, restored in another hypervisor, and going on from where it
 * was; checkpoints; the errors a save and a restore give.
 */
import t from 'tap';
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { until } from '../helpers/wat.ts';

const dir = mkdtempSync(join(tmpdir(), 'wv-save-'));

/** The ticks a ticker printed, in order. */
function ticks(text: string): number[] {
  return [...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
}

t.test('a ticker saved in one hypervisor and restored in another counts on from where it stopped', async (t) => {
  const file = join(dir, 'ticker.save');
  const a = new Hypervisor({ cpus: 1 });
  t.teardown(() => a.close());
  const d = await a.createDomain({ image: guestPath('ticker'), name: 'clock', memory: 4, cmdline: 'count=1000 interval=20' });
  t.ok(await until(() => ticks(d.consoleText()).length >= 5, 20_000), d.consoleText());
  const saved = await a.save(d.id, file);
  const before = ticks(d.consoleText());
  const last = before.at(-1)!;
  t.equal(saved.name, 'clock');
  t.ok(saved.bytes > 0 && existsSync(file), `the file is written (${saved.bytes} bytes)`);
  t.same(a.list().map((x) => x.name), ['Domain-0'], 'the saved domain is gone');
  await new Promise((r) => setTimeout(r, 200));

  const b = new Hypervisor({ cpus: 1 });
  t.teardown(() => b.close());
  const r = await b.restore(file);
  t.equal(r.name, 'clock');
  t.ok(await until(() => ticks(r.consoleText()).filter((n) => n > last).length >= 3, 20_000), r.consoleText());
  const after = ticks(r.consoleText());
  t.same(after.slice(0, before.length), before, 'the console history came along');
  t.same(after.slice(before.length, before.length + 3), [last + 1, last + 2, last + 3], 'the count goes on at the next tick');
});

t.test('a checkpoint leaves the domain running; restoring it gives a second copy from that point', async (t) => {
  const file = join(dir, 'checkpoint.save');
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: guestPath('ticker'), name: 'orig', memory: 4, cmdline: 'count=1000 interval=20' });
  t.ok(await until(() => ticks(d.consoleText()).length >= 3, 20_000));
  await hv.save(d.id, file, { checkpoint: true });
  const at = ticks(d.consoleText()).at(-1)!;
  t.ok(await until(() => ticks(d.consoleText()).at(-1)! >= at + 3, 20_000), 'the original goes on ticking');
  const copy = await hv.restore(file, { name: 'copy' });
  t.ok(await until(() => ticks(copy.consoleText()).filter((n) => n > at).length >= 2, 20_000), copy.consoleText());
  t.equal(ticks(copy.consoleText()).find((n) => n > at), at + 1, 'the copy goes on from the checkpoint');
  t.same(hv.list().map((x) => x.name), ['Domain-0', 'orig', 'copy']);
});

for (const which of ['pong', 'ping'] as const) {
  t.test(`${which} saved and restored while ping and pong talk over an event channel and a ring: the talk goes on`, async (t) => {
    const file = join(dir, `${which}.save`);
    const hv = new Hypervisor({ cpus: 2 });
    t.teardown(() => hv.close());
    const pong = await hv.createDomain({ image: guestPath('pong'), name: 'pong', memory: 1, paused: true, cmdline: 'count=40' });
    const ping = await hv.createDomain({ image: guestPath('ping'), name: 'ping', memory: 1, paused: true, cmdline: 'count=40 period=15' });
    hv.connect(ping.id, pong.id);
    await pong.unpause();
    await ping.unpause();
    // Save once they are talking: pong has answered a few (rsp_prod, at +8 in ping's ring page, which ping
    // names on its console). A fixed wait was not enough on a loaded machine: ping was saved before pong had
    // looked at its port.
    const ringPage = (): number => Number(/ring at page (\d+)/.exec(ping.consoleText())?.[1] ?? NaN);
    t.ok(await until(() => ringPage() >= 0 && new DataView(ping.memory!.buffer).getUint32(ringPage() * 4096 + 8, true) >= 3, 20_000), 'they are talking');
    const target = which === 'pong' ? pong : ping;
    const id = target.id;
    const saved = await hv.save(id, file);
    t.equal(saved.domid, id);
    t.notOk(hv.list().some((x) => x.name === which), `${which} is gone while it is saved`);
    await new Promise((r) => setTimeout(r, 100));
    const back = await hv.restore(file);
    t.equal(back.id, id, 'it keeps its domain id, which was free');
    t.notMatch(hv.kernel.log.lines().join('\n'), /restore: port|restore: grant/, 'every port and grant came back', { consoles: [ping.consoleText(), pong.consoleText()] });
    const other = which === 'pong' ? ping : pong;
    const exit = (d: typeof ping): Promise<unknown> => Promise.race([d.waitForExit(), new Promise((r) => setTimeout(() => r('still running after 20 s'), 20_000))]);
    const consoles = () => ({ consoles: [(which === 'ping' ? back : ping).consoleText(), (which === 'pong' ? back : pong).consoleText()], log: hv.kernel.log.lines().slice(-10) });
    t.same(await exit(which === 'ping' ? back : other), { reason: 'poweroff' }, 'ping got all 40 answers', consoles());
    t.same(await exit(which === 'pong' ? back : other), { reason: 'poweroff' }, 'pong answered all 40', consoles());
    const pingText = (which === 'ping' ? back : ping).consoleText();
    const pongText = (which === 'pong' ? back : pong).consoleText();
    t.match(pingText, /ping: 40 messages answered in \d+ us/);
    t.match(pongText, `pong: answered 40 requests from domain ${ping.id}`);
  });
}

t.test('bad save files are refused with the reason, and nothing is created', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: guestPath('ticker'), memory: 4, cmdline: 'count=1000 interval=20' });
  t.ok(await until(() => ticks(d.consoleText()).length >= 1, 20_000));
  const good = join(dir, 'good.save');
  await hv.save(d.id, good);
  const bytes = readFileSync(good);
  const truncated = join(dir, 'truncated.save');
  writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  await t.rejects(hv.restore(truncated), { code: 'WV_ERR_SAVE_TRUNCATED' });
  const corrupt = join(dir, 'corrupt.save');
  const c = Buffer.from(bytes);
  c[Math.floor(c.length * 0.7)]! ^= 0xff;
  writeFileSync(corrupt, c);
  await t.rejects(hv.restore(corrupt), { code: /WV_ERR_SAVE_(CORRUPT|TRUNCATED)/ });
  const foreign = join(dir, 'foreign.save');
  writeFileSync(foreign, 'not a save file at all\n');
  await t.rejects(hv.restore(foreign), { code: 'WV_ERR_SAVE_NOT_A_SAVE' });
  await t.rejects(hv.restore(join(dir, 'missing.save')), { code: 'WV_ERR_SAVE_IO', message: /missing\.save/ });
  const small = new Hypervisor({ cpus: 1, memoryBytes: 64 * 1024 * 1024, dom0MemoryBytes: 62 * 1024 * 1024 });
  t.teardown(() => small.close());
  await t.rejects(small.restore(good), { code: 'WV_ERR_RESTORE', message: /do not fit: \d+ MiB are free/ });
  t.same(hv.list().map((x) => x.name), ['Domain-0']);
});

t.test('a guest that never blocks cannot be captured: the save times out and it keeps running', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: guestPath('spin'), memory: 4 });
  await new Promise((r) => setTimeout(r, 100));
  const file = join(dir, 'spin.save');
  await t.rejects(hv.save(d.id, file, { timeoutMs: 300 }), { code: 'WV_ERR_SAVE_TIMEOUT', message: /did not block or yield within 300 ms.*keeps running/ });
  t.notOk(existsSync(file), 'no file is left behind');
  t.equal(hv.list().find((x) => x.id === d.id)?.phase, 'running');
});

t.test('wv save and wv restore through the toolstack daemon', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const wvPath = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));
  const state = mkdtempSync(join(tmpdir(), 'wv-save-cli-'));
  const wv = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', state, ...args], { encoding: 'utf8', timeout: 60_000, cwd: state });
  t.teardown(() => { if (existsSync(join(state, 'wv.sock'))) wv('shutdown-host', '--timeout', '1'); });
  t.equal(wv('boot').status, 0);
  t.equal(wv('create', guestPath('ticker'), '--name', 'tick', '-m', '4', '-c', 'count=1000').status, 0);
  await new Promise((r) => setTimeout(r, 500));
  const s = wv('save', 'tick', 'tick.save', '--json');
  t.equal(s.status, 0, s.stderr);
  const r = JSON.parse(s.stdout) as { name: string; path: string; bytes: number };
  t.match(r, { name: 'tick', path: join(state, 'tick.save') });
  t.ok(existsSync(join(state, 'tick.save')), 'a relative path is the caller\'s');
  t.notMatch(wv('list').stdout, /tick/, 'the saved domain is gone');
  const again = wv('save', 'tick', 'tick.save');
  t.not(again.status, 0);
  const rs = wv('restore', 'tick.save', '--name', 'tock');
  t.equal(rs.status, 0, rs.stderr);
  t.match(rs.stdout, /wv: domain \d+ \(tock\) restored from .*tick\.save/);
  t.match(wv('list').stdout, /tock/);
  const bad = wv('restore', 'nope.save');
  t.not(bad.status, 0);
  t.match(bad.stderr, /nope\.save/);
});
