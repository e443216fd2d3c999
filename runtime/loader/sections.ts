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

export function summariseSections(bytes: Uint8Array): SectionSummary | undefined {
  let pos = 8;
  let definedMemories = 0;
  let hasStart = false;
  const leb = (): number | undefined => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (pos >= bytes.length || shift > 28) return undefined;
      const b = bytes[pos++]!;
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
    }
  };
  while (pos < bytes.length) {
    const id = bytes[pos++]!;
    const size = leb();
    if (size === undefined || pos + size > bytes.length) return undefined;
    const end = pos + size;
    if (id === 5) {
      const count = leb();
      if (count === undefined) return undefined;
      definedMemories = count;
    } else if (id === 8) {
      hasStart = true;
    }
    pos = end;
  }
  return { definedMemories, hasStart };
}
