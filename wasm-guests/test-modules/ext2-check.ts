// Test module for wasm-guests/ext2.test.ts (not a guest: it exports helpers
// and no start). It opens an ext2 image the test serves through the import
// `test.read` and runs the SDK reader's calls on it. Paths, names and data
// pass through `buffer()`, which the test reads and writes directly.
import { Ext2, Ext2Entry, SectorSource, ext2Errno, ext2Error } from "../sdk/index";

@external("test", "read")
declare function hostRead(sector: u64, dst: usize, bytes: u32): i32;

class HostDisk extends SectorSource {
  read(sector: u64, dst: usize, bytes: u32): i32 {
    return hostRead(sector, dst, bytes);
  }
}

const BUF_SIZE: u32 = 1 << 20;
const BUF = changetype<usize>(new ArrayBuffer(BUF_SIZE));
let fs: Ext2 | null = null;
let savedPath: string = "";

/** Address of the buffer. */
export function buffer(): usize {
  return BUF;
}

export function bufferSize(): u32 {
  return BUF_SIZE;
}

/** Open the image: 0 or the negative errno. */
export function open(): i32 {
  fs = Ext2.open(new HostDisk());
  return fs == null ? ext2Errno() : 0;
}

function put(s: string): i32 {
  const n = String.UTF8.byteLength(s);
  if (<u32>n > BUF_SIZE) return -1;
  return <i32>String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, BUF);
}

/** The last error's text, into the buffer: its length. */
export function errorText(): i32 {
  return put(ext2Error());
}

/** The volume label, into the buffer: its length. */
export function volumeName(): i32 {
  return put(fs!.volumeName());
}

/** 0 block size, 1 inode count, 2 block count. */
export function info(which: i32): u32 {
  switch (which) {
    case 0: return fs!.blockSize;
    case 1: return fs!.inodesCount;
    case 2: return fs!.blocksCount;
    default: return 0;
  }
}

/** Look up the `len` bytes of UTF-8 path in the buffer. */
export function lookup(len: u32, followLast: i32): i32 {
  return fs!.lookup(String.UTF8.decodeUnsafe(BUF, len), followLast != 0);
}

/** Stat into the buffer as u32 mode, type, links, uid, gid, mtime, then u64 size: 0 or errno. */
export function stat(ino: u32): i32 {
  const s = fs!.stat(ino);
  if (s == null) return ext2Errno();
  store<u32>(BUF, s.mode);
  store<u32>(BUF, <u32>s.type, 4);
  store<u32>(BUF, s.links, 8);
  store<u32>(BUF, s.uid, 12);
  store<u32>(BUF, s.gid, 16);
  store<u32>(BUF, s.mtime, 20);
  store<u64>(BUF, s.size, 24);
  return 0;
}

/** List (at most `maxEntries`) into the buffer as records of u32 ino, u8 type, u16 name length, name: the byte count, or errno. */
export function list(ino: u32, maxEntries: i32): i32 {
  const entries = fs!.list(ino, maxEntries);
  if (entries == null) return ext2Errno();
  let off: u32 = 0;
  for (let i = 0; i < entries.length; i++) {
    const e: Ext2Entry = entries[i];
    const n = <u32>String.UTF8.byteLength(e.name);
    if (off + 7 + n > BUF_SIZE) return -7; // E2BIG
    store<u32>(BUF + off, e.ino);
    store<u8>(BUF + off, <u8>e.type, 4);
    store<u16>(BUF + off, <u16>n, 5);
    String.UTF8.encodeUnsafe(changetype<usize>(e.name), e.name.length, BUF + off + 7);
    off += 7 + n;
  }
  return <i32>off;
}

/** Read `len` bytes (at most the buffer) of file `ino` at `offset` into the buffer. */
export function read(ino: u32, offset: u64, len: u32): i32 {
  return fs!.readFile(ino, offset, BUF, min(len, BUF_SIZE));
}

/** Read into the buffer at `at` (to check nothing outside the range is written). */
export function readAt(ino: u32, offset: u64, at: u32, len: u32): i32 {
  if (at > BUF_SIZE || len > BUF_SIZE - at) return -22;
  return fs!.readFile(ino, offset, BUF + at, len);
}

/** Symlink target into the buffer: its length, or errno. */
export function readlink(ino: u32): i32 {
  const s = fs!.readlink(ino);
  if (s == null) return ext2Errno();
  return put(s);
}

/** Keep the `len` bytes of UTF-8 path in the buffer for `lookupSaved`, which then allocates nothing here. */
export function savePath(len: u32): void {
  savedPath = String.UTF8.decodeUnsafe(BUF, len);
}

export function lookupSaved(followLast: i32): i32 {
  return fs!.lookup(savedPath, followLast != 0);
}

/** The top of the heap (the stub runtime never frees): allocates the same few bytes on every call. */
export function heapMark(): usize {
  return heap.alloc(1);
}
