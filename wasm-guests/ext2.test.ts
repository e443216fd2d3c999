/**
 * The SDK's ext2 reader (wasm-guests/sdk/ext2.ts), compiled into a small AS
 * module (wasm-guests/test-modules/ext2-check.ts) that reads its disk through
 * the import `test.read`. Images are made by mke2fs (e2fsprogs) from a tree
 * built here, in several block sizes, revisions and inode sizes: every
 * listing, attribute, symlink and byte must match the tree. Then hostile
 * images, corrupted on purpose and at random: each must give an error, never
 * a trap, and never a hang; every call into the module runs under a vm
 * timeout, so a reader that loops forever fails the test instead of stopping it.
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import {
  type Stats, chmodSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync,
  readlinkSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { prng } from '../test/fuzz/prng.ts';
import { bounded as boundedCall, compileAs, instantiateTestModule } from '../test/helpers/asc.ts';

const EIO = 5;
const ENOENT = 2;
const E2BIG = 7;
const ENOTDIR = 20;
const EISDIR = 21;
const EINVAL = 22;
const ENAMETOOLONG = 36;
const ELOOP = 40;
const EBUSY = 16;
/** Longest a single call into the module may take. */
const CALL_MS = 10_000;

/** Compile the test module with the guests' flags (test/helpers/asc.ts), into memory. */
async function compile(): Promise<WebAssembly.Module> {
  return new WebAssembly.Module(await compileAs('wasm-guests/test-modules/ext2-check.ts'));
}

interface Ext2Check {
  buffer(): number;
  bufferSize(): number;
  open(): number;
  errorText(): number;
  volumeName(): number;
  info(which: number): number;
  lookup(len: number, followLast: number): number;
  stat(ino: number): number;
  list(ino: number, maxEntries: number): number;
  read(ino: number, offset: bigint, len: number): number;
  readAt(ino: number, offset: bigint, at: number, len: number): number;
  readlink(ino: number): number;
  savePath(len: number): void;
  lookupSaved(followLast: number): number;
  heapMark(): number;
}

interface Entry { name: string; ino: number; type: number }
interface Stat { mode: number; type: number; links: number; uid: number; gid: number; mtime: number; size: bigint }

/** Every call into a module goes through here: a loop that never returns becomes an exception after `ms`. */
function bounded<T>(f: () => T, ms = CALL_MS): T {
  return boundedCall(f, ms);
}

/** One instance of the test module reading `image`. */
class Session {
  readonly ex: Ext2Check;
  readonly memory: WebAssembly.Memory;
  /** Reads that broke the SectorSource contract (not whole sectors, or outside memory). */
  readonly misuse: string[] = [];
  reads = 0;
  /** When set, every read fails with this errno. */
  failReads = 0;

  readonly image: Uint8Array;

  constructor(module: WebAssembly.Module, image: Uint8Array) {
    this.image = image;
    this.memory = new WebAssembly.Memory({ initial: 1, maximum: 2048, shared: true });
    this.ex = instantiateTestModule(module, this.memory, { read: this.hostRead }) as unknown as Ext2Check;
  }

  private hostRead = (sector: bigint, dst: number, bytes: number): number => {
    this.reads++;
    dst >>>= 0;
    if (bytes === 0 || bytes % 512 !== 0 || dst + bytes > this.memory.buffer.byteLength) {
      this.misuse.push(`read(${sector}, ${dst}, ${bytes})`);
      return -EINVAL;
    }
    if (this.failReads) return -this.failReads;
    if (sector * 512n + BigInt(bytes) > BigInt(this.image.length)) return -EIO;
    const start = Number(sector) * 512;
    this.mem().set(this.image.subarray(start, start + bytes), dst);
    return 0;
  };

  mem(): Uint8Array { return new Uint8Array(this.memory.buffer); }
  buf(n: number): Uint8Array { const b = this.ex.buffer(); return this.mem().slice(b, b + n); }
  private setBuf(bytes: Uint8Array): void { this.mem().set(bytes, this.ex.buffer()); }

  open(): number { return bounded(() => this.ex.open()); }
  error(): string { return Buffer.from(this.buf(this.ex.errorText())).toString(); }
  volumeName(): string { return Buffer.from(this.buf(this.ex.volumeName())).toString(); }
  info(): { blockSize: number; inodes: number; blocks: number } {
    return { blockSize: this.ex.info(0), inodes: this.ex.info(1), blocks: this.ex.info(2) };
  }

