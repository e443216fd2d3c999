/**
 * The save file format: what `wv save` writes and `wv restore` reads.
 *
 * A file is a fixed header, a sequence of typed sections and a trailer
 * (the byte layout, and why, is in docs/save-format.md). Every record has a
 * CRC-32 and the trailer a SHA-256 of the whole file, so any changed byte is
 * found and named. Section content is cut into chunks of at most 1 MiB; in
 * each chunk, all-zero 4 KiB pages are not stored at all (a bitmap says which
 * pages are), and the rest is compressed (zstd level 1 by default).
 *
 * `SaveWriter` streams sections to a temporary file beside the target and
 * renames it into place only once everything is on disk, so a crash or a full
 * disk never leaves a half file under the final name. `SaveReader.open`
 * checks the whole file before giving out any section.
 */
import { randomBytes, createHash, type Hash } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import zlib from 'node:zlib';
import { InvalidArgumentError, WvError } from '../../kernel/errors.ts';
// Used only inside functions: the controller will import this module, and a cycle must not meet an uninitialised binding.
import { VERSION } from '../toolstack/controller.ts';
import { NotASaveFileError, SaveCorruptError, SaveIoError, SaveTruncatedError, SaveVersionError } from './errors.ts';

export { NotASaveFileError, SaveCorruptError, SaveIoError, SaveTruncatedError, SaveVersionError } from './errors.ts';

/** The first 8 bytes of every save file (PNG-style: a high byte, a name, a newline that text transfers mangle). */
export const SAVE_MAGIC: Uint8Array = Uint8Array.from([0x89, 0x57, 0x56, 0x53, 0x41, 0x56, 0x45, 0x0a]); // \x89 W V S A V E \n
/** Format version this code writes. Readers accept the same major and any minor (minors only add optional things). */
export const SAVE_FORMAT_VERSION = { major: 1, minor: 0 } as const;

/**
 * Section kinds with their numeric ids in the file. Ids are explicit and never
 * reused; a new kind gets a new number here and in docs/save-format.md.
 */
export const SECTION_KINDS = {
  domain: 1,
  memory: 2,
  globals: 3,
  evtchn: 4,
  grants: 5,
  timers: 6,
  devices: 7,
  console: 8,
  image: 9,
  stack: 10,
} as const;
/** A section kind this code knows, by name. */
export type SectionKind = keyof typeof SECTION_KINDS;

/** Compression of chunk payloads. Ids as stored in each chunk header. */
export const SAVE_CODECS = { none: 0, deflate: 1, brotli: 2, zstd: 3 } as const;
/** A payload codec by name; the writer falls back to `none` per chunk when compressing does not help. */
export type SaveCodec = keyof typeof SAVE_CODECS;

/** Zero-elision granularity: the guest-visible page size of the page bitmap. */
export const SAVE_PAGE_BYTES = 4096;
/** Content bytes per chunk the writer produces. */
export const SAVE_CHUNK_BYTES = 1 << 20;
/** The largest chunk a reader accepts (bounds the memory a corrupt or hostile file can make us allocate). */
const MAX_CHUNK_RAW = 16 << 20;

const HEADER_BYTES = 64;
const SECTION_HEADER_BYTES = 16;
const CHUNK_HEADER_BYTES = 20;
const SECTION_END_BYTES = 32;
const TRAILER_BYTES = 64;
const LAYOUT_PAGED = 1;
/** Section flag: an older reader that does not know the kind may skip the section. */
const SECTION_OPTIONAL = 1;
/** Header flags: the low 16 bits are informational, the high 16 bits must be understood. */
const FLAG_CHECKPOINT = 1;
const KNOWN_REQUIRED_FLAGS = 0;

const tag = (s: string): number => Buffer.from(s, 'latin1').readUInt32BE(0);
const TAG_SECTION = tag('SECT');
const TAG_CHUNK = tag('CHNK');
const TAG_SECTION_END = tag('SEND');
const TAG_TRAILER = tag('WEND');

const ZERO_PAGE = Buffer.alloc(SAVE_PAGE_BYTES);
const kindNames = new Map<number, SectionKind>(Object.entries(SECTION_KINDS).map(([k, v]) => [v, k as SectionKind]));
const codecNames = new Map<number, SaveCodec>(Object.entries(SAVE_CODECS).map(([k, v]) => [v, k as SaveCodec]));

/** A section kind as the API names it: a known name, or the numeric id of a kind this code does not know. */
function kindLabel(id: number): string {
  return kindNames.get(id) ?? `kind ${id}`;
}

function errnoOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : String((err as Error)?.message ?? err);
}

function bitmapBytes(raw: number): number {
  return Math.ceil(Math.ceil(raw / SAVE_PAGE_BYTES) / 8);
}

// ---------------------------------------------------------------------------
// Compression

type Zcb = (err: Error | null, out: Buffer) => void;
/**
 * zlib's output buffer grows by `chunkSize` (16 KiB by default) and is
 * concatenated at the end; sizing it to the whole chunk made zstd
 * decompression 2-3 times faster here.
 */
const outputSize = (n: number): number => Math.max(64 * 1024, n);

function compress(codec: SaveCodec, level: number | undefined, input: Buffer): Promise<Buffer> {
  const chunkSize = outputSize(input.length);
  return new Promise((resolve, reject) => {
    const done: Zcb = (err, out) => (err ? reject(err) : resolve(out));
    switch (codec) {
      case 'zstd': zlib.zstdCompress(input, { chunkSize, params: { [zlib.constants.ZSTD_c_compressionLevel]: level ?? 1 } }, done); break;
      case 'deflate': zlib.deflateRaw(input, { chunkSize, level: level ?? 1 }, done); break;
      case 'brotli': zlib.brotliCompress(input, { chunkSize, params: { [zlib.constants.BROTLI_PARAM_QUALITY]: level ?? 1 } }, done); break;
      case 'none': resolve(input); break;
    }
  });
}

function decompress(codec: SaveCodec, input: Buffer, expected: number): Promise<Buffer> {
  // maxOutputLength: a payload may never inflate beyond what its bitmap says, so a bomb stops early.
  const max = Math.max(expected, 1);
  const chunkSize = outputSize(expected);
  return new Promise((resolve, reject) => {
    const done: Zcb = (err, out) => (err ? reject(err) : resolve(out));
    switch (codec) {
      case 'zstd': zlib.zstdDecompress(input, { chunkSize, maxOutputLength: max }, done); break;
      case 'deflate': zlib.inflateRaw(input, { chunkSize, maxOutputLength: max }, done); break;
      case 'brotli': zlib.brotliDecompress(input, { chunkSize, maxOutputLength: max }, done); break;
      case 'none': resolve(input); break;
    }
  });
}

