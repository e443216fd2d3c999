/**
 * A real filesystem through a VBD: an ext2 image made by mke2fs -d from a
 * directory, mounted by the ext2sh reference guest, which lists and prints
 * it on request through its console. Its contents must be the directory's.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Hypervisor, type Domain } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { until } from '../helpers/wat.ts';

const hasMke2fs = !spawnSync('mke2fs', ['-V'], { encoding: 'utf8' }).error;
if (!hasMke2fs && process.env.WV_EXT2_TESTS === 'required') t.fail('mke2fs is not installed, and the ext2 tests are required here');
const skip = hasMke2fs ? false : 'mke2fs is not installed (apt-get install e2fsprogs)';

const dir = mkdtempSync(join(tmpdir(), 'wv-ext2-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const tree = join(dir, 'tree');
mkdirSync(join(tree, 'etc', 'wv'), { recursive: true });
mkdirSync(join(tree, 'empty'));
writeFileSync(join(tree, 'hello.txt'), 'hello from an ext2 image\n');
writeFileSync(join(tree, 'etc', 'motd'), 'wasmvisor: the filesystem came through a VBD\n');
writeFileSync(join(tree, 'etc', 'wv', 'domains.cfg'), 'kernel = "ticker"\n');
const big = new Uint8Array(700 * 1024);
let x = 12345;
for (let i = 0; i < big.length; i++) { x = (x * 1103515245 + 12345) >>> 0; big[i] = x >>> 24; }
writeFileSync(join(tree, 'big.bin'), big);
symlinkSync('etc/motd', join(tree, 'motd-link'));

function image(name: string, src: string, label: string): string {
  const img = join(dir, name);
  const r = spawnSync('mke2fs', ['-q', '-F', '-t', 'ext2', '-b', '1024', '-L', label, '-d', src, img, '4M'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mke2fs failed: ${r.stderr}`);
  return img;
}
const img = hasMke2fs ? image('root.img', tree, 'wvroot') : '';

/** Type a command and return what it printed up to the next prompt. */
async function run(hv: Hypervisor, dom: Domain, cmd: string): Promise<string> {
  const before = dom.consoleText().length;
  hv.consoleInput(dom.id, new TextEncoder().encode(`${cmd}\n`));
  const ok = await until(() => dom.consoleText().slice(before).includes('ext2sh> '), 20_000);
  if (!ok) throw new Error(`no prompt after "${cmd}": ${dom.consoleText().slice(before)}`);
  const out = dom.consoleText().slice(before);
  return out.slice(0, out.lastIndexOf('ext2sh> '));
}

t.test('ext2sh mounts the image and shows its real contents', { skip }, async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: guestPath('ext2sh'), name: 'fs', memory: 8, disks: [`file:${img},xvda,r`] });
  t.ok(await until(() => dom.consoleText().includes('ext2sh> '), 20_000), dom.consoleText());
  t.match(dom.consoleText(), /mounted xvda \("wvroot", 4096 blocks of 1024 bytes\)/);

  const root = await run(hv, dom, 'ls /');
  const names = root.split('\n').filter((l) => /^[-dl?] /.test(l)).map((l) => l.split(' ').slice(2).join(' ')).sort();
  t.same(names, ['big.bin', 'empty', 'etc', 'hello.txt', 'lost+found', 'motd-link -> etc/motd']);
  t.match(root, /^- 716800 big\.bin$/m, 'sizes are the files\'');
  t.match(root, /^d \d+ etc$/m);
  t.match(await run(hv, dom, 'ls /etc'), /^- 45 motd\n[\s\S]*^d \d+ wv$/m);
  t.equal(await run(hv, dom, 'cat /hello.txt'), 'hello from an ext2 image\n\next2sh: end of /hello.txt\n');
  t.match(await run(hv, dom, 'cat /etc/wv/domains.cfg'), /^kernel = "ticker"\n/);
  t.match(await run(hv, dom, 'cat /motd-link'), /^wasmvisor: the filesystem came through a VBD\n/, 'symlinks are followed');
  const sum = await run(hv, dom, 'sum /big.bin');
  t.equal(sum, `ext2sh: /big.bin size ${big.length} crc32 ${crc32(big).toString(16)}\n`, 'every byte of a file with double-indirect blocks');
  t.match(await run(hv, dom, 'stat /etc/motd'), /inode \d+ type - mode 644 size 45 links 1/);
  t.match(await run(hv, dom, 'ls /empty'), /^ext2sh: end of listing\n$/);
  t.match(await run(hv, dom, 'cat /nope'), /ext2sh: \/nope: .*/);
  t.match(await run(hv, dom, 'ls /hello.txt/x'), /ext2sh: \/hello\.txt\/x: /);
  t.match(await run(hv, dom, 'df'), /label "wvroot" block size 1024 blocks 4096/);
  const [v] = hv.blk.list(dom.id);
  t.ok(v!.stats.reads > 10 && v!.stats.bytesRead >= big.length, 'the data came through the VBD');
  t.equal(v!.stats.writes, 0);
});

