import { ConsoleBuffer } from './console-buffer.ts';
import type { TrapFrame } from './errors.ts';

/**
 * A domain's lifecycle phase.
 * building -> running <-> blocked; running/blocked <-> paused;
 * -> shutting-down (asked to stop) -> shutdown (stopped with a reason)
 * or crashed (trapped); any live phase -> dying (being destroyed).
 */
export type Phase =
  | 'building'
  | 'running'
  | 'blocked'
  | 'paused'
  | 'shutting-down'
  | 'shutdown'
  | 'crashed'
  | 'dying';

/** Why a domain stopped, as in Xen's SHUTDOWN_* codes. */
export type ShutdownReason = 'poweroff' | 'reboot' | 'suspend' | 'crash' | 'watchdog';

/** Xen's numeric shutdown codes, used by the `sched.shutdown` hypercall. */
export const SHUTDOWN_CODES: Readonly<Record<ShutdownReason, number>> = {
  poweroff: 0,
  reboot: 1,
  suspend: 2,
  crash: 3,
  watchdog: 4,
};

/** Decode a guest-supplied shutdown code; undefined when it is not one a guest may ask for. */
export function shutdownReasonFromCode(code: number): ShutdownReason | undefined {
  switch (code) {
    case 0: return 'poweroff';
    case 1: return 'reboot';
    case 2: return 'suspend';
    case 3: return 'crash';
    default: return undefined;
  }
}

const NEXT: Readonly<Record<Phase, readonly Phase[]>> = {
  building: ['running', 'blocked', 'paused', 'shutdown', 'crashed', 'dying'],
  running: ['blocked', 'paused', 'shutting-down', 'shutdown', 'crashed', 'dying'],
  blocked: ['running', 'paused', 'shutting-down', 'shutdown', 'crashed', 'dying'],
  paused: ['running', 'blocked', 'shutting-down', 'shutdown', 'crashed', 'dying'],
  'shutting-down': ['running', 'blocked', 'paused', 'shutdown', 'crashed', 'dying'],
  shutdown: ['dying'],
  crashed: ['dying'],
  dying: [],
};

/** True when `from -> to` is a legal lifecycle transition. */
export function canTransition(from: Phase, to: Phase): boolean {
  return NEXT[from].includes(to);
}

/** True while the domain's guest code may still run. */
export function isLive(phase: Phase): boolean {
  return phase !== 'shutdown' && phase !== 'crashed' && phase !== 'dying';
}

/** The record of a guest fault. */
export interface CrashRecord {
  readonly reason: string;
  readonly backtrace: readonly TrapFrame[];
}

/**
 * Everything the kernel keeps for one domain. The Wasm instance itself lives
 * on a vCPU host (runtime/); this is the kernel's book-keeping.
 */
export class DomainRecord {
  readonly id: number;
  /** Changed only by `Kernel.rename`, which keeps its name index in step. */
  name: string;
  /** Allocation in bytes: the maximum the domain's memory may reach. */
  readonly memoryBytes: number;
  readonly cmdline: string;
  /** Monotonic ns at creation. */
  readonly createdNs: bigint;
  readonly console: ConsoleBuffer;
  phase: Phase = 'building';
  /** Phase to return to on unpause. */
  phaseBeforePause: Phase = 'running';
  shutdownReason: ShutdownReason | undefined;
  crash: CrashRecord | undefined;
  /** The image the domain runs (name shown in listings). */
  readonly image: string;

  constructor(init: {
    id: number;
    name: string;
    memoryBytes: number;
    cmdline: string;
    createdNs: bigint;
    image: string;
    consoleBytes?: number;
  }) {
    this.id = init.id;
    this.name = init.name;
    this.memoryBytes = init.memoryBytes;
    this.cmdline = init.cmdline;
    this.createdNs = init.createdNs;
    this.image = init.image;
    this.console = new ConsoleBuffer(init.consoleBytes);
  }
}