// ---------------------------------------------------------------------------
// Writer

/** Options of `SaveWriter.create`. */
export interface SaveWriterOptions {
  /** Payload compression; default `zstd` (see docs/save-format.md for the measurements). */
  codec?: SaveCodec;
  /** Codec level (zstd level, deflate level, brotli quality); default 1, the fast end. */
  level?: number;
  /** Recorded in the header; default now. */
  createdAt?: Date;
  /** The domain kept running after the save (`wv save --checkpoint`). Informational. */
  checkpoint?: boolean;
  /** Recorded in the header; default this wasmvisor's version. For tests of version handling. */
  wasmvisorVersion?: string;
  /** Format version written in the header; default SAVE_FORMAT_VERSION. Only tests change it. */
  formatVersion?: { major: number; minor: number };
  /** File mode of the save (it holds guest memory, which may hold secrets); default 0o600. */
  mode?: number;
  /** Compressions in flight at once (they run on libuv's thread pool); default 4. */
  parallelism?: number;
}

/** Options of `SaveWriter.addSection`. */
export interface AddSectionOptions {
  /** Older readers that do not know this kind skip it instead of rejecting the file. Default: false for known kinds. */
  optional?: boolean;
  /** The number of bytes the iterable will yield; needed for a progress total, checked when given. */
  length?: number;
  /** Called after each chunk reaches the file: bytes of content done, and the total (`length`, or the array's size). Monotone; the last call has done === total. */
  onProgress?: (done: number, total: number | undefined) => void;
}

/** What `commit` returns. */
export interface SaveSummary {
  path: string;
  /** Size of the file. */
  bytes: number;
  /** Content bytes of all sections (what the file would hold uncompressed, zero pages included). */
  rawBytes: number;
  /** SHA-256 of the file up to the trailer, hex: the save's identity. */
  sha256: string;
}

type SectionData = Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** One chunk after its synchronous part (zero-page scan, copy): ready to compress. */
interface PendingChunk {
  raw: number;
  bitmap: Buffer;
  pages: Buffer;
}

/**
 * Writes one save file. Sections are added one at a time (await each
 * `addSection`), then `commit` makes the file appear under its name, or
 * `abort` (also on `await using` disposal without commit) removes every trace.
 * Invariant: until `commit` resolves, the target path is untouched; after any
 * error, the temporary file is gone and the writer refuses further use.
 */
export class SaveWriter {
  /** The final path (absolute). */
  readonly path: string;
  readonly #tmp: string;
  #fh: FileHandle | null;
  #offset = 0;
  readonly #hash: Hash = createHash('sha256');
  #state: 'ready' | 'busy' | 'committed' | 'failed' = 'ready';
  #sections = 0;
  #rawBytes = 0;
  readonly #kinds = new Set<number>();
  readonly #codec: SaveCodec;
  readonly #level: number | undefined;
  /** Chunks in a row that compression did not shrink, and chunks still to store without trying (see #encode). */
  #incompressible = 0;
  #skipCompress = 0;
  readonly #parallelism: number;

  private constructor(path: string, tmp: string, fh: FileHandle, opts: SaveWriterOptions) {
    this.path = path;
    this.#tmp = tmp;
    this.#fh = fh;
    this.#codec = opts.codec ?? 'zstd';
    this.#level = opts.level;
    this.#parallelism = Math.max(1, opts.parallelism ?? 4);
  }

  /** Starts a save to `path`: creates the temporary file beside it and writes the header. */
  static async create(path: string, opts: SaveWriterOptions = {}): Promise<SaveWriter> {
    if (opts.codec !== undefined && !(opts.codec in SAVE_CODECS)) throw new InvalidArgumentError('save codec', `"${opts.codec}" is unknown (use ${Object.keys(SAVE_CODECS).join(', ')})`);
    const abs = resolve(path);
    const tmp = join(dirname(abs), `.${basename(abs)}.tmp-${randomBytes(6).toString('hex')}`);
    const version = Buffer.from(opts.wasmvisorVersion ?? VERSION, 'utf8');
    if (version.length > 32) throw new InvalidArgumentError('wasmvisor version', `"${opts.wasmvisorVersion}" is longer than 32 bytes`);
    let fh: FileHandle;
    try {
      fh = await open(tmp, 'wx', opts.mode ?? 0o600);
    } catch (err) {
      throw new SaveIoError(abs, 'create', errnoOf(err), true);
    }
    const w = new SaveWriter(abs, tmp, fh, opts);
    const h = Buffer.alloc(HEADER_BYTES);
    h.set(SAVE_MAGIC, 0);
    const v = opts.formatVersion ?? SAVE_FORMAT_VERSION;
    h.writeUInt16LE(v.major, 8);
    h.writeUInt16LE(v.minor, 10);
    h.writeUInt32LE(opts.checkpoint ? FLAG_CHECKPOINT : 0, 12);
    h.writeBigUInt64LE(BigInt((opts.createdAt ?? new Date()).getTime()), 16);
    h.writeUInt32LE(HEADER_BYTES, 24);
    version.copy(h, 28);
    h.writeUInt32LE(zlib.crc32(h.subarray(0, 60)), 60);
    await w.#guard(() => w.#write([h]));
    return w;
  }

