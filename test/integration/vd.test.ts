/**
 * `wv vd ...` against a real daemon (`wv boot`) in its own state directory,
 * and the same actions from code (Controller in-process).
 */
import t, { type Test } from 'tap';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../../runtime/hypervisor.ts';
import { Controller, parseAction } from '../../runtime/toolstack/controller.ts';
import type { VirtualDiskInfo } from '../../devices/blk/vdisk.ts';

const wvPath = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));
const MiB = 1024 * 1024;

function daemonDir(t: Test): { dir: string; wv: (...args: string[]) => SpawnSyncReturns<string> } {
  const dir = mkdtempSync(join(tmpdir(), 'wv-vd-state-'));
  const wv = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', dir, ...args], { encoding: 'utf8', timeout: 60_000 });
  t.teardown(() => {
    if (existsSync(join(dir, 'wv.sock'))) wv('shutdown-host', '--timeout', '1');
    const pidFile = join(dir, 'wv.pid');
    if (existsSync(pidFile)) { try { process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL'); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, wv };
}

const json = <T>(r: { stdout: string }): T => JSON.parse(r.stdout) as T;

function fails(t: Test, r: SpawnSyncReturns<string>, message: RegExp, what: string): void {
  t.equal(r.status, 1, `${what}: exit status 1`);
  t.equal(r.stdout, '', `${what}: nothing on stdout`);
  t.match(r.stderr, message, `${what}: the message on stderr`);
}

async function stopped(dir: string): Promise<void> {
  for (let i = 0; i < 100 && existsSync(join(dir, 'wv.sock')); i++) await new Promise((r) => setTimeout(r, 50));
}

t.test('wv vd: create, list, snapshot, resize, delete, with --json and errors', async (t) => {
  const { dir, wv } = daemonDir(t);
  t.equal(wv('boot').status, 0);
  const vdDir = join(dir, 'vd');

  const empty = wv('vd', 'list');
  t.equal(empty.status, 0, empty.stderr);
  t.equal(empty.stdout, 'NAME  SIZE  USED  PARENT  CREATED  PATH\n', 'a header and no rows');
  t.same(json(wv('vd', 'list', '--json')), []);

  const made = wv('vd', 'create', 'web', '64M', '--json');
  t.equal(made.status, 0, made.stderr);
  const web = json<VirtualDiskInfo>(made);
  t.match(web, { name: 'web', sizeBytes: 64 * MiB, usedBytes: 0, parent: null, path: join(vdDir, 'web.img'), state: 'ok' });
  t.equal(statSync(web.path).size, 64 * MiB);
  t.equal(statSync(web.path).blocks, 0, 'sparse');
  const plain = wv('vd', 'create', 'scratch', '1G');
  t.equal(plain.stdout, `wv: created virtual disk scratch (1G) at ${join(vdDir, 'scratch.img')}\n`);

  fails(t, wv('vd', 'create', 'web', '1M'), /^wv: a virtual disk named "web" already exists \[WV_ERR_VD_EXISTS\]\n$/, 'an existing name');
  fails(t, wv('vd', 'create', 'odd', '1000'), /invalid size of virtual disk "odd": "1000" is not a multiple of 512 bytes \(whole sectors\) \[WV_ERR_INVALID_ARGUMENT\]/, 'a size that is not whole sectors');
  fails(t, wv('vd', 'create', 'huge', '3T'), /"3T" is larger than the most a virtual disk can be, 2T/, 'a size too large');
  fails(t, wv('vd', 'create', 'bad/name', '1M'), /invalid virtual disk name: "bad\/name"/, 'a bad name');
  fails(t, wv('vd', 'delete', 'ghost'), /no virtual disk named "ghost" \(wv vd list shows them\) \[WV_ERR_NO_SUCH_VD\]/, 'an unknown disk');

  // Data in the image, then a snapshot: the same bytes, still sparse, independent.
  const fd = openSync(web.path, 'r+');
  writeSync(fd, Buffer.from('root filesystem'), 0, 15, 10 * MiB);
  closeSync(fd);
  const snap = wv('vd', 'snapshot', 'web', 'web-v1', '--json');
  t.equal(snap.status, 0, snap.stderr);
  const v1 = json<VirtualDiskInfo>(snap);
  t.match(v1, { name: 'web-v1', sizeBytes: 64 * MiB, parent: 'web', parentDeleted: false, path: join(vdDir, 'web-v1.img') });
  t.ok(v1.usedBytes > 0 && v1.usedBytes <= 64 * 1024, `the snapshot takes ${v1.usedBytes} bytes`);
  const got = Buffer.alloc(15);
  const sfd = openSync(v1.path, 'r');
  readSync(sfd, got, 0, 15, 10 * MiB);
  closeSync(sfd);
  t.equal(got.toString(), 'root filesystem');
  t.match(wv('vd', 'snapshot', 'scratch', 'scratch2').stdout, /^wv: virtual disk scratch2 is a snapshot of scratch \(1G, 0 used\)\n$/);
  fails(t, wv('vd', 'snapshot', 'web', 'scratch'), /a virtual disk named "scratch" already exists/, 'a snapshot onto an existing name');

  // Resize: shrinking needs --force.
  fails(t, wv('vd', 'resize', 'web', '32M'), /invalid size of virtual disk "web": 32M is smaller than its 64M; shrinking loses the data past 32M, so it needs --force/, 'a shrink without --force');
  t.equal(statSync(web.path).size, 64 * MiB, 'the refused shrink changed nothing');
  t.equal(wv('vd', 'resize', 'web', '128M').stdout, 'wv: virtual disk web resized from 64M to 128M\n');
  const shrunk = json<VirtualDiskInfo & { previousBytes: number }>(wv('vd', 'resize', 'web', '32M', '--force', '--json'));
  t.match(shrunk, { name: 'web', sizeBytes: 32 * MiB, previousBytes: 128 * MiB });
  t.equal(statSync(web.path).size, 32 * MiB);

  // The table.
  const list = wv('vd', 'list');
  t.equal(list.status, 0, list.stderr);
  const lines = list.stdout.trimEnd().split('\n');
  t.match(lines[0], /^NAME\s+SIZE\s+USED\s+PARENT\s+CREATED\s+PATH$/);
  const cells = lines.slice(1).map((l) => l.split(/\s+/));
  t.same(cells.map((c) => [c[0], c[1], c[3]]), [['scratch', '1G', '-'], ['scratch2', '1G', 'scratch'], ['web', '32M', '-'], ['web-v1', '64M', 'web']], 'name, size, parent');
  t.same(cells.map((c) => c[2] === '0'), [true, true, false, false], 'USED: nothing for the empty disks, a block or so for those with data');
  t.match(lines[3], new RegExp(`\\s\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\s+${join(vdDir, 'web.img')}$`), 'created and path');

  // Delete: the parent goes, the snapshot stays.
  t.equal(wv('vd', 'delete', 'web').stdout, 'wv: deleted virtual disk web\n');
  t.notOk(existsSync(web.path));
  t.same(json(wv('vd', 'delete', 'scratch2', '--json')), { name: 'scratch2', path: join(vdDir, 'scratch2.img') });
  const after = json<VirtualDiskInfo[]>(wv('vd', 'list', '--json'));
  t.same(after.map((d) => [d.name, d.parent, d.parentDeleted]), [['scratch', null, false], ['web-v1', 'web', true]]);
  t.match(wv('vd', 'list').stdout, /web-v1\s+64M\s+\S+\s+web \(deleted\)/);

  // An image removed behind the daemon's back is listed as missing; delete clears it.
  unlinkSync(join(vdDir, 'scratch.img'));
  t.match(json<VirtualDiskInfo[]>(wv('vd', 'list', '--json'))[0], { name: 'scratch', state: 'missing', usedBytes: 0 });
  t.match(wv('vd', 'list').stdout, /\nscratch\s+1G\s+missing\s+-\s/);
  fails(t, wv('vd', 'resize', 'scratch', '2G'), /virtual disk "scratch": its image .*scratch\.img is missing \(remove the record with: wv vd delete scratch\) \[WV_ERR_VD_MISSING\]/, 'a missing image');
  t.equal(wv('vd', 'delete', 'scratch').status, 0);
  t.match(wv('dmesg').stdout, /virtual disk web-v1 snapshotted from web\n(.*\n)*.*virtual disk scratch deleted/, 'the kernel log records each change');

  // The records outlive the daemon.
  t.equal(wv('shutdown-host').status, 0);
  await stopped(dir);
  t.equal(wv('boot').status, 0);
  t.same(json<VirtualDiskInfo[]>(wv('vd', 'list', '--json')).map((d) => [d.name, d.sizeBytes, d.parent]), [['web-v1', 64 * MiB, 'web']]);
});

t.test('a disk attached to a domain cannot be deleted, resized or snapshotted until it is detached', async (t) => {
  const { wv } = daemonDir(t);
  t.equal(wv('boot').status, 0);
  t.equal(wv('vd', 'create', 'data', '4M').status, 0);
  t.equal(wv('create', 'spin', '--name', 'sp').status, 0);
  const att = wv('block-attach', 'sp', 'vd:data,xvdb,w');
  t.equal(att.status, 0, att.stderr);
  for (const [args, action] of [[['delete', 'data'], 'delete'], [['resize', 'data', '8M'], 'resize'], [['snapshot', 'data', 'copy'], 'snapshot']] as const) {
    fails(t, wv('vd', ...args), new RegExp(`cannot ${action} virtual disk "data": it is in use by domain 1 \\(sp\\) as xvdb \\(detach it or stop the domain first\\) \\[WV_ERR_VD_IN_USE\\]`), action);
  }
  fails(t, wv('block-attach', 'sp', 'vd:nothere,xvdc,w'), /no virtual disk named "nothere"/, 'attaching a disk that does not exist');
  t.equal(wv('block-detach', 'sp', 'xvdb', '--force', '--timeout', '1').status, 0);
  t.equal(wv('vd', 'delete', 'data').status, 0, 'free again');
});

t.test('the same actions in-process: a Controller with a vdDir, and without one', async (t) => {
  const vdDir = mkdtempSync(join(tmpdir(), 'wv-vd-api-'));
  const hv = new Hypervisor({ cpus: 1 });
  const ctl = new Controller(hv, { vdDir });
  t.teardown(async () => { await ctl.close(); await hv.close(); rmSync(vdDir, { recursive: true, force: true }); });
  const d = await ctl.handle({ op: 'vd-create', name: 'api', size: 8 * MiB });
  t.match(d, { name: 'api', sizeBytes: 8 * MiB, path: join(vdDir, 'api.img') });
  t.equal(ctl.virtualDisks.pathOf('api'), join(vdDir, 'api.img'), 'the resolver for vd:NAME');
  t.same((await ctl.handle({ op: 'vd-list' })).map((r) => r.name), ['api']);
  await t.rejects(ctl.handle({ op: 'vd-resize', name: 'api', size: '4M' }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /needs --force/ });
  t.equal((await ctl.handle({ op: 'vd-resize', name: 'api', size: '4M', force: true })).sizeBytes, 4 * MiB);

  const bare = new Controller(hv);
  await t.rejects(bare.handle({ op: 'vd-list' }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /this controller keeps no virtual disks: give it a directory/ });

  t.same(parseAction({ op: 'vd-resize', name: 'a', size: '1G', force: true }), { op: 'vd-resize', name: 'a', size: '1G', force: true });
  t.same(parseAction({ op: 'vd-snapshot', name: 'a', newName: 'b' }), { op: 'vd-snapshot', name: 'a', newName: 'b' });
  t.throws(() => parseAction({ op: 'vd-create', name: 'a' }), { message: /action field "size": it is missing/ });
  t.throws(() => parseAction({ op: 'vd-create', name: 'a', size: [1] }), { message: /must be a number of bytes or a size such as "64M"/ });
  t.throws(() => parseAction({ op: 'vd-snapshot', name: 'a' }), { message: /action field "newName": it is missing/ });
  t.throws(() => parseAction({ op: 'vd-resize', name: 'a', size: 512, force: 'yes' }), { message: /action field "force": it must be a boolean/ });
});
