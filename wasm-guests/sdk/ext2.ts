// A read-only ext2 reader for guests: revisions 0 and 1, blocks of 1 to 64
// KiB, direct and indirect block maps, the on-disk layout of e2fsprogs'
// lib/ext2fs/ext2_fs.h. Images with extents, 64bit, meta_bg and other
// incompatible features (ext4's) are refused.
//
// The image is hostile: it may be corrupt on purpose and may change between
// two reads. Every number taken from it is checked where it is used (block
// numbers against the block count, inode numbers against the inode count,
// directory records against their block), so a bad image gives an error, never
// a trap or an endless loop. Corruption is -EIO; the text of the last error
// says what was wrong (`ext2Error()`).
//
// Memory is bounded: the buffers are allocated once, by `open` (a small LRU
// cache of blocks, two path buffers), and reading a file or looking a path up
// allocates nothing. `list`, `stat`, `readlink` and `volumeName` return new
// objects. With the stub runtime nothing is ever freed, so a guest that loops
// over those calls grows.

import { E2BIG, EINVAL, ENOENT } from "./abi";

/** Errors of the filesystem (Linux numbers), beside the hypercall ones of ./abi. Returned negated. */
export const EIO: i32 = 5;
export const ENOTDIR: i32 = 20;
export const EISDIR: i32 = 21;
export const ENAMETOOLONG: i32 = 36;
export const ELOOP: i32 = 40;

/** The root directory's inode number. */
export const EXT2_ROOT_INO: u32 = 2;

/** A file's type: the values of an ext2 directory entry's file_type byte. */
export enum Ext2Type {
  Unknown = 0,
  Regular = 1,
  Directory = 2,
  CharDevice = 3,
  BlockDevice = 4,
  Fifo = 5,
  Socket = 6,
  Symlink = 7,
}

/**
 * Where the filesystem's bytes come from: a disk, read in whole 512-byte
 * sectors. A request is at most 64 KiB (or one block, if larger) and `dst`
 * has no particular alignment.
 */
export abstract class SectorSource {
  /** Read `bytes` (a multiple of 512) at `sector` into guest address `dst`; 0 or a negative errno. */
  abstract read(sector: u64, dst: usize, bytes: u32): i32;
}

/** What `Ext2.stat` returns. */
export class Ext2Stat {
  /** The inode number asked about. */
  ino: u32 = 0;
  /** The full mode: type bits (0xF000) and permissions. */
  mode: u32 = 0;
  /** The type bits of `mode` as an Ext2Type. */
  type: Ext2Type = Ext2Type.Unknown;
  /** In bytes; only a regular file's size has 64 bits. */
  size: u64 = 0;
  /** Hard links (a directory: 2 plus its subdirectories); never 0, a free inode is -ENOENT. */
  links: u32 = 0;
  /** Owner and group, 32 bits each (the high halves from the Linux osd2 fields). */
  uid: u32 = 0;
  gid: u32 = 0;
  /** Seconds since the epoch. */
  mtime: u32 = 0;
}

/** One directory entry, as `Ext2.list` returns it. */
export class Ext2Entry {
  /** The name's bytes decoded as UTF-8 (an invalid sequence becomes U+FFFD). */
  name: string;
  /** Its inode, in 1..inodesCount. */
  ino: u32;
  /** From the entry (filetype feature) or else from the inode. */
  type: Ext2Type;

  constructor(name: string, ino: u32, type: Ext2Type) {
    this.name = name;
    this.ino = ino;
    this.type = type;
  }
}

// The text and errno of the last failure, for `ext2Error()` and the calls
// that return null. Guest-global, like errno: a domain has one thread.
let lastError: string = "";
let lastErrno: i32 = 0;

/** What the last failing Ext2 call (open included) found wrong; "" if none failed. */
export function ext2Error(): string {
  return lastError;
}

/** The negative errno of the last failing Ext2 call (0 if none failed); for the calls that return null. */
export function ext2Errno(): i32 {
  return lastErrno;
}

