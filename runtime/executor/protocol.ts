/**
 * Messages between the hypervisor (main thread) and its vCPU hosts (one
 * worker thread per physical CPU, each running many domains as JSPI stacks).
 */
import type { ShutdownReason } from '../../kernel/domain.ts';
import type { BvtParams } from '../../kernel/bvt.ts';
import type { TrapFrame } from '../../kernel/errors.ts';

/** Values of the shared control word a vCPU host checks at every safepoint. */
export const Ctl = { NONE: 0, PAUSE: 1, KILL: 2 } as const;

/**
 * Bits of a CPU's attention word (set with Atomics.or): TICK from the ticker
 * or a wake-up (check the slice and the scheduler), CONTROL when a control
 * message for a domain of this CPU is waiting (let the event loop run).
 */
export const Attention = { NONE: 0, TICK: 1, CONTROL: 2 } as const;

/** Values of a domain's run state word. */
export const RunState = { NONE: 0, RUNNABLE: 1, BLOCKED: 2 } as const;

/** Most console bytes of one domain in flight to the kernel; past it `console.write` returns -EAGAIN. */
export const CONSOLE_IN_FLIGHT_MAX = 256 * 1024;

/** Memory shared by the hypervisor and all its vCPU hosts, indexed by domain id. */
export interface SharedTables {
  /** Ctl value per domain. */
  readonly ctl: SharedArrayBuffer;
  /** CPU time per domain, ns (Float64Array). */
  readonly cpuNs: SharedArrayBuffer;
  /**
   * Console bytes a vCPU host has posted and the kernel has not yet taken,
   * per domain (Int32Array): the console's back-pressure, so a guest that
   * writes without pause cannot queue unbounded memory in the host.
   */
  readonly consoleInFlight: SharedArrayBuffer;
  /**
   * Run state per domain (Int32Array, RunState): written by the vCPU host at
   * every block and wake-up, read by the kernel when it reports a phase, so
   * the hot path sends no message.
   */
  readonly runstate: SharedArrayBuffer;
  /** The paravirtual table (event channels, grants, doorbells): kernel/pv-table.ts. */
  readonly pv: SharedArrayBuffer;
  /** The highest domain id the table has a slot for. */
  readonly maxDomid: number;
  /** Number of vCPU hosts sharing the table. */
  readonly hosts: number;
  /**
   * One small shared memory per vCPU host whose word 0 is its attention
   * word: instrumented guests poll it and call the safepoint when it is set
   * (by the ticker, a pause or kill, or a wake-up that may preempt).
   */
  readonly flags: readonly WebAssembly.Memory[];
}

export interface HostInit {
  readonly cpu: number;
  readonly tables: SharedTables;
  /** performance.timeOrigin + performance.now() of the hypervisor's epoch, ms. */
  readonly epochMs: number;
  /** Time slice, ms. */
  readonly sliceMs: number;
}

/** Store operations a guest may call. */
export type StoreOp = 'read' | 'write' | 'directory' | 'remove' | 'watch' | 'unwatch' | 'next-event';

/** A guest's execution state, captured at a block, yield or suspend (runtime/loader/capture.ts). */
export interface CapturedState {
  /** Index in the image's entries of the export that was running. */
  entry: number;
  /** The hypercall it was captured in. */
  at: 'block' | 'yield' | 'shutdown';
  /** Its mutable globals, in the image's order (i64 values as bigint). */
  globals: Array<number | bigint>;
  /** The unwound call stack (Asyncify's data). */
  stack: Uint8Array;
  /** The guest's monotonic clock when it was captured, and its timer's deadline (0: none), ns. */
  nowNs: bigint;
  timerNs: bigint;
}

export type ToHost =
  | { t: 'image'; imageId: string; module: WebAssembly.Module }
  | {
      t: 'start';
      domid: number;
      imageId: string;
      /** Exports to call in order; the last is `start`. */
      entries: readonly string[];
      memory: WebAssembly.Memory;
      memoryBytes: number;
      cmdline: Uint8Array;
      startInfoPage: number;
      paused: boolean;
      /** BVT parameters (defaults when absent). */
      sched?: BvtParams;
      /** Arm the domain's watchdog at start (the `watchdog` boot option), ms. */
      watchdogMs?: number;
      /** Export names of the image's mutable globals (runtime/loader/capture.ts). */
      globals?: readonly string[];
      /** Resume a captured state (restore) instead of calling the entries from the first; `value` is what the hypercall returns. */
      resume?: { state: CapturedState; value: number };
    }
  /** Capture the guest: at its next block or yield (`any`), or only when it calls shutdown(suspend). */
  | { t: 'capture'; domid: number; any: boolean }
  | { t: 'capture-cancel'; domid: number }
  /** Go on after a capture (a checkpoint, or a save that failed): the captured hypercall returns `value`. */
  | { t: 'continue'; domid: number; value: number }
  /** Every vCPU host learns every domain's memory (grant copies reach it directly). */
  | { t: 'domain'; domid: number; memory: WebAssembly.Memory }
  /** Make a port of a guest here pending (after a restore brought back its channel's other end). */
  | { t: 'pending'; domid: number; port: number }
  | { t: 'forget'; domid: number }
  | { t: 'pause'; domid: number }
  | { t: 'unpause'; domid: number }
  | { t: 'kill'; domid: number }
  | { t: 'sched'; domid: number; params: BvtParams }
  | { t: 'slice'; sliceMs: number }
  | { t: 'event'; domid: number }
  /** Keyboard input for a domain's console (raises its console virq). */
  | { t: 'console-in'; domid: number; bytes: Uint8Array }
  /** The answer to a store call: a number (errno or status), a string (value, event) or names. */
  | { t: 'store-reply'; domid: number; req: number; result: number | string | string[] | null };

export type GuestExit =
  | { kind: 'shutdown'; reason: ShutdownReason }
  | { kind: 'trap'; reason: string; backtrace: TrapFrame[] }
  | { kind: 'killed' };

export type FromHost =
  | { t: 'console'; domid: number; bytes: Uint8Array }
  /** The domain is parked (paused) and uses no CPU: confirms a pause. */
  | { t: 'paused'; domid: number }
  | { t: 'exit'; domid: number; exit: GuestExit }
  /** The guest's stack is unwound and its state captured; it runs again only on 'continue'. */
  /** The host has the capture request: a suspend the guest makes from now on is taken (the kernel then tells the guest). */
  | { t: 'capture-armed'; domid: number }
  | { t: 'captured'; domid: number; state: CapturedState }
  | { t: 'capture-failed'; domid: number; reason: string }
  /** A guest's store call, carried out by the main thread (kernel/store.ts). */
  | { t: 'store'; domid: number; req: number; op: StoreOp; path: string; value: string };
