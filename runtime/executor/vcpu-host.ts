/**
 * A vCPU host: the code of one worker thread, which runs many domains on one
 * physical CPU. Each domain is a Wasm instance whose entry point runs under
 * JSPI (`WebAssembly.promising`), so a guest that yields, blocks or reaches a
 * safepoint at the end of its slice suspends onto its own stack and the host
 * picks the next ready domain. Only one guest runs at a time on a host.
 *
 * The class holds all state (nothing at module level) so that it can be
 * driven from a test without a thread.
 */
import { Errno } from '../../kernel/errno.ts';
import { MAX_PATH, MAX_VALUE } from '../../kernel/store.ts';
import { PvTable, NR_PORTS, Virq } from '../../kernel/pv-table.ts';
import { EventChannels } from '../../kernel/evtchn.ts';
import { GrantTables } from '../../kernel/grant.ts';
import { CopyEngine } from './copy-engine.ts';
import { decodeConsoleWrite, decodeRange, decodeShutdown } from '../../kernel/hypercall.ts';
import type { TrapFrame } from '../../kernel/errors.ts';
import { MEMORY_IMPORT } from '../../host-bindings/abi.ts';
import type { HostHypercallImports } from '../../host-bindings/imports.ts';
import { FLAGS_NAME, SAFEPOINT_MODULE, SAFEPOINT_NAME, TICK_FUNCTION } from '../loader/instrument.ts';
import { Attention, CONSOLE_IN_FLIGHT_MAX, Ctl, RunState } from './protocol.ts';
import { Bvt, BvtEntity, DEFAULT_BVT } from '../../kernel/bvt.ts';
import type { CapturedState, FromHost, GuestExit, HostInit, StoreOp, ToHost } from './protocol.ts';
import { CAPTURE_AREA_OFFSET } from '../loader/capture.ts';

/** The Asyncify exports of a guest built with capture points. */
interface CaptureExports {
  asyncify_start_unwind(data: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(data: number): void;
  asyncify_stop_rewind(): void;
}

type GuestState = 'ready' | 'running' | 'blocked' | 'parked' | 'waiting' | 'captured' | 'dead';

/** Console input waiting for a guest to read it, at most (bytes). */
const CONSOLE_INPUT_MAX = 64 * 1024;

interface Guest {
  /** A store call in flight: its request number and what to do with the answer. */
  storeWait: { req: number; finish: (result: number | string | string[] | null) => void } | undefined;
  /** Console input not yet read (console.read), and its total size. */
  input: Uint8Array[];
  inputBytes: number;
  readonly domid: number;
  readonly memory: WebAssembly.Memory;
  readonly memoryBytes: number;
  readonly cmdline: Uint8Array;
  readonly startInfoPage: number;
  readonly entries: readonly string[];
  readonly module: WebAssembly.Module;
  state: GuestState;
  /** Whether its entry point has been called. */
  booted: boolean;
  /** Whether it is in the ready queue. */
  queued: boolean;
  /** Set by pause; a paused guest is parked instead of run. */
  paused: boolean;
  /** Resolves the guest's current suspension with the hypercall's result. */
  resume: ((value: number) => void) | undefined;
  /** Result the next resume returns to the guest. */
  wakeValue: number;
  eventPending: boolean;
  blockTimer: ReturnType<typeof setTimeout> | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The armed watchdog (sched.watchdog), if any. */
  watchdog: ReturnType<typeof setTimeout> | undefined;
  sliceStart: number;
  /** Borrowed-virtual-time state on this CPU. */
  readonly bvt: BvtEntity;
  /** Its instance's exports, once booted. */
  exports: Record<string, unknown> | undefined;
  /** Export names of its mutable globals. */
  readonly globals: readonly string[];
  /** The hypercall it is suspended in, when it is suspended. */
  suspendedIn: 'block' | 'yield' | 'safepoint' | 'store' | 'park' | undefined;
  /** A capture asked for and not yet made: at any block or yield, or only at shutdown(suspend). */
  capture: { any: boolean } | undefined;
  /** Unwinding its stack for a capture, from this hypercall. */
  unwinding: CapturedState['at'] | undefined;
  /** Rewinding its stack: what the captured hypercall returns when it is reached again. */
  rewinding: { value: number } | undefined;
  /** A rewind to start when it next runs (after a capture, or a restore). */
  rewindPending: boolean;
  /** The entry export running. */
  entryIndex: number;
  /** The last capture. */
  captured: CapturedState | undefined;
  /** Added to the hypervisor's clock: a restored guest's clock goes on from where it was saved. */
  timeOffsetNs: bigint;
  /** Its one-shot timer's deadline in its own clock (0: none). */
  timerNs: bigint;
}

const bvtOf = (g: Guest): BvtEntity => g.bvt;

/** How long an idle vCPU host watches its doorbell after running a guest (ms). */
const SPIN_MS = 0.03;

/** Thrown out of a guest's stack never; a dead guest's suspension is simply never resumed. */
const NEVER = new Promise<number>(() => {});

export class VcpuHost {
  readonly #init: HostInit;
  readonly #post: (msg: FromHost, transfer?: ArrayBuffer[]) => void;
  readonly #images = new Map<string, WebAssembly.Module>();
  readonly #guests = new Map<number, Guest>();
  #storeSeq = 0;
  readonly #ready: Guest[] = [];
  readonly #sched: Bvt;
  readonly #ctl: Int32Array;
  readonly #cpuNs: Float64Array;
  readonly #consoleInFlight: Int32Array;
  readonly #runstate: Int32Array;
  readonly #pv: PvTable;
  /** This CPU's attention memory (imported by every guest here) and its word 0. */
  readonly #flags: WebAssembly.Memory;
  readonly #attention: Int32Array;
  readonly #evtchn: EventChannels;
  readonly #grants: GrantTables;
  /** Every live domain's memory (grant copies reach other domains directly). */
  readonly #memories = new Map<number, WebAssembly.Memory>();
  readonly #copier: CopyEngine;
  #dispatchQueued = false;
  /** Earliest due time (performance.now() ms) of the timers armed here, per guest, and overall. */
  readonly #dueAt = new Map<Guest, number>();
  #soonest = Infinity;
  /** The guest whose code runs (or is about to run) on this host. */
  #current: Guest | undefined;

