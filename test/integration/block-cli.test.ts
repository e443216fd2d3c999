/**
 * Block devices through the toolstack: a config with a disk, block-attach,
 * block-list, block-detach, the CD's vbd_add / vbd_remove / listvbds, the
 * sharing rule and a missing image as CLI errors, and top's VBD columns.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const wvPath = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));

interface Row { domid: number; vdev: string; state: string; frontendState: string; readonly: boolean; sectors: number; path: string; stats: { writes: number; reads: number; flushes: number; errors: number } }

t.test('disks from a config, hotplug, listings and errors through wv', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-blkcli-'));
  const wv = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', dir, ...args], { encoding: 'utf8', timeout: 60_000, cwd: dir });
  t.teardown(() => {
    if (existsSync(join(dir, 'wv.sock'))) wv('shutdown-host', '--timeout', '1');
  });
  t.equal(wv('boot').status, 0);
  writeFileSync(join(dir, 'disk.img'), new Uint8Array(1 << 20));
  writeFileSync(join(dir, 'other.img'), new Uint8Array(256 << 10));
  writeFileSync(join(dir, 'w.cfg'), `name = "w"\nkernel = "blkwrite"\nmemory = 4\ncmdline = "blocks=8 flush=4 seed=3"\ndisk = [ 'file:disk.img,xvda,w' ]\n`);
  const made = wv('create', '-f', join(dir, 'w.cfg'));
  t.equal(made.status, 0, made.stderr);

  const rows = (): Row[] => JSON.parse(wv('block-list', '--json').stdout) as Row[];
  let r: Row[] = [];
  for (let i = 0; i < 100; i++) {
    r = rows();
    if (r[0]?.stats.writes === 8) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  t.equal(r.length, 1);
  t.same([r[0]!.domid, r[0]!.vdev, r[0]!.state, r[0]!.frontendState, r[0]!.sectors, r[0]!.path], [1, 'xvda', 'connected', 'connected', 2048, join(dir, 'disk.img')]);
  t.equal(r[0]!.stats.writes, 8);

  const att = wv('block-attach', 'w', 'file:other.img,xvdb,r');
  t.equal(att.status, 0, att.stderr);
  t.match(att.stdout, new RegExp(`file:${join(dir, 'other.img')} attached to domain 1 \\(w\\) as xvdb, read-only`), 'a relative path is the caller\'s');
  const table = wv('block-list', '1');
  t.match(table.stdout, /^DOM\s+NAME\s+VDEV\s+DEVID\s+MODE\s+SIZE\s+STATE\s+FRONTEND\s+RD\s+WR\s+RD_BYTES\s+WR_BYTES\s+ERR\s+BACKING/);
  t.match(table.stdout, /\n1\s+w\s+xvda\s+51712\s+w\s+1\.0MiB\s+connected\s+connected\s+0\s+8\s+0B\s+32KiB\s+0\s+file:/);
  t.match(table.stdout, /\n1\s+w\s+xvdb\s+51728\s+r\s+256KiB\s+init-wait\s+initialising\s/);
  t.match(wv('compat', 'xc_dom_control.py', 'listvbds').stdout, /xvda[\s\S]*xvdb/, 'listvbds shows both');
  t.match(wv('top', '-b', '-n', '1', '-d', '0.1').stdout, /VBDS\s+VBD_RD\s+VBD_WR\s+VBD_RKiB\s+VBD_WKiB\s+VBD_ERR\s[\s\S]*\bw\s+1\s.*\s2\s+0\s+8\s+0\s+32\s+0\s/);

  const det = wv('block-detach', 'w', 'xvdb', '--json');
  t.equal(det.status, 0, det.stderr);
  t.same(JSON.parse(det.stdout), { id: 1, vdev: 'xvdb' });
  const add = wv('compat', 'xc_dom_control.py', 'vbd_add', '1', 'file:other.img', 'xvdc', 'r');
  t.equal(add.status, 0, add.stderr);
  t.match(add.stdout, /added to domain 1 as xvdc \(r\)/);
  t.match(wv('compat', 'xc_dom_control.py', 'vbd_remove', '1', 'xvdc').stdout, /xvdc removed from domain 1/);
  t.same(rows().map((x) => x.vdev), ['xvda']);

  // Bad input: each fails with a message on stderr and a non-zero exit.
  const none = wv('block-detach', 'w', 'xvdz');
  t.not(none.status, 0);
  t.match(none.stderr, /domain 1 has no block device xvdz \(it has xvda\)/);
  const shared = wv('create', 'echo', '--name', 'second', '-m', '4');
  t.equal(shared.status, 0, 'a domain without disks is fine');
  const clash = wv('block-attach', 'second', 'file:disk.img,xvda,r');
  t.not(clash.status, 0);
  t.match(clash.stderr, /disk\.img: it is attached read-write to domain 1 \(w\) as xvda/);
  const missing = wv('block-attach', 'second', 'file:nope.img,xvda,r');
  t.not(missing.status, 0);
  t.match(missing.stderr, /nope\.img/);
  const badSpec = wv('block-attach', 'second', 'file:disk.img');
  t.not(badSpec.status, 0);
  t.match(badSpec.stderr, /disk "file:disk\.img"/);
  writeFileSync(join(dir, 'bad.cfg'), `kernel = "blkwrite"\ndisk = [ 'file:gone.img,xvda,w' ]\n`);
  const badCreate = wv('create', '-f', join(dir, 'bad.cfg'));
  t.not(badCreate.status, 0);
  t.match(badCreate.stderr, /gone\.img/);

  t.equal(wv('destroy', 'w').status, 0);
  const file = readFileSync(join(dir, 'disk.img'));
  let ok = 0;
  for (let i = 0; i < 8; i++) {
    let good = true;
    for (let j = 0; j < 4096; j++) if (file[i * 4096 + j] !== ((i * 31 + j * 7 + 3) & 255)) good = false;
    if (good) ok++;
  }
  t.equal(ok, 8, 'every block the guest wrote is in the file');
  t.same(rows(), [], 'no devices left');
});
