/**
 * WIT block comments nest (`/* a /* b *\/ c *\/`). Both readers of the
 * hypercall WIT (scripts/gen-abi.ts and the ABI test) skip them with this.
 */

/**
 * Skip the block comment that starts at `start` (which must be at `/*`).
 * Returns the index just after it and how many line breaks it held, or
 * undefined when it never ends.
 */
export function skipBlockComment(src: string, start: number): { end: number; newlines: number } | undefined {
  let i = start;
  let depth = 0;
  let newlines = 0;
  do {
    if (src.startsWith('/*', i)) {
      depth++;
      i += 2;
    } else if (src.startsWith('*/', i)) {
      depth--;
      i += 2;
    } else {
      if (src[i] === '\n') newlines++;
      i++;
    }
  } while (depth > 0 && i < src.length);
  return depth > 0 ? undefined : { end: i, newlines };
}
