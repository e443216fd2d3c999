/**
 * The Hypervisor: the engine a host program (or the `wv` daemon) creates.
 * It owns the kernel's domain table, the guest image cache and the physical
 * CPUs (vCPU host threads). Everything is per instance: many hypervisors can
 * live in one process.
 */
import { createHash, randomUUID } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { Kernel, isDomainName } from '../kernel/kernel.ts';
import { MAX_DOMID } from '../kernel/kernel.ts';
import { SHUTDOWN_CODES, isLive } from '../kernel/domain.ts';
import type { DomainRecord, Phase, ShutdownReason } from '../kernel/domain.ts';
import {
  DomainExistsError,
  DomainPhaseError,
  HypervisorClosedError,
  ImageMemoryTooLargeError,
  InvalidArgumentError,
  HostMemoryError,
  WvError,
} from '../kernel/errors.ts';
import { SHUTDOWN_REQUEST_OFFSET, START_INFO_DOMID_OFFSET, writeStartInfo } from '../kernel/start-info.ts';
import { Errno } from '../kernel/errno.ts';
import { DEFAULT_BVT, bvtParamsProblem } from '../kernel/bvt.ts';
import type { BvtParams } from '../kernel/bvt.ts';
import { PortState, PvTable, Virq } from '../kernel/pv-table.ts';
import { EventChannels } from '../kernel/evtchn.ts';
import { GrantTables, viewMemories } from '../kernel/grant.ts';
import { START_INFO_ADDR } from '../host-bindings/abi.ts';
import { Domain } from './domain.ts';
import type { DomainControl, DomainExit, ExitAction } from './domain.ts';
import { CpuPool } from './executor/cpu-pool.ts';
import { parseBootOptions } from './boot-options.ts';
import { parseAllow } from '../devices/net/nat/gateway.ts';
import { Attention, Ctl, RunState } from './executor/protocol.ts';
import type { FromHost, GuestExit, SharedTables, StoreOp } from './executor/protocol.ts';
import { Store } from '../kernel/store.ts';
import { HostEvents } from './host-events.ts';
import { GuestImage, WASM_PAGE, buildImage } from './loader/image.ts';
import { FLAGS_MEMORY_PAGES } from './loader/capture.ts';
import type { CapturedState } from './executor/protocol.ts';
import { SaveReader, SaveWriter, type SaveSummary } from './save/format.ts';
import { MigrationError, RestoreError, SaveTimeoutError, SaveUnsupportedError } from './save/errors.ts';
import { DirtyPages, Frame, FrameReader, MIGRATE_PAGE, MIGRATE_PORT, jsonFrame, parseHostPort, writeFrame, type MigrateHello, type MigrateResult } from './save/migrate.ts';
import { VERSION } from './toolstack/controller.ts';
import type { SavedPort } from '../kernel/evtchn.ts';
import type { SavedGrant } from '../kernel/grant.ts';
import { connectDevices, devicesSaveProblem, exportDevices, prepareDevices, quiesceDevices, restorablePorts, type DeviceHost, type PreparedDevices } from './save/devices.ts';
import { H_VIRQ } from '../kernel/pv-table.ts';
import { BlockDevices, type OpenedDisk } from '../devices/blk/vbd.ts';
import type { DiskSpec } from '../devices/blk/disk-spec.ts';
import { NetDevices, type VifSpec } from '../devices/net/vif.ts';

const MiB = 1024 * 1024;

/** Resource policy of one hypervisor. */
/** What a save holds of a domain besides its memory, section by section (docs/save-format.md). */
interface SavedParts {
  domain: unknown;
  image: Uint8Array;
  globals: unknown;
  stack: Uint8Array;
  evtchn: unknown;
  grants: unknown;
  devices: unknown;
  console: Uint8Array;
}

/** How #createFromImage makes a restored domain. */
interface RestoreInput {
  memory: WebAssembly.Memory;
  state: CapturedState;
  ports: SavedPort[];
  grants: SavedGrant[];
  console: Uint8Array | undefined;
  /** The id and generation it had, to keep when the id is free. */
  keep?: { id: number; gen: number };
  /** Its devices, opened; reconnected once its ports and grants are back. */
  devices?: PreparedDevices;
}

export interface HypervisorOptions {
  /** Where the daemon takes migrated domains (boot option `migrate_listen`); a Hypervisor itself listens only when listenForMigrations is called. */
  migrateListen?: { host: string; port: number };
  /** Host memory the hypervisor may use, bytes. Default: the machine's total memory. */
  memoryBytes?: number;
  /** Memory reserved for the host (domain 0), bytes: Xen's `dom0_mem`. Default: 1 GiB or 1/8 of memoryBytes, whichever is less. */
  dom0MemoryBytes?: number;
  /** Physical CPUs (vCPU host threads). Default: all cores; 1 is Xen's `nosmp`. */
  cpus?: number;
  /** Scheduler time slice, ms. Default 10. */
  sliceMs?: number;
  /** Console history kept per domain, bytes. Default 64 KiB. */
  consoleBytes?: number;
  /**
   * The `watchdog` boot option: every domain's watchdog is armed with this
   * timeout (ms) when it starts, so a guest that does not pet it
   * (`sched.watchdog`) in time is shut down with reason watchdog and handled
   * by its `onWatchdog` policy. Default: off (a guest arms its own).
   */
  watchdogMs?: number;
  /** Put the NAT gateway on the switch at boot (the `nat` boot option; otherwise `hv.net.enableNat()` or the first `wv nat` command does). */
  nat?: boolean;
  /** The NAT allow-list: host addresses guests may reach, `a.b.c.d[/bits][:port]` each (the `nat_allow=` boot option). Default ['127.0.0.0/8']. */
  natAllow?: string[];
  /** A boot line (`"nosmp watchdog dom0_mem=512M"`, see boot-options.ts); the fields above override it. */
  boot?: string;
}

/** Where a guest image comes from. */
export type ImageSource = string | Uint8Array | GuestImage;

/** What to create. Memory is in MiB, like xl's `memory =`, unless memoryBytes is given. */
export interface DomainConfig {
  image: ImageSource;
  name?: string;
  /** Memory allocation in MiB. Default 16. */
  memory?: number;
  /** Memory allocation in bytes (overrides `memory`); a multiple of 64 KiB. */
  memoryBytes?: number;
  cmdline?: string;
  /** Create the domain paused (like `xl create -p`). */
  paused?: boolean;
  onPoweroff?: ExitAction;
  onReboot?: ExitAction;
  onCrash?: ExitAction;
  /** What to do when the domain's watchdog expires (default: destroy). */
  onWatchdog?: ExitAction;
  /** Pin the domain to this physical CPU (0-based; default: the least loaded). */
  cpu?: number;
  /** Scheduling parameters (BVT); see `setSched`. */
  sched?: SchedSettings;
  /**
   * Virtual block devices, as xl disk specs (`file:/srv/root.img,xvda,w`,
   * `phy:sdb,xvdb,r`, `vd:NAME,xvdc`) or parsed ones. Every backing store is
   * opened and checked (existence, sharing rules) before the guest starts.
   */
  disks?: Array<string | DiskSpec>;
  /**
   * Network interfaces, as xl vif specs (`ip=169.254.1.1,mac=00:16:3e:00:00:01,rate=10Mb/s`)
   * or parsed ones; vif N is the Nth. Their MACs and addresses are claimed on
   * the switch before the guest starts.
   */
  vifs?: Array<string | VifSpec>;
}

/**
 * BVT scheduling parameters as the toolstack sets them (`cpu_bvtset`):
 * `mcuadv` is the inverse weight (CPU-bound domains share a CPU in inverse
 * proportion to it; default 10); `warp`, `warpl` and `warpu` are in
 * microseconds: how much virtual time a warped domain borrows, for how long
 * at most, and how long it must then run unwarped before it warps again.
 */
export interface SchedSettings {
  mcuadv?: number;
  warp?: number;
  warpl?: number;
  warpu?: number;
}

/** One row of `list()`, like `xl list`. */
export interface DomainInfo {
  readonly id: number;
  readonly name: string;
  readonly phase: Phase;
  readonly memoryBytes: number;
  readonly cpuTimeNs: number;
  readonly cpu: number | undefined;
  /** The CPU the domain is pinned to (`pincpu`), if any; it runs there from its next start if it is elsewhere now. */
  readonly pinned: number | undefined;
  readonly image: string;
  readonly shutdownReason: ShutdownReason | undefined;
  /** BVT parameters (times in µs), undefined for domain 0. */
  readonly sched: Required<SchedSettings> | undefined;
  /** Bytes the domain has written to its console since it was created. */
  readonly consoleBytes: number;
}

export class Hypervisor implements AsyncDisposable {
  readonly #watchdogMs: number | undefined;
  readonly kernel: Kernel;
  readonly cpus: number;
  /** Event channels and grant tables, shared with every vCPU host. */
  readonly pv: PvTable;
  readonly evtchn: EventChannels;
  readonly grants: GrantTables;
  /** The store frontends and backends meet in (kernel/store.ts); domain 0 is the host. */
  readonly store: Store;
  /** Handlers for domain 0's event channel ports (host backends). */
  readonly hostEvents: HostEvents;
  /** Virtual block devices (devices/blk/vbd.ts): attach, detach, list. */
  readonly blk: BlockDevices;
  /** Virtual network interfaces and the switch (devices/net/vif.ts): attach, detach, addresses, rates, list. */
  readonly net: NetDevices;
  readonly #hostWatches = new Map<string, Set<(changed: string) => void>>();
  #hostWatchQueued = false;
  /** Block devices of destroyed domains still finishing their requests. */
  readonly #releasing = new Set<Promise<void>>();
  readonly #pool: CpuPool;
  readonly #tables: SharedTables;
  readonly #ctl: Int32Array;
  readonly #cpuNs: Float64Array;
  readonly #consoleInFlight: Int32Array;
  readonly #runstate: Int32Array;
  /** Each CPU's attention word (see runtime/loader/instrument.ts). */
  readonly #attention: Int32Array[];
  readonly #images = new Map<string, Promise<GuestImage>>();
  readonly #domains = new Map<number, Domain>();
  readonly #configs = new Map<number, DomainConfig>();
  /** BVT parameters of each domain (ns), as last set. */
  readonly #sched = new Map<number, BvtParams>();
  #sliceMs: number;
  readonly #epochMs: number;
  readonly #control: DomainControl;
  #closed = false;
  /** Where the daemon should take migrated domains (boot option `migrate_listen`), if anywhere. */
  readonly migrateListen: { host: string; port: number } | undefined;
  /** This hypervisor, among all: a save records it, so a restore knows whether the domains it was talking to are the same ones. */
  readonly instanceId = randomUUID();
  /** Closers of the migration listeners. */
  readonly #migrationServers = new Set<() => Promise<void>>();
  /** Domains being saved, migrated or cloned, from their capture until the work is done. */
  readonly #saving = new Set<number>();
  /** Saves waiting for a guest's capture. */
  readonly #captureWaits = new Map<number, { resolve: (s: CapturedState) => void; reject: (e: Error) => void; armed?: () => void }>();

