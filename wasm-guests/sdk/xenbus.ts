// What every split-device frontend (blkfront, netfront) needs for the
// xenbus handshake with its backend (devices/xenbus.ts is the other side):
// the states, numbers read from the store, page-aligned buffers, and a wait
// for the backend's state.
import { sched_block, time_monotonic_now } from "./abi";
import { storeRead } from "./store";

export const XENBUS_INITIALISING: i32 = 1;
export const XENBUS_INIT_WAIT: i32 = 2;
export const XENBUS_INITIALISED: i32 = 3;
export const XENBUS_CONNECTED: i32 = 4;
export const XENBUS_CLOSING: i32 = 5;
export const XENBUS_CLOSED: i32 = 6;
/** A wait for the backend ran out of time (Linux's ETIMEDOUT, negated). */
export const XENBUS_ETIMEDOUT: i32 = -110;

const PAGE: u32 = 4096;

/** Allocate `pages` 4 KiB pages, page-aligned, to grant (never freed: devices live as long as the guest). */
export function allocPages(pages: u32): usize {
  const raw = heap.alloc(<usize>(pages + 1) * PAGE);
  return (raw + PAGE - 1) & ~(<usize>PAGE - 1);
}

/** A decimal number as the store holds it; 0 when absent or not a number. */
export function parseU64(s: string | null): u64 {
  if (s === null) return 0;
  let v: u64 = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return 0;
    v = v * 10 + <u64>c;
  }
  return v;
}

/** The backend's xenbus state (0 when unreadable). */
export function backendState(backendPath: string): i32 {
  return <i32>parseU64(storeRead(backendPath + "/state"));
}

/**
 * Sleep (woken by store watches on the backend's state, which the caller
 * set up) until the backend's state is at least `want`, or until monotonic
 * time `deadline`: the state, or XENBUS_ETIMEDOUT.
 */
export function waitBackendState(backendPath: string, want: i32, deadline: u64): i32 {
  let st = backendState(backendPath);
  while (st < want) {
    if (sched_block(deadline) == 1 && time_monotonic_now() >= deadline) return XENBUS_ETIMEDOUT;
    st = backendState(backendPath);
  }
  return st;
}
