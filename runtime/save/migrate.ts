/**
 * Live migration (`wv migrate DOM HOST`): a domain's memory is copied to
 * another wasmvisor over TCP while it runs, round after round (each round
 * sends the pages that changed since they were last sent); then the domain
 * is stopped where it can be captured, the last changed pages and its state
 * (the sections of a save besides memory) are sent, and the other host
 * restores it. The domain stops only for that last step: the downtime.
 * Until the other host says the domain runs there, the source keeps it: a
 * host that refuses, fails or goes away leaves the domain running where it
 * was.
 *
 * The stream is frames: a type byte, a u32 (big-endian) payload length,
 * the payload. Source to target: HELLO (JSON header + image bytes), PAGES
 * (u32 offset + bytes, runs of 4 KiB pages), STATE (JSON). Target to source:
 * ACCEPT, RESULT (JSON), ERROR (JSON). docs/save-format.md, "Live migration".
 */
import type { Socket } from 'node:net';

export const MIGRATE_PAGE = 4096;
/** The default port a wasmvisor listens on for migrations (Xen's relocation port). */
export const MIGRATE_PORT = 8002;
/** The largest frame either side accepts. */
const MAX_FRAME = 17 << 20;
/** The scan compares memory in blocks of this many bytes first, then the pages of blocks that changed. */
const SCAN_BLOCK = 16 * MIGRATE_PAGE;
/** A run of dirty pages is sent in frames of at most this many bytes. */
const RUN_BYTES = 1 << 20;

export const Frame = { HELLO: 1, PAGES: 2, STATE: 3, ACCEPT: 10, RESULT: 11, ERROR: 12 } as const;

/** What HELLO says of the domain coming. */
export interface MigrateHello {
  protocol: 1;
  wasmvisor: string;
  name: string;
  memoryBytes: number;
  memoryLength: number;
}

/** The end of a migration, as the source reports it. */
export interface MigrateResult {
  domid: number;
  name: string;
  /** From the domain's capture to the target's word that it runs there. */
  downtimeMs: number;
  /** Pre-copy rounds (the first sends every page that is not zero). */
  rounds: number;
  bytesSent: number;
  memoryBytes: number;
  /** Pages sent in the stop-and-copy step. */
  finalPages: number;
}

/** Reads frames off a socket, one at a time. */
export class FrameReader {
  readonly #sock: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #waiter: (() => void) | undefined;
  #ended: Error | undefined;

  constructor(sock: Socket) {
    this.#sock = sock;
    sock.on('data', (chunk: Buffer) => {
      this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
      this.#wake();
    });
    sock.on('error', (err) => { this.#ended ??= err; this.#wake(); });
    sock.on('close', () => { this.#ended ??= new Error('the connection closed'); this.#wake(); });
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** The next frame; throws when the connection ends first or the frame is too large. */
  async next(): Promise<{ type: number; payload: Buffer }> {
    for (;;) {
      if (this.#buf.length >= 5) {
        const len = this.#buf.readUInt32BE(1);
        if (len > MAX_FRAME) throw new Error(`a frame of ${len} bytes is larger than ${MAX_FRAME}`);
        if (this.#buf.length >= 5 + len) {
          const type = this.#buf[0]!;
          const payload = this.#buf.subarray(5, 5 + len);
          this.#buf = this.#buf.subarray(5 + len);
          return { type, payload };
        }
      }
      if (this.#ended) throw this.#ended;
      await new Promise<void>((r) => { this.#waiter = r; });
    }
  }
}

/** Write one frame, waiting while the socket's buffer is full. */
export async function writeFrame(sock: Socket, type: number, ...parts: Uint8Array[]): Promise<void> {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeUInt32BE(len, 1);
  let ok = sock.write(head);
  for (const p of parts) ok = sock.write(p);
  if (!ok && !sock.destroyed) {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        sock.off('drain', onDrain);
        sock.off('close', onClose);
        sock.off('error', onError);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = (): void => done();
      const onClose = (): void => done(new Error('the connection closed'));
      const onError = (err: Error): void => done(err);
      sock.once('drain', onDrain);
      sock.once('close', onClose);
      sock.once('error', onError);
    });
  }
  if (sock.destroyed) throw new Error('the connection closed');
}

export function jsonFrame(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/**
 * Tracks which pages of a memory differ from what was last sent, by keeping
 * a copy of what was sent (Wasm memory has no dirty bits to read).
 */
export class DirtyPages {
  #shadow: Uint8Array;

  constructor(length: number) {
    this.#shadow = new Uint8Array(length);
  }

  /**
   * Runs of pages of `mem` that differ from the copy, as [offset, length]
   * (the copy starts as zeros, so the first scan finds every page that is
   * not zero). A memory that grew is compared as if the new part was zeros.
   */
  scan(mem: Uint8Array): Array<[number, number]> {
    if (mem.length > this.#shadow.length) {
      const grown = new Uint8Array(mem.length);
      grown.set(this.#shadow);
      this.#shadow = grown;
    }
    const runs: Array<[number, number]> = [];
    const a = Buffer.from(mem.buffer, mem.byteOffset, mem.length);
    const b = Buffer.from(this.#shadow.buffer, this.#shadow.byteOffset, this.#shadow.length);
    let start = -1;
    for (let off = 0; off < mem.length; off += MIGRATE_PAGE) {
      // Whole blocks of 16 pages that did not change are passed over with one comparison.
      if (off % SCAN_BLOCK === 0 && off + SCAN_BLOCK <= mem.length && a.compare(b, off, off + SCAN_BLOCK, off, off + SCAN_BLOCK) === 0) {
        if (start >= 0) {
          runs.push([start, off - start]);
          start = -1;
        }
        off += SCAN_BLOCK - MIGRATE_PAGE;
        continue;
      }
      const end = Math.min(off + MIGRATE_PAGE, mem.length);
      if (a.compare(b, off, end, off, end) !== 0) {
        if (start < 0) start = off;
        else if (end - start > RUN_BYTES) {
          runs.push([start, off - start]);
          start = off;
        }
      } else if (start >= 0) {
        runs.push([start, off - start]);
        start = -1;
      }
    }
    if (start >= 0) runs.push([start, mem.length - start]);
    return runs;
  }

  /** Record that `mem[offset, offset + length)` was sent as it is now; returns the bytes sent (a stable copy). */
  take(mem: Uint8Array, offset: number, length: number): Uint8Array {
    const bytes = mem.slice(offset, offset + length);
    this.#shadow.set(bytes, offset);
    return bytes;
  }
}

/** Split "HOST[:PORT]" (IPv6 in brackets); the port defaults to MIGRATE_PORT. */
export function parseHostPort(target: string, what = 'migration target'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d+))?$/.exec(target.trim());
  if (!m) throw new Error(`${what} "${target}" is not HOST or HOST:PORT`);
  const port = m[3] === undefined ? MIGRATE_PORT : Number(m[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${what} "${target}": port ${m[3]} is not in 1-65535`);
  return { host: (m[1] ?? m[2])!, port };
}
