import { MemoryBudget } from './budget.ts';
import { DomainRecord, canTransition, isLive } from './domain.ts';
import type { Phase, ShutdownReason, CrashRecord } from './domain.ts';
import { Emitter } from './emitter.ts';
import {
  DomainExistsError,
  DomainPhaseError,
  InvalidArgumentError,
  NoFreeDomainIdError,
  NoSuchDomainError,
} from './errors.ts';
import { KernelLog } from './klog.ts';
import { MAX_CMDLINE } from './start-info.ts';

/** Highest id a guest domain may have (Xen reserves 0x7FF0 and up). */
export const MAX_DOMID = 0x7fef;

/** What the kernel reports to its observers. */
export interface KernelEvents extends Record<string, unknown> {
  phase: { domain: DomainRecord; from: Phase; to: Phase };
  console: { domain: DomainRecord; bytes: Uint8Array };
  destroyed: { domain: DomainRecord };
}

export interface KernelOptions {
  /** Host memory the kernel may hand out, in bytes, before the dom0 reserve. */
  totalMemoryBytes: number;
  /** Memory reserved for the host (domain 0), in bytes (`dom0_mem`). */
  dom0MemoryBytes: number;
  /** Monotonic clock, ns since the hypervisor started. */
  clock: () => bigint;
  /** Bytes of console history kept per domain. */
  consoleBytes?: number;
}

export interface DomainSpec {
  name?: string;
  memoryBytes: number;
  cmdline?: string;
  image: string;
  /** The id to use if it is free (a restore keeps its domain's id); otherwise the next free one. */
  preferId?: number;
}

/**
 * The kernel's domain table and accounting: pure logic, no I/O. It decides
 * ids, charges memory, checks lifecycle transitions and keeps consoles and
 * the kernel log. runtime/ drives it from what the vCPU hosts report.
 */
/** What a domain name may be: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit. */
export function isDomainName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name);
}