  /**
   * Appends one section. `data` is the whole content, or an iterable of
   * pieces of any size (guest memory is streamed this way, 1 MiB at a time
   * being the natural piece). A known kind appears at most once per file;
   * a number is the id of a kind this code does not name (future kinds).
   */
  async addSection(kind: SectionKind | number, data: SectionData, opts: AddSectionOptions = {}): Promise<void> {
    const id = typeof kind === 'number' ? kind : SECTION_KINDS[kind];
    if (id === undefined || !Number.isInteger(id) || id < 1 || id > 0xffff) throw new InvalidArgumentError('save section kind', `${String(kind)} is not a kind name or an id in [1, 65535]`);
    this.#enter(`add section ${kindLabel(id)}`);
    if (this.#kinds.has(id)) {
      this.#state = 'ready';
      throw new InvalidArgumentError(`save section ${kindLabel(id)}`, `it was already added to ${this.path}`);
    }
    this.#kinds.add(id);
    const total = data instanceof Uint8Array ? data.byteLength : opts.length;
    await this.#guard(async () => {
      const sh = Buffer.alloc(SECTION_HEADER_BYTES);
      sh.writeUInt32BE(TAG_SECTION, 0);
      sh.writeUInt16LE(id, 4);
      sh.writeUInt16LE(opts.optional ? SECTION_OPTIONAL : 0, 6);
      sh.writeUInt32LE(this.#sections, 8);
      sh.writeUInt32LE(zlib.crc32(sh.subarray(0, 12)), 12);
      await this.#write([sh]);

      let chunks = 0;
      let raw = 0;
      let body = 0;
      let bodyCrc = 0;
      const inFlight: Promise<Buffer[]>[] = [];
      // One write in flight while the next chunk is scanned, compressed and hashed: the CPU work and the I/O overlap.
      let writing: Promise<void> | undefined;
      const drain = async (): Promise<void> => {
        const frame = await inFlight.shift()!;
        // The section's body checksum covers the chunk headers, each of which holds its chunk's CRC over the rest.
        bodyCrc = zlib.crc32(frame[0]!, bodyCrc);
        for (const b of frame) body += b.length;
        const w = this.#write(frame);
        w.catch(() => {}); // awaited below
        if (writing) await writing;
        writing = w;
        const rawLen = frame[0]!.readUInt32LE(4);
        raw += rawLen;
        opts.onProgress?.(raw, total);
      };
      let seen = 0;
      try {
        for await (const piece of rechunk(data)) {
          seen += piece.byteLength;
          // Stop at once on too much data, so progress never passes its total.
          if (total !== undefined && seen > total) throw new InvalidArgumentError(`save section ${kindLabel(id)}`, `the data has more than the ${total} bytes announced`);
          const encoded = this.#encode(scanChunk(piece, data instanceof Uint8Array));
          encoded.catch(() => {}); // awaited in order by drain; this only keeps an early rejection from counting as unhandled
          inFlight.push(encoded);
          chunks++;
          if (inFlight.length >= this.#parallelism) await drain();
        }
        while (inFlight.length > 0) await drain();
        if (writing) await writing;
      } finally {
        inFlight.length = 0;
        await writing?.catch(() => {});
      }
      if (total !== undefined && seen !== total) {
        throw new InvalidArgumentError(`save section ${kindLabel(id)}`, `the data had ${seen} bytes, not the ${total} announced`);
      }
      if (chunks === 0) opts.onProgress?.(0, total);

      const end = Buffer.alloc(SECTION_END_BYTES);
      end.writeUInt32BE(TAG_SECTION_END, 0);
      end.writeUInt32LE(chunks, 4);
      end.writeBigUInt64LE(BigInt(raw), 8);
      end.writeBigUInt64LE(BigInt(body), 16);
      end.writeUInt32LE(bodyCrc >>> 0, 24);
      end.writeUInt32LE(zlib.crc32(end.subarray(0, 28)), 28);
      await this.#write([end]);
      this.#sections++;
      this.#rawBytes += raw;
    });
    this.#state = 'ready';
  }

  /** `addSection` of a JSON document (the `domain` metadata, device lists...). */
  async addJson(kind: SectionKind | number, value: unknown, opts: AddSectionOptions = {}): Promise<void> {
    await this.addSection(kind, Buffer.from(JSON.stringify(value), 'utf8'), opts);
  }

  /**
   * Writes the trailer, makes the file durable (fsync), renames it over the
   * target and fsyncs the directory, so that after a crash the target is
   * either the old file or the complete new one.
   */
  async commit(): Promise<SaveSummary> {
    this.#enter('commit');
    const sha = this.#hash.copy().digest();
    const fileBytes = this.#offset + TRAILER_BYTES;
    await this.#guard(async () => {
      const t = Buffer.alloc(TRAILER_BYTES);
      t.writeUInt32BE(TAG_TRAILER, 0);
      t.writeUInt32LE(this.#sections, 4);
      t.writeBigUInt64LE(BigInt(fileBytes), 8);
      sha.copy(t, 16);
      t.writeUInt32LE(zlib.crc32(t.subarray(0, 60)), 60);
      await this.#write([t], false);
      await this.#step('fsync', () => this.#fh!.sync());
      const fh = this.#fh!;
      this.#fh = null;
      await this.#step('close', () => fh.close());
      await this.#step('rename', () => rename(this.#tmp, this.path));
    });
    this.#state = 'committed';
    // The file is in place; a failing directory fsync only weakens durability across a power cut. Report it all the same.
    let dir: FileHandle | undefined;
    try {
      dir = await open(dirname(this.path), 'r');
      await dir.sync();
    } catch (err) {
      throw new SaveIoError(this.path, 'fsync of the directory', errnoOf(err), false);
    } finally {
      await dir?.close().catch(() => {});
    }
    return { path: this.path, bytes: fileBytes, rawBytes: this.#rawBytes, sha256: sha.toString('hex') };
  }

