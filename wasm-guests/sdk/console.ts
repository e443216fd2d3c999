import { console_read, console_write, sched_yield, EAGAIN } from "./abi";

/** Write raw bytes to the domain's console; returns bytes written or a negative errno. */
export function writeBytes(ptr: usize, len: u32): i32 {
  return console_write(ptr, len);
}

/** Write all bytes, yielding while the console is full (-EAGAIN). Returns 0 or a negative errno. */
export function writeAll(ptr: usize, len: u32): i32 {
  let r = console_write(ptr, len);
  while (r == -EAGAIN) {
    sched_yield();
    r = console_write(ptr, len);
  }
  return r < 0 ? r : 0;
}

/** Print a string (UTF-8) without a newline. */
export function print(s: string): void {
  const buf = String.UTF8.encode(s);
  writeAll(changetype<usize>(buf), <u32>buf.byteLength);
}

/** Print a string and a newline. */
export function println(s: string): void {
  print(s + "\n");
}

/**
 * Move up to `cap` bytes of console input (what `wv console` types) to
 * `ptr`; returns the count, 0 when there is none (bind VIRQ_CONSOLE and
 * block to wait for more), or a negative errno.
 */
export function readBytes(ptr: usize, cap: u32): i32 {
  return console_read(ptr, cap);
}
