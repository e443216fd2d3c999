/**
 * The hypercall ABI as data: every call with its fixed numeric id, its core
 * import name and the errors it may return. The WIT file is the source of
 * truth for signatures; this table adds what WIT cannot say. A test checks the
 * two agree, and docs/abi.md is generated from both.
 *
 * Ids are written out by hand and never reused: never number with a counter.
 */
import type { ErrnoName } from '../kernel/errno.ts';

export const ABI_VERSION = '0.1.0';
export const ABI_PACKAGE = 'wasmvisor:hypercall';

/** A core Wasm value type used by the ABI. */
export type CoreType = 'i32' | 'i64';

/** One hypercall. */
export interface HypercallSpec {
  /** Stable numeric id (used in traces and the kernel log). */
  readonly id: number;
  /** WIT interface name. */
  readonly iface: 'console' | 'start-info' | 'sched' | 'evtchn' | 'grant' | 'time' | 'store';
  /** WIT function name, which is also the core import field name. */
  readonly name: string;
  /** The errors this call can return (negated). */
  readonly errors: readonly ErrnoName[];
  /** True when the call may suspend the guest (it is a JSPI Suspending import). */
  readonly suspends: boolean;
  /** Core Wasm parameter types (the canonical ABI lowering of the WIT signature). */
  readonly params: readonly CoreType[];
  /** Core Wasm result types. */
  readonly results: readonly CoreType[];
}

export const HYPERCALLS: readonly HypercallSpec[] = [
  { id: 1, iface: 'console', name: 'write', errors: ['E2BIG', 'EAGAIN', 'EFAULT'], suspends: false, params: ['i32', 'i32'], results: ['i32'] },
  { id: 2, iface: 'console', name: 'read', errors: ['EFAULT'], suspends: false, params: ['i32', 'i32'], results: ['i32'] },
  { id: 16, iface: 'start-info', name: 'domain-id', errors: [], suspends: false, params: [], results: ['i32'] },
  { id: 17, iface: 'start-info', name: 'memory-size', errors: [], suspends: false, params: [], results: ['i64'] },
  { id: 18, iface: 'start-info', name: 'cmdline', errors: ['EFAULT'], suspends: false, params: ['i32', 'i32'], results: ['i32'] },
  { id: 19, iface: 'start-info', name: 'page', errors: [], suspends: false, params: [], results: ['i32'] },
  { id: 32, iface: 'sched', name: 'yield', errors: [], suspends: true, params: [], results: ['i32'] },
  { id: 33, iface: 'sched', name: 'block', errors: [], suspends: true, params: ['i64'], results: ['i32'] },
  { id: 34, iface: 'sched', name: 'shutdown', errors: ['EINVAL'], suspends: true, params: ['i32'], results: ['i32'] },
  { id: 35, iface: 'sched', name: 'watchdog', errors: ['EINVAL'], suspends: false, params: ['i32'], results: ['i32'] },
  { id: 64, iface: 'evtchn', name: 'alloc-unbound', errors: ['ESRCH', 'ENOSPC'], suspends: false, params: ['i32'], results: ['i32'] },
  { id: 65, iface: 'evtchn', name: 'bind-interdomain', errors: ['ESRCH', 'EINVAL', 'ENOSPC'], suspends: false, params: ['i32', 'i32'], results: ['i32'] },
  { id: 66, iface: 'evtchn', name: 'bind-virq', errors: ['EINVAL', 'EPERM', 'ENOSPC'], suspends: false, params: ['i32'], results: ['i32'] },
  { id: 67, iface: 'evtchn', name: 'send', errors: ['EINVAL'], suspends: false, params: ['i32'], results: ['i32'] },
  { id: 68, iface: 'evtchn', name: 'close', errors: ['EINVAL'], suspends: false, params: ['i32'], results: ['i32'] },
  { id: 69, iface: 'evtchn', name: 'status', errors: ['EINVAL', 'EFAULT'], suspends: false, params: ['i32', 'i32'], results: ['i32'] },
  { id: 70, iface: 'evtchn', name: 'mask', errors: ['EINVAL'], suspends: false, params: ['i32'], results: ['i32'] },
  { id: 71, iface: 'evtchn', name: 'unmask', errors: ['EINVAL'], suspends: false, params: ['i32'], results: ['i32'] },
  { id: 72, iface: 'evtchn', name: 'pending', errors: ['EFAULT'], suspends: false, params: ['i32', 'i32'], results: ['i32'] },
  { id: 80, iface: 'grant', name: 'grant-access', errors: ['ESRCH', 'EFAULT', 'EINVAL', 'ENOSPC'], suspends: false, params: ['i32', 'i32', 'i32'], results: ['i32'] },
  { id: 81, iface: 'grant', name: 'end-access', errors: ['EINVAL', 'EBUSY'], suspends: false, params: ['i32'], results: ['i32'] },
  { id: 82, iface: 'grant', name: 'copy-from', errors: ['ESRCH', 'EINVAL', 'EFAULT'], suspends: false, params: ['i32', 'i32', 'i32', 'i32', 'i32'], results: ['i32'] },
  { id: 83, iface: 'grant', name: 'copy-to', errors: ['ESRCH', 'EINVAL', 'EFAULT', 'EACCES'], suspends: false, params: ['i32', 'i32', 'i32', 'i32', 'i32'], results: ['i32'] },
  { id: 48, iface: 'time', name: 'monotonic-now', errors: [], suspends: false, params: [], results: ['i64'] },
  { id: 49, iface: 'time', name: 'set-timer', errors: ['EINVAL'], suspends: false, params: ['i64'], results: ['i32'] },
  { id: 96, iface: 'store', name: 'read', errors: ['ENOENT', 'EACCES', 'EINVAL', 'EFAULT'], suspends: true, params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] },
  { id: 97, iface: 'store', name: 'write', errors: ['EACCES', 'EINVAL', 'E2BIG', 'ENOSPC', 'EFAULT'], suspends: true, params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] },
  { id: 98, iface: 'store', name: 'directory', errors: ['ENOENT', 'EACCES', 'EINVAL', 'EFAULT'], suspends: true, params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] },
  { id: 99, iface: 'store', name: 'remove', errors: ['ENOENT', 'EACCES', 'EINVAL', 'EFAULT'], suspends: true, params: ['i32', 'i32'], results: ['i32'] },
  { id: 100, iface: 'store', name: 'watch', errors: ['EINVAL', 'ENOSPC', 'EFAULT'], suspends: true, params: ['i32', 'i32'], results: ['i32'] },
  { id: 101, iface: 'store', name: 'unwatch', errors: ['ENOENT', 'EINVAL', 'EFAULT'], suspends: true, params: ['i32', 'i32'], results: ['i32'] },
  { id: 102, iface: 'store', name: 'next-event', errors: ['EFAULT'], suspends: true, params: ['i32', 'i32'], results: ['i32'] },
];

/** The core-module import module name for a WIT interface, e.g. `wasmvisor:hypercall/console@0.1.0`. */
export function importModule(iface: HypercallSpec['iface']): string {
  return `${ABI_PACKAGE}/${iface}@${ABI_VERSION}`;
}

/** The import a guest uses for its memory (the kernel creates it, shared). */
export const MEMORY_IMPORT = { module: 'env', name: 'memory' } as const;

/** The entry point every guest exports, and the optional initialiser called before it. */
export const ENTRY_EXPORT = 'start';
export const INIT_EXPORT = '_initialize';

/** Size of the start-info page at guest address START_INFO_ADDR; data segments must not overlap it. */
export const START_INFO_ADDR = 0;
export const START_INFO_SIZE = 4096;