  /** Gives up: removes the temporary file. The target path is untouched. Safe to call at any time, repeatedly. */
  async abort(): Promise<void> {
    if (this.#state === 'committed') return;
    this.#state = 'failed';
    await this.#cleanup();
  }

  /** `await using`: leaving the block without `commit` aborts. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }

  #enter(what: string): void {
    if (this.#state === 'busy') throw new InvalidArgumentError(`use of the save writer for ${this.path}`, `cannot ${what} while another operation is in progress (await each call)`);
    if (this.#state !== 'ready') throw new InvalidArgumentError(`use of the save writer for ${this.path}`, `cannot ${what}: the writer is ${this.#state === 'committed' ? 'committed' : 'closed after an error or abort'}`);
    this.#state = 'busy';
  }

  /** Runs `fn`; on any failure removes the temporary file, marks the writer failed, and rethrows (fs errors as SaveIoError). */
  async #guard(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.#state = 'failed';
      await this.#cleanup();
      if (err instanceof WvError) throw err;
      if (typeof (err as { code?: unknown })?.code === 'string' && (err as { syscall?: unknown }).syscall !== undefined) {
        throw new SaveIoError(this.path, 'write', errnoOf(err), true);
      }
      throw err;
    }
  }

  async #step(operation: string, fn: () => Promise<void>): Promise<void> {
    try { await fn(); } catch (err) { throw new SaveIoError(this.path, operation, errnoOf(err), true); }
  }

  async #cleanup(): Promise<void> {
    const fh = this.#fh;
    this.#fh = null;
    await fh?.close().catch(() => {});
    await unlink(this.#tmp).catch(() => {});
  }

  /** Compresses a scanned chunk and frames it: header, bitmap, payload. */
  async #encode(c: PendingChunk): Promise<Buffer[]> {
    let payload = c.pages;
    let codec: SaveCodec = 'none';
    // Memory that does not compress (random or already compressed data) is stored as it is without trying
    // every chunk: after 3 chunks in a row that shrank by less than 3%, 15 chunks are stored, then one is tried again.
    if (c.pages.length > 0 && this.#codec !== 'none' && this.#skipCompress > 0) {
      this.#skipCompress--;
    } else if (c.pages.length > 0 && this.#codec !== 'none') {
      const z = await compress(this.#codec, this.#level, c.pages);
      if (z.length < c.pages.length) { payload = z; codec = this.#codec; }
      if (z.length > c.pages.length * 0.97) {
        this.#incompressible++;
        if (this.#incompressible >= 3) this.#skipCompress = 15;
      } else {
        this.#incompressible = 0;
      }
    }
    const h = Buffer.alloc(CHUNK_HEADER_BYTES);
    h.writeUInt32BE(TAG_CHUNK, 0);
    h.writeUInt32LE(c.raw, 4);
    h.writeUInt32LE(c.bitmap.length + payload.length, 8);
    h[12] = LAYOUT_PAGED;
    h[13] = SAVE_CODECS[codec];
    let crc = zlib.crc32(h.subarray(0, 16));
    crc = zlib.crc32(c.bitmap, crc);
    crc = zlib.crc32(payload, crc);
    h.writeUInt32LE(crc >>> 0, 16);
    return [h, c.bitmap, payload];
  }

  /**
   * Write `bufs` at the end of what was written so far. The place and the
   * hash are taken at once, so writes may overlap: the caller keeps them in
   * order of the calls and awaits them all before the trailer.
   */
  async #write(bufs: Buffer[], hashed = true): Promise<void> {
    const fh = this.#fh;
    if (fh === null) throw new InvalidArgumentError(`use of the save writer for ${this.path}`, 'it is closed');
    const total = bufs.reduce((n, b) => n + b.length, 0);
    const at = this.#offset;
    this.#offset += total;
    if (hashed) for (const b of bufs) this.#hash.update(b);
    let done: number;
    try {
      done = (await fh.writev(bufs, at)).bytesWritten;
      // A short write is legal; finish the rest piece by piece.
      if (done < total) {
        const rest = Buffer.concat(bufs).subarray(done);
        let off = 0;
        while (off < rest.length) off += (await fh.write(rest, off, rest.length - off, at + done + off)).bytesWritten;
      }
    } catch (err) {
      throw new SaveIoError(this.path, 'write', errnoOf(err), true);
    }
  }
}

/** Cuts section data into views of at most SAVE_CHUNK_BYTES. A view is valid until the next one is asked for. */
async function* rechunk(data: SectionData): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) {
    for (let o = 0; o < data.byteLength; o += SAVE_CHUNK_BYTES) yield data.subarray(o, Math.min(o + SAVE_CHUNK_BYTES, data.byteLength));
    return;
  }
  const staging = Buffer.allocUnsafe(SAVE_CHUNK_BYTES);
  let fill = 0;
  for await (const piece of data as AsyncIterable<Uint8Array>) {
    if (!(piece instanceof Uint8Array)) throw new InvalidArgumentError('save section data', 'an iterable must yield Uint8Array pieces');
    let o = 0;
    // Whole chunks straight from the piece when nothing is staged: no copy.
    while (fill === 0 && piece.byteLength - o >= SAVE_CHUNK_BYTES) {
      yield piece.subarray(o, o + SAVE_CHUNK_BYTES);
      o += SAVE_CHUNK_BYTES;
    }
    while (o < piece.byteLength) {
      const n = Math.min(SAVE_CHUNK_BYTES - fill, piece.byteLength - o);
      staging.set(piece.subarray(o, o + n), fill);
      fill += n;
      o += n;
      if (fill === SAVE_CHUNK_BYTES) { yield staging; fill = 0; }
    }
  }
  if (fill > 0) yield staging.subarray(0, fill);
}

/** The synchronous part of encoding: find the non-zero pages and copy them out (so the caller may reuse its buffer). */
/**
 * The chunk's zero-page bitmap and its other pages, packed. `stable`: the
 * view stays valid until the chunk is written (the caller's own bytes, not a
 * reused staging buffer), so a chunk without zero pages is not copied.
 */
function scanChunk(view: Uint8Array, stable = false): PendingChunk {
  const raw = view.byteLength;
  const buf = Buffer.from(view.buffer, view.byteOffset, raw);
  const pageCount = Math.ceil(raw / SAVE_PAGE_BYTES);
  const bitmap = Buffer.alloc(bitmapBytes(raw));
  let keep = 0;
  for (let p = 0; p < pageCount; p++) {
    const start = p * SAVE_PAGE_BYTES;
    const end = Math.min(start + SAVE_PAGE_BYTES, raw);
    if (!buf.subarray(start, end).equals(end - start === SAVE_PAGE_BYTES ? ZERO_PAGE : ZERO_PAGE.subarray(0, end - start))) {
      bitmap[p >> 3]! |= 1 << (p & 7);
      keep += end - start;
    }
  }
  if (keep === raw && stable) return { raw, bitmap, pages: buf };
  const pages = Buffer.allocUnsafe(keep);
  let o = 0;
  for (let p = 0; p < pageCount; p++) {
    if ((bitmap[p >> 3]! & (1 << (p & 7))) === 0) continue;
    const start = p * SAVE_PAGE_BYTES;
    const end = Math.min(start + SAVE_PAGE_BYTES, raw);
    buf.copy(pages, o, start, end);
    o += end - start;
  }
  return { raw, bitmap, pages };
}

// ---------------------------------------------------------------------------
// Reader

/** The file header, decoded. */
export interface SaveHeader {
  formatVersion: { major: number; minor: number };
  /** The wasmvisor that wrote the file. */
  wasmvisorVersion: string;
  createdAt: Date;
  /** The domain kept running after this save. */
  checkpoint: boolean;
  /** All header flags as stored. */
  flags: number;
}

/** One section of an opened file. */
export interface SaveSectionInfo {
  /** The kind's name, or `kind N` for a kind this code does not know. */
  kind: string;
  id: number;
  optional: boolean;
  /** Position in the file, from 0. */
  index: number;
  /** Offset of the section header in the file. */
  offset: number;
  /** Content bytes (what `read` returns). */
  rawLength: number;
  /** Bytes the section takes in the file, headers included. */
  storedLength: number;
  chunkCount: number;
}

interface ChunkRef {
  offset: number;
  header: Buffer;
  raw: number;
  stored: number;
  codec: SaveCodec;
  crc: number;
}