  lookup(path: string, follow = false): number {
    const p = Buffer.from(path);
    this.setBuf(p);
    return bounded(() => this.ex.lookup(p.length, follow ? 1 : 0));
  }

  stat(ino: number): Stat | number {
    const r = bounded(() => this.ex.stat(ino));
    if (r < 0) return r;
    const v = new DataView(this.buf(32).buffer);
    return {
      mode: v.getUint32(0, true), type: v.getUint32(4, true), links: v.getUint32(8, true), uid: v.getUint32(12, true),
      gid: v.getUint32(16, true), mtime: v.getUint32(20, true), size: v.getBigUint64(24, true),
    };
  }

  list(ino: number, maxEntries = 65536): Entry[] | number {
    const n = bounded(() => this.ex.list(ino, maxEntries));
    if (n < 0) return n;
    const b = Buffer.from(this.buf(n));
    const out: Entry[] = [];
    for (let off = 0; off < n;) {
      const len = b.readUInt16LE(off + 5);
      out.push({ ino: b.readUInt32LE(off), type: b[off + 4]!, name: b.subarray(off + 7, off + 7 + len).toString() });
      off += 7 + len;
    }
    return out;
  }

  /** Up to `len` bytes of file `ino` at `offset`, or the errno. */
  read(ino: number, offset: number | bigint, len: number): Uint8Array | number {
    const n = bounded(() => this.ex.read(ino, BigInt(offset), len));
    return n < 0 ? n : this.buf(n);
  }

  readlink(ino: number): string | number {
    const n = bounded(() => this.ex.readlink(ino));
    return n < 0 ? n : Buffer.from(this.buf(n)).toString();
  }
}

/** mke2fs and debugfs, which live in sbin. */
function tool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  return dirs.map((d) => join(d, name)).find((p) => existsSync(p));
}
const mke2fs = tool('mke2fs');
const debugfs = tool('debugfs');

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

const GIANT = 5 * 2 ** 30 + 3;
/** Where the giant sparse file has data: (offset, length). Past 4 GiB, so triple indirect blocks and i_size_high are used. */
const GIANT_DATA: [number, number][] = [[0, 5000], [4 * 2 ** 30 + 5, 9000], [GIANT - 3, 3]];
const SLOW_TARGET = './'.repeat(40) + 'docs/readme.txt';
const UTF8_NAMES = ['héllo wörld ✓ 日本.txt', '🦀 crab'];

