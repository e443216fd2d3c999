/**
 * The physical CPUs: one vCPU host worker per CPU. Domains are placed on the
 * least loaded CPU when they start and stay there (pinning and migration
 * between CPUs come with the scheduler).
 */
import { Worker } from 'node:worker_threads';
import type { FromHost, HostInit, SharedTables, ToHost } from './protocol.ts';

export interface CpuPoolHooks {
  onMessage(cpu: number, msg: FromHost): void;
  /** A vCPU host thread died; every domain on it is lost. */
  onHostFailure(cpu: number, domids: number[], reason: string): void;
  /** A replacement vCPU host started; `send` reaches it (to replay what every host must know). */
  onHostRespawn?(cpu: number, send: (msg: ToHost) => void): void;
  /** The ticker thread died (a new one was started). */
  onTickerFailure?(reason: string): void;
}

interface Cpu {
  readonly index: number;
  worker: Worker;
  readonly images: Set<string>;
  readonly domains: Set<number>;
}

/** Where a worker entry lives: beside this file in the source tree, or beside the bundle. */
function workerUrl(name: 'vcpu-worker' | 'ticker-worker'): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./${name}${ext}`, import.meta.url);
}

/** The ticker's period for a slice: four ticks per slice, at least 1 ms apart (µs). */
function tickUs(sliceMs: number): number {
  return Math.max(1000, Math.round((sliceMs * 1000) / 4));
}

export class CpuPool {
  readonly #cpus: Cpu[] = [];
  readonly #hooks: CpuPoolHooks;
  readonly #init: Omit<HostInit, 'cpu'>;
  readonly #where = new Map<number, Cpu>();
  #ticker: Worker;
  readonly #tickerData: { flags: readonly WebAssembly.Memory[]; control: SharedArrayBuffer };
  readonly #tickControl = new Int32Array(new SharedArrayBuffer(4));
  #closed = false;

  constructor(count: number, tables: SharedTables, epochMs: number, sliceMs: number, hooks: CpuPoolHooks) {
    this.#hooks = hooks;
    this.#init = { tables, epochMs, sliceMs };
    for (let i = 0; i < count; i++) {
      const cpu: Cpu = { index: i, worker: undefined as unknown as Worker, images: new Set(), domains: new Set() };
      cpu.worker = this.#spawn(cpu);
      this.#cpus.push(cpu);
    }
    Atomics.store(this.#tickControl, 0, tickUs(sliceMs));
    this.#tickerData = { flags: tables.flags, control: this.#tickControl.buffer as SharedArrayBuffer };
    this.#ticker = this.#spawnTicker();
  }

  /** Follow a new time slice (the ticker sets attention words four times per slice). */
  setSlice(sliceMs: number): void {
    Atomics.store(this.#tickControl, 0, tickUs(sliceMs));
  }

  get count(): number { return this.#cpus.length; }

  /**
   * The ticker thread. Should it die (a thread can run out of heap when the
   * host is out of address space), a new one takes over: without ticks a
   * spinning guest would keep its CPU, and an unhandled worker error would
   * end the host process.
   */
  #spawnTicker(): Worker {
    const worker = new Worker(workerUrl('ticker-worker'), { workerData: this.#tickerData });
    let failed = false;
    const fail = (reason: string): void => {
      if (failed || this.#closed) return;
      failed = true;
      this.#hooks.onTickerFailure?.(reason);
      this.#ticker = this.#spawnTicker();
    };
    worker.on('error', (err: Error) => fail(`ticker failed: ${err.message}`));
    worker.on('exit', (code) => fail(`ticker exited with code ${code}`));
    worker.unref();
    return worker;
  }

  /** For tests: end the ticker thread as a failure would. */
  killTickerForTest(): Promise<number> {
    return this.#ticker.terminate();
  }

  #spawn(cpu: Cpu): Worker {
    const worker = new Worker(workerUrl('vcpu-worker'), { workerData: { ...this.#init, cpu: cpu.index } satisfies HostInit });
    worker.on('message', (msg: FromHost) => {
      if (msg.t === 'exit') this.released(msg.domid);
      this.#hooks.onMessage(cpu.index, msg);
    });
    const fail = (reason: string): void => {
      if (this.#closed || cpu.worker !== worker) return;
      const lost = [...cpu.domains];
      cpu.domains.clear();
      cpu.images.clear();
      for (const d of lost) this.#where.delete(d);
      cpu.worker = this.#spawn(cpu);
      this.#hooks.onHostFailure(cpu.index, lost, reason);
      this.#hooks.onHostRespawn?.(cpu.index, (msg) => cpu.worker.postMessage(msg));
    };
    worker.on('error', (err: Error) => fail(`vCPU host ${cpu.index} failed: ${err.message}`));
    worker.on('exit', (code) => fail(`vCPU host ${cpu.index} exited with code ${code}`));
    // Idle workers must not keep a process alive by themselves; live domains do (see ref()).
    worker.unref();
    return worker;
  }

  /** Start a domain on the least loaded CPU (or `cpu`); returns the CPU index. */
  start(msg: Extract<ToHost, { t: 'start' }>, module: WebAssembly.Module, cpuIndex?: number): number {
    const cpu = cpuIndex !== undefined ? this.#cpus[cpuIndex]! : this.#leastLoaded();
    if (!cpu.images.has(msg.imageId)) {
      cpu.worker.postMessage({ t: 'image', imageId: msg.imageId, module } satisfies ToHost);
      cpu.images.add(msg.imageId);
    }
    cpu.domains.add(msg.domid);
    this.#where.set(msg.domid, cpu);
    this.#refresh(cpu);
    cpu.worker.postMessage(msg);
    return cpu.index;
  }

  /** Send a message to every CPU. */
  broadcast(msg: ToHost): void {
    for (const c of this.#cpus) c.worker.postMessage(msg);
  }

  /** Send a control message to the CPU running `domid`; false when it runs nowhere. */
  send(domid: number, msg: ToHost): boolean {
    const cpu = this.#where.get(domid);
    if (!cpu) return false;
    cpu.worker.postMessage(msg);
    return true;
  }

  cpuOf(domid: number): number | undefined {
    return this.#where.get(domid)?.index;
  }

  /** Keep the process alive while a CPU has domains. */
  #refresh(cpu: Cpu): void {
    if (cpu.domains.size > 0) cpu.worker.ref();
    else cpu.worker.unref();
  }

  released(domid: number): void {
    const cpu = this.#where.get(domid);
    if (!cpu) return;
    cpu.domains.delete(domid);
    this.#where.delete(domid);
    this.#refresh(cpu);
  }

  #leastLoaded(): Cpu {
    let best = this.#cpus[0]!;
    for (const c of this.#cpus) if (c.domains.size < best.domains.size) best = c;
    return best;
  }

  async close(): Promise<void> {
    this.#closed = true;
    Atomics.store(this.#tickControl, 0, 0);
    await Promise.all([...this.#cpus.map((c) => c.worker.terminate()), this.#ticker.terminate()]);
  }
}