t.test('one image read-only in two domains; a second disk hotplugged, mounted and detached', { skip }, async (t) => {
  const other = join(dir, 'other');
  mkdirSync(other);
  writeFileSync(join(other, 'note.txt'), 'the second disk\n');
  const img2 = image('second.img', other, 'second');
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const a = await hv.createDomain({ image: guestPath('ext2sh'), name: 'a', memory: 8, disks: [`file:${img},xvda,r`] });
  const b = await hv.createDomain({ image: guestPath('ext2sh'), name: 'b', memory: 8, cmdline: 'root=/dev/xvda1 ro', disks: [`file:${img},xvda1,r`] });
  for (const d of [a, b]) t.ok(await until(() => d.consoleText().includes('ext2sh> '), 20_000));
  t.match(await run(hv, a, 'cat /hello.txt'), /hello from an ext2 image/);
  t.match(await run(hv, b, 'cat /hello.txt'), /hello from an ext2 image/);

  await hv.blk.attach(b.id, `file:${img2},xvdb,r`);
  t.match(b.consoleText(), /mounted xvda1 /, 'root=/dev/xvda1 on the command line picks the device');
  t.match(await run(hv, b, 'disks'), /xvda1 51713\nxvdb 51728\next2sh: 2 disk\(s\)/);
  t.match(await run(hv, b, 'umount'), /xvda1 released/);
  t.match(await run(hv, b, 'mount xvdb'), /mounted xvdb \("second"/);
  t.match(await run(hv, b, 'cat /note.txt'), /^the second disk\n/);
  // Detach the mounted disk: the guest lets go (it wakes on the store event).
  await hv.blk.detach(b.id, 'xvdb');
  t.ok(await until(() => b.consoleText().includes('xvdb released')));
  t.match(await run(hv, b, 'ls /'), /nothing mounted/);
  t.same(hv.blk.list(b.id).map((v) => v.vdev), ['xvda1']);
});

t.test('a disk that is not ext2 is refused with the reason', { skip }, async (t) => {
  const junk = join(dir, 'junk.img');
  writeFileSync(junk, new Uint8Array(1 << 20).fill(7));
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: guestPath('ext2sh'), memory: 8, disks: [`file:${junk},xvda,r`] });
  t.ok(await until(() => dom.consoleText().includes('ext2sh> '), 20_000));
  t.match(dom.consoleText(), /ext2sh: xvda: ext2: .*magic/i);
  t.match(await run(hv, dom, 'ls'), /nothing mounted/);
});

t.test('the backing file shrinks under a mounted filesystem: reads fail with an I/O error, nothing else breaks', { skip }, async (t) => {
  const copy = join(dir, 'shrink.img');
  copyFileSync(img, copy);
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: guestPath('ext2sh'), memory: 8, disks: [`file:${copy},xvda,r`] });
  t.ok(await until(() => dom.consoleText().includes('ext2sh> '), 20_000));
  t.match(await run(hv, dom, 'cat /hello.txt'), /hello from an ext2 image/);
  truncateSync(copy, 64 * 1024);
  t.match(await run(hv, dom, 'sum /big.bin'), /ext2sh: \/big\.bin: .*errno 5/, 'the guest sees EIO');
  t.ok(hv.blk.list(dom.id)[0]!.stats.errors >= 1);
  t.match(await run(hv, dom, 'df'), /label "wvroot"/, 'the guest still answers');
  t.equal(hv.blk.list(dom.id)[0]!.state, 'connected');
});