function fail(errno: i32, why: string): i32 {
  lastError = why;
  lastErrno = -errno;
  return -errno;
}

function corrupt(why: string): i32 {
  return fail(EIO, "ext2: corrupt image: " + why);
}

// Superblock (at byte 1024, 1024 bytes long).
const SB_OFFSET: u64 = 1024;
const SB_SIZE: u32 = 1024;
const EXT2_MAGIC: u16 = 0xef53;
// Incompatible features: the only ones understood. Anything else changes the
// layout or the meaning of what is read (extents, 64bit, meta_bg, inline data,
// casefold, a journal that needs recovery...), so the image is refused.
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_FLEX_BG: u32 = 0x200; // only moves bitmaps and inode tables
const INCOMPAT_KNOWN: u32 = INCOMPAT_FILETYPE | INCOMPAT_FLEX_BG;
// Compatible and read-only-compatible features change nothing for a reader.

// Inode.
const S_IFMT: u32 = 0xf000;
const S_IFDIR: u32 = 0x4000;
const S_IFREG: u32 = 0x8000;
const S_IFLNK: u32 = 0xa000;
const EXTENTS_FL: u32 = 0x80000;
const INLINE_DATA_FL: u32 = 0x10000000;
const N_DIRECT: u32 = 12;
const FAST_LINK_MAX: u32 = 60; // bytes of i_block

const GROUP_DESC_SIZE: u32 = 32;
const NAME_MAX: u32 = 255;
/** Longest path or symlink target, in bytes. */
const PATH_MAX: u32 = 4095;
/** Symlinks followed in one lookup before -ELOOP. */
const MAX_SYMLINKS: i32 = 40;
/** Bytes of file data read from the source in one request at most. */
const MAX_RUN: u32 = 65536;
/** Bytes of block cache (at least 4 blocks). */
const CACHE_BYTES: u32 = 32768;

function typeOfMode(mode: u32): Ext2Type {
  switch (mode & S_IFMT) {
    case 0x8000: return Ext2Type.Regular;
    case 0x4000: return Ext2Type.Directory;
    case 0x2000: return Ext2Type.CharDevice;
    case 0x6000: return Ext2Type.BlockDevice;
    case 0x1000: return Ext2Type.Fifo;
    case 0xc000: return Ext2Type.Socket;
    case 0xa000: return Ext2Type.Symlink;
    default: return Ext2Type.Unknown;
  }
}

/** The fields of an on-disk inode that the reader uses. */
class Inode {
  ino: u32 = 0;
  mode: u32 = 0;
  size: u64 = 0;
  links: u32 = 0;
  uid: u32 = 0;
  gid: u32 = 0;
  mtime: u32 = 0;
  sectors: u32 = 0; // i_blocks: 512-byte units, extended attribute block included
  fileAcl: u32 = 0;
  /** i_block: 12 direct pointers, then single, double, triple indirect; or a fast symlink's target. */
  block: StaticArray<u32> = new StaticArray<u32>(15);
}

/**
 * An ext2 filesystem, read through a `SectorSource`. Made by `Ext2.open`,
 * which checks the superblock; every later call checks what it reads.
 * Results: a count, an inode number or 0 when fine, a negative errno
 * otherwise (-EIO for corruption, with the reason in `ext2Error()`).
 */
export class Ext2 {
  /** Bytes per block: 1024 << n, up to 65536. */
  readonly blockSize: u32;
  /** Inode numbers run from 1 to inodesCount. */
  readonly inodesCount: u32;
  /** Blocks in the filesystem; a block number from the image must be below it. */
  readonly blocksCount: u32;
  private readonly src: SectorSource;
  private readonly blockShift: u32;
  private readonly firstDataBlock: u32;
  private readonly inodesPerGroup: u32;
  private readonly inodeSize: u32;
  private readonly inodeTableBlocks: u32;
  private readonly filetype: bool;
  private readonly volume: string;
  // The block cache: `slots` buffers of one block at `cache`, their block numbers (0: empty) and last use.
  private readonly cacheBuf: ArrayBuffer;
  private readonly cache: usize;
  private readonly slots: u32;
  private readonly tags: StaticArray<u32>;
  private readonly used: StaticArray<u64>;
  private clock: u64 = 0;
  // The one inode being worked on; no call keeps it across another public call.
  private readonly node: Inode = new Inode();
  // Lookup builds the path still to walk in one buffer and swaps to the other to splice in a symlink.
  private pathA: ArrayBuffer;
  private pathB: ArrayBuffer;

