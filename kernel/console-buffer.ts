/**
 * A domain's console: a bounded byte ring that keeps the most recent output
 * (so `wv console` can show history) and counts everything ever written.
 */
export class ConsoleBuffer {
  readonly capacity: number;
  #buf: Uint8Array;
  #start = 0;
  #length = 0;
  /** Bytes ever written, including those that have scrolled out. */
  totalBytes = 0;

  constructor(capacity = 64 * 1024) {
    this.capacity = capacity;
    this.#buf = new Uint8Array(capacity);
  }

  append(bytes: Uint8Array): void {
    this.totalBytes += bytes.length;
    let src = bytes;
    if (src.length >= this.capacity) {
      src = src.subarray(src.length - this.capacity);
      this.#buf.set(src);
      this.#start = 0;
      this.#length = this.capacity;
      return;
    }
    const end = (this.#start + this.#length) % this.capacity;
    const first = Math.min(src.length, this.capacity - end);
    this.#buf.set(src.subarray(0, first), end);
    this.#buf.set(src.subarray(first), 0);
    this.#length += src.length;
    if (this.#length > this.capacity) {
      this.#start = (this.#start + this.#length - this.capacity) % this.capacity;
      this.#length = this.capacity;
    }
  }

  /** The retained bytes, oldest first. */
  contents(): Uint8Array {
    const out = new Uint8Array(this.#length);
    const first = Math.min(this.#length, this.capacity - this.#start);
    out.set(this.#buf.subarray(this.#start, this.#start + first));
    out.set(this.#buf.subarray(0, this.#length - first), first);
    return out;
  }

  text(): string {
    return new TextDecoder().decode(this.contents());
  }
}
