/**
 * Virtual disks (`wv vd ...`, `vd:NAME` in a disk spec): sparse raw images
 * in one directory, the daemon's STATE/vd, with their records in an
 * embedded SQLite database beside them:
 *
 *   STATE/vd/vd.db       one row per disk: name, size, created, parent, file
 *   STATE/vd/NAME.img    the image; only the blocks ever written take host space
 *
 * The records and the files agree whatever fails. A new image is written
 * under a temporary name (`.NAME.img.tmp-XXXX`, which no disk name can
 * take) and linked into place inside the transaction that records it; an
 * operation that fails removes what it made. Opening the store repairs
 * what a crash can leave: temporary files are removed, an image without a
 * row is adopted, a row whose image is gone is listed as `missing` (it can
 * still be deleted), and a row's size follows its image's.
 *
 * Snapshots are full, independent copies, as sparse as their source: a
 * reflink where the host filesystem has them (btrfs, XFS), else a copy of
 * the data extents only (`copySparse`). Deleting a disk never touches its
 * snapshots.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { closeSync, constants, fsyncSync, ftruncateSync, linkSync, mkdirSync, openSync, readdirSync, rmSync, statSync, truncateSync, unlinkSync, type Stats } from 'node:fs';
import { copyFile, open, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, WvError } from '../../kernel/errors.ts';
import { VD_NAME } from './disk-spec.ts';

/** Sizes are whole sectors. */
export const VD_SECTOR = 512;

/**
 * The largest disk: 2 TiB. Far beyond what a guest needs, and small enough
 * that a snapshot on a host without reflinks or GNU cp, which reads the
 * whole image (holes included, about 1 GiB/s), ends in minutes, not hours.
 */
export const VD_MAX_BYTES = 2 ** 41;

/** No virtual disk has that name. */
export class NoSuchVirtualDiskError extends WvError {
  readonly disk: string;
  constructor(name: string) {
    super('WV_ERR_NO_SUCH_VD', `no virtual disk named "${name}" (wv vd list shows them)`);
    this.disk = name;
  }
}

/** A virtual disk of that name already exists. */
export class VirtualDiskExistsError extends WvError {
  readonly disk: string;
  constructor(name: string, detail = '') {
    super('WV_ERR_VD_EXISTS', `a virtual disk named "${name}" already exists${detail ? ` (${detail})` : ''}`);
    this.disk = name;
  }
}

/** The disk is recorded but its image file is gone (removed behind the store's back). */
export class VirtualDiskMissingError extends WvError {
  readonly disk: string;
  constructor(name: string, path: string) {
    super('WV_ERR_VD_MISSING', `virtual disk "${name}": its image ${path} is missing (remove the record with: wv vd delete ${name})`);
    this.disk = name;
  }
}

/** The operation needs the disk free, and a domain holds it. */
export class VirtualDiskInUseError extends WvError {
  readonly disk: string;
  readonly holder: string;
  constructor(name: string, action: string, holder: string) {
    super('WV_ERR_VD_IN_USE', `cannot ${action} virtual disk "${name}": it is in use by ${holder} (detach it or stop the domain first)`);
    this.disk = name;
    this.holder = holder;
  }
}

/** The host failed an operation on a disk or the store (ENOSPC on a full disk, EIO, ...); nothing was changed. */
export class VirtualDiskIoError extends WvError {
  readonly disk: string | undefined;
  /** The errno name (`ENOSPC`), or `SQLITE_...` for a database failure. */
  readonly errno: string;
  constructor(subject: { disk: string } | { store: string }, what: string, errno: string) {
    const who = 'disk' in subject ? `virtual disk "${subject.disk}"` : `virtual disk store ${subject.store}`;
    super('WV_ERR_VD_IO', `${who}: ${what} failed: ${errno}${errno === 'ENOSPC' ? ' (the host filesystem is full)' : ''}`);
    this.disk = 'disk' in subject ? subject.disk : undefined;
    this.errno = errno;
  }
}

/** One disk, as `list` and every operation report it. */
export interface VirtualDiskInfo {
  name: string;
  /** What the guest sees, in bytes (a multiple of 512). */
  sizeBytes: number;
  /** Host space the image takes (allocated blocks); 0 when it is missing. */
  usedBytes: number;
  /** The disk this one is a snapshot of, by its name then; null for a disk made by `create`. */
  parent: string | null;
  /** The parent has been deleted since (harmless: a snapshot is a full copy). */
  parentDeleted: boolean;
  /** When it was created, ISO 8601. */
  created: string;
  /** The image's absolute path. */
  path: string;
  /** `missing`: the record is there, the image is not. */
  state: 'ok' | 'missing';
}