  private constructor(src: SectorSource, sb: usize) {
    // Locals first: AssemblyScript reads no field before every reference field is set.
    const shift = 10 + load<u32>(sb + 24);
    const bs = <u32>1 << shift;
    const slots = max<u32>(4, CACHE_BYTES >> shift);
    let n = 0;
    while (n < 16 && load<u8>(sb + 120 + n) != 0) n++;
    this.volume = String.UTF8.decodeUnsafe(sb + 120, n);
    this.cacheBuf = new ArrayBuffer(<i32>(slots << shift));
    this.tags = new StaticArray<u32>(<i32>slots);
    this.used = new StaticArray<u64>(<i32>slots);
    this.pathA = new ArrayBuffer(PATH_MAX + 1);
    this.pathB = new ArrayBuffer(PATH_MAX + 1);
    this.src = src;
    this.cache = changetype<usize>(this.cacheBuf);
    this.slots = slots;
    this.blockShift = shift;
    this.blockSize = bs;
    this.inodesCount = load<u32>(sb + 0);
    this.blocksCount = load<u32>(sb + 4);
    this.firstDataBlock = load<u32>(sb + 20);
    this.inodesPerGroup = load<u32>(sb + 40);
    this.inodeSize = load<u32>(sb + 76) == 0 ? 128 : <u32>load<u16>(sb + 88);
    this.inodeTableBlocks = <u32>((<u64>this.inodesPerGroup * this.inodeSize + bs - 1) >> shift);
    this.filetype = (load<u32>(sb + 96) & INCOMPAT_FILETYPE) != 0;
  }

  /** Read and check the superblock; null when the image cannot be read, with the reason in `ext2Error()`. */
  static open(src: SectorSource): Ext2 | null {
    const buf = new ArrayBuffer(SB_SIZE);
    const sb = changetype<usize>(buf);
    const r = src.read(SB_OFFSET / 512, sb, SB_SIZE);
    if (r < 0) {
      fail(-r, "ext2: reading the superblock failed (errno " + (-r).toString() + ")");
      return null;
    }
    const why = checkSuperblock(sb);
    if (why.length > 0) {
      fail(EINVAL, "ext2: " + why);
      return null;
    }
    const fs = new Ext2(src, sb);
    // Group 0's descriptor and the root inode: an image whose root cannot be read is not worth opening.
    const root = fs.loadInode(EXT2_ROOT_INO);
    if (root < 0) return null;
    if ((fs.node.mode & S_IFMT) != S_IFDIR) {
      corrupt("the root inode is not a directory");
      return null;
    }
    return fs;
  }

  /** The volume label (up to 16 bytes of UTF-8), "" when none. */
  volumeName(): string {
    return this.volume;
  }