/** Sequential reads over a file with a read-ahead buffer, hashing what it consumes. */
class Cursor {
  pos = 0;
  #buf = Buffer.alloc(0);
  #bufStart = 0;
  readonly fh: FileHandle;
  readonly size: number;
  readonly hash: Hash = createHash('sha256');
  constructor(fh: FileHandle, size: number) {
    this.fh = fh;
    this.size = size;
  }

  /** Bytes available from pos up to `limit` (the file end, or the trailer when it is known). */
  left(limit: number): number {
    return limit - this.pos;
  }

  /** A view of the next n bytes, without consuming them. The caller checked they exist. */
  async peek(n: number): Promise<Buffer> {
    const endInBuf = this.#bufStart + this.#buf.length;
    if (this.pos < this.#bufStart || this.pos + n > endInBuf) {
      const want = Math.min(Math.max(n, 4 << 20), this.size - this.pos);
      const b = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const r = (await this.fh.read(b, got, want - got, this.pos + got)).bytesRead;
        if (r === 0) break;
        got += r;
      }
      this.#buf = b.subarray(0, got);
      this.#bufStart = this.pos;
      if (got < n) throw Object.assign(new Error('the file shrank while it was read'), { code: 'ESHRANK' });
    }
    return this.#buf.subarray(this.pos - this.#bufStart, this.pos - this.#bufStart + n);
  }

  /** Moves past n bytes without reading or hashing them (a quick open). */
  skip(n: number): void {
    this.pos += n;
  }

  /** Consumes n bytes (hashing them) and returns them. */
  async take(n: number): Promise<Buffer> {
    const b = await this.peek(n);
    this.hash.update(b);
    this.pos += n;
    return b;
  }
}

/**
 * An opened save file. `open` checks everything (magic, version, every
 * checksum, the whole-file hash, truncation) before returning, so a restore
 * that starts never meets a bad file halfway; streaming re-checks each chunk's
 * CRC in case the file changes under it.
 */
export class SaveReader {
  readonly path: string;
  readonly header: SaveHeader;
  /** The sections this code knows, in file order (unknown optional ones are in `skipped`). */
  readonly sections: readonly SaveSectionInfo[];
  /** Sections of kinds unknown here, marked optional by their writer: ignored. */
  readonly skipped: readonly SaveSectionInfo[];
  readonly fileLength: number;
  /** SHA-256 of the file up to the trailer, hex (as `SaveSummary.sha256`); after a quick open, as the trailer records it (not checked). */
  readonly sha256: string;
  #fh: FileHandle | null;
  readonly #chunks: Map<number, ChunkRef[]>;
  /** Opened quickly: chunk contents were not checked at open. */
  #quick = false;

  private constructor(path: string, fh: FileHandle, header: SaveHeader, sections: SaveSectionInfo[], skipped: SaveSectionInfo[], fileLength: number, sha256: string, chunks: Map<number, ChunkRef[]>) {
    this.path = path;
    this.#fh = fh;
    this.header = header;
    this.sections = sections;
    this.skipped = skipped;
    this.fileLength = fileLength;
    this.sha256 = sha256;
    this.#chunks = chunks;
  }

  /**
   * Opens and validates a save file. Throws NotASaveFileError,
   * SaveVersionError, SaveTruncatedError, SaveCorruptError or SaveIoError.
   * By default every byte is checked (each record's CRC-32, each section's
   * body checksum, the whole-file SHA-256). With `quick`, only the records'
   * headers are read and checked (their structure, lengths and checksums)
   * and chunk contents are skipped: each chunk's CRC-32 is then checked as
   * it is read (`readInto`, `read`), and the file's SHA-256 not at all. A
   * restore opens quickly: it reads the file once, and it creates the domain
   * only after every chunk has been read and checked.
   */
  static async open(path: string, opts: { quick?: boolean } = {}): Promise<SaveReader> {
    const abs = resolve(path);
    let fh: FileHandle;
    let size: number;
    try {
      fh = await open(abs, 'r');
      size = (await fh.stat()).size;
    } catch (err) {
      throw new SaveIoError(abs, 'open', errnoOf(err), false);
    }
    try {
      const r = await scan(abs, fh, size, opts.quick ?? false);
      const reader = new SaveReader(abs, fh, r.header, r.sections, r.skipped, size, r.sha256, r.chunks);
      reader.#quick = opts.quick ?? false;
      return reader;
    } catch (err) {
      await fh.close().catch(() => {});
      if (err instanceof WvError) throw err;
      throw new SaveIoError(abs, 'read', errnoOf(err), false);
    }
  }

  /** The section of that kind, or undefined. */
  section(kind: SectionKind | number): SaveSectionInfo | undefined {
    const id = typeof kind === 'number' ? kind : SECTION_KINDS[kind];
    return this.sections.find((s) => s.id === id);
  }

  /**
   * The content of a section as pieces of at most 1 MiB, in order (memory is
   * read this way). Each piece is a fresh buffer the caller may keep.
   */
  async *stream(kind: SectionKind | number): AsyncGenerator<Buffer> {
    const info = this.#need(kind);
    const refs = this.#chunks.get(info.index)!;
    const ahead: Promise<Buffer>[] = [];
    let next = 0;
    const fill = (): void => {
      while (ahead.length < 4 && next < refs.length) {
        const p = this.#decode(info, refs[next]!, next++);
        p.catch(() => {}); // awaited in order below; this only keeps an early rejection from counting as unhandled
        ahead.push(p);
      }
    };
    // Errors of read-ahead chunks surface in order; silence the rest if we stop early.
    try {
      fill();
      while (ahead.length > 0) {
        const b = await ahead.shift()!;
        fill();
        yield b;
      }
    } finally {
      ahead.length = 0;
    }
  }

  /**
   * Decodes a section straight into `target` (a restored guest's memory),
   * without an intermediate buffer per chunk. `zeroed`: the target is known to
   * be all zero (a fresh memory), so zero pages are skipped instead of written.
   * `onProgress(done, total)` follows each chunk, as on the writer. Returns the
   * number of bytes written (the section's raw length).
   */
  async readInto(kind: SectionKind | number, target: Uint8Array, opts: { zeroed?: boolean; onProgress?: (done: number, total: number) => void } = {}): Promise<number> {
    const info = this.#need(kind);
    if (target.byteLength < info.rawLength) throw new InvalidArgumentError('restore target', `section ${info.kind} holds ${info.rawLength} bytes, the target has room for ${target.byteLength}`);
    const refs = this.#chunks.get(info.index)!;
    const starts: number[] = [];
    let base = 0;
    for (const r of refs) { starts.push(base); base += r.raw; }
    const ahead: Promise<number>[] = [];
    let next = 0;
    const fill = (): void => {
      while (ahead.length < 4 && next < refs.length) {
        const i = next++;
        const ref = refs[i]!;
        const p = this.#decode(info, ref, i, { target: target.subarray(starts[i]!, starts[i]! + ref.raw), zeroed: opts.zeroed ?? false }).then(() => ref.raw);
        p.catch(() => {}); // awaited in order below
        ahead.push(p);
      }
    };
    let done = 0;
    try {
      fill();
      while (ahead.length > 0) {
        done += await ahead.shift()!;
        opts.onProgress?.(done, info.rawLength);
        fill();
      }
    } finally {
      ahead.length = 0;
    }
    return done;
  }

