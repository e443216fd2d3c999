/**
 * Reads a Wasm binary's section headers: enough to answer questions the JS
 * API cannot (is there a start section, how many memories are defined)
 * before the module is handed to binaryen. Malformed input returns
 * undefined; callers have already validated with WebAssembly.Module.
 */
export interface SectionSummary {
  /** Number of memories the module defines (not imports). */
  readonly definedMemories: number;
  readonly hasStart: boolean;
}



/** Bytes as a BufferSource for the WebAssembly API (copied if they live in shared memory). */
export function bufferSource(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

/** The binary's layer: a core module, a component, or neither. */
export function binaryKind(bytes: Uint8Array): 'core' | 'component' | 'unknown' | 'not-wasm' {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    return 'not-wasm';
  }
  if (bytes[4] === 1 && bytes[5] === 0 && bytes[6] === 0 && bytes[7] === 0) return 'core';
  if (bytes[6] === 1 && bytes[7] === 0) return 'component';
  return 'unknown';
}

/** One top-level section of a module or component binary. */
export interface Section { readonly id: number; readonly body: Uint8Array }

/**
 * The top-level sections of a module or component binary, in order. Stops
 * (returning false) at a malformed header or a section running past the end.
 */
export function* sections(bytes: Uint8Array): Generator<Section, boolean> {
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos++]!;
    const size = readU32(bytes, pos);
    if (!size || size.next + size.value > bytes.length) return false;
    yield { id, body: bytes.subarray(size.next, size.next + size.value) };
    pos = size.next + size.value;
  }
  return true;
}

/** An unsigned LEB128 u32 at `pos`: its value and the position after it. */
export function readU32(bytes: Uint8Array, pos: number): { value: number; next: number } | undefined {
  let result = 0;
  for (let shift = 0; shift <= 28; shift += 7) {
    if (pos >= bytes.length) return undefined;
    const b = bytes[pos++]!;
    result |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return { value: result >>> 0, next: pos };
  }
  return undefined;
}

export function summariseSections(bytes: Uint8Array): SectionSummary | undefined {
  let definedMemories = 0;
  let hasStart = false;
  const it = sections(bytes);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value ? { definedMemories, hasStart } : undefined;
    if (r.value.id === 5) {
      const count = readU32(r.value.body, 0);
      if (!count) return undefined;
      definedMemories = count.value;
    } else if (r.value.id === 8) {
      hasStart = true;
    }
  }
}

/** An active data segment of memory 0 taken out of a binary: where its bytes go. */
export interface DataSegment { readonly offset: number; readonly bytes: Uint8Array }

function writeU32(out: number[], v: number): void {
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
}

/** A signed LEB128 i32 at `pos`. */
function readS32(bytes: Uint8Array, pos: number): { value: number; next: number } | undefined {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= bytes.length || shift > 28) return undefined;
    const b = bytes[pos++]!;
    result |= (b & 0x7f) << shift;
    shift += 7;
    if ((b & 0x80) === 0) {
      if (shift < 32 && (b & 0x40) !== 0) result |= -1 << shift;
      return { value: result, next: pos };
    }
  }
}

/**
 * Take the contents out of every active data segment of memory 0 (offsets
 * `i32.const N`): each becomes an empty passive segment, so instantiating the
 * module writes nothing into its memory, and the segments' bytes are
 * returned for whoever fills a fresh memory. A restored domain's memory
 * already holds what the guest made of its static data; instantiating must
 * not put the original bytes back over it. Segment indices stay as they
 * were. Returns undefined when a segment's offset is not a constant (the
 * module is then left as it is).
 */
export function extractActiveData(bytes: Uint8Array): { bytes: Uint8Array; segments: DataSegment[] } | undefined {
  const segments: DataSegment[] = [];
  let pos = 8;
  let last = 8;
  const chunks: Uint8Array[] = [bytes.subarray(0, 8)];
  while (pos < bytes.length) {
    const start = pos;
    const id = bytes[pos++]!;
    const size = readU32(bytes, pos);
    if (!size || size.next + size.value > bytes.length) return undefined;
    const body = bytes.subarray(size.next, size.next + size.value);
    pos = size.next + size.value;
    if (id !== 11) continue;
    const count = readU32(body, 0);
    if (!count) return undefined;
    const rewritten: number[] = [];
    writeU32(rewritten, count.value);
    let p = count.next;
    for (let i = 0; i < count.value; i++) {
      const flag = readU32(body, p);
      if (!flag) return undefined;
      p = flag.next;
      let active = false;
      let offset = 0;
      if (flag.value === 0 || flag.value === 2) {
        if (flag.value === 2) {
          const mem = readU32(body, p);
          if (!mem || mem.value !== 0) return undefined;
          p = mem.next;
        }
        if (body[p] !== 0x41) return undefined; // i32.const
        const v = readS32(body, p + 1);
        if (!v || body[v.next] !== 0x0b) return undefined;
        offset = v.value >>> 0;
        p = v.next + 1;
        active = true;
      } else if (flag.value !== 1) {
        return undefined;
      }
      const len = readU32(body, p);
      if (!len || len.next + len.value > body.length) return undefined;
      const data = body.subarray(len.next, len.next + len.value);
      p = len.next + len.value;
      if (active) {
        segments.push({ offset, bytes: data.slice() });
        rewritten.push(1, 0);
      } else {
        rewritten.push(1);
        writeU32(rewritten, data.length);
        for (const b of data) rewritten.push(b);
      }
    }
    if (p !== body.length) return undefined;
    chunks.push(bytes.subarray(last, start));
    const header: number[] = [11];
    writeU32(header, rewritten.length);
    chunks.push(Uint8Array.from(header), Uint8Array.from(rewritten));
    last = pos;
  }
  chunks.push(bytes.subarray(last));
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const result = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    result.set(c, o);
    o += c.length;
  }
  return { bytes: result, segments };
}
