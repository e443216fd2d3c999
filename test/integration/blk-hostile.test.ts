/**
 * Hostile block frontends: bad handshakes, bad requests and a corrupted
 * ring. Each gets an error (in the store, or as a request status); the
 * device keeps serving good requests where it can, and another domain's
 * disk is not affected.
 */
import t from 'tap';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { until } from '../helpers/wat.ts';
import { compileAs } from '../helpers/asc.ts';

const dir = mkdtempSync(join(tmpdir(), 'wv-blkbad-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const hostile = await compileAs('wasm-guests/test-modules/blk-hostile.ts');
const disk = join(dir, 'disk.img');
writeFileSync(disk, new Uint8Array(256 * 512).fill(0xab));

for (const [mode, error] of [
  ['badref', /cannot map the ring \(grant 250\)/],
  ['garbage', /frontend ring-ref is "12abc", not a number/],
  ['badport', /cannot bind event channel 200/],
] as const) {
  t.test(`a frontend with a bad handshake (${mode}) is told why and stays unconnected`, async (t) => {
    const hv = new Hypervisor({ cpus: 1 });
    t.teardown(() => hv.close());
    const dom = await hv.createDomain({ image: hostile, memory: 2, cmdline: `mode=${mode}`, disks: [`file:${disk},xvda,r`] });
    t.ok(await until(() => dom.consoleText().includes('backend says')), dom.consoleText());
    t.match(dom.consoleText(), error);
    const [v] = hv.blk.list(dom.id);
    t.equal(v!.state, 'init-wait');
    t.match(v!.error, error);
    t.equal(hv.grants.inUse(0), 0);
    await hv.destroy(dom.id);
    t.same(hv.blk.list(), []);
  });
}

t.test('bad requests get an error status each; the next good request is served', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: hostile, memory: 2, cmdline: 'mode=requests', disks: [`file:${disk},xvda,r`] });
  t.ok(await until(() => dom.consoleText().includes('first byte')), dom.consoleText());
  const out = dom.consoleText();
  for (const c of ['ungranted', 'read-only', 'past-end', 'zero-segments', 'twelve-segments', 'bad-sectors']) t.match(out, `hostile: ${c} status -1\n`, c);
  t.match(out, 'hostile: good status 0\n');
  t.match(out, 'hostile: first byte 171\n', 'the good read brought the disk\'s bytes');
  const [v] = hv.blk.list(dom.id);
  t.equal(v!.stats.errors, 6);
  t.equal(v!.stats.reads, 1);
  t.equal(v!.state, 'connected');
});

t.test('a corrupted ring stops only that device; another domain\'s disk keeps working', async (t) => {
  const other = join(dir, 'other.img');
  writeFileSync(other, new Uint8Array(8 << 20));
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const good = await hv.createDomain({ image: guestPath('blkwrite'), memory: 4, cmdline: 'flush=8', disks: [`file:${other},xvda,w`] });
  const bad = await hv.createDomain({ image: hostile, memory: 2, cmdline: 'mode=corrupt', disks: [`file:${disk},xvda,r`] });
  t.ok(await until(() => bad.consoleText().includes('ring corrupted')));
  t.ok(await until(() => hv.blk.list(bad.id)[0]?.state === 'closing'), 'the broken device is closing');
  t.match(hv.blk.list(bad.id)[0]!.error, /broke the ring protocol/);
  t.ok(await until(() => good.consoleText().includes('done 2048')), 'the other domain finished its whole disk');
  t.equal(hv.blk.list(good.id)[0]!.stats.errors, 0);
  const f = readFileSync(other);
  t.equal(f[2047 * 4096 + 1], (2047 * 31 + 7) & 255, 'its last block is on the host');
  t.equal(bad.phase === 'running' || bad.phase === 'blocked', true, 'the hostile domain itself is not harmed either');
  await hv.destroy(bad.id);
  t.same(hv.blk.list().map((v) => v.domid), [good.id]);
});