export interface VirtualDisksOptions {
  /**
   * Who holds a disk: a description such as "domain 3 (web) as xvda", or
   * undefined when it is free. Delete, resize and snapshot refuse a disk
   * that is held. Default: nothing is ever held.
   */
  inUse?: (name: string) => string | undefined;
}

/** The name rule of disk-spec.ts (`vd:NAME`); throws InvalidArgumentError. */
export function checkVdName(name: unknown): string {
  if (typeof name !== 'string' || !VD_NAME.test(name)) {
    throw new InvalidArgumentError('virtual disk name', `${JSON.stringify(name)}: use 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  }
  return name;
}

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/**
 * A disk size: plain bytes, or a number with K, M, G or T (powers of 1024;
 * `KiB`, `MB`... read the same). It must be a positive multiple of 512 and
 * at most VD_MAX_BYTES. `what` names it in the error.
 */
export function parseVdSize(size: unknown, what: string): number {
  const bad = (why: string): never => { throw new InvalidArgumentError(what, `${JSON.stringify(size)} ${why}`); };
  let bytes: number;
  if (typeof size === 'number') {
    bytes = size;
  } else if (typeof size === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(size);
    if (!m) return bad('is not a size (such as 512K, 64M, 1G, or bytes)');
    bytes = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  } else {
    return bad('is not a size');
  }
  if (!Number.isSafeInteger(bytes) || bytes <= 0) bad('is not a positive whole number of bytes');
  if (bytes % VD_SECTOR !== 0) bad(`is not a multiple of ${VD_SECTOR} bytes (whole sectors)`);
  if (bytes > VD_MAX_BYTES) bad(`is larger than the most a virtual disk can be, ${formatVdSize(VD_MAX_BYTES)}`);
  return bytes;
}

/** Bytes for people: `64M`, `1G`, `1.5G`, `512B`; whole units when exact, else one decimal. */
export function formatVdSize(bytes: number): string {
  for (const u of ['T', 'G', 'M', 'K'] as const) {
    const n = bytes / UNITS[u]!;
    if (n >= 1) return `${Number.isInteger(n) ? n : n.toFixed(1)}${u}`;
  }
  return `${bytes}B`;
}

interface Row { id: number; name: string; size_bytes: number; created_ms: number; parent: string | null; parent_id: number | null; file: string }

function errnoOf(err: unknown): string {
  const e = err as { code?: string; errcode?: number; errstr?: string; message?: string };
  if (e.code === 'ERR_SQLITE_ERROR') {
    if (e.errcode === 13) return 'ENOSPC'; // SQLITE_FULL
    return `SQLITE_${(e.errstr ?? String(e.errcode)).toUpperCase().replace(/\W+/g, '_')}`;
  }
  return e.code ?? e.message ?? String(err);
}

/** A WvError passes through; anything else from the host is an I/O error naming the disk. */
function ioError(name: string, what: string, err: unknown): WvError {
  return err instanceof WvError ? err : new VirtualDiskIoError({ disk: name }, what, errnoOf(err));
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS disks (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT NOT NULL UNIQUE,
  size_bytes INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  parent     TEXT,
  parent_id  INTEGER,
  file       TEXT NOT NULL
) STRICT;
`;

/** The copy unit of a sparse copy, and the granularity at which zeros become holes. */
const COPY_CHUNK = 1 << 20;
const HOLE_BLOCK = 4096;
const ZEROS = Buffer.alloc(COPY_CHUNK);

function isZero(buf: Buffer, start: number, end: number): boolean {
  return buf.subarray(start, end).equals(ZEROS.subarray(0, end - start));
}

async function writeAll(fh: FileHandle, buf: Buffer, start: number, end: number, position: number): Promise<void> {
  while (start < end) {
    const { bytesWritten } = await fh.write(buf, start, end - start, position);
    if (bytesWritten === 0) throw Object.assign(new Error('nothing written'), { code: 'EIO' });
    start += bytesWritten;
    position += bytesWritten;
  }
}

/** cp's messages for the failures a second try would only repeat, as errno names. */
const CP_ERRNO: ReadonlyArray<[RegExp, string]> = [
  [/No space left on device/, 'ENOSPC'], [/Disk quota exceeded/, 'EDQUOT'], [/Input\/output error/, 'EIO'], [/File too large/, 'EFBIG'],
];

/**
 * GNU cp finds the data with SEEK_DATA/SEEK_HOLE (which Node lacks), so it
 * copies a mostly empty disk in milliseconds. Resolves false when cp is
 * missing or cannot do it (busybox's has no --sparse), so the caller falls
 * back; rejects, with an errno, for a failure that would recur.
 */
function copyWithCp(src: string, dst: string): Promise<boolean> {
  return new Promise((done, fail) => {
    let stderr = '';
    const cp = spawn('cp', ['--sparse=always', '--reflink=auto', '--', src, dst], { stdio: ['ignore', 'ignore', 'pipe'] });
    cp.stderr.setEncoding('utf8').on('data', (s: string) => { if (stderr.length < 4096) stderr += s; });
    cp.once('error', () => done(false));
    cp.once('close', (status) => {
      if (status === 0) { done(true); return; }
      rmSync(dst, { force: true });
      const known = CP_ERRNO.find(([re]) => re.test(stderr));
      if (known) fail(Object.assign(new Error(stderr.trim()), { code: known[1] }));
      else done(false);
    });
  });
}

/**
 * Copy `size` bytes of `src` into the new file `dst`, keeping holes
 * (fs.copyFile's own fallback fills them). In order: a reflink, when the
 * filesystem has them (instant; blocks shared until written); GNU cp; and
 * last a copy here that reads everything, holes included, and writes only
 * the non-zero 4 KiB blocks. `via: 'read'` goes straight to the last.
 */
export async function copySparse(src: string, dst: string, size: number, via: 'auto' | 'read' = 'auto'): Promise<'reflink' | 'cp' | 'read'> {
  if (via === 'auto') {
    try {
      await copyFile(src, dst, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
      return 'reflink';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (!['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY'].includes(code ?? '')) throw err;
      rmSync(dst, { force: true });
    }
    if (await copyWithCp(src, dst)) return 'cp';
  }
  const from = await open(src, 'r');
  try {
    const to = await open(dst, 'wx', 0o600);
    try {
      const buf = Buffer.allocUnsafe(COPY_CHUNK);
      for (let pos = 0; pos < size;) {
        const { bytesRead } = await from.read(buf, 0, Math.min(COPY_CHUNK, size - pos), pos);
        if (bytesRead === 0) break; // the source is shorter: the truncate below extends with a hole
        if (!isZero(buf, 0, bytesRead)) {
          let run = -1;
          for (let off = 0; off < bytesRead; off += HOLE_BLOCK) {
            const zero = isZero(buf, off, Math.min(off + HOLE_BLOCK, bytesRead));
            if (!zero && run < 0) run = off;
            if (zero && run >= 0) { await writeAll(to, buf, run, off, pos + run); run = -1; }
          }
          if (run >= 0) await writeAll(to, buf, run, bytesRead, pos + run);
        }
        pos += bytesRead;
      }
      await to.truncate(size);
      await to.sync();
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
  return 'read';
}

/**
 * The virtual disks in one directory. Reads (`list`, `get`, `pathOf`) are
 * synchronous; changes are asynchronous and run one at a time, so two
 * requests never race on a name. One store per directory per process.
 */
export class VirtualDisks {
  /** The directory the images and vd.db are in (absolute). */
  readonly dir: string;
  readonly #db: DatabaseSync;
  readonly #inUse: (name: string) => string | undefined;
  readonly #q: { byName: StatementSync; all: StatementSync; ids: StatementSync; insert: StatementSync; remove: StatementSync; resize: StatementSync };
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(dir: string, db: DatabaseSync, opts: VirtualDisksOptions) {
    this.dir = dir;
    this.#db = db;
    this.#inUse = opts.inUse ?? (() => undefined);
    this.#q = {
      byName: db.prepare('SELECT * FROM disks WHERE name = ?'),
      all: db.prepare('SELECT * FROM disks ORDER BY name'),
      ids: db.prepare('SELECT id FROM disks'),
      insert: db.prepare('INSERT INTO disks (name, size_bytes, created_ms, parent, parent_id, file) VALUES (?, ?, ?, ?, ?, ?)'),
      remove: db.prepare('DELETE FROM disks WHERE name = ?'),
      resize: db.prepare('UPDATE disks SET size_bytes = ? WHERE name = ?'),
    };
  }

  /**
   * Open (creating if needed) the store in `dir` and repair what an
   * interrupted operation left. Throws VirtualDiskIoError when the
   * directory or database cannot be used.
   */
  static open(dir: string, opts: VirtualDisksOptions = {}): VirtualDisks {
    const abs = resolve(dir);
    let db: DatabaseSync;
    try {
      mkdirSync(abs, { recursive: true, mode: 0o700 });
      db = new DatabaseSync(join(abs, 'vd.db'));
    } catch (err) {
      throw new VirtualDiskIoError({ store: abs }, 'open', errnoOf(err));
    }
    try {
      db.exec('PRAGMA busy_timeout = 2000; PRAGMA synchronous = FULL;');
      db.exec(SCHEMA);
      const store = new VirtualDisks(abs, db, opts);
      store.#reconcile();
      return store;
    } catch (err) {
      db.close();
      throw err instanceof WvError ? err : new VirtualDiskIoError({ store: abs }, 'open', errnoOf(err));
    }
  }

  /** Remove temporary files, adopt images without a row, make each row's size its image's. */
  #reconcile(): void {
    const known = new Map((this.#q.all.all() as unknown as Row[]).map((r) => [r.file, r]));
    for (const f of readdirSync(this.dir)) {
      if (/^\..+\.tmp-[0-9a-f]+$/.test(f)) { rmSync(join(this.dir, f), { force: true }); continue; }
      const m = /^(.+)\.img$/.exec(f);
      if (!m || !VD_NAME.test(m[1]!)) continue;
      const st = statSync(join(this.dir, f));
      if (!st.isFile()) continue;
      const row = known.get(f);
      if (!row) {
        // Linked into place, then the process died before the commit: keep the data.
        if (!this.#q.byName.get(m[1]!)) this.#q.insert.run(m[1]!, st.size, Math.round(st.mtimeMs), null, null, f);
      } else if (row.size_bytes !== st.size) {
        this.#q.resize.run(st.size, row.name); // a resize cut short: the image is the truth
      }
    }
  }

  #path(row: Row): string { return join(this.dir, row.file); }

  #row(name: string): Row | undefined {
    this.#open();
    return this.#q.byName.get(name) as unknown as Row | undefined;
  }

  #need(name: string): Row {
    const row = this.#row(checkVdName(name));
    if (!row) throw new NoSuchVirtualDiskError(name);
    return row;
  }

  #info(row: Row, ids: ReadonlySet<number>): VirtualDiskInfo {
    const path = this.#path(row);
    const st = statOrUndefined(path);
    return {
      name: row.name,
      sizeBytes: st ? st.size : row.size_bytes,
      usedBytes: st ? st.blocks * 512 : 0,
      parent: row.parent,
      parentDeleted: row.parent_id !== null && !ids.has(row.parent_id),
      created: new Date(row.created_ms).toISOString(),
      path,
      state: st ? 'ok' : 'missing',
    };
  }

  #ids(): Set<number> {
    return new Set((this.#q.ids.all() as unknown as Array<{ id: number }>).map((r) => r.id));
  }

  #open(): void {
    if (this.#closed) throw new VirtualDiskIoError({ store: this.dir }, 'use', 'the store is closed');
  }

  /** Every disk, by name; a disk whose image is gone has `state: 'missing'`. */
  list(): VirtualDiskInfo[] {
    this.#open();
    const ids = this.#ids();
    return (this.#q.all.all() as unknown as Row[]).map((r) => this.#info(r, ids));
  }

  /** One disk; throws NoSuchVirtualDiskError. */
  get(name: string): VirtualDiskInfo {
    return this.#info(this.#need(name), this.#ids());
  }

  /**
   * The image to attach for `vd:NAME`. Throws InvalidArgumentError for a
   * bad name, NoSuchVirtualDiskError, or VirtualDiskMissingError when the
   * image is gone; all name the disk.
   */
  pathOf(name: string): string {
    const row = this.#need(name);
    const path = this.#path(row);
    if (!statOrUndefined(path)) throw new VirtualDiskMissingError(name, path);
    return path;
  }

  /** Run changes one at a time (a failed one does not stop the next). */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #tmp(name: string): string {
    return join(this.dir, `.${name}.img.tmp-${randomBytes(6).toString('hex')}`);
  }

  #syncDir(): void {
    try {
      const fd = openSync(this.dir, 'r');
      try { fsyncSync(fd); } finally { closeSync(fd); }
    } catch { /* best effort: the data and the row are already durable */ }
  }

  #refuseHeld(name: string, action: string): void {
    const holder = this.#inUse(name);
    if (holder !== undefined) throw new VirtualDiskInUseError(name, action, holder);
  }

  /** Record `name` and link the finished temporary image `tmp` into place, both or neither. */
  #install(name: string, tmp: string, bytes: number, parent: Row | null): void {
    const file = `${name}.img`;
    const final = join(this.dir, file);
    let linked = false;
    try {
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        this.#q.insert.run(name, bytes, Date.now(), parent?.name ?? null, parent?.id ?? null, file);
        try {
          linkSync(tmp, final); // unlike rename, never replaces a file that is there
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new VirtualDiskExistsError(name, `an image ${final} with no record is in the way`);
          throw err;
        }
        linked = true;
        this.#db.exec('COMMIT');
      } catch (err) {
        if (linked) rmSync(final, { force: true });
        try { this.#db.exec('ROLLBACK'); } catch { /* a failed COMMIT may have ended it */ }
        throw err;
      }
    } finally {
      rmSync(tmp, { force: true });
    }
    this.#syncDir();
  }

  /** Create an empty (all-zero, sparse) disk. `size` as parseVdSize takes it. */
  create(name: string, size: string | number): Promise<VirtualDiskInfo> {
    return this.#serial(async () => {
      checkVdName(name);
      const bytes = parseVdSize(size, `size of virtual disk "${name}"`);
      if (this.#row(name)) throw new VirtualDiskExistsError(name);
      const tmp = this.#tmp(name);
      try {
        const fd = openSync(tmp, 'wx', 0o600);
        try {
          ftruncateSync(fd, bytes);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        this.#install(name, tmp, bytes, null);
      } catch (err) {
        rmSync(tmp, { force: true });
        throw ioError(name, 'create', err);
      }
      return this.get(name);
    });
  }

  /** Delete a disk and its image (refused while it is in use). Its snapshots stay. */
  delete(name: string): Promise<{ name: string; path: string }> {
    return this.#serial(async () => {
      const row = this.#need(name);
      this.#refuseHeld(name, 'delete');
      const path = this.#path(row);
      try {
        this.#db.exec('BEGIN IMMEDIATE');
        try {
          this.#q.remove.run(name);
          try { unlinkSync(path); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; }
          // Were the COMMIT to fail now, the row would stay with its image gone: listed as missing, and deletable again.
          this.#db.exec('COMMIT');
        } catch (err) {
          try { this.#db.exec('ROLLBACK'); } catch { /* already ended */ }
          throw err;
        }
      } catch (err) {
        throw ioError(name, 'delete', err);
      }
      this.#syncDir();
      return { name, path };
    });
  }

  /**
   * Grow or shrink a disk (refused while it is in use). Shrinking drops the
   * data past the new end, so it needs `force`. Growing adds a hole.
   */
  resize(name: string, size: string | number, opts: { force?: boolean } = {}): Promise<VirtualDiskInfo & { previousBytes: number }> {
    return this.#serial(async () => {
      const row = this.#need(name);
      const bytes = parseVdSize(size, `size of virtual disk "${name}"`);
      this.#refuseHeld(name, 'resize');
      const path = this.#path(row);
      const st = statOrUndefined(path);
      if (!st) throw new VirtualDiskMissingError(name, path);
      const old = st.size;
      if (bytes < old && !opts.force) {
        throw new InvalidArgumentError(`size of virtual disk "${name}"`, `${formatVdSize(bytes)} is smaller than its ${formatVdSize(old)}; shrinking loses the data past ${formatVdSize(bytes)}, so it needs --force`);
      }
      try {
        this.#db.exec('BEGIN IMMEDIATE');
        let cut = false;
        try {
          this.#q.resize.run(bytes, name);
          truncateSync(path, bytes);
          cut = true;
          this.#db.exec('COMMIT');
        } catch (err) {
          if (cut) { try { truncateSync(path, old); } catch { /* reopening reconciles the row with the image */ } }
          try { this.#db.exec('ROLLBACK'); } catch { /* already ended */ }
          throw err;
        }
      } catch (err) {
        throw ioError(name, `resize to ${formatVdSize(bytes)}`, err);
      }
      return { ...this.get(name), previousBytes: old };
    });
  }

  /**
   * Copy `name` into a new disk `newName`, independent of it from then on
   * (refused while `name` is in use, as a copy of a disk being written
   * would be torn). Sparse as the source; a reflink where the host can.
   */
  snapshot(name: string, newName: string): Promise<VirtualDiskInfo> {
    return this.#serial(async () => {
      const row = this.#need(name);
      checkVdName(newName);
      if (this.#row(newName)) throw new VirtualDiskExistsError(newName);
      this.#refuseHeld(name, 'snapshot');
      const src = this.#path(row);
      const st = statOrUndefined(src);
      if (!st) throw new VirtualDiskMissingError(name, src);
      const tmp = this.#tmp(newName);
      try {
        await copySparse(src, tmp, st.size);
        this.#install(newName, tmp, st.size, row);
      } catch (err) {
        rmSync(tmp, { force: true });
        throw ioError(name, `snapshot to "${newName}"`, err);
      }
      return this.get(newName);
    });
  }

  /** Wait for the change in progress, then close the database. Later calls throw. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#queue;
    this.#closed = true;
    this.#db.close();
  }
}
