/** A small seeded PRNG (mulberry32) so fuzz runs are deterministic and replayable. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random i32 biased towards edge values. */
export function edgyI32(rand: () => number): number {
  const edges = [0, 1, -1, 0x7fffffff, -0x80000000, 4095, 4096, 65535, 65536, 0xfffffff0 | 0];
  return rand() < 0.4 ? edges[Math.floor(rand() * edges.length)]! : (Math.floor(rand() * 2 ** 32) | 0);
}