  constructor(given: HypervisorOptions = {}) {
    const opts: HypervisorOptions = given.boot !== undefined
      ? { ...parseBootOptions(given.boot, os.availableParallelism()), ...stripUndefined(given) }
      : given;
    if (opts.watchdogMs !== undefined && !(Number.isInteger(opts.watchdogMs) && opts.watchdogMs > 0 && opts.watchdogMs <= 3_600_000)) {
      throw new InvalidArgumentError('watchdogMs', `${opts.watchdogMs} is not a whole number of ms in (0, 3600000]`);
    }
    opts.natAllow?.forEach(parseAllow); // before anything is set up: a bad entry leaves nothing behind
    this.#watchdogMs = opts.watchdogMs;
    this.migrateListen = opts.migrateListen;
    const total = opts.memoryBytes ?? os.totalmem();
    const dom0 = opts.dom0MemoryBytes ?? Math.min(1024 * MiB, Math.floor(total / 8));
    const cpus = opts.cpus ?? os.availableParallelism();
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 256) throw new InvalidArgumentError('cpus', `${cpus} is not between 1 and 256`);
    const sliceMs = opts.sliceMs ?? 10;
    if (!(sliceMs > 0 && sliceMs <= 1000)) throw new InvalidArgumentError('sliceMs', `${sliceMs} is not in (0, 1000]`);
    this.#sliceMs = sliceMs;
    this.#epochMs = performance.timeOrigin + performance.now();
    const clock = (): bigint => BigInt(Math.round((performance.timeOrigin + performance.now() - this.#epochMs) * 1e6));
    this.kernel = new Kernel({ totalMemoryBytes: total, dom0MemoryBytes: dom0, clock, consoleBytes: opts.consoleBytes });
    this.cpus = cpus;
    // Page 0: the CPU's attention word; the rest: where a guest's stack is unwound when it is saved (runtime/loader/capture.ts).
    const flags = Array.from({ length: cpus }, () => new WebAssembly.Memory({ initial: FLAGS_MEMORY_PAGES, maximum: FLAGS_MEMORY_PAGES, shared: true }));
    this.#attention = flags.map((m) => new Int32Array(m.buffer, 0, 1));
    this.pv = new PvTable(MAX_DOMID, cpus);
    // Domain 0 is the host itself: live, privileged, never on a vCPU host.
    this.pv.claim(0, true);
    this.pv.setHome(0, -1);
    this.evtchn = new EventChannels(this.pv, -1, () => {}, this.#attention);
    this.hostEvents = new HostEvents(this.evtchn);
    this.hostEvents.onHandlerError = (port, err) => this.kernel.log.error(`host handler of port ${port} failed: ${err instanceof Error ? err.message : String(err)}; it is removed`);
    this.store = new Store({ onEvent: (d) => { if (d !== 0) this.evtchn.raiseVirq(d, Virq.STORE); else this.#queueHostWatches(); } });
    this.grants = new GrantTables(this.pv, viewMemories((id) => {
      const m = this.#domains.get(id)?.memory;
      return m ? new Uint8Array(m.buffer) : undefined;
    }));
    this.#tables = {
      flags,
      pv: this.pv.buffer,
      maxDomid: MAX_DOMID,
      hosts: cpus,
      ctl: new SharedArrayBuffer((MAX_DOMID + 1) * 4),
      cpuNs: new SharedArrayBuffer((MAX_DOMID + 1) * 8),
      consoleInFlight: new SharedArrayBuffer((MAX_DOMID + 1) * 4),
      runstate: new SharedArrayBuffer((MAX_DOMID + 1) * 4),
    };
    this.#ctl = new Int32Array(this.#tables.ctl);
    this.#cpuNs = new Float64Array(this.#tables.cpuNs);
    this.#consoleInFlight = new Int32Array(this.#tables.consoleInFlight);
    this.#runstate = new Int32Array(this.#tables.runstate);
    this.#pool = new CpuPool(cpus, this.#tables, this.#epochMs, sliceMs, {
      onMessage: (_cpu, msg) => this.#onHostMessage(msg),
      onHostFailure: (cpu, domids, reason) => {
        this.kernel.log.error(reason);
        for (const id of domids) this.#onExit(id, { kind: 'trap', reason, backtrace: [] });
        void cpu;
      },
      onHostRespawn: (_cpu, send) => {
        for (const d of this.#domains.values()) if (d.memory) send({ t: 'domain', domid: d.id, memory: d.memory });
      },
      onTickerFailure: (reason) => this.kernel.log.error(`${reason}; a new ticker took over`),
    });
    this.#control = {
      pause: (d) => this.pause(d.id),
      unpause: (d) => this.unpause(d.id),
      destroy: (d) => this.destroy(d.id),
      cpuTimeNs: (id) => this.#cpuNs[id] ?? 0,
      phaseOf: (rec) => this.#phaseOf(rec),
      cpuOf: (id) => this.#pool.cpuOf(id),
    };
    const devices = {
      store: this.store,
      evtchn: this.evtchn,
      grants: this.grants,
      onPort: (port: number, fn: () => void) => this.hostEvents.on(port, fn),
      watch: (path: string, fn: (changed: string) => void) => this.watchStore(path, fn),
      domainName: (id: number) => this.kernel.find(id)?.name ?? `domain ${id}`,
      log: (level: 'info' | 'warn' | 'error', line: string) => this.kernel.log[level](line),
    };
    this.blk = new BlockDevices(devices);
    this.net = new NetDevices(devices, undefined, opts.natAllow ? { natAllow: opts.natAllow } : {});
    if (opts.nat) this.net.enableNat();
    this.kernel.events.on('phase', ({ domain, from, to }) => this.#domains.get(domain.id)?.events.emit('phase', { from, to }));
    this.kernel.events.on('console', ({ domain, bytes }) => this.#domains.get(domain.id)?.events.emit('console', bytes));
    this.kernel.log.info(`${cpus} physical CPU${cpus === 1 ? '' : 's'}, slice ${sliceMs} ms`);
  }

  /**
   * Load (validate, instrument, compile) a guest image, or return the cached
   * one. Paths are cached by path, bytes by content.
   */
  loadImage(source: ImageSource): Promise<GuestImage> {
    this.#checkOpen();
    if (source instanceof GuestImage) return Promise.resolve(source);
    const key = typeof source === 'string' ? `path:${source}` : `bytes:${hashKey(source)}`;
    let p = this.#images.get(key);
    if (!p) {
      p = (async () => {
        let bytes: Uint8Array;
        if (typeof source === 'string') {
          try {
            bytes = await readFile(source);
          } catch (err) {
            const e = err as NodeJS.ErrnoException;
            throw new InvalidArgumentError('guest image', `cannot read ${source}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
          }
        } else {
          bytes = source;
        }
        return buildImage(bytes, typeof source === 'string' ? source : '(bytes)');
      })();
      p.catch(() => this.#images.delete(key));
      this.#images.set(key, p);
    }
    return p;
  }

  /** Create and start a domain. Resolves once it is handed to a CPU. */
  async createDomain(config: DomainConfig): Promise<Domain> {
    this.#checkOpen();
    const image = await this.loadImage(config.image);
    const disks: OpenedDisk[] = [];
    try {
      for (const d of config.disks ?? []) disks.push(await this.blk.open(d));
      return this.#createFromImage(image, config, disks);
    } catch (err) {
      await Promise.allSettled(disks.map((d) => d.backing.close()));
      throw err;
    }
  }

  /**
   * Watch the store as domain 0 (the host's backends): `fn` gets each path
   * changed at or under `path`, and runs once at once. Returns a remover.
   */
  watchStore(path: string, fn: (changed: string) => void): () => void {
    const known = this.#hostWatches.get(path);
    const set = known ?? new Set<(changed: string) => void>();
    if (!known) {
      this.#hostWatches.set(path, set);
      const r = this.store.watch(0, path);
      if (r < 0) throw new InvalidArgumentError('store watch', `cannot watch ${path}: ${errnoName(r)}`);
    } else {
      queueMicrotask(() => { if (set.has(fn)) fn(path); });
    }
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.#hostWatches.get(path) === set) {
        this.#hostWatches.delete(path);
        this.store.unwatch(0, path);
      }
    };
  }

  #queueHostWatches(): void {
    if (this.#hostWatchQueued) return;
    this.#hostWatchQueued = true;
    // Run the handlers after the store operation that fired them has finished.
    queueMicrotask(() => {
      this.#hostWatchQueued = false;
      for (let changed = this.store.nextEvent(0); changed !== undefined; changed = this.store.nextEvent(0)) {
        for (const [path, fns] of this.#hostWatches) {
          if (changed !== path && !changed.startsWith(path === '/' ? '/' : `${path}/`)) continue;
          for (const fn of [...fns]) {
            try {
              fn(changed);
            } catch (err) {
              this.kernel.log.error(`store watch on ${path} failed: ${err instanceof Error ? err.message : String(err)}`);
            }
          }
        }
      }
    });
  }

  #createFromImage(image: GuestImage, config: DomainConfig, disks: OpenedDisk[] = [], restore?: RestoreInput): Domain {
    this.#checkOpen();
    const memoryBytes = config.memoryBytes ?? Math.round((config.memory ?? 16) * MiB);
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes < WASM_PAGE || memoryBytes % WASM_PAGE !== 0) {
      throw new InvalidArgumentError('memory', `${memoryBytes} bytes is not a positive multiple of 64 KiB`);
    }
    if (config.cpu !== undefined && !(Number.isInteger(config.cpu) && config.cpu >= 0 && config.cpu < this.cpus)) {
      throw new InvalidArgumentError('cpu', `${config.cpu} is not a CPU of this hypervisor (0..${this.cpus - 1})`);
    }
    const sched = schedParams(DEFAULT_BVT, config.sched ?? {});
    const needed = Math.max(1, image.minPages) * WASM_PAGE;
    if (needed > memoryBytes) throw new ImageMemoryTooLargeError(image.label, needed, memoryBytes);
    const record = this.kernel.createDomain({ name: config.name, memoryBytes, cmdline: config.cmdline, image: image.label, ...(restore?.keep ? { preferId: restore.keep.id } : {}) });
    let memory: WebAssembly.Memory;
    try {
      memory = restore?.memory ?? new WebAssembly.Memory({
        initial: Math.max(1, image.minPages),
        maximum: Math.min(memoryBytes / WASM_PAGE, image.maxPages),
        shared: true,
      });
    } catch (err) {
      this.kernel.release(record);
      throw new HostMemoryError(memoryBytes, (err as Error).message);
    }
    const cmdline = new TextEncoder().encode(record.cmdline);
    // A restored guest's start-info page is in its saved memory; only its domain id may be new.
    if (restore) new DataView(memory.buffer).setUint32(START_INFO_ADDR + START_INFO_DOMID_OFFSET, record.id, true);
    else for (const seg of image.data) new Uint8Array(memory.buffer).set(seg.bytes, seg.offset);
    if (!restore) writeStartInfo(new Uint8Array(memory.buffer), START_INFO_ADDR, {
      domid: record.id,
      privileged: false,
      memoryBytes,
      createdNs: record.createdNs,
      cmdline,
    });
    const dom = new Domain(record, image, memory, this.#control);
    this.#domains.set(record.id, dom);
    this.#configs.set(record.id, config);
    this.#storeHome(record.id, record.name);
    // The guest finds its disks in the store as it starts: attach them first.
    let attached = 0;
    try {
      for (; attached < disks.length; attached++) this.blk.install(record.id, disks[attached]!);
      for (const [i, v] of (config.vifs ?? []).entries()) this.net.attach(record.id, v, i);
    } catch (err) {
      this.#domains.delete(record.id);
      this.#configs.delete(record.id);
      // Installed disks are closed by their teardown; the rest by the caller.
      this.#track(this.#releaseDevices(record.id));
      disks.splice(0, attached);
      this.store.releaseDomain(record.id);
      this.kernel.release(record);
      throw err;
    }
    Atomics.store(this.#ctl, record.id, config.paused ? Ctl.PAUSE : Ctl.NONE);
    this.#cpuNs[record.id] = 0;
    Atomics.store(this.#consoleInFlight, record.id, 0);
    Atomics.store(this.#runstate, record.id, RunState.RUNNABLE);
    this.pv.claim(record.id, false, restore?.keep && restore.keep.id === record.id ? restore.keep.gen : undefined, restore !== undefined);
    let peers: Array<{ domid: number; port: number }> = [];
    if (restore) {
      for (const why of this.grants.restoreGrants(record.id, restore.grants, memory.buffer.byteLength)) this.kernel.log.warn(`domain ${record.id} (${record.name}): restore: ${why}`);
      const ports = this.evtchn.restorePorts(record.id, restore.devices ? restorablePorts(restore.devices, restore.ports) : restore.ports);
      for (const why of ports.lost) this.kernel.log.warn(`domain ${record.id} (${record.name}): restore: ${why}`);
      peers = ports.peers;
      if (restore.devices) for (const why of connectDevices(this.#deviceHost, record.id, restore.devices)) this.kernel.log.warn(`domain ${record.id} (${record.name}): restore: ${why}`);
      this.grants.thaw(record.id);
      if (restore.console && restore.console.length > 0) this.kernel.consoleWrite(record, restore.console);
    }
    this.#pool.broadcast({ t: 'domain', domid: record.id, memory });
    // The peers of restored channels hear of it after their vCPU hosts have the restored memory (messages arrive in order).
    for (const p of peers) {
      if (p.domid === 0 || !this.#pool.send(p.domid, { t: 'pending', domid: p.domid, port: p.port })) this.evtchn.setPending(p.domid, p.port);
    }
    const cpu = this.#pool.start({
      t: 'start',
      domid: record.id,
      imageId: image.id,
      entries: image.entries,
      memory,
      memoryBytes,
      cmdline,
      startInfoPage: START_INFO_ADDR,
      paused: config.paused ?? false,
      sched,
      ...(this.#watchdogMs !== undefined ? { watchdogMs: this.#watchdogMs } : {}),
      globals: image.capture.globals.map((g) => g.name),
      ...(restore ? { resume: { state: restore.state, value: 0 } } : {}),
    }, image.module, config.cpu);
    this.#sched.set(record.id, sched);
    this.pv.setHome(record.id, cpu);
    this.kernel.setPhase(record, config.paused ? 'paused' : 'running');
    this.kernel.log.info(`domain ${record.id} (${record.name}) created: ${image.label}, ${memoryBytes / MiB} MiB, on cpu ${this.#pool.cpuOf(record.id)}`);
    return dom;
  }

  /** The handle of a live (or preserved) domain, by id or name. */
  domain(ref: number | string): Domain {
    const rec = this.kernel.get(ref);
    const dom = this.#domains.get(rec.id);
    if (!dom) throw new DomainPhaseError(rec.id, 'manage', 'the host domain');
    return dom;
  }

  /** All domains, like `xl list`, domain 0 first. */
  list(): DomainInfo[] {
    return this.kernel.list().map((r) => ({
      id: r.id,
      name: r.name,
      phase: this.#phaseOf(r),
      memoryBytes: r.memoryBytes,
      cpuTimeNs: r.id === 0 ? process.cpuUsage().user * 1000 : (this.#cpuNs[r.id] ?? 0),
      cpu: this.#pool.cpuOf(r.id),
      pinned: this.#configs.get(r.id)?.cpu,
      image: r.image,
      shutdownReason: r.shutdownReason,
      sched: this.#sched.has(r.id) ? toSettings(this.#sched.get(r.id)!) : undefined,
      consoleBytes: r.console.totalBytes,
    }));
  }

  /**
   * Connect an event channel between two domains, as a toolstack does when
   * it sets up a split driver: a port of `a` is offered to `b` and bound by
   * it. Returns the two port numbers. A guest learns its peer's domain id
   * with `evtchn.status`.
   */
  connect(a: number | string, b: number | string): [number, number] {
    const A = this.domain(a).id;
    const B = this.domain(b).id;
    const pa = this.evtchn.allocUnbound(A, B);
    if (pa < 0) throw new InvalidArgumentError('event channel', `domain ${A} cannot offer a port to domain ${B}: ${errnoName(pa)}`);
    const pb = this.evtchn.bindInterdomain(B, A, pa);
    if (pb < 0) {
      this.evtchn.close(A, pa);
      throw new InvalidArgumentError('event channel', `domain ${B} cannot bind port ${pa} of domain ${A}: ${errnoName(pb)}`);
    }
    this.kernel.log.info(`event channel: domain ${A} port ${pa} <-> domain ${B} port ${pb}`);
    return [pa, pb];
  }

  /**
   * A domain's phase as reported: the kernel's, except that a running domain
   * that is waiting for an event shows as blocked (the vCPU host records
   * that in shared memory instead of sending a message at every block).
   */
  #phaseOf(rec: DomainRecord): Phase {
    if (rec.phase === 'running' && Atomics.load(this.#runstate, rec.id) === RunState.BLOCKED) return 'blocked';
    return rec.phase;
  }

  /**
   * Pin a domain to a physical CPU (`pincpu`). A guest's stack lives on the
   * vCPU host thread that runs it and cannot move to another thread, so a
   * domain already running elsewhere stays there until it next starts (a
   * restart by its `on_*` policy, or a restore) and then runs on `cpu`.
   * Returns where it runs now and whether the pin is already in effect.
   */
  pin(ref: number | string, cpu: number): { cpu: number | undefined; pinned: number; effective: 'now' | 'next-start' } {
    const dom = this.domain(ref);
    if (!(Number.isInteger(cpu) && cpu >= 0 && cpu < this.cpus)) {
      throw new InvalidArgumentError('cpu', `${cpu} is not a CPU of this hypervisor (0..${this.cpus - 1})`);
    }
    const config = this.#configs.get(dom.id);
    if (config) this.#configs.set(dom.id, { ...config, cpu });
    const now = this.#pool.cpuOf(dom.id);
    const effective = now === cpu ? 'now' : 'next-start';
    this.kernel.log.info(`domain ${dom.id}: pinned to cpu ${cpu}${effective === 'now' ? '' : ` (runs on cpu ${now} until it next starts)`}`);
    return { cpu: now, pinned: cpu, effective };
  }

  /** Set a domain's BVT parameters (`cpu_bvtset`); unset fields keep their values. */
  setSched(ref: number | string, settings: SchedSettings): void {
    const dom = this.domain(ref);
    const params = schedParams(this.#sched.get(dom.id) ?? DEFAULT_BVT, settings);
    this.#sched.set(dom.id, params);
    this.#pool.send(dom.id, { t: 'sched', domid: dom.id, params });
    this.kernel.log.info(`domain ${dom.id}: bvt mcuadv ${params.mcuadv} warp ${params.warp / 1e3} us warpl ${params.warpl / 1e3} us warpu ${params.warpu / 1e3} us`);
  }

  /** A domain's BVT parameters (times in µs). */
  sched(ref: number | string): Required<SchedSettings> {
    return toSettings(this.#sched.get(this.domain(ref).id) ?? DEFAULT_BVT);
  }

  /** The scheduler's time slice, ms (`cpu_bvtslice`). */
  get sliceMs(): number { return this.#sliceMs; }

  /** Set the time slice of every CPU, ms (`cpu_bvtslice`). */
  setSlice(ms: number): void {
    if (!(ms > 0 && ms <= 1000)) throw new InvalidArgumentError('slice', `${ms} ms is not in (0, 1000]`);
    this.#sliceMs = ms;
    this.#pool.broadcast({ t: 'slice', sliceMs: ms });
    this.#pool.setSlice(ms);
    this.kernel.log.info(`bvt slice ${ms} ms`);
  }

  /**
   * Type into a domain's console (what `wv console` sends): the bytes wait
   * for the guest's `console.read` and its console virq is raised. Input a
   * guest leaves unread is bounded (64 KiB); the rest is dropped.
   */
  consoleInput(ref: number | string, bytes: Uint8Array): void {
    const dom = this.domain(ref);
    if (!isLive(dom.record.phase)) throw new DomainPhaseError(dom.id, 'send console input to', dom.record.phase);
    if (bytes.length === 0) return;
    const copy = bytes.slice();
    this.#pool.send(dom.id, { t: 'console-in', domid: dom.id, bytes: copy });
  }

  /** The kernel log, formatted. */
  dmesg(): string[] { return this.kernel.log.lines(); }

  /** Pause a domain; resolves when it has stopped running. */
  async pause(ref: number | string): Promise<void> {
    const dom = this.domain(ref);
    const rec = dom.record;
    if (rec.phase === 'paused') return;
    if (!isLive(rec.phase)) throw new DomainPhaseError(rec.id, 'pause', rec.phase);
    const stopped = new Promise<void>((resolve) => dom.pauseWaiters.push(resolve));
    Atomics.store(this.#ctl, rec.id, Ctl.PAUSE);
    this.#pool.send(rec.id, { t: 'pause', domid: rec.id });
    this.#attend(rec.id);
    await stopped;
  }

  async unpause(ref: number | string): Promise<void> {
    const dom = this.domain(ref);
    const rec = dom.record;
    if (rec.phase !== 'paused') throw new DomainPhaseError(rec.id, 'unpause', rec.phase);
    Atomics.compareExchange(this.#ctl, rec.id, Ctl.PAUSE, Ctl.NONE);
    this.#pool.send(rec.id, { t: 'unpause', domid: rec.id });
    this.kernel.setPhase(rec, 'running', 'unpause');
  }

  /**
   * Ask a domain to shut down (`xl shutdown`): the reason goes into its
   * start-info page and virq 2 (shutdown requested) is raised; a guest that
   * does not stop within `timeoutMs` (default 30 s) is destroyed. Resolves
   * with how it ended.
   */
  async shutdown(ref: number | string, opts: { reason?: 'poweroff' | 'reboot' | 'suspend'; timeoutMs?: number } = {}): Promise<DomainExit> {
    const dom = this.domain(ref);
    const rec = dom.record;
    if (!isLive(rec.phase)) throw new DomainPhaseError(rec.id, 'shut down', rec.phase);
    const reason = opts.reason ?? 'poweroff';
    if (!['poweroff', 'reboot', 'suspend'].includes(reason)) throw new InvalidArgumentError('shutdown reason', `"${reason}" is not poweroff, reboot or suspend`);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    if (!(timeoutMs > 0)) throw new InvalidArgumentError('shutdown timeout', `${timeoutMs} ms is not positive`);
    if (rec.phase !== 'shutting-down') this.kernel.setPhase(rec, 'shutting-down', 'shut down');
    if (dom.memory) {
      Atomics.store(new Int32Array(dom.memory.buffer), (START_INFO_ADDR + SHUTDOWN_REQUEST_OFFSET) / 4, 1 + SHUTDOWN_CODES[reason]);
    }
    const heard = this.evtchn.raiseVirq(rec.id, Virq.SHUTDOWN);
    this.kernel.log.info(`domain ${rec.id} (${rec.name}): ${reason} requested${heard ? '' : ' (it has not bound the shutdown virq)'}, destroy in ${timeoutMs} ms if it does not stop`);
    const timer = setTimeout(() => {
      if (!this.kernel.find(rec.id) || !isLive(rec.phase)) return;
      this.kernel.log.warn(`domain ${rec.id} (${rec.name}) did not shut down within ${timeoutMs} ms: destroying it`);
      void this.destroy(rec.id).catch(() => {});
    }, timeoutMs);
    try {
      return await dom.waitForExit();
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Save a running domain to `file` (`xl save`; docs/save-format.md). The
   * guest is asked to suspend: one that has bound the shutdown virq gets a
   * suspend request and is captured when it calls shutdown(suspend); one
   * that has not is captured at its next block or yield. A guest that does
   * not suspend within `timeoutMs` (default 10 s) keeps running and the save
   * fails; with `force` it is then captured at its next block or yield.
   * The file is written atomically; then the domain is destroyed, or with
   * `checkpoint` goes on running. If writing fails (a full disk), the domain
   * goes on running and the error says why.
   */
  async save(ref: number | string, file: string, opts: { checkpoint?: boolean; force?: boolean; timeoutMs?: number; onProgress?: (done: number, total: number | undefined) => void } = {}): Promise<SaveSummary & { domid: number; name: string; downtimeMs: number }> {
    this.#checkOpen();
    const dom = this.domain(ref);
    const rec = dom.record;
    const id = rec.id;
    const t0 = performance.now();
    if (this.#saving.has(id)) throw new SaveUnsupportedError(id, 'a save of it is already under way');
    this.#saving.add(id);
    try {
      const state = await this.#capture(dom, 'save', opts);
      const resumeValue = state.at === 'shutdown' ? 1 : 0;
      // Domain 0's backends first (their requests in flight finish), then other domains' grant copies.
      let resumeDevices: () => void;
      try {
        resumeDevices = await quiesceDevices(this.#deviceHost, id);
      } catch (err) {
        this.#pool.send(id, { t: 'continue', domid: id, value: resumeValue });
        throw err;
      }
      try {
        await this.#freeze(id);
      } catch (err) {
        resumeDevices();
        this.#pool.send(id, { t: 'continue', domid: id, value: resumeValue });
        throw err;
      }
      let summary: SaveSummary;
      try {
        summary = await this.#writeSave(dom, state, file, opts);
      } catch (err) {
        resumeDevices();
        this.#thaw(id);
        this.#pool.send(id, { t: 'continue', domid: id, value: resumeValue });
        this.kernel.log.warn(`domain ${id} (${rec.name}): save to ${file} failed, it goes on running: ${(err as Error).message}`);
        throw err;
      }
      const downtimeMs = performance.now() - t0;
      if (opts.checkpoint) {
        resumeDevices();
        this.#thaw(id);
        this.#pool.send(id, { t: 'continue', domid: id, value: resumeValue });
        this.kernel.log.info(`domain ${id} (${rec.name}): checkpoint saved to ${summary.path} (${summary.bytes} bytes); it goes on running`);
      } else {
        this.kernel.log.info(`domain ${id} (${rec.name}): saved to ${summary.path} (${summary.bytes} bytes)`);
        rec.shutdownReason = 'suspend';
        await this.destroy(id);
      }
      return { ...summary, domid: id, name: rec.name, downtimeMs };
    } finally {
      this.#saving.delete(id);
    }
  }

  /** A domain a save, migration or clone (`what`) can capture: live, and its image has capture points. */
  #checkCapturable(dom: Domain, what: string): void {
    const rec = dom.record;
    if (!isLive(rec.phase) || rec.phase === 'dying' || rec.phase === 'shutting-down') throw new DomainPhaseError(rec.id, what, rec.phase);
    if (!dom.image.capture.saveable) throw new SaveUnsupportedError(rec.id, dom.image.capture.why ?? 'its image has no capture points');
  }

  /**
   * Stop a domain's vCPU where it can be captured and return its state; the
   * domain stays stopped until the caller sends 'continue' or destroys it.
   * A guest that has bound the shutdown virq is asked to suspend first.
   */
  async #capture(dom: Domain, what: string, opts: { force?: boolean; timeoutMs?: number }): Promise<CapturedState> {
    const rec = dom.record;
    const id = rec.id;
    this.#checkCapturable(dom, what);
    const unsupported = devicesSaveProblem(this.#deviceHost, id);
    if (unsupported) throw new SaveUnsupportedError(id, unsupported);
    if (this.#captureWaits.has(id)) throw new SaveUnsupportedError(id, 'a save of it is already under way');
    const timeoutMs = opts.timeoutMs ?? 10_000;
    if (!(timeoutMs > 0)) throw new InvalidArgumentError(`${what} timeout`, `${timeoutMs} ms is not positive`);
    const view = dom.memory ? new Int32Array(dom.memory.buffer) : undefined;
    const request = (START_INFO_ADDR + SHUTDOWN_REQUEST_OFFSET) / 4;
    const cooperative = Atomics.load(this.pv.words, this.pv.slot(id) + H_VIRQ + Virq.SHUTDOWN) !== 0;
    /** Ask the vCPU host for a capture; `armed` runs once it will take the guest's suspend as one (so the request cannot be seen before). */
    const capture = (any: boolean, ms: number, armed?: () => void): Promise<CapturedState> => new Promise<CapturedState>((resolve, reject) => {
      const timer = setTimeout(() => { this.#captureWaits.delete(id); reject(new Error('timeout')); }, ms);
      this.#captureWaits.set(id, {
        resolve: (st) => { clearTimeout(timer); this.#captureWaits.delete(id); resolve(st); },
        reject: (e) => { clearTimeout(timer); this.#captureWaits.delete(id); reject(e); },
        ...(armed ? { armed } : {}),
      });
      this.#pool.send(id, { t: 'capture', domid: id, any });
      this.#attend(id);
    });
    try {
      if (cooperative) {
        try {
          return await capture(false, timeoutMs, () => {
            if (view) Atomics.store(view, request, 1 + SHUTDOWN_CODES.suspend);
            this.evtchn.raiseVirq(id, Virq.SHUTDOWN);
          });
        } catch (err) {
          if ((err as Error).message !== 'timeout') throw err;
          if (!opts.force) throw new SaveTimeoutError(id, `it did not suspend within ${timeoutMs} ms (give --force to capture it at its next block or yield)`);
          return await capture(true, timeoutMs);
        }
      } else {
        return await capture(true, timeoutMs);
      }
    } catch (err) {
      this.#pool.send(id, { t: 'capture-cancel', domid: id });
      if ((err as Error).message === 'timeout') throw new SaveTimeoutError(id, `it did not block or yield within ${timeoutMs} ms, so it could not be captured (a guest is captured only where it gives up the CPU)`);
      throw err;
    } finally {
      if (view) Atomics.store(view, request, 0);
    }
  }

  /**
   * After a capture: keep other domains' grant copies out of the domain's
   * memory while it is written (a copy that landed after part of the memory
   * was written would be lost, or torn), waiting for copies under way.
   */
  async #freeze(id: number): Promise<void> {
    this.grants.freeze(id);
    const until = performance.now() + 2000;
    while (this.grants.copiesUnderWay(id)) {
      if (performance.now() > until) {
        this.grants.thaw(id);
        throw new SaveUnsupportedError(id, 'another domain kept copying to or from its grants for 2 s');
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * The domain goes on (a checkpoint, a failed save): copies into its memory
   * work again, and both ends of its channels get an event, since those sent
   * meanwhile may have found it away.
   */
  #thaw(id: number): void {
    this.grants.thaw(id);
    for (const p of this.evtchn.exportPorts(id)) {
      if (p.state !== PortState.INTERDOMAIN) continue;
      this.evtchn.setPending(p.remote, p.remotePort);
      this.evtchn.setPending(id, p.port);
    }
  }

  /** What the device save code (runtime/save/devices.ts) reaches. */
  get #deviceHost(): DeviceHost {
    return { blk: this.blk, net: this.net, evtchn: this.evtchn, grants: this.grants, log: (level, line) => this.kernel.log[level](line) };
  }

  /** What a save holds of a captured domain besides its memory (the sections before 'memory'). */
  #stateParts(dom: Domain, state: CapturedState): SavedParts {
    const rec = dom.record;
    const config = this.#configs.get(rec.id);
    const memory = new Uint8Array(dom.memory!.buffer);
    return {
      domain: {
        name: rec.name, id: rec.id, gen: this.pv.generation(rec.id), host: this.instanceId, memoryBytes: rec.memoryBytes, memoryLength: memory.length, cmdline: rec.cmdline, image: dom.image.label,
        imageId: dom.image.id, sched: this.#sched.get(rec.id) ?? null, onPoweroff: config?.onPoweroff ?? null, onReboot: config?.onReboot ?? null,
        onCrash: config?.onCrash ?? null, cpuTimeNs: this.#cpuNs[rec.id] ?? 0,
        cpu: { entry: state.entry, at: state.at, nowNs: String(state.nowNs), timerNs: String(state.timerNs) },
      },
      image: dom.image.original ?? new Uint8Array(0),
      globals: { types: dom.image.capture.globals.map((g) => g.type), values: state.globals.map(String) },
      stack: state.stack,
      evtchn: this.evtchn.exportPorts(rec.id),
      grants: this.grants.exportGrants(rec.id),
      devices: exportDevices(this.#deviceHost, rec.id),
      console: rec.console.contents(),
    };
  }

  async #writeSave(dom: Domain, state: CapturedState, file: string, opts: { checkpoint?: boolean; onProgress?: (done: number, total: number | undefined) => void }): Promise<SaveSummary> {
    const parts = this.#stateParts(dom, state);
    const memory = new Uint8Array(dom.memory!.buffer);
    const w = await SaveWriter.create(file, { checkpoint: opts.checkpoint ?? false });
    try {
      await w.addJson('domain', parts.domain);
      await w.addSection('image', parts.image);
      await w.addJson('globals', parts.globals);
      await w.addSection('stack', parts.stack);
      await w.addJson('evtchn', parts.evtchn);
      await w.addJson('grants', parts.grants);
      await w.addJson('devices', parts.devices);
      await w.addSection('console', parts.console);
      await w.addSection('memory', memory, { length: memory.length, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
      return await w.commit();
    } catch (err) {
      await w.abort().catch(() => {});
      throw err;
    }
  }

  /**
   * Restore a domain from a save file (`xl restore`), on this host or
   * another: a new domain with the saved memory, globals and stack, its
   * event channel ports, timer, console history and scheduling; the guest
   * goes on from where it was captured (its suspend call returns 0). Its
   * clock goes on from the saved time.
   */
  async restore(file: string, opts: { name?: string; paused?: boolean; onProgress?: (done: number, total: number) => void } = {}): Promise<Domain> {
    this.#checkOpen();
    // One pass over the file: records are checked as they are read, and the domain is made only after all of them.
    const r = await SaveReader.open(file, { quick: true });
    try {
      for (const k of ['domain', 'image', 'globals', 'stack', 'evtchn', 'memory'] as const) {
        if (!r.section(k)) throw new RestoreError(r.path, `it has no ${k} section`);
      }
      const parts: SavedParts = {
        domain: await r.readJson('domain'),
        image: new Uint8Array(await r.read('image')),
        globals: await r.readJson('globals'),
        stack: new Uint8Array(await r.read('stack')),
        evtchn: await r.readJson('evtchn'),
        grants: r.section('grants') ? await r.readJson('grants') : [],
        devices: r.section('devices') ? await r.readJson('devices') : { vbds: [], vifs: [] },
        console: r.section('console') ? new Uint8Array(await r.read('console')) : new Uint8Array(0),
      };
      const dom = await this.#restoreParts(r.path, parts, opts, async (memory) => {
        const n = await r.readInto('memory', new Uint8Array(memory.buffer), { zeroed: true, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
        if (n !== memory.buffer.byteLength) throw new RestoreError(r.path, `its memory section holds ${n} bytes, its domain record says ${memory.buffer.byteLength}`);
      });
      this.kernel.log.info(`domain ${dom.id} (${dom.name}) restored from ${r.path}`);
      return dom;
    } finally {
      await r.close();
    }
  }

  /**
   * Migrate a running domain to the wasmvisor listening at `target`
   * (`HOST[:PORT]`, default port 8002; see listenForMigrations), as `xl
   * migrate` does: its memory is copied while it runs, in rounds that each
   * send the pages changed since the last (at most `maxRounds`, default 8,
   * ending early once a round has at most 256 pages or stops shrinking);
   * then it is captured as a save captures it, the last changed pages and
   * its state are sent, and once the target says it runs there it is
   * destroyed here. Until then it is the source's: a refusal, a failure or
   * a target that goes away leaves it running here (MigrationError).
   * With `paused` it arrives paused (`xl migrate -p`).
   */
  async migrate(ref: number | string, target: string, opts: {
    maxRounds?: number; force?: boolean; timeoutMs?: number; paused?: boolean;
    onProgress?: (p: { round: number; pages: number; bytesSent: number; final: boolean }) => void;
  } = {}): Promise<MigrateResult> {
    this.#checkOpen();
    const dom = this.domain(ref);
    const rec = dom.record;
    const id = rec.id;
    this.#checkCapturable(dom, 'migrate');
    const unsupported = devicesSaveProblem(this.#deviceHost, id);
    if (unsupported) throw new SaveUnsupportedError(id, unsupported);
    let hp: { host: string; port: number };
    try {
      hp = parseHostPort(target);
    } catch (err) {
      throw new InvalidArgumentError('migration target', (err as Error).message);
    }
    const maxRounds = opts.maxRounds ?? 8;
    if (!(Number.isInteger(maxRounds) && maxRounds >= 1 && maxRounds <= 100)) throw new InvalidArgumentError('migration rounds', `${maxRounds} is not in 1-100`);
    const where = `${hp.host}:${hp.port}`;
    if (this.#saving.has(id)) throw new SaveUnsupportedError(id, 'a save of it is already under way');
    this.#saving.add(id);
    const sock = connect({ host: hp.host, port: hp.port });
    sock.setNoDelay(true);
    let captured: CapturedState | undefined;
    let resumeDevices: (() => void) | undefined;
    let frozen = false;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer to the connection within 10 s')), 10_000);
        sock.once('connect', () => { clearTimeout(timer); resolve(); });
        sock.once('error', (err) => { clearTimeout(timer); reject(new Error(`cannot connect: ${(err as NodeJS.ErrnoException).code ?? err.message}`)); });
      });
      const reader = new FrameReader(sock);
      const answer = async (): Promise<{ type: number; payload: Buffer }> => {
        const f = await reader.next();
        if (f.type === Frame.ERROR) {
          let why = 'it refused';
          try {
            why = `it refused: ${(JSON.parse(f.payload.toString('utf8')) as { message: string }).message}`;
          } catch { /* keep the plain reason */ }
          throw new Error(why);
        }
        return f;
      };
      const mem = (): Uint8Array => new Uint8Array(dom.memory!.buffer);
      const hello: MigrateHello = { protocol: 1, wasmvisor: VERSION, name: rec.name, memoryBytes: rec.memoryBytes, memoryLength: mem().length };
      const hj = jsonFrame(hello);
      const hlen = Buffer.alloc(4);
      hlen.writeUInt32BE(hj.length);
      await writeFrame(sock, Frame.HELLO, hlen, hj, dom.image.original ?? new Uint8Array(0));
      if ((await answer()).type !== Frame.ACCEPT) throw new Error('it answered HELLO with something other than ACCEPT');
      const dirty = new DirtyPages(mem().length);
      let bytesSent = 0;
      const send = async (runs: Array<[number, number]>): Promise<number> => {
        let pages = 0;
        for (const [off, len] of runs) {
          const bytes = dirty.take(mem(), off, len);
          const head = Buffer.alloc(4);
          head.writeUInt32BE(off);
          await writeFrame(sock, Frame.PAGES, head, bytes);
          bytesSent += bytes.length + 9;
          pages += Math.ceil(len / MIGRATE_PAGE);
        }
        return pages;
      };
      let rounds = 0;
      let last = Infinity;
      while (rounds < maxRounds) {
        const pages = await send(dirty.scan(mem()));
        rounds++;
        opts.onProgress?.({ round: rounds, pages, bytesSent, final: false });
        if (!isLive(rec.phase)) throw new Error(`the domain stopped (${rec.phase})`);
        if (pages <= 256 || pages >= last) break;
        last = pages;
      }
      captured = await this.#capture(dom, 'migrate', { ...(opts.force !== undefined ? { force: opts.force } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
      const t0 = performance.now();
      resumeDevices = await quiesceDevices(this.#deviceHost, id);
      await this.#freeze(id);
      frozen = true;
      const finalPages = await send(dirty.scan(mem()));
      opts.onProgress?.({ round: rounds + 1, pages: finalPages, bytesSent, final: true });
      const parts = this.#stateParts(dom, captured);
      const state = jsonFrame({
        domain: parts.domain, globals: parts.globals, evtchn: parts.evtchn, grants: parts.grants, devices: parts.devices,
        stack: Buffer.from(parts.stack).toString('base64'), console: Buffer.from(parts.console).toString('base64'), paused: opts.paused ?? false,
      });
      await writeFrame(sock, Frame.STATE, state);
      bytesSent += state.length + 5;
      const done = await answer();
      if (done.type !== Frame.RESULT) throw new Error('it answered STATE with something other than RESULT');
      const there = JSON.parse(done.payload.toString('utf8')) as { domid: number; name: string };
      const downtimeMs = performance.now() - t0;
      this.kernel.log.info(`domain ${id} (${rec.name}) migrated to ${where} as domain ${there.domid}: ${rounds} rounds, ${(bytesSent / MiB).toFixed(1)} MiB sent, ${finalPages} pages and ${downtimeMs.toFixed(1)} ms stopped`);
      captured = undefined;
      rec.shutdownReason = 'suspend';
      await this.destroy(id);
      return { domid: there.domid, name: there.name, downtimeMs, rounds, bytesSent, memoryBytes: rec.memoryBytes, finalPages };
    } catch (err) {
      if (captured) {
        resumeDevices?.();
        if (frozen) this.#thaw(id);
        this.#pool.send(id, { t: 'continue', domid: id, value: captured.at === 'shutdown' ? 1 : 0 });
      }
      if (err instanceof SaveTimeoutError || err instanceof SaveUnsupportedError || err instanceof DomainPhaseError) throw err;
      const e = new MigrationError(id, where, (err as Error).message);
      this.kernel.log.warn(e.message);
      throw e;
    } finally {
      this.#saving.delete(id);
      sock.destroy();
    }
  }

  /**
   * Start `n` copies of a running domain from one snapshot (`wv clone`): it
   * is captured once, as a checkpoint, and goes on running as soon as its
   * memory is copied; each copy is a new domain (named NAME-1, NAME-2, ...
   * unless `names` are given) that goes on from the snapshot. The copies
   * share the original's compiled image; each has its own memory. Domains
   * with disks or vifs are not cloned (the copies would share the disks
   * and the network addresses).
   */
  async clone(ref: number | string, n: number, opts: { names?: string[]; paused?: boolean; force?: boolean; timeoutMs?: number } = {}): Promise<Domain[]> {
    this.#checkOpen();
    if (!(Number.isInteger(n) && n >= 1 && n <= 256)) throw new InvalidArgumentError('clone count', `${n} is not in 1-256`);
    const dom = this.domain(ref);
    const rec = dom.record;
    const id = rec.id;
    this.#checkCapturable(dom, 'clone');
    if (this.net.list(id).length > 0 || this.blk.list(id).length > 0) throw new SaveUnsupportedError(id, 'its copies would share its disks and network addresses; only domains without devices are cloned');
    const names = opts.names ?? Array.from({ length: n }, (_, i) => `${rec.name}-${i + 1}`);
    if (names.length !== n) throw new InvalidArgumentError('clone names', `${names.length} names for ${n} copies`);
    for (const name of names) {
      if (!isDomainName(name)) throw new InvalidArgumentError('domain name', `"${name}" must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
      if (this.kernel.find(name)) throw new DomainExistsError(name);
    }
    if (new Set(names).size !== names.length) throw new InvalidArgumentError('clone names', 'a name is given twice');
    if (n * rec.memoryBytes > this.kernel.budget.freeBytes) {
      throw new RestoreError(`clone of ${rec.name}`, `${n} copies of ${rec.memoryBytes / MiB} MiB do not fit: ${Math.floor(this.kernel.budget.freeBytes / MiB)} MiB are free`);
    }
    if (this.#saving.has(id)) throw new SaveUnsupportedError(id, 'a save of it is already under way');
    this.#saving.add(id);
    let parts: SavedParts;
    let snapshot: Uint8Array;
    try {
      const state = await this.#capture(dom, 'clone', { ...(opts.force !== undefined ? { force: opts.force } : {}), ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
      try {
        await this.#freeze(id);
        parts = this.#stateParts(dom, state);
        snapshot = new Uint8Array(dom.memory!.buffer).slice();
      } finally {
        this.#thaw(id);
        this.#pool.send(id, { t: 'continue', domid: id, value: state.at === 'shutdown' ? 1 : 0 });
      }
    } finally {
      this.#saving.delete(id);
    }
    const copies: Domain[] = [];
    try {
      for (const name of names) {
        copies.push(await this.#restoreParts(`clone of ${rec.name}`, parts, { name, newId: true, image: dom.image, ...(opts.paused !== undefined ? { paused: opts.paused } : {}) }, async (memory) => {
          new Uint8Array(memory.buffer).set(snapshot);
        }));
      }
    } catch (err) {
      // All or none: the copies made so far go.
      await Promise.allSettled(copies.map((c) => this.destroy(c.id)));
      throw err;
    }
    this.kernel.log.info(`domain ${id} (${rec.name}) cloned ${n} time(s): ${copies.map((c) => `${c.id} (${c.name})`).join(', ')}`);
    return copies;
  }

  /**
   * Take domains migrated here by other wasmvisors (`wv boot -b
   * migrate_listen=[ADDR:]PORT`; default 127.0.0.1:8002). Port 0 picks a
   * free port. Resolves once listening.
   */
  async listenForMigrations(opts: { host?: string; port?: number } = {}): Promise<{ host: string; port: number; close(): Promise<void> }> {
    this.#checkOpen();
    const host = opts.host ?? '127.0.0.1';
    const sockets = new Set<Socket>();
    const server = createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      sock.on('error', () => {});
      void this.#receiveMigration(sock).finally(() => sock.end());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new InvalidArgumentError('migration listener', `cannot listen on ${host}:${opts.port ?? MIGRATE_PORT}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
      server.listen(opts.port ?? MIGRATE_PORT, host, () => resolve());
    });
    const port = (server.address() as AddressInfo).port;
    const close = async (): Promise<void> => {
      this.#migrationServers.delete(close);
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    };
    this.#migrationServers.add(close);
    this.kernel.log.info(`listening for migrations on ${host}:${port}`);
    return { host, port, close };
  }

  /** One incoming migration: HELLO, pages, STATE; the domain is created only at the end. */
  async #receiveMigration(sock: Socket): Promise<void> {
    const from = `migration from ${sock.remoteAddress}:${sock.remotePort}`;
    const reader = new FrameReader(sock);
    let name = '?';
    try {
      const first = await reader.next();
      if (first.type !== Frame.HELLO || first.payload.length < 4) throw new Error('it did not begin with HELLO');
      const hl = first.payload.readUInt32BE(0);
      if (4 + hl > first.payload.length) throw new Error('its HELLO is cut short');
      const hello = JSON.parse(first.payload.subarray(4, 4 + hl).toString('utf8')) as MigrateHello;
      const imageBytes = new Uint8Array(first.payload.subarray(4 + hl));
      if (typeof hello !== 'object' || hello === null || hello.protocol !== 1) throw new Error(`it speaks migration protocol ${JSON.stringify((hello as { protocol?: unknown })?.protocol)}, this wasmvisor ${VERSION} speaks 1`);
      if (typeof hello.name !== 'string' || !Number.isSafeInteger(hello.memoryBytes) || hello.memoryBytes <= 0 || hello.memoryBytes % WASM_PAGE !== 0
        || !Number.isSafeInteger(hello.memoryLength) || hello.memoryLength <= 0 || hello.memoryLength > hello.memoryBytes || hello.memoryLength % WASM_PAGE !== 0) {
        throw new Error('its HELLO is malformed');
      }
      name = hello.name;
      if (this.kernel.find(hello.name)) throw new Error(`a domain named "${hello.name}" exists here`);
      if (hello.memoryBytes > this.kernel.budget.freeBytes) throw new Error(`its ${hello.memoryBytes / MiB} MiB do not fit: ${Math.floor(this.kernel.budget.freeBytes / MiB)} MiB are free here`);
      const image = await this.loadImage(imageBytes).catch((err: unknown) => { throw new Error(`its guest image does not load here: ${(err as Error).message}`); });
      if (!image.capture.saveable) throw new Error(`its guest image cannot be resumed here: ${image.capture.why}`);
      if (hello.memoryLength / WASM_PAGE > image.maxPages) throw new Error(`its memory (${hello.memoryLength} bytes) is larger than its image allows`);
      const memory = new WebAssembly.Memory({ initial: hello.memoryLength / WASM_PAGE, maximum: Math.min(hello.memoryBytes / WASM_PAGE, image.maxPages), shared: true });
      await writeFrame(sock, Frame.ACCEPT);
      this.kernel.log.info(`${from}: receiving ${hello.name} (${hello.memoryBytes / MiB} MiB)`);
      for (;;) {
        const f = await reader.next();
        if (f.type === Frame.PAGES) {
          if (f.payload.length < 4) throw new Error('a PAGES frame is cut short');
          const off = f.payload.readUInt32BE(0);
          const data = f.payload.subarray(4);
          if (off % MIGRATE_PAGE !== 0 || off + data.length > hello.memoryBytes) throw new Error(`pages at ${off} (${data.length} bytes) are outside its memory`);
          const have = memory.buffer.byteLength;
          if (off + data.length > have) memory.grow(Math.ceil((off + data.length - have) / WASM_PAGE));
          new Uint8Array(memory.buffer).set(data, off);
        } else if (f.type === Frame.STATE) {
          const st = JSON.parse(f.payload.toString('utf8')) as Record<string, unknown>;
          if (typeof st !== 'object' || st === null || typeof st.stack !== 'string' || typeof st.console !== 'string') throw new Error('its STATE is malformed');
          const parts: SavedParts = {
            domain: st.domain, image: imageBytes, globals: st.globals, stack: new Uint8Array(Buffer.from(st.stack, 'base64')),
            evtchn: st.evtchn, grants: st.grants ?? [], devices: st.devices ?? { vbds: [], vifs: [] }, console: new Uint8Array(Buffer.from(st.console, 'base64')),
          };
          if ((parts.domain as { name?: unknown })?.name !== hello.name) throw new Error('its STATE names another domain than its HELLO');
          const dom = await this.#restoreParts(from, parts, { memory, paused: st.paused === true }, async () => {});
          await writeFrame(sock, Frame.RESULT, jsonFrame({ domid: dom.id, name: dom.name }));
          this.kernel.log.info(`domain ${dom.id} (${dom.name}) arrived by ${from}`);
          return;
        } else {
          throw new Error(`it sent frame type ${f.type} where pages or the state were due`);
        }
      }
    } catch (err) {
      const message = (err as Error).message;
      this.kernel.log.warn(`${from} (${name}) abandoned: ${message}`);
      if (!sock.destroyed) await writeFrame(sock, Frame.ERROR, jsonFrame({ message, code: (err as { code?: string }).code ?? 'WV_ERR_MIGRATE' })).catch(() => {});
    }
  }

  /**
   * Check what a save holds (from a file, a migration stream or a clone's
   * snapshot: `source` names it in errors), make the domain's memory, let
   * `fill` write it, and create the domain. It keeps its id (and the
   * connections other domains hold to it) when the id is free.
   */
  async #restoreParts(source: string, parts: SavedParts, opts: { name?: string; paused?: boolean; newId?: boolean; memory?: WebAssembly.Memory; image?: GuestImage }, fill: (memory: WebAssembly.Memory) => Promise<void>): Promise<Domain> {
    const d = parts.domain as {
      name: string; id?: number; gen?: number; host?: string; memoryBytes: number; memoryLength: number; cmdline: string; image: string; sched: BvtParams | null;
      onPoweroff: ExitAction | null; onReboot: ExitAction | null; onCrash: ExitAction | null;
      cpu: { entry: number; at: CapturedState['at']; nowNs: string; timerNs: string };
    };
    const bad = (what: string): never => { throw new RestoreError(source, `its domain record is malformed (${what})`); };
    if (typeof d !== 'object' || d === null) bad('not an object');
    if (typeof d.name !== 'string') bad('name');
    if (!Number.isSafeInteger(d.memoryBytes) || d.memoryBytes <= 0 || d.memoryBytes % WASM_PAGE !== 0) bad('memoryBytes');
    if (!Number.isSafeInteger(d.memoryLength) || d.memoryLength <= 0 || d.memoryLength > d.memoryBytes || d.memoryLength % WASM_PAGE !== 0) bad('memoryLength');
    if (typeof d.cpu !== 'object' || d.cpu === null || !['block', 'yield', 'shutdown'].includes(d.cpu.at) || !Number.isInteger(d.cpu.entry)) bad('cpu');
    if (typeof d.cmdline !== 'string') bad('cmdline');
    for (const k of ['onPoweroff', 'onReboot', 'onCrash'] as const) {
      if (d[k] !== null && d[k] !== undefined && !['destroy', 'preserve', 'restart'].includes(d[k] as string)) bad(k);
    }
    if (d.sched !== null && d.sched !== undefined) {
      const p = d.sched as unknown as Record<string, unknown>;
      if (typeof p !== 'object' || !['mcuadv', 'warp', 'warpl', 'warpu'].every((k) => typeof p[k] === 'number' && Number.isFinite(p[k]))) bad('sched');
      try {
        schedParams(DEFAULT_BVT, toSettings(d.sched));
      } catch {
        bad('sched');
      }
    }
    if (d.memoryBytes > this.kernel.budget.freeBytes) {
      throw new RestoreError(source, `its ${d.memoryBytes / MiB} MiB do not fit: ${Math.floor(this.kernel.budget.freeBytes / MiB)} MiB are free`);
    }
    if (!opts.image && parts.image.length === 0) throw new RestoreError(source, 'it holds no guest image');
    const image = await this.loadImage(opts.image ?? parts.image).catch((err: unknown) => {
      throw new RestoreError(source, `its guest image does not load: ${(err as Error).message}`);
    });
    if (!image.capture.saveable) throw new RestoreError(source, `its guest image cannot be resumed here: ${image.capture.why}`);
    if (d.memoryLength / WASM_PAGE > image.maxPages) {
      throw new RestoreError(source, `its memoryLength (${d.memoryLength} bytes) is larger than its image allows (${image.maxPages} pages of 64 KiB)`);
    }
    const g = parts.globals as { types: string[]; values: string[] };
    const types = image.capture.globals.map((x) => x.type);
    if (!Array.isArray(g?.types) || !Array.isArray(g.values) || g.types.join() !== types.join() || g.values.length !== types.length) {
      throw new RestoreError(source, `its globals (${Array.isArray(g?.types) ? g.types.join(', ') : '?'}) do not match its image's (${types.join(', ')})`);
    }
    const globals = g.values.map((v, i) => {
      const notNumber = (): never => { throw new RestoreError(source, `global ${i} (${types[i]}) is not a number of its type: ${JSON.stringify(v)}`); };
      if (typeof v !== 'string') return notNumber();
      if (types[i] === 'i64') {
        let n: bigint;
        try {
          n = BigInt(v);
        } catch {
          return notNumber();
        }
        if (n < -(1n << 63n) || n >= 1n << 64n) notNumber();
        return n;
      }
      const n = Number(v);
      if (types[i] === 'i32' ? !(Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 32) : (Number.isNaN(n) && v !== 'NaN')) notNumber();
      return n;
    });
    if (d.cpu.entry < 0 || d.cpu.entry >= image.entries.length) bad('cpu.entry');
    let ports = parts.evtchn as SavedPort[];
    if (!Array.isArray(ports)) bad('evtchn');
    let grants = parts.grants as SavedGrant[];
    if (!Array.isArray(grants)) throw new RestoreError(source, 'its grants section is not a list');
    let nowNs: bigint;
    let timerNs: bigint;
    try {
      nowNs = BigInt(d.cpu.nowNs);
      timerNs = BigInt(d.cpu.timerNs);
    } catch {
      return bad('cpu clock');
    }
    if (nowNs < 0n || nowNs >= 1n << 62n || timerNs < 0n || timerNs >= 1n << 62n) bad('cpu clock');
    let memory: WebAssembly.Memory;
    if (opts.memory) {
      memory = opts.memory;
      const have = memory.buffer.byteLength;
      if (have > d.memoryLength) throw new RestoreError(source, `its memory holds ${have} bytes, its domain record says ${d.memoryLength}`);
      try {
        if (have < d.memoryLength) memory.grow((d.memoryLength - have) / WASM_PAGE);
      } catch (err) {
        throw new RestoreError(source, `its memory cannot grow to ${d.memoryLength} bytes: ${(err as Error).message}`);
      }
    } else {
      try {
        memory = new WebAssembly.Memory({ initial: d.memoryLength / WASM_PAGE, maximum: Math.min(d.memoryBytes / WASM_PAGE, image.maxPages), shared: true });
      } catch (err) {
        throw new HostMemoryError(d.memoryBytes, (err as Error).message);
      }
    }
    try {
      await fill(memory);
    } catch (err) {
      if (err instanceof WvError && !(err instanceof InvalidArgumentError)) throw err;
      throw new RestoreError(source, `its memory does not fit the domain's: ${(err as Error).message}`);
    }
    const devices = await prepareDevices(this.#deviceHost, source, parts.devices);
    const config: DomainConfig = {
      image, name: opts.name ?? d.name, memoryBytes: d.memoryBytes, cmdline: d.cmdline, paused: opts.paused ?? false,
      ...(devices.vifs.length > 0 ? { vifs: devices.vifs } : {}),
      ...(d.sched ? { sched: toSettings(d.sched) } : {}),
      ...(d.onPoweroff ? { onPoweroff: d.onPoweroff } : {}), ...(d.onReboot ? { onReboot: d.onReboot } : {}), ...(d.onCrash ? { onCrash: d.onCrash } : {}),
    };
    // Generations, ports and grants name other domains of the host that saved it: on another host they name strangers.
    const sameHost = d.host === this.instanceId;
    const keep = !opts.newId && Number.isInteger(d.id) && (d.id as number) > 0 ? { id: d.id as number, gen: sameHost && Number.isInteger(d.gen) ? d.gen as number : -1 } : undefined;
    if (!sameHost) {
      // Domain 0 is on every host: a port offered to it (a device half way through its handshake) comes back, and a device channel's is joined to the new backend by connectDevices.
      const strangers = ports.filter((p) => typeof p === 'object' && p !== null && (p.state === PortState.INTERDOMAIN || p.state === PortState.UNBOUND) && !(p.remote === 0 && (p.state === PortState.UNBOUND || devices.channelPorts.has(p.port))));
      for (const p of strangers) this.kernel.log.warn(`${source}: port ${p.port} was ${p.state === PortState.INTERDOMAIN ? 'connected to' : 'offered to'} domain ${p.remote} of the host that saved it; it is not brought back here`);
      ports = ports.filter((p) => !strangers.includes(p));
      grants = grants.filter((g) => {
        if (typeof g === 'object' && g !== null && g.grantee === 0) return true;
        this.kernel.log.warn(`${source}: grant ${g?.gref} was to domain ${g?.grantee} of the host that saved it; it is not brought back here`);
        return false;
      });
    }
    try {
      return this.#createFromImage(image, config, devices.disks, {
        memory, ports, grants, console: parts.console, ...(keep ? { keep } : {}), devices,
        state: { entry: d.cpu.entry, at: d.cpu.at, globals, stack: parts.stack, nowNs, timerNs },
      });
    } catch (err) {
      // Disks #createFromImage did not install are still open.
      await Promise.allSettled(devices.disks.map((x) => x.backing.close()));
      throw err;
    }
  }

  /** Destroy a domain at once, whatever it is doing, and free its memory. */
  async destroy(ref: number | string): Promise<void> {
    const dom = this.domain(ref);
    const rec = dom.record;
    if (rec.phase === 'dying') return dom.waitForExit().then(() => {});
    if (isLive(rec.phase) && this.#pool.cpuOf(rec.id) !== undefined) {
      Atomics.store(this.#ctl, rec.id, Ctl.KILL);
      const gone = dom.waitForExit();
      this.kernel.setPhase(rec, 'dying', 'destroy');
      this.#pool.send(rec.id, { t: 'kill', domid: rec.id });
      this.#attend(rec.id);
      await gone;
      // Return once its devices are closed: its disks and addresses can be reused at once.
      await this.#releaseDevices(rec.id);
      return;
    }
    await this.#release(dom, { reason: rec.shutdownReason ?? 'destroyed', crash: rec.crash });
  }

  #onHostMessage(msg: FromHost): void {
    const dom = this.#domains.get(msg.domid);
    if (!dom) return;
    switch (msg.t) {
      case 'console':
        Atomics.sub(this.#consoleInFlight, msg.domid, msg.bytes.length);
        this.kernel.consoleWrite(dom.record, msg.bytes);
        return;
      case 'paused': {
        const rec = dom.record;
        // A confirmation that arrives after an unpause is stale: only a pause still asked for counts.
        if (Atomics.load(this.#ctl, rec.id) !== Ctl.PAUSE) return;
        if (rec.phase !== 'paused' && isLive(rec.phase)) this.kernel.setPhase(rec, 'paused', 'pause');
        const waiters = dom.pauseWaiters;
        dom.pauseWaiters = [];
        for (const w of waiters) w();
        return;
      }
      case 'exit':
        this.#captureWaits.get(msg.domid)?.reject(new SaveUnsupportedError(msg.domid, 'it stopped before it could be captured'));
        this.#onExit(msg.domid, msg.exit);
        return;
      case 'capture-armed':
        this.#captureWaits.get(msg.domid)?.armed?.();
        return;
      case 'captured':
        this.#captureWaits.get(msg.domid)?.resolve(msg.state);
        return;
      case 'capture-failed':
        this.#captureWaits.get(msg.domid)?.reject(new SaveUnsupportedError(msg.domid, msg.reason));
        return;
      case 'store':
        this.#pool.send(msg.domid, { t: 'store-reply', domid: msg.domid, req: msg.req, result: this.#storeOp(msg.domid, msg.op, msg.path, msg.value) });
        return;
    }
  }

  #onExit(domid: number, exit: GuestExit): void {
    const dom = this.#domains.get(domid);
    if (!dom) return;
    const rec = dom.record;
    for (const w of dom.pauseWaiters) w();
    dom.pauseWaiters = [];
    if (exit.kind === 'killed') {
      this.#release(dom, { reason: rec.shutdownReason ?? 'destroyed', crash: rec.crash });
      return;
    }
    let action: ExitAction;
    const config = this.#configs.get(domid);
    if (exit.kind === 'trap') {
      this.kernel.markCrashed(rec, { reason: exit.reason, backtrace: exit.backtrace });
      action = config?.onCrash ?? 'destroy';
    } else {
      if (exit.reason === 'watchdog') this.kernel.log.warn(`domain ${rec.id} (${rec.name}): watchdog expired`);
      this.kernel.markShutdown(rec, exit.reason);
      action = (exit.reason === 'reboot' ? config?.onReboot : exit.reason === 'watchdog' ? config?.onWatchdog : config?.onPoweroff) ?? 'destroy';
    }
    const result: DomainExit = exit.kind === 'trap'
      ? { reason: 'crash', crash: rec.crash }
      : { reason: exit.reason };
    if (action === 'preserve') {
      dom.settle(result);
      return;
    }
    const disks = this.#release(dom, result);
    if (action === 'restart' && config && !this.#closed) {
      this.kernel.log.info(`domain ${rec.id} (${rec.name}): restarting after ${result.reason}`);
      // The new domain opens the same disks: wait until the old one has let them go.
      disks.then(() => this.createDomain({ ...config, image: dom.image })).catch((err: unknown) => {
        this.kernel.log.error(`restart of ${rec.name} failed: ${(err as Error).message}`);
      });
    }
  }

  /** A guest's store call (kernel/store.ts): a number is 0 or a negative errno. */
  #storeOp(domid: number, op: StoreOp, path: string, value: string): number | string | string[] | null {
    if (!this.#domains.has(domid)) return -Errno.ESRCH;
    switch (op) {
      case 'read': return this.store.read(domid, path);
      case 'write': return this.store.write(domid, path, value);
      case 'directory': return this.store.list(domid, path);
      case 'remove': return this.store.remove(domid, path);
      case 'watch': return this.store.watch(domid, path);
      case 'unwatch': return this.store.unwatch(domid, path);
      case 'next-event': return this.store.nextEvent(domid) ?? null;
    }
  }

  /** A new domain's home in the store: its own, with its name and id readable by it. */
  #storeHome(id: number, name: string): void {
    const home = `/local/domain/${id}`;
    this.store.write(0, home, '');
    this.store.setPerms(0, home, { owner: id, others: [] });
    for (const [k, v] of [['name', name], ['domid', String(id)]] as const) {
      this.store.write(0, `${home}/${k}`, v);
      this.store.setPerms(0, `${home}/${k}`, { owner: 0, others: [{ domid: id, write: false }] });
    }
  }

  /** Close a domain's devices (block requests in flight complete first). */
  async #releaseDevices(domid: number): Promise<void> {
    await Promise.allSettled([this.blk.releaseDomain(domid), this.net.releaseDomain(domid)]);
  }

  /** Keep a block release in view until it ends (close and restarts wait for it). */
  #track(p: Promise<void>): Promise<void> {
    this.#releasing.add(p);
    void p.finally(() => this.#releasing.delete(p));
    return p;
  }

  #release(dom: Domain, exit: DomainExit): Promise<void> {
    const rec = dom.record;
    // Requests in flight complete before the devices close; acknowledged writes are on the host already.
    const disks = this.#track(this.#releaseDevices(rec.id));
    this.#domains.delete(rec.id);
    this.#configs.delete(rec.id);
    this.#sched.delete(rec.id);
    this.#pool.released(rec.id);
    Atomics.store(this.#ctl, rec.id, Ctl.NONE);
    this.pv.setHome(rec.id, -1);
    this.evtchn.closeAll(rec.id);
    this.grants.endAll(rec.id);
    this.store.releaseDomain(rec.id);
    if (!this.#closed) this.#pool.broadcast({ t: 'forget', domid: rec.id });
    dom.memory = undefined;
    this.kernel.release(rec);
    dom.settle(exit);
    return disks;
  }

  /** Make the guest running on `domid`'s CPU reach a safepoint now and let its CPU read control messages. */
  #attend(domid: number): void {
    const cpu = this.#pool.cpuOf(domid);
    if (cpu !== undefined) Atomics.or(this.#attention[cpu]!, 0, Attention.CONTROL);
  }

  /** For tests: end the ticker thread as a failure would. */
  killTickerForTest(): Promise<number> { return this.#pool.killTickerForTest(); }

  /** The boot watchdog's timeout, ms, if the `watchdog` boot option is on. */
  get watchdogMs(): number | undefined { return this.#watchdogMs; }

  #checkOpen(): void {
    if (this.#closed) throw new HypervisorClosedError();
  }

  /** Stop every domain and the CPUs. The hypervisor cannot be used afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#migrationServers].map((close) => close()));
    await this.#pool.close();
    for (const dom of [...this.#domains.values()]) {
      if (this.kernel.find(dom.id)) this.#release(dom, { reason: 'destroyed' });
    }
    // Block devices finish their requests in flight; a host I/O that never returns does not hold close forever.
    const pending = [...this.#releasing];
    if (pending.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        Promise.allSettled(pending).then(() => false),
        new Promise<boolean>((r) => { timer = setTimeout(() => r(true), 10_000); }),
      ]);
      clearTimeout(timer);
      if (late) this.kernel.log.error(`close: ${this.#releasing.size} block device release(s) still waiting for host I/O after 10 s; closing anyway`);
    }
    await this.net.close();
    this.hostEvents.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Merge user settings (µs) into BVT parameters (ns), checking them. */
function schedParams(base: BvtParams, s: SchedSettings): BvtParams {
  const p: BvtParams = {
    mcuadv: s.mcuadv ?? base.mcuadv,
    warp: s.warp !== undefined ? s.warp * 1e3 : base.warp,
    warpl: s.warpl !== undefined ? s.warpl * 1e3 : base.warpl,
    warpu: s.warpu !== undefined ? s.warpu * 1e3 : base.warpu,
  };
  const problem = bvtParamsProblem(p);
  if (problem) throw new InvalidArgumentError('scheduling parameters', problem);
  return p;
}

function toSettings(p: BvtParams): Required<SchedSettings> {
  return { mcuadv: p.mcuadv, warp: p.warp / 1e3, warpl: p.warpl / 1e3, warpu: p.warpu / 1e3 };
}

function errnoName(result: number): string {
  const name = Object.entries(Errno).find(([, n]) => n === -result)?.[0];
  return name ? `${name.toLowerCase()} (${result})` : String(result);
}

function hashKey(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export { WvError };

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
