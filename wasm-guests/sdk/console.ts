import { console_write } from "./abi";

/** Write raw bytes to the domain's console; returns bytes written or a negative errno. */
export function writeBytes(ptr: usize, len: u32): i32 {
  return console_write(ptr, len);
}

/** Print a string (UTF-8) without a newline. */
export function print(s: string): void {
  const buf = String.UTF8.encode(s);
  console_write(changetype<usize>(buf), <u32>buf.byteLength);
}

/** Print a string and a newline. */
export function println(s: string): void {
  print(s + "\n");
}
