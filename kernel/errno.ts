/**
 * The closed set of errors a hypercall returns to a guest, as negative i32.
 *
 * The numbers are part of the ABI (they follow Xen's, which follow Linux's)
 * and never change once published. The WIT enum `errno` in
 * host-bindings/wit/hypercall.wit lists the same names; a test keeps the two
 * in step.
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  E2BIG: 7,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
} as const;

export type ErrnoName = keyof typeof Errno;

/** The value a hypercall returns for `name`: always negative. */
export function errnoResult(name: ErrnoName): number {
  return -Errno[name];
}