  /**
   * The inode `path` names, from the root ("/a/b", "a/b" and "a//b/" alike).
   * Symlinks in the middle of the path are followed (40 at most: -ELOOP); the
   * last component is followed only when `followLast` is set or the path ends
   * in "/" (which also asks for a directory). -ENOENT, -ENOTDIR,
   * -ENAMETOOLONG (a name over 255 bytes, a path over 4095), -EIO.
   */
  lookup(path: string, followLast: bool = false): i32 {
    const len0 = String.UTF8.byteLength(path);
    if (<u32>len0 > PATH_MAX) return fail(ENAMETOOLONG, "ext2: path of " + len0.toString() + " bytes is too long");
    let buf = changetype<usize>(this.pathA);
    let other = changetype<usize>(this.pathB);
    let len = <u32>String.UTF8.encodeUnsafe(changetype<usize>(path), path.length, buf);
    let pos: u32 = 0;
    let dir = EXT2_ROOT_INO;
    let links = 0;
    while (true) {
      while (pos < len && load<u8>(buf + pos) == 0x2f) pos++;
      if (pos == len) return <i32>dir;
      let end = pos;
      while (end < len && load<u8>(buf + end) != 0x2f) end++;
      if (end - pos > NAME_MAX) return fail(ENAMETOOLONG, "ext2: a name in the path is longer than 255 bytes");
      let r = this.node.ino == dir ? 0 : this.loadInode(dir);
      if (r < 0) return r;
      if ((this.node.mode & S_IFMT) != S_IFDIR) return fail(ENOTDIR, "ext2: inode " + dir.toString() + " in the path is not a directory");
      r = this.scanDir(buf + pos, end - pos, null);
      if (r < 0) return r;
      if (r == 0) return fail(ENOENT, "ext2: " + String.UTF8.decodeUnsafe(buf + pos, end - pos) + " not found");
      const child = <u32>r;
      let next = end;
      while (next < len && load<u8>(buf + next) == 0x2f) next++;
      const last = next == len;
      const slash = end < len;
      r = this.loadInode(child);
      if (r < 0) return r;
      const mode = this.node.mode & S_IFMT;
      if (mode == S_IFLNK && (!last || slash || followLast)) {
        if (++links > MAX_SYMLINKS) return fail(ELOOP, "ext2: more than 40 symlinks in the path");
        const t = this.readlinkInto(other);
        if (t < 0) return t;
        if (t == 0) return fail(ENOENT, "ext2: symlink " + child.toString() + " is empty");
        // The rest of the path, "/..." or nothing, goes after the target.
        const rest = len - end;
        if (<u32>t + rest > PATH_MAX) return fail(ENAMETOOLONG, "ext2: the path is too long once symlink " + child.toString() + " is expanded");
        memory.copy(other + <usize>t, buf + end, rest);
        const swap = buf;
        buf = other;
        other = swap;
        len = <u32>t + rest;
        pos = 0;
        if (load<u8>(buf) == 0x2f) dir = EXT2_ROOT_INO;
        continue;
      }
      if (last) {
        if (slash && mode != S_IFDIR) return fail(ENOTDIR, "ext2: inode " + child.toString() + " is not a directory");
        return <i32>child;
      }
      dir = child;
      pos = end;
    }
    return 0; // unreachable
  }

  /** The inode's attributes, or null (errno in `ext2Errno()`). */
  stat(ino: u32): Ext2Stat | null {
    if (this.loadInode(ino) < 0) return null;
    const n = this.node;
    const s = new Ext2Stat();
    s.ino = ino;
    s.mode = n.mode;
    s.type = typeOfMode(n.mode);
    s.size = n.size;
    s.links = n.links;
    s.uid = n.uid;
    s.gid = n.gid;
    s.mtime = n.mtime;
    return s;
  }

  /**
   * The entries of directory `ino` in on-disk order, "." and ".." included;
   * null on error (-ENOTDIR, -EIO, -E2BIG past `maxEntries`, which bounds
   * what a hostile directory can make the guest allocate: errno in
   * `ext2Errno()`). Without the filetype feature each entry's type comes from
   * its inode (Unknown if that cannot be read).
   */
  list(ino: u32, maxEntries: i32 = 65536): Ext2Entry[] | null {
    if (this.loadInode(ino) < 0) return null;
    if ((this.node.mode & S_IFMT) != S_IFDIR) {
      fail(ENOTDIR, "ext2: inode " + ino.toString() + " is not a directory");
      return null;
    }
    const out = new Array<Ext2Entry>();
    if (this.scanDir(0, 0, out, maxEntries) < 0) return null;
    if (!this.filetype) {
      for (let i = 0; i < out.length; i++) {
        const e = unchecked(out[i]);
        e.type = this.loadInode(e.ino) < 0 ? Ext2Type.Unknown : typeOfMode(this.node.mode);
      }
    }
    return out;
  }

