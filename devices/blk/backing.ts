/**
 * The host side of a virtual block device: a backing store (a host file or
 * block device) opened read-only or read-write, with asynchronous sector
 * I/O that never blocks the kernel, and the rules for sharing one store
 * between domains.
 */
import { open, realpath, readFile, stat, type FileHandle } from 'node:fs/promises';
import { readv as readvCb, writev as writevCb } from 'node:fs';
import { basename } from 'node:path';
import { constants } from 'node:fs';
import { InvalidArgumentError, WvError } from '../../kernel/errors.ts';

export const SECTOR_SIZE = 512;

/** A backing store could not be opened or used; names the path and the reason. */
export class BackingStoreError extends WvError {
  readonly path: string;
  constructor(path: string, detail: string) {
    super('WV_ERR_BLOCK_BACKING', `block device backing ${path}: ${detail}`);
    this.path = path;
  }
}

/** The store is attached elsewhere in a way that forbids this attach. */
export class BlockSharingError extends WvError {
  constructor(path: string, detail: string) {
    super('WV_ERR_BLOCK_SHARING', `cannot attach ${path}: ${detail}`);
  }
}

/** An I/O request failed; the request gets an error status, nothing else is affected. */
export class BlockIoError extends WvError {
  readonly errno: string;
  constructor(path: string, what: string, errno: string) {
    super('WV_ERR_BLOCK_IO', `block device backing ${path}: ${what} failed: ${errno}`);
    this.errno = errno;
  }
}

export interface BackingInfo {
  path: string;
  /** Device identity, the same for every path to one store (dev:ino, or the block device number). */
  identity: string;
  sectors: bigint;
  sectorSize: number;
  readonly: boolean;
  isBlockDevice: boolean;
}

function code(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}

/** Size of a host block device, from sysfs (Node has no BLKGETSIZE64). */
async function blockDeviceBytes(path: string): Promise<bigint> {
  const real = await realpath(path);
  const name = basename(real);
  const text = await readFile(`/sys/class/block/${name}/size`, 'utf8');
  return BigInt(text.trim()) * 512n; // sysfs counts 512-byte sectors whatever the device's sector size
}

export class BackingStore {
  readonly info: BackingInfo;
  readonly #fh: FileHandle;
  #closed = false;
  /** Operations in flight, by number: a flush or a detach waits for those in flight when it starts. */
  readonly #live = new Set<number>();
  #nextOp = 0;
  #barriers: Array<{ pending: Set<number>; resolve: () => void }> = [];

  private constructor(fh: FileHandle, info: BackingInfo) {
    this.#fh = fh;
    this.info = info;
  }