  /** The whole content of a section in one buffer. */
  async read(kind: SectionKind | number): Promise<Buffer> {
    const info = this.#need(kind);
    const out = Buffer.allocUnsafe(info.rawLength);
    let o = 0;
    for await (const b of this.stream(kind)) { b.copy(out, o); o += b.length; }
    return out;
  }

  /** A section written with `addJson`, parsed. */
  async readJson(kind: SectionKind | number): Promise<unknown> {
    const info = this.#need(kind);
    const text = (await this.read(kind)).toString('utf8');
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new SaveCorruptError(this.path, `section ${info.kind}`, info.offset, `its content is not JSON (${(err as Error).message})`);
    }
  }

  /** Closes the file; later reads fail with InvalidArgumentError. Safe to call twice. */
  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = null;
    await fh?.close();
  }

  /** `await using`: closes the file. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #need(kind: SectionKind | number): SaveSectionInfo {
    const info = this.section(kind);
    if (info === undefined) throw new InvalidArgumentError('save section', `${this.path} has no ${typeof kind === 'number' ? kindLabel(kind) : kind} section`);
    if (this.#fh === null) throw new InvalidArgumentError(`use of save file ${this.path}`, 'the reader is closed');
    return info;
  }

  async #decode(info: SaveSectionInfo, ref: ChunkRef, n: number, into?: DecodeTarget): Promise<Buffer> {
    const fh = this.#fh;
    if (fh === null) throw new InvalidArgumentError(`use of save file ${this.path}`, 'the reader is closed');
    const bm = bitmapBytes(ref.raw);
    if (into !== undefined && ref.codec === 'none' && ref.stored === bm + ref.raw) {
      // Every page stored as it is: read them straight into the target (it is not in use yet), then check.
      const bitmap = Buffer.allocUnsafe(bm);
      const target = into.target.subarray(0, ref.raw);
      const want = ref.stored;
      let got = 0;
      try {
        got = (await fh.readv([bitmap, target], ref.offset + CHUNK_HEADER_BYTES)).bytesRead;
        while (got < want) {
          const intoBitmap = got < bm;
          const r = intoBitmap
            ? (await fh.read(bitmap, got, bm - got, ref.offset + CHUNK_HEADER_BYTES + got)).bytesRead
            : (await fh.read(target, got - bm, want - got, ref.offset + CHUNK_HEADER_BYTES + got)).bytesRead;
          if (r === 0) break;
          got += r;
        }
      } catch (err) {
        throw new SaveIoError(this.path, 'read', errnoOf(err), false);
      }
      if (got < want) throw new SaveTruncatedError(this.path, ref.offset + CHUNK_HEADER_BYTES + got, `inside chunk ${n} of section ${info.kind}: the file was cut after it was opened`);
      if ((zlib.crc32(target, zlib.crc32(bitmap, zlib.crc32(ref.header))) >>> 0) !== ref.crc) throw new SaveCorruptError(this.path, `section ${info.kind}`, ref.offset, `chunk ${n} fails its checksum${this.#quick ? '' : ' (the file changed after it was opened)'}`);
      return bitmap;
    }
    const body = Buffer.allocUnsafe(ref.stored);
    let got = 0;
    try {
      while (got < ref.stored) {
        const r = (await fh.read(body, got, ref.stored - got, ref.offset + CHUNK_HEADER_BYTES + got)).bytesRead;
        if (r === 0) break;
        got += r;
      }
    } catch (err) {
      throw new SaveIoError(this.path, 'read', errnoOf(err), false);
    }
    const where = `section ${info.kind}`;
    if (got < ref.stored) throw new SaveTruncatedError(this.path, ref.offset + CHUNK_HEADER_BYTES + got, `inside chunk ${n} of section ${info.kind}: the file was cut after it was opened`);
    if ((zlib.crc32(body, zlib.crc32(ref.header)) >>> 0) !== ref.crc) throw new SaveCorruptError(this.path, where, ref.offset, `chunk ${n} fails its checksum${this.#quick ? '' : ' (the file changed after it was opened)'}`);
    return decodeChunk(this.path, where, ref, body, n, into);
  }
}

/** Where `readInto` wants a chunk: its slice of the target, and whether that is already zero. */
interface DecodeTarget {
  target: Uint8Array;
  zeroed: boolean;
}

/** Expands one verified chunk: zero pages from the bitmap, the rest from the (decompressed) payload. Into `into` when given (then the result is the payload, not the chunk). */
async function decodeChunk(path: string, where: string, ref: ChunkRef, body: Buffer, n: number, into?: DecodeTarget): Promise<Buffer> {
  const bm = bitmapBytes(ref.raw);
  const bitmap = body.subarray(0, bm);
  const pageCount = Math.ceil(ref.raw / SAVE_PAGE_BYTES);
  let expected = 0;
  for (let p = 0; p < pageCount; p++) {
    if (bitmap[p >> 3]! & (1 << (p & 7))) expected += Math.min(SAVE_PAGE_BYTES, ref.raw - p * SAVE_PAGE_BYTES);
  }
  let payload: Buffer;
  try {
    payload = await decompress(ref.codec, body.subarray(bm), expected);
  } catch (err) {
    throw new SaveCorruptError(path, where, ref.offset, `chunk ${n} does not decompress (${ref.codec}: ${(err as Error).message})`);
  }
  if (payload.length !== expected) throw new SaveCorruptError(path, where, ref.offset, `chunk ${n} holds ${payload.length} bytes of pages, its bitmap says ${expected}`);
  if (into !== undefined) {
    if (expected === ref.raw) { into.target.set(payload); return payload; }
    if (!into.zeroed) into.target.fill(0);
    let o = 0;
    for (let p = 0; p < pageCount; p++) {
      if ((bitmap[p >> 3]! & (1 << (p & 7))) === 0) continue;
      const len = Math.min(SAVE_PAGE_BYTES, ref.raw - p * SAVE_PAGE_BYTES);
      into.target.set(payload.subarray(o, o + len), p * SAVE_PAGE_BYTES);
      o += len;
    }
    return payload;
  }
  if (expected === ref.raw) return ref.codec === 'none' ? Buffer.from(payload) : payload;
  const out = Buffer.alloc(ref.raw);
  let o = 0;
  for (let p = 0; p < pageCount; p++) {
    if ((bitmap[p >> 3]! & (1 << (p & 7))) === 0) continue;
    const len = Math.min(SAVE_PAGE_BYTES, ref.raw - p * SAVE_PAGE_BYTES);
    payload.copy(out, p * SAVE_PAGE_BYTES, o, o + len);
    o += len;
  }
  return out;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex').replace(/(..)(?=.)/g, '$1 ');
}