/** The tree every image is made from. */
function makeTree(dir: string): void {
  const rand = prng(7);
  mkdirSync(join(dir, 'docs/deep/er/still'), { recursive: true });
  writeFileSync(join(dir, 'docs/readme.txt'), 'Read me: an ext2 image made by mke2fs -d.\n');
  writeFileSync(join(dir, 'docs/deep/er/still/leaf.bin'), randomBytes(rand, 5000));
  // 300 KiB + 123: direct, single and double indirect blocks at 1 KiB blocks.
  writeFileSync(join(dir, 'big.bin'), randomBytes(rand, 300 * 1024 + 123));
  writeFileSync(join(dir, 'empty'), '');
  writeFileSync(join(dir, 'sparse.bin'), randomBytes(rand, 100 * 1024 + 7));
  let fd = openSync(join(dir, 'sparse.bin'), 'r+');
  writeSync(fd, randomBytes(rand, 3000), 0, 3000, 700 * 1024 + 11);
  closeSync(fd);
  truncateSync(join(dir, 'sparse.bin'), 2 * 1024 * 1024 + 1);
  writeFileSync(join(dir, 'giant.sparse'), '');
  truncateSync(join(dir, 'giant.sparse'), GIANT);
  fd = openSync(join(dir, 'giant.sparse'), 'r+');
  for (const [off, len] of GIANT_DATA) writeSync(fd, randomBytes(rand, len), 0, len, off);
  closeSync(fd);
  writeFileSync(join(dir, 'script.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(dir, 'script.sh'), 0o755);
  writeFileSync(join(dir, 'secret'), 'shh');
  chmodSync(join(dir, 'secret'), 0o600);
  symlinkSync('docs/readme.txt', join(dir, 'fast'));
  symlinkSync(SLOW_TARGET, join(dir, 'slow'));
  symlinkSync('docs/deep', join(dir, 'dirlink'));
  symlinkSync('/docs/deep/er', join(dir, 'abs'));
  symlinkSync('loop2', join(dir, 'loop1'));
  symlinkSync('loop1', join(dir, 'loop2'));
  symlinkSync('nowhere', join(dir, 'dangling'));
  mkdirSync(join(dir, 'many'));
  for (let i = 0; i < 300; i++) {
    writeFileSync(join(dir, 'many', `f${String(i).padStart(3, '0')}-${'x'.repeat(i % 40)}`), `file ${i}\n`.repeat(i % 13));
  }
  for (const name of UTF8_NAMES) writeFileSync(join(dir, name), name);
  spawnSync('mkfifo', [join(dir, 'pipe')]);
}

function hostType(st: Stats): number {
  if (st.isFile()) return 1;
  if (st.isDirectory()) return 2;
  if (st.isCharacterDevice()) return 3;
  if (st.isBlockDevice()) return 4;
  if (st.isFIFO()) return 5;
  if (st.isSocket()) return 6;
  return 7;
}

/** Compare file `ino` with the host file `path`, everywhere when small, else in the regions given. */
function compareFile(s: Session, ino: number, path: string, size: number, rand: () => number, problems: string[]): void {
  const regions: [number, number][] = size <= 8 * 2 ** 20 ? [[0, size]]
    : [...GIANT_DATA.map(([o, l]) => [Math.max(0, o - 4099), l + 8200] as [number, number]),
      ...Array.from({ length: 8 }, () => [Math.floor(rand() * size), 70_000] as [number, number])];
  const fd = openSync(path, 'r');
  try {
    for (const [start, length] of regions) {
      const end = Math.min(size, start + length);
      const want = Buffer.alloc(end - start);
      readSync(fd, want, 0, want.length, start);
      // Random chunk sizes: single bytes, partial blocks, runs of whole blocks.
      for (let off = start; off < end;) {
        const len = rand() < 0.3 ? 1 + Math.floor(rand() * 5000) : 1 + Math.floor(rand() * 300_000);
        const got = s.read(ino, off, len);
        const expect = Math.min(len, size - off);
        if (typeof got === 'number') { problems.push(`${path} at ${off}: errno ${got} (${s.error()})`); return; }
        if (got.length !== expect) { problems.push(`${path} at ${off}: ${got.length} bytes, not ${expect}`); return; }
        const n = Math.min(got.length, end - off);
        if (!Buffer.from(got.subarray(0, n)).equals(want.subarray(off - start, off - start + n))) {
          problems.push(`${path}: bytes differ in [${off}, ${off + n})`);
          return;
        }
        off += got.length;
      }
    }
  } finally {
    closeSync(fd);
  }
  const past = s.read(ino, size, 10);
  if (!(past instanceof Uint8Array && past.length === 0)) problems.push(`${path}: reading at the end gave ${String(past)}`);
}

/** Walk the image's tree beside the host's, collecting every difference. */
function compareTree(s: Session, hostDir: string, ino: number, rel: string, rand: () => number, problems: string[]): void {
  const entries = s.list(ino);
  if (typeof entries === 'number') { problems.push(`${rel || '/'}: list gave errno ${entries} (${s.error()})`); return; }
  const dot = entries.find((e) => e.name === '.');
  if (dot?.ino !== ino || !entries.some((e) => e.name === '..')) problems.push(`${rel || '/'}: no "." or ".."`);
  const names = entries.map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort();
  const hostNames = readdirSync(hostDir);
  if (rel === '') hostNames.push('lost+found'); // mke2fs makes it
  hostNames.sort();
  if (JSON.stringify(names) !== JSON.stringify(hostNames)) { problems.push(`${rel || '/'}: names ${JSON.stringify(names)} != ${JSON.stringify(hostNames)}`); return; }
  for (const e of entries) {
    if (e.name === '.' || e.name === '..' || (rel === '' && e.name === 'lost+found')) continue;
    const hp = join(hostDir, e.name);
    const path = `${rel}/${e.name}`;
    const st = lstatSync(hp);
    if (e.type !== hostType(st)) problems.push(`${path}: entry type ${e.type}, not ${hostType(st)}`);
    if (s.lookup(path) !== e.ino) problems.push(`${path}: lookup gave ${s.lookup(path)}, not ${e.ino}`);
    const got = s.stat(e.ino);
    if (typeof got === 'number') { problems.push(`${path}: stat gave errno ${got}`); continue; }
    const size = st.isSymbolicLink() ? Buffer.byteLength(readlinkSync(hp)) : st.isDirectory() ? Number(got.size) : st.size;
    const links = st.isDirectory() ? 2 + readdirSync(hp).filter((n) => lstatSync(join(hp, n)).isDirectory()).length : 1;
    const want = { mode: st.mode, type: hostType(st), links, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000), size: BigInt(size) };
    if (JSON.stringify(got, (_k, v) => typeof v === 'bigint' ? String(v) : v) !== JSON.stringify(want, (_k, v) => typeof v === 'bigint' ? String(v) : v)) {
      problems.push(`${path}: stat ${JSON.stringify({ ...got, size: String(got.size) })}, host ${JSON.stringify({ ...want, size: String(want.size) })}`);
    }
    if (st.isDirectory()) compareTree(s, hp, e.ino, path, rand, problems);
    else if (st.isFile()) compareFile(s, e.ino, hp, st.size, rand, problems);
    else if (st.isSymbolicLink()) {
      const target = s.readlink(e.ino);
      if (target !== readlinkSync(hp)) problems.push(`${path}: readlink gave ${target}, not ${readlinkSync(hp)}`);
    }
  }
}

if (!mke2fs || !debugfs) {
  // CI sets WV_EXT2_TESTS=required (.ci/run), so a missing e2fsprogs fails there rather than skipping.
  if (process.env.WV_EXT2_TESTS === 'required') t.fail('mke2fs and debugfs are not installed, and the ext2 tests are required here');
  else t.plan(0, 'mke2fs and debugfs are needed: apt-get install e2fsprogs');
} else {
  const module = await compile();
  const work = mkdtempSync(join(tmpdir(), 'wv-ext2-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const tree = join(work, 'tree');
  mkdirSync(tree);
  makeTree(tree);

  /** An image of the tree, made with mke2fs's `args`; its path. */
  const image = (name: string, args: string[], size = '16M'): string => {
    const p = join(work, `${name}.img`);
    run(mke2fs, ['-q', '-F', '-L', 'wvtest', ...args, '-d', tree, p, size]);
    return p;
  };

  const variants: [string, string[], number, string?][] = [
    ['ext2, 1 KiB blocks', ['-t', 'ext2', '-b', '1024'], 1024],
    ['ext2, 2 KiB blocks', ['-t', 'ext2', '-b', '2048'], 2048],
    ['ext2, 4 KiB blocks', ['-t', 'ext2', '-b', '4096'], 4096],
    ['ext2, 4 KiB blocks, 128-byte inodes', ['-t', 'ext2', '-b', '4096', '-I', '128'], 4096],
    ['revision 0 (no filetype, 128-byte inodes)', ['-t', 'ext2', '-b', '1024', '-r', '0'], 1024],
    ['ext3 (a journal is a compatible feature)', ['-t', 'ext3', '-b', '1024'], 1024],
    ['ext2, 64 KiB blocks', ['-t', 'ext2', '-b', '65536'], 65536, '64M'],
  ];
  for (const [name, args, blockSize, size] of variants) {
    t.test(`${name}: the image reads as the tree it was made from`, async (t) => {
      const s = new Session(module, readFileSync(image(name.replace(/\W+/g, '-'), args, size)));
      t.equal(s.open(), 0, 'opens');
      t.equal(s.info().blockSize, blockSize);
      t.equal(s.volumeName(), 'wvtest');
      const problems: string[] = [];
      bounded(() => compareTree(s, tree, 2, '', prng(blockSize + args.length), problems), 60_000);
      t.same(problems.slice(0, 20), [], 'every listing, attribute, symlink and byte matches');

      const ino = (p: string, follow = false) => s.lookup(p, follow);
      t.equal(ino('/'), 2, 'the root');
      t.equal(ino(''), 2);
      t.equal(ino('//docs//deep/'), ino('docs/deep'), 'repeated and trailing slashes');
      t.equal(ino('docs/../big.bin'), ino('big.bin'), '".." is a real entry');
      t.equal(ino('/docs/deep/er/still/../../../../many/f123-' + 'x'.repeat(3)), ino('many/f123-xxx'));
      t.ok(ino('many/f299-' + 'x'.repeat(299 % 40)) > 0, 'the last of 300 entries (a directory of several blocks)');
      for (const n of UTF8_NAMES) t.ok(ino(n) > 0, `a UTF-8 name: ${n}`);
      const readme = ino('docs/readme.txt');
      t.ok(readme > 0);
      t.not(ino('fast'), readme, 'the last component is not followed by default');
      t.equal(ino('fast', true), readme, 'a fast symlink followed');
      t.equal(ino('slow', true), readme, `a slow symlink (${SLOW_TARGET.length} bytes) followed`);
      t.equal(ino('dirlink/er/still/leaf.bin'), ino('docs/deep/er/still/leaf.bin'), 'a symlink in the middle');
      t.equal(ino('abs/still'), ino('docs/deep/er/still'), 'an absolute symlink in the middle');
      t.equal(ino('dirlink/'), ino('docs/deep'), 'a trailing slash follows the symlink');
      t.equal(ino('loop1', true), -ELOOP, 'a symlink loop');
      t.equal(ino('loop1/x'), -ELOOP);
      t.ok(ino('loop1') > 0, 'the looping symlink itself');
      t.equal(ino('dangling', true), -ENOENT, 'a dangling symlink');
      t.equal(ino('docs/nothing'), -ENOENT);
      t.equal(ino('big.bin/x'), -ENOTDIR, 'a file in the middle of a path');
      t.equal(ino('big.bin/'), -ENOTDIR, 'a file with a trailing slash');
      t.equal(ino('a'.repeat(256)), -ENAMETOOLONG, 'a name of 256 bytes');
      t.equal(ino('/a'.repeat(2048)), -ENAMETOOLONG, 'a path of 4096 bytes');
      t.equal(s.read(ino('docs'), 0, 10), -EISDIR);
      t.equal(s.read(ino('fast'), 0, 10), -EINVAL, 'readFile does not read symlinks');
      t.equal(s.readlink(readme), -EINVAL, 'readlink of a file');
      t.equal(s.list(readme), -ENOTDIR);
      t.equal(s.list(ino('many'), 100), -E2BIG, 'a listing past maxEntries');
      t.equal(s.stat(0), -EINVAL, 'inode 0');
      t.equal(s.stat(s.info().inodes + 1), -EINVAL, 'past the inode count');
      t.same(s.read(ino('empty'), 0, 100), new Uint8Array(0), 'an empty file');

      // Reading writes only the bytes asked for.
      const big = ino('big.bin');
      const mem = s.mem();
      const b = s.ex.buffer();
      mem.fill(0xa5, b, b + 20_000);
      t.equal(bounded(() => s.ex.readAt(big, BigInt(blockSize - 3), 100, 8000)), 8000);
      const m = s.mem();
      t.ok(m.subarray(b, b + 100).every((x) => x === 0xa5) && m.subarray(b + 8100, b + 20_000).every((x) => x === 0xa5), 'nothing around the range is written');
      t.same(Buffer.from(m.subarray(b + 100, b + 8100)), readFileSync(join(tree, 'big.bin')).subarray(blockSize - 3, blockSize - 3 + 8000));

      // A path looked up again is served from the cache.
      ino('docs/readme.txt');
      const before = s.reads;
      ino('docs/readme.txt');
      t.equal(s.reads, before, 'no disk reads the second time');

      // Reading and looking up allocate nothing: the heap top moves only by heapMark's own allocation.
      const first = s.ex.heapMark();
      const step = s.ex.heapMark() - first;
      const p = Buffer.from('dirlink/er/still/../../../../slow');
      s.mem().set(p, b);
      s.ex.savePath(p.length);
      const mark = s.ex.heapMark();
      for (let i = 0; i < 50; i++) {
        bounded(() => s.ex.read(big, BigInt(i * 6007), 70_000));
        bounded(() => s.ex.lookupSaved(1));
      }
      t.equal(bounded(() => s.ex.lookupSaved(1)), readme);
      t.equal(s.ex.heapMark() - mark, step, 'the heap did not grow');

      t.same(s.misuse, [], 'every read asked for whole sectors inside memory');
    });
  }

  t.test('images with features ext2 lacks are refused', async (t) => {
    const s = new Session(module, readFileSync(image('ext4', ['-t', 'ext4'])));
    t.equal(s.open(), -EINVAL);
    t.match(s.error(), /unsupported incompatible features: .*extent/);
  });

  // Hostile images: the 1 KiB image with one thing broken.
  const pristine = image('hostile', ['-t', 'ext2', '-b', '1024']);
  const clean = readFileSync(pristine);
  const BS = 1024;
  const blocksCount = clean.readUInt32LE(1024 + 4);
  const inodesCount = clean.readUInt32LE(1024 + 0);
  const GDT = 2 * BS; // the group descriptors follow the superblock's block
  /** Byte offset of the inode at `path` in the image. */
  const inodeAt = (path: string): number => {
    const out = run(debugfs, ['-R', `imap ${path}`, pristine]);
    const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(out);
    if (!m) throw new Error(`debugfs imap ${path}: ${out}`);
    return Number(m[1]) * BS + parseInt(m[2]!, 16);
  };
  const iblock = (path: string, i: number) => clean.readUInt32LE(inodeAt(path) + 40 + 4 * i);
  const session = (change: (img: Buffer) => void): Session => {
    const img = Buffer.from(clean);
    change(img);
    return new Session(module, img);
  };
  const opened = (t: Test, s: Session) => t.equal(s.open(), 0, 'the image still opens');

  t.test('hostile: a bad superblock magic', async (t) => {
    const s = session((img) => img.writeUInt16LE(0x1234, 1024 + 56));
    t.equal(s.open(), -EINVAL);
    t.match(s.error(), /bad magic 0x1234/);
  });

  t.test('hostile: impossible superblock numbers', async (t) => {
    const cases: [string, (img: Buffer) => void, RegExp][] = [
      ['a block size of 1024 << 20', (img) => img.writeUInt32LE(20, 1024 + 24), /block size/],
      ['no blocks per group', (img) => img.writeUInt32LE(0, 1024 + 32), /blocks per group/],
      ['no inodes per group', (img) => img.writeUInt32LE(0, 1024 + 40), /inodes per group/],
      ['more inodes than the groups hold', (img) => img.writeUInt32LE(0xffffffff, 1024 + 0), /inode count/],
      ['an inode size of 100', (img) => img.writeUInt16LE(100, 1024 + 88), /inode size/],
      ['revision 7', (img) => img.writeUInt32LE(7, 1024 + 76), /revision/],
      ['2 blocks', (img) => img.writeUInt32LE(2, 1024 + 4), /block count 2 is too small/],
      ['first data block 0 with 1 KiB blocks', (img) => img.writeUInt32LE(0, 1024 + 20), /first data block 0/],
    ];
    for (const [name, change, why] of cases) {
      const s = session(change);
      t.equal(s.open(), -EINVAL, name);
      t.match(s.error(), why);
    }
  });

  t.test('hostile: group 0\'s inode table pointer past the end', async (t) => {
    for (const table of [blocksCount + 10, blocksCount - 1, 0, 1]) {
      const s = session((img) => img.writeUInt32LE(table, GDT + 8));
      t.equal(s.open(), -EIO, `inode table at block ${table}`);
      t.match(s.error(), /group 0's inode table .* is outside the filesystem/);
    }
  });

  t.test('hostile: broken directory entries', async (t) => {
    const dirBlock = iblock('/many', 0) * BS;
    const cases: [string, (img: Buffer) => void, RegExp][] = [
      ['rec_len 0', (img) => img.writeUInt16LE(0, dirBlock + 4), /offset 0: rec_len 0$/],
      ['rec_len past the block', (img) => img.writeUInt16LE(2000, dirBlock + 4), /offset 0: rec_len 2000$/],
      ['rec_len not a multiple of 4', (img) => img.writeUInt16LE(13, dirBlock + 4), /offset 0: rec_len 13$/],
      ['name_len past rec_len', (img) => img.writeUInt8(200, dirBlock + 6), /name_len 200 past rec_len 12/],
      ['an inode number past the count', (img) => img.writeUInt32LE(inodesCount + 1, dirBlock), /inode \d+ out of range/],
      ['an empty name', (img) => img.writeUInt8(0, dirBlock + 6), /empty name/],
    ];
    for (const [name, change, why] of cases) {
      const s = session(change);
      opened(t, s);
      const many = s.lookup('many');
      t.ok(many > 0);
      t.equal(s.list(many), -EIO, `${name}: list`);
      t.match(s.error(), why);
      t.equal(s.lookup('many/f150-' + 'x'.repeat(150 % 40)), -EIO, `${name}: lookup`);
      t.equal(s.lookup('docs/readme.txt') > 0, true, 'other directories still work');
    }
  });

  t.test('hostile: a block pointer past the end', async (t) => {
    const at = inodeAt('/big.bin');
    const want = readFileSync(join(tree, 'big.bin'));
    let s = session((img) => img.writeUInt32LE(blocksCount + 5, at + 40));
    opened(t, s);
    const big = s.lookup('big.bin');
    t.equal(s.read(big, 0, 100), -EIO, 'direct block');
    t.match(s.error(), new RegExp(`points to block ${blocksCount + 5}, outside the filesystem`));
    t.same(s.read(big, 12 * BS, 100), want.subarray(12 * BS, 12 * BS + 100), 'the rest of the file still reads');
    s = session((img) => img.writeUInt32LE(blocksCount, at + 40 + 12 * 4));
    opened(t, s);
    t.equal(s.read(big, 12 * BS, 100), -EIO, 'single indirect block');
    s = session((img) => img.writeUInt32LE(0xffffffff, iblock('/big.bin', 13) * BS));
    opened(t, s);
    t.equal(s.read(big, 268 * BS, 100), -EIO, 'a pointer in the double indirect block');
  });

  t.test('hostile: indirect blocks that point to themselves', async (t) => {
    const ind = iblock('/big.bin', 12);
    const dind = iblock('/big.bin', 13);
    let s = session((img) => img.writeUInt32LE(ind, ind * BS));
    opened(t, s);
    const big = s.lookup('big.bin');
    t.equal(s.read(big, 12 * BS, 100), -EIO, 'single indirect block as its own data');
    t.match(s.error(), new RegExp(`data block ${ind} is one of its indirect blocks`));
    s = session((img) => img.writeUInt32LE(dind, dind * BS));
    opened(t, s);
    t.equal(s.read(big, 268 * BS, 100), -EIO, 'double indirect block as its own child');
    t.match(s.error(), new RegExp(`indirect block ${dind} is its own ancestor`));
    const gi = inodeAt('/giant.sparse');
    const tind = clean.readUInt32LE(gi + 40 + 14 * 4);
    // The triple indirect block's entry for 4 GiB + 5, pointing back at it.
    const entry = Math.floor((Math.floor((4 * 2 ** 30 + 5) / BS) - 12 - 256 - 256 * 256) / (256 * 256));
    s = session((img) => img.writeUInt32LE(tind, tind * BS + 4 * entry));
    opened(t, s);
    t.equal(s.read(s.lookup('giant.sparse'), 4 * 2 ** 30 + 5, 100), -EIO, 'triple indirect block as its own child');
  });

  t.test('hostile: absurd sizes', async (t) => {
    const at = inodeAt('/big.bin');
    let s = session((img) => img.writeUInt32LE(0xffffffff, at + 108));
    opened(t, s);
    const big = s.lookup('big.bin');
    t.equal((s.stat(big) as Stat).size, 0xffffffffn << 32n | BigInt(300 * 1024 + 123));
    t.same(s.read(big, 0, 10), readFileSync(join(tree, 'big.bin')).subarray(0, 10), 'the start still reads');
    t.same(s.read(big, 2n ** 33n, 10), new Uint8Array(10), 'a hole far out (no triple indirect block) reads as zeros');
    t.equal(s.read(big, 2n ** 63n, 10), -EIO, 'past what the block map can address');
    t.match(s.error(), /past what a block map can address/);
    const fast = inodeAt('/fast');
    s = session((img) => img.writeUInt32LE(5000, fast + 4));
    opened(t, s);
    t.equal(s.readlink(s.lookup('fast')), -EIO, 'a fast symlink of 5000 bytes');
    t.equal(s.lookup('fast', true), -EIO);
    s = session((img) => img.writeUInt32LE(1 << 20, fast + 4));
    opened(t, s);
    t.equal(s.readlink(s.lookup('fast')), -EIO, 'a symlink of 1 MiB');
    const many = inodeAt('/many');
    s = session((img) => img.writeUInt32LE(1000, many + 4));
    opened(t, s);
    t.equal(s.list(s.lookup('many')), -EIO, 'a directory size that is not whole blocks');
    t.match(s.error(), /not a whole number of blocks/);
  });

  t.test('hostile: the disk\'s own errors come back as they are', async (t) => {
    const s = new Session(module, clean);
    opened(t, s);
    s.failReads = EBUSY;
    t.equal(s.lookup('many/f001-x'), -EBUSY);
    t.match(s.error(), /reading block \d+ failed \(errno 16\)/);
    s.failReads = 0;
    t.ok(s.lookup('many/f001-x') > 0, 'and it works again once the disk does');
    t.equal(new Session(module, clean.subarray(0, 1024)).open(), -EIO, 'an image too short for its superblock');
  });

  t.test('hostile: random corruption never traps or hangs', async (t) => {
    const rand = prng(2024);
    // Metadata worth hitting: superblock, descriptors, the start of group 0's inode table, some directory and indirect blocks.
    const table = clean.readUInt32LE(GDT + 8) * BS;
    const targets: [number, number][] = [
      [1024, 1024], [GDT, 64], [table, 64 * 128],
      [iblock('/', 0) * BS, BS], [iblock('/many', 0) * BS, BS], [iblock('/many', 3) * BS, BS],
      [iblock('/docs', 0) * BS, BS], [iblock('/big.bin', 12) * BS, BS], [iblock('/big.bin', 13) * BS, BS],
    ];
    let opens = 0;
    let errors = 0;
    let calls = 0;
    const failures: string[] = [];
    for (let round = 0; round < 150; round++) {
      const s = session((img) => {
        const flips = 1 + Math.floor(rand() * 12);
        for (let i = 0; i < flips; i++) {
          const [start, len] = targets[Math.floor(rand() * targets.length)]!;
          const at = start + Math.floor(rand() * len);
          img[at] = rand() < 0.5 ? Math.floor(rand() * 256) : img[at]! ^ (1 << Math.floor(rand() * 8));
        }
      });
      const count = <T>(r: T): T => { calls++; if (typeof r === 'number' && r < 0) errors++; return r; };
      // Walk the tree, bounded: each inode once, 400 inodes at most.
      const walk = (): void => {
        if (count(s.open()) !== 0) return;
        opens++;
        const queue: [number, string][] = [[2, '']];
        const seen = new Set<number>();
        let budget = 400;
        while (queue.length > 0 && budget-- > 0) {
          const [ino, path] = queue.shift()!;
          if (seen.has(ino)) continue;
          seen.add(ino);
          const st = count(s.stat(ino));
          count(s.lookup(path || '/', rand() < 0.5));
          if (typeof st === 'number') continue;
          if (st.type === 2) {
            const entries = count(s.list(ino));
            if (typeof entries !== 'number') for (const e of entries.slice(0, 50)) queue.push([e.ino, `${path}/${e.name}`]);
          } else if (st.type === 1) {
            count(s.read(ino, 0, 70_000));
            count(s.read(ino, st.size > 0n ? st.size - 1n : 0n, 4096));
          } else if (st.type === 7) {
            count(s.readlink(ino));
          }
        }
      };
      try {
        bounded(walk);
      } catch (err) {
        failures.push(`round ${round}: ${(err as Error).message}`);
      }
      if (s.misuse.length > 0) failures.push(`round ${round}: bad reads ${s.misuse.slice(0, 3).join(', ')}`);
    }
    t.same(failures, [], 'no trap, no timeout, no bad read');
    t.ok(opens > 20 && errors > 20, `${opens} of 150 corrupted images opened; ${errors} of ${calls} calls failed cleanly`);
  });
}
