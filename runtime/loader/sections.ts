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