  /** Open `path` for a VBD; throws BackingStoreError naming the path and reason. */
  static async open(path: string, readonly: boolean): Promise<BackingStore> {
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      throw new BackingStoreError(path, code(err) === 'ENOENT' ? 'it does not exist' : `cannot stat it: ${code(err)}`);
    }
    if (!st.isFile() && !st.isBlockDevice()) throw new BackingStoreError(path, 'it is neither a regular file nor a block device');
    let fh: FileHandle;
    try {
      fh = await open(path, readonly ? constants.O_RDONLY : constants.O_RDWR);
    } catch (err) {
      throw new BackingStoreError(path, `cannot open it ${readonly ? 'read-only' : 'read-write'}: ${code(err)}`);
    }
    let bytes: bigint;
    try {
      bytes = st.isBlockDevice() ? await blockDeviceBytes(path) : BigInt(st.size);
    } catch (err) {
      await fh.close();
      throw new BackingStoreError(path, `cannot find its size: ${code(err)}`);
    }
    const identity = st.isBlockDevice() ? `blk:${st.rdev}` : `file:${st.dev}:${st.ino}`;
    return new BackingStore(fh, {
      path, identity, sectors: bytes / BigInt(SECTOR_SIZE), sectorSize: SECTOR_SIZE, readonly, isBlockDevice: st.isBlockDevice(),
    });
  }

  #check(sector: bigint, bytes: number, write: boolean): void {
    if (this.#closed) throw new BlockIoError(this.info.path, write ? 'write' : 'read', 'the device is detached');
    if (write && this.info.readonly) throw new BlockIoError(this.info.path, 'write', 'EROFS (the device is read-only)');
    if (bytes % SECTOR_SIZE !== 0) throw new InvalidArgumentError('block request', `${bytes} bytes is not a whole number of sectors`);
    const count = BigInt(bytes / SECTOR_SIZE);
    if (sector < 0n || sector + count > this.info.sectors) {
      throw new BlockIoError(this.info.path, write ? 'write' : 'read', `ERANGE (sectors ${sector}..${sector + count} past the end, ${this.info.sectors} sectors)`);
    }
  }

  #begin(): number {
    const id = this.#nextOp++;
    this.#live.add(id);
    return id;
  }

  #end(id: number): void {
    this.#live.delete(id);
    if (this.#barriers.length === 0) return;
    this.#barriers = this.#barriers.filter((b) => {
      b.pending.delete(id);
      if (b.pending.size > 0) return true;
      b.resolve();
      return false;
    });
  }

  /** Resolves once every operation in flight now has ended (later ones do not count). */
  #settled(): Promise<void> {
    if (this.#live.size === 0) return Promise.resolve();
    const pending = new Set(this.#live);
    return new Promise((resolve) => this.#barriers.push({ pending, resolve }));
  }

  /** Read `into.length` bytes at `sector`. Every failure is a rejection (bad ranges included). */
  read(sector: bigint, into: Uint8Array): Promise<void> {
    return this.readv(sector, [into]);
  }

  /** Write `data` at `sector`. Not durable until `flush`. */
  write(sector: bigint, data: Uint8Array): Promise<void> {
    return this.writev(sector, [data]);
  }

  /**
   * Read consecutive sectors from `sector` into several buffers (the pages
   * of one request) with one vectored system call where the host allows.
   */
  readv(sector: bigint, buffers: Uint8Array[]): Promise<void> {
    return new Promise((resolve, reject) => this.vectored(false, sector, buffers, (err) => (err ? reject(err) : resolve())));
  }

  /** Write several buffers to consecutive sectors from `sector`, vectored. */
  writev(sector: bigint, buffers: Uint8Array[]): Promise<void> {
    return new Promise((resolve, reject) => this.vectored(true, sector, buffers, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * readv or writev with a callback instead of a promise, for the block
   * backend's hot path (a promise and its microtasks cost as much as the
   * rest of a 4 KiB request on the main thread). `done` is called exactly
   * once, never synchronously, with undefined or the error.
   */
  vectored(write: boolean, sector: bigint, buffers: Uint8Array[], done: (err?: Error) => void): void {
    let total = 0;
    for (const b of buffers) total += b.length;
    try {
      for (const b of buffers) if (b.length % SECTOR_SIZE !== 0) throw new InvalidArgumentError('block request', `${b.length} bytes is not a whole number of sectors`);
      this.#check(sector, total, write);
    } catch (err) {
      queueMicrotask(() => done(err as Error));
      return;
    }
    // The callback API on the descriptor: one trip to the thread pool and no
    // promise of Node's own (FileHandle's are slower).
    const fd = this.#fh.fd;
    const id = this.#begin();
    let pos = Number(sector) * SECTOR_SIZE;
    let rest = buffers;
    const finish = (err?: BlockIoError): void => {
      this.#end(id);
      done(err);
    };
    const cb = (err: NodeJS.ErrnoException | null, n: number): void => {
      if (err) return finish(new BlockIoError(this.info.path, write ? 'write' : 'read', code(err)));
      if (n === 0) return finish(new BlockIoError(this.info.path, write ? 'write' : 'read', write ? 'EIO (nothing written)' : 'EIO (the backing store is shorter than it was)'));
      pos += n;
      total -= n;
      if (total === 0) return finish();
      // Drop what was transferred; a partial buffer continues from where it stopped.
      const next: Uint8Array[] = [];
      for (const b of rest) {
        if (n >= b.length) { n -= b.length; continue; }
        next.push(n > 0 ? b.subarray(n) : b);
        n = 0;
      }
      rest = next;
      step();
    };
    const step = (): void => {
      if (write) writevCb(fd, rest, pos, cb);
      else readvCb(fd, rest, pos, cb);
    };
    step();
  }

  /** A barrier: resolves once every write acknowledged before it is durable on the host. */
  flush(): Promise<void> {
    if (this.#closed) return Promise.reject(new BlockIoError(this.info.path, 'flush', 'the device is detached'));
    const before = this.#settled();
    const id = this.#begin();
    return (async () => {
      try {
        await before;
        await this.#fh.datasync();
        // A file deleted behind our back still takes writes, but nothing on
        // the host can reach them: that is not durable, so the flush fails.
        if (!this.info.isBlockDevice && (await this.#fh.stat()).nlink === 0) {
          throw Object.assign(new Error('the backing file was deleted'), { code: 'ENOENT (the backing file was deleted)' });
        }
      } catch (err) {
        throw new BlockIoError(this.info.path, 'flush', code(err));
      } finally {
        this.#end(id);
      }
    })();
  }

  /**
   * Discard: the guest no longer needs these sectors. Node cannot punch
   * holes, so the data stays (allowed: discarded sectors read back as
   * anything); the range is still checked.
   */
  async discard(sector: bigint, sectors: bigint): Promise<void> {
    this.#check(sector, Number(sectors) * SECTOR_SIZE, true);
  }

  /** Wait for the requests in flight, then close. Later requests fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#settled();
    await this.#fh.close();
  }
}

interface Holder { domid: number; name: string; readonly: boolean; vdev: string }

/**
 * Who holds which store: many readers, or one writer, never both. Keyed by
 * the store's identity, so two paths to one file are the same store.
 */
export class SharingTable {
  readonly #holders = new Map<string, Holder[]>();

  /** Record an attach, or throw BlockSharingError naming the holder. */
  claim(info: Pick<BackingInfo, 'identity' | 'path'>, holder: Holder): void {
    const list = this.#holders.get(info.identity) ?? [];
    const writer = list.find((h) => !h.readonly);
    if (writer) {
      throw new BlockSharingError(info.path, `it is attached read-write to domain ${writer.domid} (${writer.name}) as ${writer.vdev}; a store attached read-write is not shared`);
    }
    if (!holder.readonly && list.length > 0) {
      const r = list[0]!;
      throw new BlockSharingError(info.path, `it is attached read-only to domain ${r.domid} (${r.name}) as ${r.vdev}${list.length > 1 ? ` and ${list.length - 1} more` : ''}; it can be attached read-write only when no one else has it`);
    }
    list.push(holder);
    this.#holders.set(info.identity, list);
  }

  release(identity: string, domid: number, vdev: string): void {
    const list = (this.#holders.get(identity) ?? []).filter((h) => !(h.domid === domid && h.vdev === vdev));
    if (list.length) this.#holders.set(identity, list);
    else this.#holders.delete(identity);
  }

  holders(identity: string): readonly Holder[] { return this.#holders.get(identity) ?? []; }
}