  constructor(init: HostInit, post: (msg: FromHost, transfer?: ArrayBuffer[]) => void) {
    this.#init = init;
    this.#post = post;
    this.#ctl = new Int32Array(init.tables.ctl);
    this.#cpuNs = new Float64Array(init.tables.cpuNs);
    this.#consoleInFlight = new Int32Array(init.tables.consoleInFlight);
    this.#runstate = new Int32Array(init.tables.runstate);
    this.#sched = new Bvt(init.sliceMs * 1e6);
    this.#pv = new PvTable(init.tables.maxDomid, init.tables.hosts, init.tables.pv);
    this.#flags = init.tables.flags[init.cpu]!;
    this.#attention = new Int32Array(this.#flags.buffer, 0, 1);
    this.#evtchn = new EventChannels(this.#pv, init.cpu, (domid) => {
      const g = this.#guests.get(domid);
      if (g) this.#raiseEvent(g);
    }, init.tables.flags.map((m) => new Int32Array(m.buffer, 0, 1)));
    this.#copier = new CopyEngine(this.#memories);
    this.#grants = new GrantTables(this.#pv, this.#copier);
    this.#listen();
  }

  /** Number of live guests on this host. */
  get load(): number { return this.#guests.size; }

  handle(msg: ToHost): void {
    switch (msg.t) {
      case 'image':
        this.#images.set(msg.imageId, msg.module);
        return;
      case 'domain':
        this.#memories.set(msg.domid, msg.memory);
        this.#copier.forget(msg.domid);
        return;
      case 'pending':
        this.#evtchn.setPending(msg.domid, msg.port);
        return;
      case 'forget':
        this.#memories.delete(msg.domid);
        this.#copier.forget(msg.domid);
        return;
      case 'start':
        this.#start(msg);
        return;
      case 'pause': {
        const g = this.#guests.get(msg.domid);
        if (!g) return;
        g.paused = true;
        if (g.state !== 'running') this.#post({ t: 'paused', domid: g.domid });
        return;
      }
      case 'unpause': {
        const g = this.#guests.get(msg.domid);
        if (!g || !g.paused) return;
        g.paused = false;
        Atomics.compareExchange(this.#ctl, g.domid, Ctl.PAUSE, Ctl.NONE);
        if (g.state === 'parked') this.#makeReady(g);
        return;
      }
      case 'sched': {
        const g = this.#guests.get(msg.domid);
        if (g) g.bvt.params = msg.params;
        return;
      }
      case 'slice':
        this.#sched.sliceNs = msg.sliceMs * 1e6;
        return;
      case 'kill': {
        const g = this.#guests.get(msg.domid);
        if (g) this.#finish(g, { kind: 'killed' });
        return;
      }
      case 'event': {
        const g = this.#guests.get(msg.domid);
        if (g) this.#raiseEvent(g);
        return;
      }
      case 'store-reply': {
        const g = this.#guests.get(msg.domid);
        const done = g?.storeWait;
        if (!g || !done || done.req !== msg.req) return;
        g.storeWait = undefined;
        done.finish(msg.result);
        return;
      }
      case 'capture': {
        const g = this.#guests.get(msg.domid);
        if (!g) return;
        if (!g.exports?.['asyncify_start_unwind'] && g.booted) {
          this.#post({ t: 'capture-failed', domid: g.domid, reason: 'its image has no capture points' });
          return;
        }
        if (this.#flags.buffer.byteLength <= CAPTURE_AREA_OFFSET + 8) {
          this.#post({ t: 'capture-failed', domid: g.domid, reason: 'this CPU has no capture area' });
          return;
        }
        g.capture = { any: msg.any };
        this.#post({ t: 'capture-armed', domid: g.domid });
        // Suspended in a block or yield now: unwind from there at once.
        if (msg.any && g.resume && (g.suspendedIn === 'block' || g.suspendedIn === 'yield') && (g.state === 'blocked' || g.state === 'ready')) this.#captureSuspended(g);
        return;
      }
      case 'capture-cancel': {
        const g = this.#guests.get(msg.domid);
        if (g) g.capture = undefined;
        return;
      }
      case 'continue': {
        const g = this.#guests.get(msg.domid);
        if (!g || g.state !== 'captured') return;
        g.rewinding = { value: msg.value };
        g.rewindPending = true;
        if (g.captured && g.captured.timerNs !== 0n) this.#setTimer(g, g.captured.timerNs);
        this.#awaken(g);
        if (g.paused) g.state = 'parked';
        else this.#makeReady(g);
        return;
      }
      case 'console-in': {
        const g = this.#guests.get(msg.domid);
        if (!g) return;
        // Input the guest does not read is bounded: past the limit it is dropped.
        const room = CONSOLE_INPUT_MAX - g.inputBytes;
        if (room <= 0) return;
        const chunk = msg.bytes.length > room ? msg.bytes.subarray(0, room) : msg.bytes;
        g.input.push(chunk);
        g.inputBytes += chunk.length;
        this.#evtchn.raiseVirq(g.domid, Virq.CONSOLE);
        return;
      }
    }
  }

  /**
   * Wake-ups from other threads: a sender sets the domain's bit in this
   * host's wake bitmap and rings its doorbell (kernel/evtchn.ts); we wait on
   * the doorbell without blocking the thread.
   */
  #listen(): void {
    const w = this.#pv.words;
    const bell = this.#pv.doorbell(this.#init.cpu);
    const words = this.#pv.wakeWords;
    const loop = (): void => {
      const seen = Atomics.load(w, bell);
      this.#drainWakes();
      const r = Atomics.waitAsync(w, bell, seen);
      if (r.async) void r.value.then(loop);
      else setImmediate(loop);
    };
    loop();
  }

  /** Wake every guest whose bit is set in this host's wake bitmap. */
  #drainWakes(): void {
    const w = this.#pv.words;
    const bell = this.#pv.doorbell(this.#init.cpu);
    for (let k = 0; k < this.#pv.wakeWords; k++) {
      let bits = Atomics.load(w, bell + 1 + k) === 0 ? 0 : Atomics.exchange(w, bell + 1 + k, 0);
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits & -bits);
        bits &= bits - 1;
        const g = this.#guests.get(k * 32 + b);
        if (g) this.#raiseEvent(g);
      }
    }
  }

  /**
   * After a guest has run, if nothing else is ready, watch the doorbell for
   * a few microseconds before going back to the event loop: a peer on
   * another CPU often answers within that time, and waking through the event
   * loop costs tens of microseconds. Bounded, so an idle CPU does not spin.
   */
  #pollBriefly(): void {
    if (this.#current !== undefined || this.#ready.length > 0 || this.#guests.size === 0) return;
    const w = this.#pv.words;
    const bell = this.#pv.doorbell(this.#init.cpu);
    const seen = Atomics.load(w, bell);
    const until = performance.now() + SPIN_MS;
    while (performance.now() < until) {
      if (Atomics.load(w, bell) !== seen) {
        this.#drainWakes();
        return;
      }
    }
  }

  #now(): bigint {
    return BigInt(Math.round((performance.timeOrigin + performance.now() - this.#init.epochMs) * 1e6));
  }

  #start(msg: Extract<ToHost, { t: 'start' }>): void {
    const module = this.#images.get(msg.imageId);
    if (!module) {
      this.#post({ t: 'exit', domid: msg.domid, exit: { kind: 'trap', reason: `image ${msg.imageId} was never sent to this vCPU host`, backtrace: [] } });
      return;
    }
    const g: Guest = {
      domid: msg.domid,
      memory: msg.memory,
      memoryBytes: msg.memoryBytes,
      cmdline: msg.cmdline,
      startInfoPage: msg.startInfoPage,
      entries: msg.entries,
      module,
      state: 'ready',
      booted: false,
      queued: false,
      paused: msg.paused,
      resume: undefined,
      wakeValue: 0,
      eventPending: false,
      blockTimer: undefined,
      timer: undefined,
      watchdog: undefined,
      input: [],
      inputBytes: 0,
      storeWait: undefined,
      sliceStart: 0,
      bvt: new BvtEntity(msg.sched ?? DEFAULT_BVT),
      exports: undefined,
      globals: msg.globals ?? [],
      suspendedIn: undefined,
      capture: undefined,
      unwinding: undefined,
      rewinding: undefined,
      rewindPending: false,
      entryIndex: 0,
      captured: undefined,
      timeOffsetNs: 0n,
      timerNs: 0n,
    };
    if (msg.resume) {
      g.captured = msg.resume.state;
      g.entryIndex = msg.resume.state.entry;
      g.rewinding = { value: msg.resume.value };
      g.rewindPending = true;
      g.timeOffsetNs = msg.resume.state.nowNs - this.#now();
      if (msg.resume.state.timerNs !== 0n) this.#setTimer(g, msg.resume.state.timerNs);
    }
    this.#guests.set(g.domid, g);
    if (msg.watchdogMs) this.#armWatchdog(g, msg.watchdogMs);
    this.#awaken(g);
    if (g.paused) {
      g.state = 'parked';
      this.#post({ t: 'paused', domid: g.domid });
      return;
    }
    this.#makeReady(g);
  }

  /**
   * A store call: the arguments are read from guest memory here (so a bad
   * range is -EFAULT before anything else happens), the main thread carries
   * the call out, and the guest waits, off the CPU, for the answer, which is
   * written back into its buffer (at most `cap` bytes) when it resumes.
   */
  #storeCall(g: Guest, op: StoreOp, path: number, pathLen: number, value?: [number, number], buf = 0, cap = 0): number | Promise<number> {
    const m = new Uint8Array(g.memory.buffer);
    const range = (p: number, n: number): boolean => (p >>> 0) + (n >>> 0) <= m.length;
    if (op !== 'next-event') {
      if (!range(path, pathLen)) return -Errno.EFAULT;
      if ((pathLen >>> 0) > MAX_PATH) return -Errno.EINVAL;
    }
    if (value && !range(value[0], value[1])) return -Errno.EFAULT;
    if (value && (value[1] >>> 0) > MAX_VALUE) return -Errno.E2BIG;
    if (cap && !range(buf, cap)) return -Errno.EFAULT;
    const dec = new TextDecoder('utf-8', { fatal: true });
    let p = '';
    let v = '';
    try {
      p = op === 'next-event' ? '' : dec.decode(m.slice(path >>> 0, (path >>> 0) + (pathLen >>> 0)));
      v = value ? dec.decode(m.slice(value[0] >>> 0, (value[0] >>> 0) + (value[1] >>> 0))) : '';
    } catch {
      return -Errno.EINVAL; // not UTF-8
    }
    const req = ++this.#storeSeq;
    const waiting = this.#suspend(g, 'waiting');
    g.suspendedIn = 'store';
    g.storeWait = {
      req,
      finish: (result) => {
        let out: number;
        if (typeof result === 'number') out = result;
        else if (result === null) out = 0;
        else {
          const data = new TextEncoder().encode(typeof result === 'string' ? result : result.map((n) => `${n}\0`).join(''));
          new Uint8Array(g.memory.buffer).set(data.subarray(0, cap >>> 0), buf >>> 0);
          out = data.length;
        }
        if (g.state !== 'waiting') return;
        g.wakeValue = out;
        this.#awaken(g);
        if (g.paused) {
          g.state = 'parked'; // its pause was confirmed while it waited
        } else {
          this.#makeReady(g);
        }
      },
    };
    this.#post({ t: 'store', domid: g.domid, req, op, path: p, value: v });
    return waiting;
  }

  /** (Re-)arm a guest's watchdog; 0 disarms it. */
  #armWatchdog(g: Guest, ms: number): void {
    clearTimeout(g.watchdog);
    g.watchdog = undefined;
    if (ms === 0) return;
    this.#due(g, ms);
    g.watchdog = setTimeout(() => this.#finish(g, { kind: 'shutdown', reason: 'watchdog' }), ms);
  }

  #makeReady(g: Guest): void {
    g.state = 'ready';
    if (g.queued) return;
    g.queued = true;
    this.#ready.push(g);
    if (!this.#dispatchQueued) {
      this.#dispatchQueued = true;
      setImmediate(() => this.#dispatch());
    }
  }

  /** Run the next ready guest until it suspends; one guest per turn of the event loop. */
  #dispatch(): void {
    this.#dispatchQueued = false;
    const i = this.#sched.pick(this.#ready, bvtOf);
    if (i >= 0) {
      const g = this.#ready.splice(i, 1)[0]!;
      g.queued = false;
      this.#run(g);
    }
    if (this.#ready.length > 0 && !this.#dispatchQueued) {
      this.#dispatchQueued = true;
      setImmediate(() => this.#dispatch());
    }
  }

  #run(g: Guest): void {
    if (g.state === 'dead') return;
    if (g.paused) {
      g.state = 'parked';
      return;
    }
    g.state = 'running';
    this.#current = g;
    g.sliceStart = performance.now();
    if (!g.booted) {
      g.booted = true;
      this.#boot(g);
    } else if (g.rewindPending) {
      this.#runEntries(g);
    } else {
      const resume = g.resume;
      g.resume = undefined;
      g.suspendedIn = undefined;
      resume?.(g.wakeValue);
    }
    // Runs after the guest has suspended again (microtasks run in order).
    queueMicrotask(() => this.#pollBriefly());
  }

  #boot(g: Guest): void {
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(g.module, this.#imports(g));
    } catch (err) {
      this.#finish(g, { kind: 'trap', reason: `instantiation failed: ${(err as Error).message}`, backtrace: [] });
      return;
    }
    g.exports = instance.exports as Record<string, unknown>;
    if (g.rewindPending) {
      // A restore: the saved globals go back before the stack is rewound.
      const values = g.captured!.globals;
      if (values.length !== g.globals.length) {
        this.#finish(g, { kind: 'trap', reason: `the saved state has ${values.length} globals, the image ${g.globals.length}`, backtrace: [] });
        return;
      }
      try {
        g.globals.forEach((name, i) => { (g.exports![name] as WebAssembly.Global).value = values[i]; });
      } catch (err) {
        this.#finish(g, { kind: 'trap', reason: `the saved globals do not fit the image: ${(err as Error).message}`, backtrace: [] });
        return;
      }
    }
    this.#runEntries(g);
  }

  /**
   * Call the entries from g.entryIndex on (rewinding the captured stack
   * first when one is pending). A guest whose stack unwinds for a capture
   * returns from its entry: that is reported, not taken as a poweroff.
   */
  #runEntries(g: Guest): void {
    const exports = g.exports!;
    const from = g.entryIndex;
    if (g.rewindPending) {
      g.rewindPending = false;
      const stack = g.captured!.stack;
      if (stack.length > this.#flags.buffer.byteLength - CAPTURE_AREA_OFFSET - 8) {
        this.#finish(g, { kind: 'trap', reason: `its saved stack (${stack.length} bytes) does not fit this CPU's capture area`, backtrace: [] });
        return;
      }
      const view = new DataView(this.#flags.buffer);
      new Uint8Array(this.#flags.buffer).set(stack, CAPTURE_AREA_OFFSET + 8);
      view.setUint32(CAPTURE_AREA_OFFSET, CAPTURE_AREA_OFFSET + 8 + stack.length, true);
      view.setUint32(CAPTURE_AREA_OFFSET + 4, this.#flags.buffer.byteLength, true);
      (exports as unknown as CaptureExports).asyncify_start_rewind(CAPTURE_AREA_OFFSET);
    }
    const entries = g.entries.map((name) => WebAssembly.promising(exports[name] as () => void));
    const run = async (): Promise<boolean> => {
      for (let i = from; i < entries.length; i++) {
        g.entryIndex = i;
        await entries[i]!();
        if (g.unwinding) return false;
      }
      return true;
    };
    run().then(
      (done) => (done ? this.#finish(g, { kind: 'shutdown', reason: 'poweroff' }) : this.#unwound(g)),
      (err: unknown) => this.#finish(g, g.rewinding ? { kind: 'trap', reason: `its saved stack could not be rewound: ${(err as Error).message}`, backtrace: [] } : trapExit(err)),
    );
  }

  /** Start unwinding from inside hypercall `at`: the guest's stack goes to this CPU's capture area as it returns. */
  #beginUnwind(g: Guest, at: CapturedState['at']): number {
    const view = new DataView(this.#flags.buffer);
    view.setUint32(CAPTURE_AREA_OFFSET, CAPTURE_AREA_OFFSET + 8, true);
    view.setUint32(CAPTURE_AREA_OFFSET + 4, this.#flags.buffer.byteLength, true);
    (g.exports as unknown as CaptureExports).asyncify_start_unwind(CAPTURE_AREA_OFFSET);
    g.unwinding = at;
    g.capture = undefined;
    return 0;
  }

  /** A capture of a guest suspended in a block or yield: resume it into the unwind. */
  #captureSuspended(g: Guest): void {
    if (g.queued) {
      const i = this.#ready.indexOf(g);
      if (i >= 0) this.#ready.splice(i, 1);
      g.queued = false;
    }
    clearTimeout(g.blockTimer);
    g.blockTimer = undefined;
    this.#beginUnwind(g, g.suspendedIn as 'block' | 'yield');
    g.state = 'running';
    this.#current = g;
    g.sliceStart = performance.now();
    const resume = g.resume!;
    g.resume = undefined;
    g.suspendedIn = undefined;
    resume(0);
  }

  /** The guest's stack is unwound: take its state and report it. It stays here, stopped, until 'continue' or 'kill'. */
  #unwound(g: Guest): void {
    if (g.state === 'dead') return;
    const ex = g.exports as unknown as CaptureExports;
    ex.asyncify_stop_unwind();
    const view = new DataView(this.#flags.buffer);
    const end = view.getUint32(CAPTURE_AREA_OFFSET, true);
    const stack = new Uint8Array(this.#flags.buffer).slice(CAPTURE_AREA_OFFSET + 8, end);
    const state: CapturedState = {
      entry: g.entryIndex,
      at: g.unwinding!,
      globals: g.globals.map((name) => (g.exports![name] as WebAssembly.Global).value as number | bigint),
      stack,
      nowNs: this.#now() + g.timeOffsetNs,
      timerNs: g.timerNs,
    };
    g.unwinding = undefined;
    g.captured = state;
    if (g.state === 'running') this.#account(g);
    if (this.#current === g) this.#current = undefined;
    g.state = 'captured';
    clearTimeout(g.timer);
    g.timer = undefined;
    g.timerNs = 0n;
    this.#post({ t: 'captured', domid: g.domid, state });
  }

  /** Arm the guest's one-shot timer for `deadline` in its own clock. */
  #setTimer(g: Guest, deadline: bigint): number {
    clearTimeout(g.timer);
    g.timer = undefined;
    g.timerNs = 0n;
    if (deadline === 0n) return 0;
    const ms = Math.max(0, Number(deadline - this.#now() - g.timeOffsetNs) / 1e6);
    if (!Number.isFinite(ms) || ms > 2 ** 31 - 1) return -Errno.EINVAL;
    this.#due(g, ms);
    g.timerNs = deadline;
    g.timer = setTimeout(() => {
      g.timer = undefined;
      g.timerNs = 0n;
      this.#evtchn.raiseVirq(g.domid, Virq.TIMER);
      this.#raiseEvent(g);
    }, ms);
    return 0;
  }

  /** Stop a guest for good and report why. Its suspended stack is dropped. */
  #finish(g: Guest, exit: GuestExit): void {
    if (g.state === 'dead') return;
    if (g.state === 'running') this.#account(g);
    if (this.#current === g) this.#current = undefined;
    g.state = 'dead';
    g.resume = undefined;
    clearTimeout(g.blockTimer);
    clearTimeout(g.timer);
    clearTimeout(g.watchdog);
    this.#dueAt.delete(g);
    this.#guests.delete(g.domid);
    this.#post({ t: 'exit', domid: g.domid, exit });
  }

  #account(g: Guest): void {
    const now = performance.now();
    const ranNs = (now - g.sliceStart) * 1e6;
    this.#cpuNs[g.domid] = (this.#cpuNs[g.domid] ?? 0) + ranNs;
    g.bvt.charge(ranNs, now * 1e6);
    g.sliceStart = now;
  }

  /** A guest becomes runnable after sleeping (or for the first time): BVT brings it up to the system virtual time. */
  #awaken(g: Guest): void {
    const svt = Math.min(this.#sched.svt(this.#ready, bvtOf), this.#current ? this.#current.bvt.avt : Infinity);
    g.bvt.wake(performance.now() * 1e6, svt);
  }

  /** Suspend the running guest until `resume` is called. */
  #suspend(g: Guest, state: GuestState): Promise<number> {
    this.#account(g);
    if (this.#current === g) this.#current = undefined;
    g.state = state;
    return new Promise<number>((resolve) => { g.resume = resolve; });
  }

  #yield(g: Guest): Promise<number> {
    const p = this.#suspend(g, 'ready');
    g.wakeValue = 0;
    this.#makeReady(g);
    return p;
  }

  #park(g: Guest): Promise<number> {
    const p = this.#suspend(g, 'parked');
    g.suspendedIn = 'park';
    g.wakeValue = 0;
    this.#post({ t: 'paused', domid: g.domid });
    return p;
  }

  /** The rewind reached the captured hypercall: the guest runs on from there. */
  #rewound(g: Guest): number {
    const value = g.rewinding!.value;
    g.rewinding = undefined;
    (g.exports as unknown as CaptureExports).asyncify_stop_rewind();
    return value;
  }

  #wake(g: Guest, value: number): void {
    if (g.state !== 'blocked') return;
    clearTimeout(g.blockTimer);
    g.blockTimer = undefined;
    g.wakeValue = value;
    if (value === 0) {
      // The guest reads every pending port after waking, so the flags that
      // caused this wake-up are consumed here.
      g.eventPending = false;
      this.#evtchn.takeUpcall(g.domid);
    }
    Atomics.store(this.#runstate, g.domid, RunState.RUNNABLE);
    this.#awaken(g);
    if (this.#current === undefined && this.#ready.length === 0 && !g.paused) {
      // Nothing else wants this CPU: run it now rather than a turn of the event loop later.
      g.state = 'ready';
      this.#run(g);
      return;
    }
    this.#makeReady(g);
  }

  #raiseEvent(g: Guest): void {
    g.eventPending = true;
    if (g.state === 'blocked') this.#wake(g, 0);
  }

  /** Apply pause and kill requests to the domains here other than `running`. */
  #applyControls(running: Guest): void {
    for (const other of [...this.#guests.values()]) {
      if (other === running) continue;
      const c = Atomics.load(this.#ctl, other.domid);
      if (c === Ctl.KILL) this.#finish(other, { kind: 'killed' });
      else if (c === Ctl.PAUSE && !other.paused) this.handle({ t: 'pause', domid: other.domid });
    }
  }

  /** A timer of `g` is due in `ms`: a running guest yields at its next safepoint after that, so the timer fires on time. */
  #due(g: Guest, ms: number): void {
    const at = performance.now() + ms;
    const cur = this.#dueAt.get(g);
    if (cur === undefined || at < cur) this.#dueAt.set(g, at);
    if (at < this.#soonest) this.#soonest = at;
  }

  /** Drop passed deadlines and return the earliest one left (Infinity when none). */
  #recomputeSoonest(): number {
    const now = performance.now();
    let soonest = Infinity;
    for (const [g, at] of this.#dueAt) {
      if (at <= now || g.state === 'dead') this.#dueAt.delete(g);
      else if (at < soonest) soonest = at;
    }
    return soonest;
  }

  /** The safepoint: called by instrumented code when this CPU's attention word is set. */
  #safepoint(g: Guest): number | Promise<number> {
    const why = Atomics.exchange(this.#attention, 0, 0);
    const ctl = Atomics.load(this.#ctl, g.domid);
    if (ctl === Ctl.KILL) {
      this.#finish(g, { kind: 'killed' });
      return NEVER;
    }
    if (ctl === Ctl.PAUSE || g.paused) {
      g.paused = true;
      return this.#park(g);
    }
    // At the end of a slice the guest always goes back to the ready queue, so
    // the event loop gets a turn; before it, BVT may give the CPU to a guest
    // with a lower effective virtual time (a warped one, at once).
    // A control message for another domain here (pause, kill) waits in the
    // event loop, and so does a timer that is due: give the loop a turn.
    if ((why & Attention.CONTROL) !== 0) {
      // Act on the control words of this CPU's other domains now: the
      // message that carries the same request may not have arrived yet.
      this.#applyControls(g);
      return this.#yield(g);
    }
    const now = performance.now();
    if (now >= this.#soonest) {
      this.#soonest = this.#recomputeSoonest();
      return this.#yield(g);
    }
    const ranNs = (now - g.sliceStart) * 1e6;
    if (ranNs >= this.#sched.sliceNs) return this.#yield(g);
    if (this.#ready.length > 0 && this.#sched.shouldPreempt(g.bvt, ranNs, this.#ready, bvtOf)) return this.#yield(g);
    return 0;
  }

  #imports(g: Guest): WebAssembly.Imports {
    const mem = (): number => g.memory.buffer.byteLength;
    const d = g.domid;
    const ev = this.#evtchn;
    const gt = this.#grants;
    const bytes = (): Uint8Array => new Uint8Array(g.memory.buffer);
    const suspending = (fn: (...args: never[]) => number | Promise<number>): WebAssembly.ImportValue =>
      new WebAssembly.Suspending(fn) as unknown as WebAssembly.ImportValue;
    // Typed against the declarations jco generates from the WIT, so a change
    // in the ABI breaks the type-check here (host-bindings/imports.ts).
    const hypercalls: HostHypercallImports<WebAssembly.ImportValue> = {
      'wasmvisor:hypercall/console@0.1.0': {
        write: (ptr: number, len: number): number => {
          const d = decodeConsoleWrite(mem(), ptr, len);
          if (!d.ok) return d.errno;
          if (Atomics.load(this.#consoleInFlight, g.domid) + d.value.len > CONSOLE_IN_FLIGHT_MAX) return -Errno.EAGAIN;
          Atomics.add(this.#consoleInFlight, g.domid, d.value.len);
          const copy = bytes().slice(d.value.ptr, d.value.ptr + d.value.len);
          this.#post({ t: 'console', domid: g.domid, bytes: copy }, [copy.buffer]);
          return d.value.len;
        },
        read: (ptr: number, cap: number): number => {
          const d = decodeRange(mem(), ptr, cap);
          if (!d.ok) return d.errno;
          let moved = 0;
          while (moved < d.value.len && g.input.length > 0) {
            const head = g.input[0]!;
            const n = Math.min(head.length, d.value.len - moved);
            bytes().set(head.subarray(0, n), d.value.ptr + moved);
            moved += n;
            g.inputBytes -= n;
            if (n === head.length) g.input.shift();
            else g.input[0] = head.subarray(n);
          }
          return moved;
        },
      },
      'wasmvisor:hypercall/start-info@0.1.0': {
        'domain-id': (): number => g.domid,
        'memory-size': (): bigint => BigInt(g.memoryBytes),
        cmdline: (ptr: number, cap: number): number => {
          const d = decodeRange(mem(), ptr, cap);
          if (!d.ok) return d.errno;
          bytes().set(g.cmdline.subarray(0, d.value.len), d.value.ptr);
          return g.cmdline.length;
        },
        page: (): number => g.startInfoPage,
      },
      'wasmvisor:hypercall/sched@0.1.0': {
        yield: suspending((): number | Promise<number> => {
          if (g.rewinding) return this.#rewound(g);
          if (g.capture?.any) return this.#beginUnwind(g, 'yield');
          // Giving up the rest of the slice: BVT charges it, so the others go first.
          const rest = this.#sched.sliceNs - (performance.now() - g.sliceStart) * 1e6;
          const p = this.#yield(g);
          g.suspendedIn = 'yield';
          if (rest > 0) g.bvt.charge(rest, performance.now() * 1e6);
          return p;
        }),
        block: suspending((deadline: bigint): number | Promise<number> => {
          if (g.rewinding) return this.#rewound(g);
          if (g.capture?.any) return this.#beginUnwind(g, 'block');
          if (this.#evtchn.takeUpcall(g.domid) || g.eventPending) {
            g.eventPending = false;
            return 0;
          }
          const d = BigInt.asUintN(64, deadline);
          if (d !== 0n) {
            const ms = Number(d - this.#now() - g.timeOffsetNs) / 1e6;
            if (ms <= 0) return 1;
            g.blockTimer = setTimeout(() => this.#wake(g, 1), ms);
            this.#due(g, ms);
          }
          Atomics.store(this.#runstate, g.domid, RunState.BLOCKED);
          const p = this.#suspend(g, 'blocked');
          g.suspendedIn = 'block';
          g.bvt.sleep(performance.now() * 1e6);
          return p;
        }),
        watchdog: (timeoutMs: number): number => {
          const ms = timeoutMs >>> 0;
          if (ms > 3_600_000) return -Errno.EINVAL;
          this.#armWatchdog(g, ms);
          return 0;
        },
        shutdown: suspending((code: number): number | Promise<number> => {
          if (g.rewinding) return this.#rewound(g);
          const d = decodeShutdown(code);
          if (!d.ok) return d.errno;
          // The suspend a save asked for: capture here; the call returns when the domain runs again.
          if (d.value === 'suspend' && g.capture) return this.#beginUnwind(g, 'shutdown');
          this.#finish(g, { kind: 'shutdown', reason: d.value });
          return NEVER;
        }),
      },
      'wasmvisor:hypercall/evtchn@0.1.0': {
        'alloc-unbound': (remote: number): number => ev.allocUnbound(d, remote),
        'bind-interdomain': (remote: number, port: number): number => ev.bindInterdomain(d, remote, port),
        'bind-virq': (virq: number): number => ev.bindVirq(d, virq),
        send: (port: number): number => ev.send(d, port),
        close: (port: number): number => ev.close(d, port),
        status: (port: number, out: number): number => {
          const r = decodeRange(mem(), out, 16);
          if (!r.ok) return r.errno;
          const st = ev.status(d, port);
          if (typeof st === 'number') return st;
          const view = new DataView(g.memory.buffer, r.value.ptr, 16);
          view.setUint32(0, st.state, true);
          view.setUint32(4, st.remote, true);
          view.setUint32(8, st.remotePort, true);
          view.setUint32(12, st.virq, true);
          return st.state;
        },
        mask: (port: number): number => ev.mask(d, port),
        unmask: (port: number): number => ev.unmask(d, port),
        pending: (ptr: number, words: number): number => {
          const n = Math.min(words >>> 0, NR_PORTS / 32);
          const r = decodeRange(mem(), ptr, n * 4);
          if (!r.ok) return r.errno;
          const view = new DataView(g.memory.buffer, r.value.ptr, n * 4);
          return ev.takePending(d, n, (k, bits) => view.setUint32(k * 4, bits >>> 0, true));
        },
      },
      'wasmvisor:hypercall/grant@0.1.0': {
        'grant-access': (grantee: number, page: number, readonly: number): number => gt.grantAccess(d, grantee, page, readonly, mem()),
        'end-access': (gref: number): number => gt.endAccess(d, gref),
        'copy-from': (granter: number, gref: number, offset: number, dst: number, len: number): number =>
          gt.copy(d, granter, gref, offset, dst, len, false),
        'copy-to': (granter: number, gref: number, offset: number, src: number, len: number): number =>
          gt.copy(d, granter, gref, offset, src, len, true),
      },
      'wasmvisor:hypercall/store@0.1.0': {
        read: suspending((path: number, pathLen: number, buf: number, cap: number) => this.#storeCall(g, 'read', path, pathLen, undefined, buf, cap)),
        write: suspending((path: number, pathLen: number, value: number, valueLen: number) => this.#storeCall(g, 'write', path, pathLen, [value, valueLen])),
        directory: suspending((path: number, pathLen: number, buf: number, cap: number) => this.#storeCall(g, 'directory', path, pathLen, undefined, buf, cap)),
        remove: suspending((path: number, pathLen: number) => this.#storeCall(g, 'remove', path, pathLen)),
        watch: suspending((path: number, pathLen: number) => this.#storeCall(g, 'watch', path, pathLen)),
        unwatch: suspending((path: number, pathLen: number) => this.#storeCall(g, 'unwatch', path, pathLen)),
        'next-event': suspending((buf: number, cap: number) => this.#storeCall(g, 'next-event', 0, 0, undefined, buf, cap)),
      },
      'wasmvisor:hypercall/time@0.1.0': {
        'monotonic-now': (): bigint => this.#now() + g.timeOffsetNs,
        'set-timer': (deadline: bigint): number => this.#setTimer(g, BigInt.asUintN(64, deadline)),
      },
    };
    return {
      [MEMORY_IMPORT.module]: { [MEMORY_IMPORT.name]: g.memory },
      ...(hypercalls as unknown as WebAssembly.Imports),
      [SAFEPOINT_MODULE]: {
        [SAFEPOINT_NAME]: suspending((): number | Promise<number> => this.#safepoint(g)),
        [FLAGS_NAME]: this.#flags,
      },
    };
  }
}

/** Turn whatever rejected a guest's entry promise into a crash record. */
export function trapExit(err: unknown): GuestExit {
  if (err instanceof Error) {
    return { kind: 'trap', reason: `${err.name === 'RuntimeError' ? 'trap' : err.name}: ${err.message}`, backtrace: wasmBacktrace(err.stack ?? '') };
  }
  return { kind: 'trap', reason: `threw ${String(err)}`, backtrace: [] };
}

const FRAME = /^\s*at (?:(\S+) \()?wasm:\/\/wasm\/[^:]*:wasm-function\[(\d+)\]:(0x[0-9a-f]+)\)?$/;

/** The Wasm frames of a V8 stack trace, innermost first, without our instrumentation. */
export function wasmBacktrace(stack: string): TrapFrame[] {
  const frames: TrapFrame[] = [];
  for (const line of stack.split('\n')) {
    const m = FRAME.exec(line);
    if (!m) continue;
    const func = m[1] ?? `func[${m[2]}]`;
    if (func === TICK_FUNCTION || func.endsWith(`.${TICK_FUNCTION}`)) continue;
    frames.push({ func, offset: Number.parseInt(m[3]!, 16) });
  }
  return frames;
}