function checkDomainName(name: string): void {
  if (!isDomainName(name)) {
    throw new InvalidArgumentError('domain name', `"${name}" must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

export class Kernel {
  readonly budget: MemoryBudget;
  readonly log: KernelLog;
  readonly events = new Emitter<KernelEvents>();
  readonly #domains = new Map<number, DomainRecord>();
  readonly #byName = new Map<string, DomainRecord>();
  readonly #clock: () => bigint;
  readonly #consoleBytes: number | undefined;
  #nextId = 1;

  constructor(opts: KernelOptions) {
    this.#clock = opts.clock;
    this.#consoleBytes = opts.consoleBytes;
    this.budget = new MemoryBudget(opts.totalMemoryBytes, opts.dom0MemoryBytes);
    this.log = new KernelLog(opts.clock);
    const dom0 = new DomainRecord({
      id: 0,
      name: 'Domain-0',
      memoryBytes: this.budget.reservedBytes,
      cmdline: '',
      createdNs: 0n,
      image: '(host)',
      consoleBytes: this.#consoleBytes,
    });
    dom0.phase = 'running';
    this.#domains.set(0, dom0);
    this.#byName.set(dom0.name, dom0);
    this.log.info(`wasmvisor kernel up: ${mib(opts.totalMemoryBytes)} host memory, ${mib(this.budget.reservedBytes)} reserved for domain 0`);
  }

  now(): bigint { return this.#clock(); }

  /** Create a domain record in phase `building`, charging its memory. */
  createDomain(spec: DomainSpec): DomainRecord {
    if (!Number.isSafeInteger(spec.memoryBytes) || spec.memoryBytes <= 0) {
      throw new InvalidArgumentError('memory', `${spec.memoryBytes} is not a positive number of bytes`);
    }
    const cmdline = spec.cmdline ?? '';
    const cmdBytes = new TextEncoder().encode(cmdline).length;
    if (cmdBytes > MAX_CMDLINE) {
      throw new InvalidArgumentError('cmdline', `${cmdBytes} bytes is longer than the limit of ${MAX_CMDLINE}`);
    }
    if (spec.name !== undefined) {
      checkDomainName(spec.name);
      if (this.#byName.has(spec.name)) throw new DomainExistsError(spec.name);
    }
    const preferred = spec.preferId;
    const id = preferred !== undefined && Number.isInteger(preferred) && preferred >= 1 && preferred <= MAX_DOMID && !this.#domains.has(preferred)
      ? preferred : this.#allocateId();
    this.budget.reserve(spec.memoryBytes);
    const dom = new DomainRecord({
      id,
      name: spec.name ?? `dom${id}`,
      memoryBytes: spec.memoryBytes,
      cmdline,
      createdNs: this.#clock(),
      image: spec.image,
      consoleBytes: this.#consoleBytes,
    });
    if (this.#byName.has(dom.name)) {
      this.budget.release(spec.memoryBytes);
      throw new DomainExistsError(dom.name);
    }
    this.#domains.set(id, dom);
    this.#byName.set(dom.name, dom);
    return dom;
  }

  /** Rename a domain (`xl rename`). Domain 0 keeps its name. */
  rename(ref: number | string, name: string): DomainRecord {
    const dom = this.get(ref);
    if (dom.id === 0) throw new InvalidArgumentError('domain name', 'domain 0 cannot be renamed');
    checkDomainName(name);
    if (name === dom.name) return dom;
    if (this.#byName.has(name)) throw new DomainExistsError(name);
    this.#byName.delete(dom.name);
    const old = dom.name;
    dom.name = name;
    this.#byName.set(name, dom);
    this.log.info(`domain ${dom.id}: renamed from ${old} to ${name}`);
    return dom;
  }

  /** Look a domain up by id or name; throws NoSuchDomainError. */
  get(ref: number | string): DomainRecord {
    const dom = typeof ref === 'number' ? this.#domains.get(ref) : this.#byName.get(ref);
    if (!dom) throw new NoSuchDomainError(ref);
    return dom;
  }

  find(ref: number | string): DomainRecord | undefined {
    return typeof ref === 'number' ? this.#domains.get(ref) : this.#byName.get(ref);
  }

  /** All domains, domain 0 first, by id. */
  list(): DomainRecord[] {
    return [...this.#domains.values()].sort((a, b) => a.id - b.id);
  }

  get size(): number { return this.#domains.size; }

  /**
   * Move a domain to `to`. Illegal transitions throw DomainPhaseError, except
   * that reports about a domain already stopped are ignored (a vCPU host may
   * report after a destroy raced it); returns whether the phase changed.
   */
  setPhase(dom: DomainRecord, to: Phase, action = `move to ${to}`): boolean {
    const from = dom.phase;
    if (from === to) return false;
    if (!canTransition(from, to)) {
      if (!isLive(from)) return false;
      throw new DomainPhaseError(dom.id, action, from);
    }
    if (to === 'paused') dom.phaseBeforePause = from;
    dom.phase = to;
    this.events.emit('phase', { domain: dom, from, to });
    return true;
  }

  /** Record that the guest stopped itself with `reason`. */
  markShutdown(dom: DomainRecord, reason: ShutdownReason): void {
    if (!isLive(dom.phase)) return;
    dom.shutdownReason = reason;
    this.log.info(`domain ${dom.id} (${dom.name}) shut down: ${reason}`);
    this.setPhase(dom, 'shutdown');
  }

  /** Record a guest fault. */
  markCrashed(dom: DomainRecord, crash: CrashRecord): void {
    if (!isLive(dom.phase)) return;
    dom.crash = crash;
    dom.shutdownReason = 'crash';
    const where = crash.backtrace.length > 0 ? ` at ${crash.backtrace.map((f) => f.func).join(' <- ')}` : '';
    this.log.error(`domain ${dom.id} (${dom.name}) crashed: ${crash.reason}${where}`);
    this.setPhase(dom, 'crashed');
  }

  /** Append guest console output. */
  consoleWrite(dom: DomainRecord, bytes: Uint8Array): void {
    dom.console.append(bytes);
    this.events.emit('console', { domain: dom, bytes });
  }

  /** Remove a domain and return its memory to the budget. */
  release(dom: DomainRecord): void {
    if (dom.id === 0) throw new DomainPhaseError(0, 'destroy', 'the host domain');
    if (!this.#domains.has(dom.id)) return;
    if (dom.phase !== 'dying') this.setPhase(dom, 'dying', 'destroy');
    this.#domains.delete(dom.id);
    this.#byName.delete(dom.name);
    this.budget.release(dom.memoryBytes);
    this.events.emit('destroyed', { domain: dom });
  }

  #allocateId(): number {
    for (let n = 0; n < MAX_DOMID; n++) {
      const id = this.#nextId;
      this.#nextId = this.#nextId >= MAX_DOMID ? 1 : this.#nextId + 1;
      if (!this.#domains.has(id)) return id;
    }
    throw new NoFreeDomainIdError(MAX_DOMID);
  }
}

function mib(bytes: number): string {
  return `${Math.round(bytes / (1024 * 1024))} MiB`;
}