  /**
   * Copy up to `len` bytes of regular file `ino` from `offset` to guest
   * address `dst`: the count (0 at or past the end; holes read as zeros), or
   * -EISDIR, -EINVAL (not a regular file), -EIO (dst is then partly written).
   */
  readFile(ino: u32, offset: u64, dst: usize, len: u32): i32 {
    const r = this.loadInode(ino);
    if (r < 0) return r;
    const mode = this.node.mode & S_IFMT;
    if (mode == S_IFDIR) return fail(EISDIR, "ext2: inode " + ino.toString() + " is a directory");
    if (mode != S_IFREG) return fail(EINVAL, "ext2: inode " + ino.toString() + " is not a regular file");
    const size = this.node.size;
    if (offset >= size) return 0;
    const n = <u32>min<u64>(min<u64>(size - offset, <u64>len), <u64>i32.MAX_VALUE);
    return this.readData(offset, dst, n);
  }

  /** The target of symlink `ino`, or null (-EINVAL when not a symlink, -EIO: errno in `ext2Errno()`). */
  readlink(ino: u32): string | null {
    if (this.loadInode(ino) < 0) return null;
    const buf = changetype<usize>(this.pathB);
    const n = this.readlinkInto(buf);
    if (n < 0) return null;
    return String.UTF8.decodeUnsafe(buf, <usize>n);
  }

  // Blocks.

  /** Address of block `b` in the cache, read if need be, or a negative errno. Valid until the next call. */
  private block(b: u32): i64 {
    if (b == 0 || b < this.firstDataBlock || b >= this.blocksCount) return corrupt("block " + b.toString() + " is outside the filesystem");
    let victim: u32 = 0;
    let oldest = u64.MAX_VALUE;
    for (let i: u32 = 0; i < this.slots; i++) {
      if (unchecked(this.tags[i]) == b) {
        unchecked(this.used[i] = ++this.clock);
        return <i64>(this.cache + (<usize>i << this.blockShift));
      }
      const u = unchecked(this.used[i]);
      if (u < oldest) {
        oldest = u;
        victim = i;
      }
    }
    const addr = this.cache + (<usize>victim << this.blockShift);
    unchecked(this.tags[victim] = 0);
    const r = this.readBlocks(b, addr, 1);
    if (r < 0) return r;
    unchecked(this.tags[victim] = b);
    unchecked(this.used[victim] = ++this.clock);
    return <i64>addr;
  }

  /** Read `count` blocks from `b` straight into `dst`. */
  private readBlocks(b: u32, dst: usize, count: u32): i32 {
    const r = this.src.read(<u64>b << (this.blockShift - 9), dst, count << this.blockShift);
    if (r < 0) return fail(-r, "ext2: reading block " + b.toString() + " failed (errno " + (-r).toString() + ")");
    return 0;
  }

  /** Checks a block number taken from the image: 0 (a hole) or inside the filesystem's data blocks. */
  private badBlock(b: u32): bool {
    return b != 0 && (b < this.firstDataBlock || b >= this.blocksCount);
  }

  // Inodes.

