// A byte FIFO over a fixed block of memory, for socket buffers. Allocated
// once (the stub runtime never frees) and reset when its socket is reused.

/**
 * A FIFO of at most `cap` bytes (a power of two). `head` runs freely
 * modulo 2^32; invariants: len <= cap. Bytes past the end of the data
 * (`writeAt` with an offset) may be filled before they are committed, which
 * is how TCP keeps out-of-order segments.
 */
export class ByteRing {
  readonly base: usize;
  readonly cap: u32;
  private mask: u32;
  private head: u32 = 0;
  /** Bytes of data, from the head. */
  len: u32 = 0;

  constructor(cap: u32) {
    assert(cap >= 16 && (cap & (cap - 1)) == 0, "ByteRing: capacity must be a power of two");
    this.cap = cap;
    this.mask = cap - 1;
    this.base = heap.alloc(<usize>cap);
  }

  /** Room after the data. */
  @inline free(): u32 {
    return this.cap - this.len;
  }

  reset(): void {
    this.head = 0;
    this.len = 0;
  }

  /** Copy `n` bytes from `src` to `offset` bytes past the end of the data; offset + n <= free(). The data length is unchanged. */
  writeAt(offset: u32, src: usize, n: u32): void {
    if (n == 0 || offset > this.free() || n > this.free() - offset) return;
    const at = (this.head + this.len + offset) & this.mask;
    const first = min(n, this.cap - at);
    memory.copy(this.base + at, src, first);
    if (first < n) memory.copy(this.base, src + first, n - first);
  }

  /** Make `n` bytes already written past the end part of the data; n <= free(). */
  commit(n: u32): void {
    this.len += min(n, this.free());
  }

  /** Append `n` bytes (at most free()) from `src`. */
  append(src: usize, n: u32): void {
    n = min(n, this.free());
    this.writeAt(0, src, n);
    this.len += n;
  }

  /** Copy `n` bytes at `offset` from the head to `dst`; offset + n <= len. */
  peek(offset: u32, dst: usize, n: u32): void {
    if (n == 0 || offset > this.len || n > this.len - offset) return;
    const at = (this.head + offset) & this.mask;
    const first = min(n, this.cap - at);
    memory.copy(dst, this.base + at, first);
    if (first < n) memory.copy(dst + first, this.base, n - first);
  }

  /** Drop `n` bytes (at most len) from the head. */
  consume(n: u32): void {
    n = min(n, this.len);
    this.head += n;
    this.len -= n;
  }
}
