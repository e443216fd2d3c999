/**
 * Decode-and-validate for hypercall arguments: pure functions that check
 * guest-supplied values against the domain's state and return either the
 * checked request or an errno. The code that performs a call only ever sees
 * checked values, so it cannot fail on guest input.
 */
import { Errno } from './errno.ts';
import { shutdownReasonFromCode } from './domain.ts';
import type { ShutdownReason } from './domain.ts';

/** A checked slice of guest memory. */
export interface GuestRange { readonly ptr: number; readonly len: number }

/** Result of decoding: the checked value, or a negative errno to return to the guest. */
export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly errno: number };

const fail = (code: number): { ok: false; errno: number } => ({ ok: false, errno: -code });

/** Longest single console write accepted (larger writes return -E2BIG). */
export const MAX_CONSOLE_WRITE = 64 * 1024;

/** Check that [ptr, ptr+len) lies inside a memory of `memBytes` bytes. Arguments are raw i32s. */
export function decodeRange(memBytes: number, ptr: number, len: number): Decoded<GuestRange> {
  const p = ptr >>> 0;
  const l = len >>> 0;
  if (p + l > memBytes) return fail(Errno.EFAULT);
  return { ok: true, value: { ptr: p, len: l } };
}

export function decodeConsoleWrite(memBytes: number, ptr: number, len: number): Decoded<GuestRange> {
  if (len >>> 0 > MAX_CONSOLE_WRITE) return fail(Errno.E2BIG);
  return decodeRange(memBytes, ptr, len);
}

export function decodeShutdown(code: number): Decoded<ShutdownReason> {
  const reason = shutdownReasonFromCode(code >>> 0);
  return reason === undefined ? fail(Errno.EINVAL) : { ok: true, value: reason };
}

/** A timer deadline: raw u64 ns (as a bigint from JS); 0n cancels. */
export function decodeDeadline(deadline: bigint): Decoded<bigint> {
  const d = BigInt.asUintN(64, deadline);
  return { ok: true, value: d };
}