  /** Read inode `ino` into `this.node`: 0 or a negative errno. */
  private loadInode(ino: u32): i32 {
    this.node.ino = 0;
    if (ino == 0 || ino > this.inodesCount) return fail(EINVAL, "ext2: no inode " + ino.toString() + " (the filesystem has " + this.inodesCount.toString() + ")");
    const group = (ino - 1) / this.inodesPerGroup;
    const index = (ino - 1) % this.inodesPerGroup;
    const descOffset = <u64>group * GROUP_DESC_SIZE;
    const descBlock = this.firstDataBlock + 1 + <u32>(descOffset >> this.blockShift);
    let a = this.block(descBlock);
    if (a < 0) return <i32>a;
    const table = load<u32>(<usize>a + <usize>(descOffset & (this.blockSize - 1)) + 8);
    if (table <= this.firstDataBlock || <u64>table + this.inodeTableBlocks > this.blocksCount) {
      return corrupt("group " + group.toString() + "'s inode table (block " + table.toString() + ", " + this.inodeTableBlocks.toString() +
        " blocks) is outside the filesystem (" + this.blocksCount.toString() + " blocks)");
    }
    const byteOffset = <u64>index * this.inodeSize;
    a = this.block(table + <u32>(byteOffset >> this.blockShift));
    if (a < 0) return <i32>a;
    const p = <usize>a + <usize>(byteOffset & (this.blockSize - 1));
    const n = this.node;
    n.mode = load<u16>(p);
    n.links = load<u16>(p + 26);
    if (n.links == 0) return fail(ENOENT, "ext2: inode " + ino.toString() + " is not in use");
    n.uid = <u32>load<u16>(p + 2) | (<u32>load<u16>(p + 120) << 16);
    n.gid = <u32>load<u16>(p + 24) | (<u32>load<u16>(p + 122) << 16);
    n.size = load<u32>(p + 4);
    // The high half is i_size_high for regular files only (i_dir_acl for directories in ext2).
    if ((n.mode & S_IFMT) == S_IFREG) n.size |= <u64>load<u32>(p + 108) << 32;
    n.mtime = load<u32>(p + 16);
    n.sectors = load<u32>(p + 28);
    n.fileAcl = load<u32>(p + 104);
    const flags = load<u32>(p + 32);
    if ((flags & (EXTENTS_FL | INLINE_DATA_FL)) != 0) return corrupt("inode " + ino.toString() + " uses extents or inline data, which ext2 has not");
    memory.copy(changetype<usize>(n.block), p + 40, 60);
    n.ino = ino;
    return 0;
  }

  /**
   * Block holding byte `lblk << blockShift` of `this.node`: 0 for a hole, or
   * a negative errno. An indirect chain that meets one of its own blocks again
   * is a loop: -EIO.
   */
  private bmap(lblk: u64): i64 {
    const block = this.node.block;
    let b: u32;
    if (lblk < N_DIRECT) {
      b = unchecked(block[<i32>lblk]);
      if (this.badBlock(b)) return this.badPointer(b);
      return b;
    }
    const shift = this.blockShift - 2; // log2 of pointers per block
    let depth: u32 = 1;
    lblk -= N_DIRECT;
    while (lblk >= (<u64>1 << (shift * depth))) {
      lblk -= <u64>1 << (shift * depth);
      if (++depth > 3) return corrupt("inode " + this.node.ino.toString() + ": offset past what a block map can address");
    }
    b = unchecked(block[<i32>(N_DIRECT - 1 + depth)]);
    let a1: u32 = 0; // the chain so far, to catch loops
    let a2: u32 = 0;
    let a3: u32 = 0;
    for (let level = depth; level > 0; level--) {
      if (b == 0) return 0;
      if (this.badBlock(b)) return this.badPointer(b);
      if (b == a1 || b == a2) return corrupt("inode " + this.node.ino.toString() + ": indirect block " + b.toString() + " is its own ancestor");
      a3 = a2;
      a2 = a1;
      a1 = b;
      const a = this.block(b);
      if (a < 0) return a;
      const index = <usize>(lblk >> (shift * (level - 1))) & ((<usize>1 << shift) - 1);
      b = load<u32>(<usize>a + (index << 2));
    }
    if (this.badBlock(b)) return this.badPointer(b);
    if (b != 0 && (b == a1 || b == a2 || b == a3)) return corrupt("inode " + this.node.ino.toString() + ": data block " + b.toString() + " is one of its indirect blocks");
    return b;
  }

  private badPointer(b: u32): i32 {
    return corrupt("inode " + this.node.ino.toString() + " points to block " + b.toString() + ", outside the filesystem (" + this.blocksCount.toString() + " blocks)");
  }

