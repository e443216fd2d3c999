/**
 * The handle a host program holds for one domain. It stays valid after the
 * domain is destroyed (its record keeps the final phase, shutdown reason and
 * crash record), so callers can always ask how it ended.
 */
import type { CrashRecord, DomainRecord, Phase, ShutdownReason } from '../kernel/domain.ts';
import { Emitter } from '../kernel/emitter.ts';
import type { GuestImage } from './loader/image.ts';

/** How a domain ended. */
export interface DomainExit {
  readonly reason: ShutdownReason | 'destroyed';
  /** Present when the guest trapped. */
  readonly crash?: CrashRecord;
}

export interface DomainEvents extends Record<string, unknown> {
  console: Uint8Array;
  phase: { from: Phase; to: Phase };
  exit: DomainExit;
}

/** What to do when a domain stops, as in xl's on_poweroff / on_reboot / on_crash. */
export type ExitAction = 'destroy' | 'preserve' | 'restart';

/** Operations the handle delegates to its hypervisor. */
export interface DomainControl {
  pause(dom: Domain): Promise<void>;
  unpause(dom: Domain): Promise<void>;
  destroy(dom: Domain): Promise<void>;
  cpuTimeNs(domid: number): number;
  phaseOf(record: DomainRecord): Phase;
  cpuOf(domid: number): number | undefined;
}

export class Domain {
  readonly record: DomainRecord;
  readonly image: GuestImage;
  readonly events = new Emitter<DomainEvents>();
  readonly #control: DomainControl;
  #exit: DomainExit | undefined;
  readonly #exited: Promise<DomainExit>;
  #resolveExit!: (e: DomainExit) => void;
  /** Set while the kernel waits for a vCPU host to confirm a pause. */
  pauseWaiters: (() => void)[] = [];
  /** The shared memory the kernel created for this domain (undefined once destroyed). */
  memory: WebAssembly.Memory | undefined;

  constructor(record: DomainRecord, image: GuestImage, memory: WebAssembly.Memory, control: DomainControl) {
    this.record = record;
    this.image = image;
    this.memory = memory;
    this.#control = control;
    this.#exited = new Promise((resolve) => { this.#resolveExit = resolve; });
  }

  get id(): number { return this.record.id; }
  get name(): string { return this.record.name; }
  /** The lifecycle phase; `blocked` while the domain waits for an event. */
  get phase(): Phase { return this.#control.phaseOf(this.record); }
  /** CPU time used so far, ns. */
  get cpuTimeNs(): number { return this.#control.cpuTimeNs(this.id); }
  /** The physical CPU the domain runs on, if it is running. */
  get cpu(): number | undefined { return this.#control.cpuOf(this.id); }
  /** How it ended, once it has. */
  get exit(): DomainExit | undefined { return this.#exit; }

  /** Console output kept so far, as text. */
  consoleText(): string { return this.record.console.text(); }

  /** Subscribe to console bytes as they arrive; returns an unsubscribe function. */
  onConsole(fn: (bytes: Uint8Array) => void): () => void { return this.events.on('console', fn); }

  onPhase(fn: (change: { from: Phase; to: Phase }) => void): () => void { return this.events.on('phase', fn); }

  /** Resolves when the domain has stopped (shut down, crashed or destroyed). */
  waitForExit(): Promise<DomainExit> { return this.#exited; }

  pause(): Promise<void> { return this.#control.pause(this); }
  unpause(): Promise<void> { return this.#control.unpause(this); }
  destroy(): Promise<void> { return this.#control.destroy(this); }

  /** Called by the hypervisor once, when the domain stops. */
  settle(exit: DomainExit): void {
    if (this.#exit) return;
    this.#exit = exit;
    this.events.emit('exit', exit);
    this.#resolveExit(exit);
  }
}
