// The store (as xenstore): where a frontend finds its backend's settings and
// publishes its own. Paths are relative to the domain's home unless they
// start with "/". Values are UTF-8 strings.
import { store_read, store_write, store_directory, store_remove, store_watch, store_unwatch, store_next_event } from "./abi";
import { evtchn_bind_virq, VIRQ_STORE } from "./evtchn";

const BUF_SIZE: u32 = 4096;
const buf = new ArrayBuffer(BUF_SIZE);

/** The value at `path`, or null when it does not exist or is not readable. */
export function storeRead(path: string): string | null {
  const p = String.UTF8.encode(path);
  const n = store_read(changetype<usize>(p), <u32>p.byteLength, changetype<usize>(buf), BUF_SIZE);
  if (n < 0) return null;
  return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>min(<u32>n, BUF_SIZE));
}

/** Set `path` to `value`; 0 or a negative errno. */
export function storeWrite(path: string, value: string): i32 {
  const p = String.UTF8.encode(path);
  const v = String.UTF8.encode(value);
  return store_write(changetype<usize>(p), <u32>p.byteLength, changetype<usize>(v), <u32>v.byteLength);
}

/** The names of `path`'s children (empty when it has none or cannot be read). */
export function storeDirectory(path: string): string[] {
  const p = String.UTF8.encode(path);
  const n = store_directory(changetype<usize>(p), <u32>p.byteLength, changetype<usize>(buf), BUF_SIZE);
  const out: string[] = [];
  if (n <= 0) return out;
  const all = String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>min(<u32>n, BUF_SIZE));
  const parts = all.split("\0");
  for (let i = 0; i < parts.length; i++) if (parts[i].length > 0) out.push(parts[i]);
  return out;
}

export function storeRemove(path: string): i32 {
  const p = String.UTF8.encode(path);
  return store_remove(changetype<usize>(p), <u32>p.byteLength);
}

/** Watch `path` (events raise VIRQ_STORE); fires once at once. */
export function storeWatch(path: string): i32 {
  const p = String.UTF8.encode(path);
  return store_watch(changetype<usize>(p), <u32>p.byteLength);
}

export function storeUnwatch(path: string): i32 {
  const p = String.UTF8.encode(path);
  return store_unwatch(changetype<usize>(p), <u32>p.byteLength);
}

/** The next changed path, or null when none is waiting. */
export function storeNextEvent(): string | null {
  const n = store_next_event(changetype<usize>(buf), BUF_SIZE);
  if (n <= 0) return null;
  return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>min(<u32>n, BUF_SIZE));
}

let eventPort: i32 = 0;
/**
 * The port of the store's virq, bound on first use: watches wake a blocked
 * guest only once it is bound. Use this rather than binding VIRQ_STORE
 * yourself, so that drivers (blkfront) and your code share the one port.
 */
export function storeEventPort(): i32 {
  if (eventPort > 0) return eventPort;
  const p = evtchn_bind_virq(VIRQ_STORE);
  if (p > 0) eventPort = p;
  return p;
}