  /** Copy `n` bytes of `this.node`'s data from `offset` to `dst`; n, or a negative errno. */
  private readData(offset: u64, dst: usize, n: u32): i32 {
    const bs = this.blockSize;
    let done: u32 = 0;
    while (done < n) {
      const pos = offset + done;
      const lblk = pos >> this.blockShift;
      const within = <u32>(pos & (bs - 1));
      const b = this.bmap(lblk);
      if (b < 0) return <i32>b;
      let chunk = min<u32>(bs - within, n - done);
      if (b == 0) {
        memory.fill(dst + done, 0, chunk);
      } else if (chunk == bs) {
        // Whole blocks go straight to dst, as many contiguous ones as fit in one request.
        let run: u32 = 1;
        while (run < MAX_RUN >> this.blockShift && n - done - run * bs >= bs && this.bmap(lblk + run) == b + <i64>run) run++;
        const r = this.readBlocks(<u32>b, dst + done, run);
        if (r < 0) return r;
        chunk = run * bs;
      } else {
        const a = this.block(<u32>b);
        if (a < 0) return <i32>a;
        memory.copy(dst + done, <usize>a + within, chunk);
      }
      done += chunk;
    }
    return <i32>n;
  }

  /** Copy symlink `this.node`'s target to `dst` (PATH_MAX bytes free): its length, or a negative errno. */
  private readlinkInto(dst: usize): i32 {
    const n = this.node;
    if ((n.mode & S_IFMT) != S_IFLNK) return fail(EINVAL, "ext2: inode " + n.ino.toString() + " is not a symlink");
    if (n.size > PATH_MAX) return corrupt("symlink " + n.ino.toString() + " is " + n.size.toString() + " bytes long");
    const len = <u32>n.size;
    // Fast symlinks keep the target in i_block and own no block (bar an extended attribute block).
    const eaSectors = n.fileAcl != 0 ? this.blockSize >> 9 : 0;
    if (n.sectors == 0 || n.sectors == eaSectors) {
      if (len >= FAST_LINK_MAX) return corrupt("fast symlink " + n.ino.toString() + " is " + len.toString() + " bytes long");
      memory.copy(dst, changetype<usize>(n.block), len);
      return <i32>len;
    }
    return this.readData(0, dst, len);
  }

  // Directories.

  /**
   * Walk the entries of directory `this.node`. With `out` null: the inode of
   * the entry named by the `nameLen` bytes at `name`, or 0 when there is none.
   * Otherwise append every entry to `out` (-E2BIG past `maxEntries`) and
   * return 0. Or a negative errno.
   */
  private scanDir(name: usize, nameLen: u32, out: Ext2Entry[] | null, maxEntries: i32 = 0): i32 {
    const dir = this.node.ino;
    const size = this.node.size;
    const bs = this.blockSize;
    if ((size & (bs - 1)) != 0) return corrupt("directory " + dir.toString() + "'s size " + size.toString() + " is not a whole number of blocks");
    const blocks = size >> this.blockShift;
    for (let l: u64 = 0; l < blocks; l++) {
      const b = this.bmap(l);
      if (b < 0) return <i32>b;
      if (b == 0) continue; // a hole holds no entries
      const a = this.block(<u32>b);
      if (a < 0) return <i32>a;
      const base = <usize>a;
      let off: u32 = 0;
      while (off < bs) {
        if (bs - off < 8) return badEntry(dir, l, off, "entry header runs past the block");
        const p = base + off;
        const ino = load<u32>(p);
        let rec = <u32>load<u16>(p + 4);
        // A 64 KiB block's one whole-block record cannot say 65536 in 16 bits.
        if (bs == 65536 && off == 0 && (rec == 0 || rec == 65535)) rec = 65536;
        const len = this.filetype ? <u32>load<u8>(p + 6) : <u32>load<u16>(p + 6);
        if (rec < 8 || (rec & 3) != 0 || rec > bs - off) return badEntry(dir, l, off, "rec_len " + rec.toString());
        if (len + 8 > rec) return badEntry(dir, l, off, "name_len " + len.toString() + " past rec_len " + rec.toString());
        if (ino != 0) {
          if (ino > this.inodesCount) return badEntry(dir, l, off, "inode " + ino.toString() + " out of range");
          if (len == 0) return badEntry(dir, l, off, "an entry with an empty name");
          if (out != null) {
            if (out.length >= maxEntries) return fail(E2BIG, "ext2: directory " + dir.toString() + " has more than " + maxEntries.toString() + " entries");
            const t = this.filetype ? <u32>load<u8>(p + 7) : 0;
            out.push(new Ext2Entry(String.UTF8.decodeUnsafe(p + 8, len), ino, t <= 7 ? <Ext2Type>t : Ext2Type.Unknown));
          } else if (len == nameLen && memory.compare(p + 8, name, len) == 0) {
            return <i32>ino;
          }
        }
        off += rec;
      }
    }
    return 0;
  }
}