interface ScanResult {
  header: SaveHeader;
  sections: SaveSectionInfo[];
  skipped: SaveSectionInfo[];
  chunks: Map<number, ChunkRef[]>;
  sha256: string;
}

/** Reads the trailer at the end if there is a well-formed one: then the file is whole, and an overrun inside it is corruption, not truncation. */
async function probeTrailer(fh: FileHandle, size: number): Promise<boolean> {
  if (size < HEADER_BYTES + TRAILER_BYTES) return false;
  const t = Buffer.alloc(TRAILER_BYTES);
  const { bytesRead } = await fh.read(t, 0, TRAILER_BYTES, size - TRAILER_BYTES);
  return bytesRead === TRAILER_BYTES && t.readUInt32BE(0) === TAG_TRAILER
    && (zlib.crc32(t.subarray(0, 60)) >>> 0) === t.readUInt32LE(60) && Number(t.readBigUInt64LE(8)) === size;
}

async function scan(path: string, fh: FileHandle, size: number, quick = false): Promise<ScanResult> {
  if (size === 0) throw new NotASaveFileError(path, 'the file is empty');
  const cur = new Cursor(fh, size);
  const first = await cur.peek(Math.min(size, HEADER_BYTES));
  const m = first.subarray(0, Math.min(first.length, SAVE_MAGIC.length));
  if (!m.equals(SAVE_MAGIC.subarray(0, m.length))) {
    throw new NotASaveFileError(path, `it starts with ${hex(m)}, not the save file magic ${hex(SAVE_MAGIC)} ("\\x89WVSAVE\\n")`);
  }
  if (size < HEADER_BYTES) throw new SaveTruncatedError(path, size, `inside the ${HEADER_BYTES}-byte file header`);
  const h = await cur.take(HEADER_BYTES);
  // Bytes [0, 60) keep this layout in every format version, so a newer file can still be named.
  const major = h.readUInt16LE(8);
  const minor = h.readUInt16LE(10);
  const writer = h.subarray(28, 60).toString('utf8').replace(/\0+$/, '');
  if (major !== SAVE_FORMAT_VERSION.major) {
    throw new SaveVersionError(path, `it is save format ${major}.${minor} (written by wasmvisor ${writer || 'of unknown version'}); this wasmvisor ${VERSION} reads save format ${SAVE_FORMAT_VERSION.major}.x (it writes ${SAVE_FORMAT_VERSION.major}.${SAVE_FORMAT_VERSION.minor})`);
  }
  if ((zlib.crc32(h.subarray(0, 60)) >>> 0) !== h.readUInt32LE(60)) throw new SaveCorruptError(path, 'header', 0, 'the file header fails its checksum');
  const flags = h.readUInt32LE(12);
  const unknownRequired = (flags >>> 16) & ~KNOWN_REQUIRED_FLAGS;
  if (unknownRequired !== 0) {
    throw new SaveVersionError(path, `it requires features (header flags 0x${(unknownRequired << 16 >>> 0).toString(16)}) unknown to this wasmvisor ${VERSION} (format ${SAVE_FORMAT_VERSION.major}.${SAVE_FORMAT_VERSION.minor}); it is format ${major}.${minor} from wasmvisor ${writer}`);
  }
  const headerLength = h.readUInt32LE(24);
  if (headerLength < HEADER_BYTES || headerLength > 1 << 16) throw new SaveCorruptError(path, 'header', 24, `header length ${headerLength} is impossible`);
  const header: SaveHeader = {
    formatVersion: { major, minor },
    wasmvisorVersion: writer,
    createdAt: new Date(Number(h.readBigUInt64LE(16))),
    checkpoint: (flags & FLAG_CHECKPOINT) !== 0,
    flags,
  };

  const whole = await probeTrailer(fh, size);
  // Content ends where the trailer starts when there is one; otherwise at the file end (and running out is truncation).
  const limit = whole ? size - TRAILER_BYTES : size;
  let context = 'after the file header';
  const need = async (n: number, section: string, offset: number): Promise<void> => {
    if (cur.left(limit) >= n) return;
    if (whole) throw new SaveCorruptError(path, section, offset, `a record claims ${n} bytes but only ${cur.left(limit)} remain before the trailer`);
    throw new SaveTruncatedError(path, size, context);
  };
  if (headerLength > HEADER_BYTES) { context = 'inside the file header'; await need(headerLength - HEADER_BYTES, 'header', HEADER_BYTES); await cur.take(headerLength - HEADER_BYTES); }

  const sections: SaveSectionInfo[] = [];
  const skipped: SaveSectionInfo[] = [];
  const chunks = new Map<number, ChunkRef[]>();
  const ids = new Set<number>();
  let lastName = 'the file header';
  for (;;) {
    const at = cur.pos;
    context = `after ${lastName}, where a section or the trailer should start (the trailer is missing)`;
    if (!whole && cur.left(size) < 4) throw new SaveTruncatedError(path, size, context);
    if (whole && at === limit) break;
    await need(4, `the record after ${lastName}`, at);
    const t = (await cur.peek(4)).readUInt32BE(0);
    if (t === TAG_TRAILER && !whole) {
      // A trailer is here but it did not check out at the file's end: cut short, or damaged.
      if (cur.left(size) < TRAILER_BYTES) throw new SaveTruncatedError(path, size, 'inside the trailer');
      throw new SaveCorruptError(path, 'trailer', at, cur.left(size) > TRAILER_BYTES ? `${cur.left(size) - TRAILER_BYTES} stray bytes follow the trailer` : 'the trailer fails its checksum or records another file length');
    }
    if (t !== TAG_SECTION) throw new SaveCorruptError(path, `the record after ${lastName}`, at, `expected a section header, found ${hex(await cur.peek(4))}`);

    const index = sections.length + skipped.length;
    context = `inside the header of section ${index}`;
    await need(SECTION_HEADER_BYTES, `section ${index}`, at);
    const sh = await cur.take(SECTION_HEADER_BYTES);
    if ((zlib.crc32(sh.subarray(0, 12)) >>> 0) !== sh.readUInt32LE(12)) {
      throw new SaveCorruptError(path, `section ${index} (${kindLabel(sh.readUInt16LE(4))}?)`, at, 'the section header fails its checksum');
    }
    const id = sh.readUInt16LE(4);
    const sflags = sh.readUInt16LE(6);
    const name = kindLabel(id);
    const where = `section ${name}`;
    if (sh.readUInt32LE(8) !== index) throw new SaveCorruptError(path, where, at, `section numbered ${sh.readUInt32LE(8)} found where section ${index} belongs`);
    if ((sflags & ~SECTION_OPTIONAL) !== 0) throw new SaveVersionError(path, `${where} uses section flags 0x${sflags.toString(16)} unknown to this wasmvisor ${VERSION}; the file is format ${major}.${minor} from wasmvisor ${writer}`);
    const known = kindNames.has(id);
    const optional = (sflags & SECTION_OPTIONAL) !== 0;
    if (!known && !optional) throw new SaveVersionError(path, `section ${index} is of kind ${id}, unknown to this wasmvisor ${VERSION} and required (not marked optional); the file is format ${major}.${minor} from wasmvisor ${writer}`);
    if (known && ids.has(id)) throw new SaveCorruptError(path, where, at, `a second ${name} section`);
    ids.add(id);

    const refs: ChunkRef[] = [];
    let raw = 0;
    let bodyCrc = 0;
    const bodyStart = cur.pos;
    for (;;) {
      const co = cur.pos;
      context = `inside section ${name} (section ${index}, from byte ${at}), at chunk ${refs.length}`;
      await need(4, where, co);
      const ct = (await cur.peek(4)).readUInt32BE(0);
      if (ct === TAG_SECTION_END) break;
      if (ct !== TAG_CHUNK) throw new SaveCorruptError(path, where, co, `expected chunk ${refs.length} or the section end, found ${hex(await cur.peek(4))}`);
      await need(CHUNK_HEADER_BYTES, where, co);
      const ch = Buffer.from(await cur.take(CHUNK_HEADER_BYTES));
      bodyCrc = zlib.crc32(ch, bodyCrc);
      const rawLen = ch.readUInt32LE(4);
      const stored = ch.readUInt32LE(8);
      const maxStored = bitmapBytes(rawLen) + rawLen;
      if (rawLen === 0 || rawLen > MAX_CHUNK_RAW || stored < bitmapBytes(rawLen) || stored > maxStored) {
        throw new SaveCorruptError(path, where, co, `chunk ${refs.length} has impossible lengths (${rawLen} bytes stored in ${stored})`);
      }
      await need(stored, where, co);
      const codec = codecNames.get(ch[13]!);
      const known = ch[12] === LAYOUT_PAGED && codec !== undefined && ch.readUInt16LE(14) === 0;
      let crc = ch.readUInt32LE(16);
      if (quick) {
        // The chunk's checksum (which covers these header bytes) is checked when it is read; a header this code
        // cannot decode is damage here, since a file using new layouts or codecs says so in its header flags.
        if (!known) throw new SaveCorruptError(path, where, co, `chunk ${refs.length} has layout ${ch[12]} / codec ${ch[13]}, which the file's version does not have (the header is damaged)`);
        cur.skip(stored);
      } else {
        const body = await cur.take(stored);
        crc = zlib.crc32(body, zlib.crc32(ch.subarray(0, 16))) >>> 0;
        if (crc !== ch.readUInt32LE(16)) throw new SaveCorruptError(path, where, co, `chunk ${refs.length} fails its checksum`);
        if (!known) {
          throw new SaveVersionError(path, `${where} chunk ${refs.length} uses layout ${ch[12]} / codec ${ch[13]}, unknown to this wasmvisor ${VERSION}; the file is format ${major}.${minor} from wasmvisor ${writer}`);
        }
        const pageCount = Math.ceil(rawLen / SAVE_PAGE_BYTES);
        const lastByte = body[bitmapBytes(rawLen) - 1]!;
        if (pageCount % 8 !== 0 && (lastByte >> (pageCount % 8)) !== 0) throw new SaveCorruptError(path, where, co, `chunk ${refs.length} marks pages beyond its end`);
      }
      refs.push({ offset: co, header: ch.subarray(0, 16), raw: rawLen, stored, codec: codec!, crc });
      raw += rawLen;
    }
    const eo = cur.pos;
    const bodyLength = eo - bodyStart;
    context = `inside the end record of section ${name} (section ${index}, from byte ${at})`;
    await need(SECTION_END_BYTES, where, eo);
    const end = await cur.take(SECTION_END_BYTES);
    if ((zlib.crc32(end.subarray(0, 28)) >>> 0) !== end.readUInt32LE(28)) throw new SaveCorruptError(path, where, eo, 'the section end record fails its checksum');
    if (end.readUInt32LE(4) !== refs.length || Number(end.readBigUInt64LE(8)) !== raw || Number(end.readBigUInt64LE(16)) !== bodyLength || end.readUInt32LE(24) !== (bodyCrc >>> 0)) {
      throw new SaveCorruptError(path, where, eo, `the section end says ${end.readUInt32LE(4)} chunks, ${end.readBigUInt64LE(8)} bytes, body ${end.readBigUInt64LE(16)} bytes; found ${refs.length}, ${raw}, ${bodyLength}, or the body checksum differs`);
    }
    const info: SaveSectionInfo = { kind: name, id, optional, index, offset: at, rawLength: raw, storedLength: cur.pos - at, chunkCount: refs.length };
    (known ? sections : skipped).push(info);
    chunks.set(index, refs);
    lastName = `section ${name}`;
  }

  const t = Buffer.alloc(TRAILER_BYTES);
  await fh.read(t, 0, TRAILER_BYTES, limit);
  const sha = quick ? t.subarray(16, 48) : cur.hash.digest();
  const count = t.readUInt32LE(4);
  if (count !== sections.length + skipped.length) throw new SaveCorruptError(path, 'trailer', limit, `the trailer counts ${count} sections, the file has ${sections.length + skipped.length}`);
  if (!sha.equals(t.subarray(16, 48))) throw new SaveCorruptError(path, 'trailer', limit, 'the whole-file SHA-256 differs from the one in the trailer');
  if (t.subarray(48, 60).some((b) => b !== 0)) throw new SaveCorruptError(path, 'trailer', limit, 'reserved trailer bytes are not zero');
  return { header, sections, skipped, chunks, sha256: sha.toString('hex') };
}