function badEntry(dir: u32, block: u64, offset: u32, what: string): i32 {
  return corrupt("directory " + dir.toString() + ", block " + block.toString() + ", offset " + offset.toString() + ": " + what);
}

/** Why the superblock at `sb` cannot be used, or "". */
function checkSuperblock(sb: usize): string {
  if (load<u16>(sb + 56) != EXT2_MAGIC) return "bad magic 0x" + load<u16>(sb + 56).toString(16) + " (not an ext2 filesystem)";
  const rev = load<u32>(sb + 76);
  if (rev > 1) return "unknown revision " + rev.toString();
  const logBlock = load<u32>(sb + 24);
  if (logBlock > 6) return "block size 1024 << " + logBlock.toString() + " is too large";
  const bs = <u32>1024 << logBlock;
  // Revision 0 has no feature fields, but Linux honours them if set; so do we.
  const incompat = load<u32>(sb + 96);
  if ((incompat & ~INCOMPAT_KNOWN) != 0) return "unsupported incompatible features: " + incompatNames(incompat & ~INCOMPAT_KNOWN);
  const inodeSize: u32 = rev == 0 ? 128 : load<u16>(sb + 88);
  if (inodeSize < 128 || inodeSize > bs || (inodeSize & (inodeSize - 1)) != 0) return "bad inode size " + inodeSize.toString();
  const blocks = load<u32>(sb + 4);
  const inodes = load<u32>(sb + 0);
  const first = load<u32>(sb + 20);
  if (first != (bs == 1024 ? 1 : 0)) return "first data block " + first.toString() + " for " + bs.toString() + "-byte blocks";
  if (blocks <= first + 1) return "block count " + blocks.toString() + " is too small";
  const perGroup = load<u32>(sb + 32);
  if (perGroup == 0 || perGroup > bs * 8) return "bad blocks per group " + perGroup.toString();
  const inodesPerGroup = load<u32>(sb + 40);
  if (inodesPerGroup == 0 || inodesPerGroup > bs * 8) return "bad inodes per group " + inodesPerGroup.toString();
  const groups = (<u64>blocks - first + perGroup - 1) / perGroup;
  if (inodes < EXT2_ROOT_INO || <u64>inodes > groups * inodesPerGroup) return "inode count " + inodes.toString() + " does not fit " + groups.toString() + " groups";
  const descBlocks = (groups * GROUP_DESC_SIZE + bs - 1) / bs;
  if (<u64>first + 1 + descBlocks > blocks) return "the group descriptors do not fit in the filesystem";
  return "";
}

function incompatNames(bits: u32): string {
  const names = ["compression", "filetype", "needs_recovery", "journal_dev", "meta_bg", "", "extent", "64bit",
    "mmp", "flex_bg", "ea_inode", "", "dirdata", "metadata_csum_seed", "large_dir", "inline_data", "encrypt", "casefold"];
  let s = "";
  for (let i = 0; i < 32; i++) {
    if ((bits & (<u32>1 << i)) == 0) continue;
    const name = i < names.length && names[i].length > 0 ? names[i] : "0x" + (<u32>1 << i).toString(16);
    s += (s.length > 0 ? ", " : "") + name;
  }
  return s;
}
