/**
 * The one place every domain-0 command is carried out (see protocol.ts).
 * Actions arrive as untrusted JSON from the socket, so `parseAction` checks
 * their shape first; the hypervisor checks each domain's phase.
 */
import { InvalidArgumentError } from '../../kernel/errors.ts';
import { NR_PORTS, PortState } from '../../kernel/pv-table.ts';
import { Errno } from '../../kernel/errno.ts';
import type { Hypervisor, DomainInfo, SchedSettings } from '../hypervisor.ts';
import type { VbdInfo } from '../../devices/blk/vbd.ts';
import { VirtualDisks } from '../../devices/blk/vdisk.ts';
import { vdPath } from './paths.ts';
import { PROTOCOL_VERSION, type BlockRow, type Action, type CreateSpec, type DomRef, type HostInfo, type Op, type Results } from './protocol.ts';

export const VERSION = '0.1.0';

/** Store paths from the toolstack are domain 0's: absolute, or relative to `/`. */
function absolute(path: string): string {
  return path.startsWith('/') ? path : `/${path}`;
}

function storeError(path: string, errno: number): InvalidArgumentError {
  const why: Record<number, string> = { [-Errno.ENOENT]: 'it does not exist', [-Errno.EINVAL]: 'it is not a valid path (letters, digits, _-.@ between slashes)', [-Errno.E2BIG]: 'the value is longer than 4096 bytes', [-Errno.EACCES]: 'permission denied' };
  return new InvalidArgumentError(`store path ${path}`, why[errno] ?? `error ${errno}`);
}

const OPS: readonly Op[] = [
  'create', 'list', 'info', 'dmesg', 'pause', 'unpause', 'shutdown', 'destroy', 'rename', 'uptime', 'pin',
  'sched-bvt', 'bvt-slice', 'console-buffer', 'console', 'consoles', 'debug-keys', 'shutdown-host',
  'store-ls', 'store-read', 'store-write', 'store-rm',
  'block-attach', 'block-detach', 'block-list',
  'network-attach', 'network-detach', 'network-list', 'vif-addip', 'vif-rate',
  'nat-forward', 'nat-list', 'nat-enable', 'nat-unforward', 'nat-allow', 'save', 'restore', 'migrate', 'clone',
  'vd-create', 'vd-list', 'vd-delete', 'vd-resize', 'vd-snapshot',
];

type Obj = Record<string, unknown>;

function field(o: Obj, key: string, type: 'string' | 'number' | 'boolean' | 'object', optional: boolean): unknown {
  const v = o[key];
  if (v === undefined) {
    if (optional) return undefined;
    throw new InvalidArgumentError(`action field "${key}"`, 'it is missing');
  }
  if (typeof v !== type || v === null) throw new InvalidArgumentError(`action field "${key}"`, `it must be a ${type}, not ${JSON.stringify(v)}`);
  return v;
}

function domRef(o: Obj): DomRef {
  const v = o.dom;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === 'string' && v.length > 0) return /^\d+$/.test(v) ? Number(v) : v;
  throw new InvalidArgumentError('domain', `${JSON.stringify(v)} is not a domain id or name`);
}

const EXIT_ACTIONS = ['destroy', 'restart', 'preserve'];

function createSpec(v: unknown): CreateSpec {
  if (typeof v !== 'object' || v === null) throw new InvalidArgumentError('action field "spec"', 'it must be an object');
  const o = v as Obj;
  const spec: CreateSpec = { image: field(o, 'image', 'string', false) as string };
  const name = field(o, 'name', 'string', true);
  if (name !== undefined) spec.name = name as string;
  const memory = field(o, 'memory', 'number', true);
  if (memory !== undefined) spec.memory = memory as number;
  const cmdline = field(o, 'cmdline', 'string', true);
  if (cmdline !== undefined) spec.cmdline = cmdline as string;
  const paused = field(o, 'paused', 'boolean', true);
  if (paused !== undefined) spec.paused = paused as boolean;
  for (const k of ['onPoweroff', 'onReboot', 'onCrash', 'onWatchdog'] as const) {
    const a = field(o, k, 'string', true);
    if (a === undefined) continue;
    if (!EXIT_ACTIONS.includes(a as string)) throw new InvalidArgumentError(`action field "${k}"`, `"${String(a)}" is not destroy, restart or preserve`);
    spec[k] = a as CreateSpec['onPoweroff'];
  }
  const cpu = field(o, 'cpu', 'number', true);
  if (cpu !== undefined) spec.cpu = cpu as number;
  const sched = field(o, 'sched', 'object', true);
  if (sched !== undefined) spec.sched = schedSettings(sched);
  const disks = field(o, 'disks', 'object', true);
  if (disks !== undefined) {
    if (!Array.isArray(disks) || disks.some((d) => typeof d !== 'string') || disks.length > 64) {
      throw new InvalidArgumentError('action field "disks"', 'it must be a list of up to 64 disk specs (strings)');
    }
    spec.disks = disks as string[];
  }
  const vifs = field(o, 'vifs', 'object', true);
  if (vifs !== undefined) {
    if (!Array.isArray(vifs) || vifs.some((d) => typeof d !== 'string') || vifs.length > 64) {
      throw new InvalidArgumentError('action field "vifs"', 'it must be a list of up to 64 vif specs (strings)');
    }
    spec.vifs = vifs as string[];
  }
  return spec;
}

/** A vif: its number in the domain, its name (vif3.0) or its MAC. */
function vifRef(o: Obj): string | number {
  const v = o.vif;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === 'string' && v.length > 0 && v.length < 64) return /^\d+$/.test(v) ? Number(v) : v;
  throw new InvalidArgumentError('vif', `${JSON.stringify(v)} is not a vif number, name or MAC`);
}

/** The optional `host` and `protocol` (tcp or udp) fields of a NAT forward action, set on `a`. */
function hostAndProtocol<A extends { host?: string; protocol?: 'tcp' | 'udp' }>(o: Obj, a: A): A {
  const host = field(o, 'host', 'string', true);
  if (host !== undefined) a.host = host as string;
  const protocol = field(o, 'protocol', 'string', true);
  if (protocol !== undefined) {
    if (protocol !== 'tcp' && protocol !== 'udp') throw new InvalidArgumentError('action field "protocol"', `"${String(protocol)}" is not tcp or udp`);
    a.protocol = protocol;
  }
  return a;
}

function wholeNumber(o: Obj, key: string, max: number): number | undefined {
  const v = field(o, key, 'number', true) as number | undefined;
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0 && v <= max)) throw new InvalidArgumentError(`action field "${key}"`, `${v} is not a whole number in [0, ${max}]`);
  return v;
}

function schedSettings(v: unknown): SchedSettings {
  if (typeof v !== 'object' || v === null) throw new InvalidArgumentError('action field "settings"', 'it must be an object');
  const o = v as Obj;
  const s: SchedSettings = {};
  for (const k of ['mcuadv', 'warp', 'warpl', 'warpu'] as const) {
    const n = field(o, k, 'number', true);
    if (n !== undefined) s[k] = n as number;
  }
  return s;
}

/** Check that `v` is a well-formed action; throws InvalidArgumentError naming the bad part. */
export function parseAction(v: unknown): Action {
  if (typeof v !== 'object' || v === null) throw new InvalidArgumentError('action', 'it must be an object');
  const o = v as Obj;
  const op = o.op;
  if (typeof op !== 'string' || !(OPS as readonly string[]).includes(op)) {
    throw new InvalidArgumentError('action', `${JSON.stringify(op)} is not an operation (known: ${OPS.join(', ')})`);
  }
  switch (op as Op) {
    case 'create': return { op: 'create', spec: createSpec(o.spec) };
    case 'list': case 'info': case 'dmesg': case 'consoles': return { op: op as 'list' };
    case 'pause': case 'unpause': case 'destroy': case 'console-buffer': case 'console':
      return { op: op as 'pause', dom: domRef(o) };
    case 'shutdown': {
      const reason = field(o, 'reason', 'string', true);
      if (reason !== undefined && !['poweroff', 'reboot', 'suspend'].includes(reason as string)) {
        throw new InvalidArgumentError('action field "reason"', `"${String(reason)}" is not poweroff, reboot or suspend`);
      }
      const a: Action = { op: 'shutdown', dom: domRef(o) };
      if (reason !== undefined) a.reason = reason as 'poweroff';
      const wait = field(o, 'wait', 'boolean', true);
      if (wait !== undefined) a.wait = wait as boolean;
      const t = field(o, 'timeoutMs', 'number', true);
      if (t !== undefined) a.timeoutMs = t as number;
      return a;
    }
    case 'rename': return { op: 'rename', dom: domRef(o), name: field(o, 'name', 'string', false) as string };
    case 'uptime': return o.dom === undefined ? { op: 'uptime' } : { op: 'uptime', dom: domRef(o) };
    case 'pin': return { op: 'pin', dom: domRef(o), cpu: field(o, 'cpu', 'number', false) as number };
    case 'sched-bvt': return { op: 'sched-bvt', dom: domRef(o), settings: schedSettings(o.settings ?? {}) };
    case 'bvt-slice': {
      const ms = field(o, 'ms', 'number', true);
      return ms === undefined ? { op: 'bvt-slice' } : { op: 'bvt-slice', ms: ms as number };
    }
    case 'debug-keys': return { op: 'debug-keys', key: field(o, 'key', 'string', false) as string };
    case 'store-ls': case 'store-read': case 'store-rm':
      return { op: op as 'store-ls', path: field(o, 'path', 'string', false) as string };
    case 'store-write':
      return { op: 'store-write', path: field(o, 'path', 'string', false) as string, value: field(o, 'value', 'string', false) as string };
    case 'shutdown-host': {
      const t = field(o, 'timeoutMs', 'number', true);
      return t === undefined ? { op: 'shutdown-host' } : { op: 'shutdown-host', timeoutMs: t as number };
    }
    case 'block-attach': return { op: 'block-attach', dom: domRef(o), spec: field(o, 'spec', 'string', false) as string };
    case 'block-detach': {
      const a: Action = { op: 'block-detach', dom: domRef(o), vdev: field(o, 'vdev', 'string', false) as string };
      const force = field(o, 'force', 'boolean', true);
      if (force !== undefined) a.force = force as boolean;
      const t = field(o, 'timeoutMs', 'number', true);
      if (t !== undefined) {
        if (!(Number.isInteger(t) && (t as number) > 0 && (t as number) <= 600_000)) throw new InvalidArgumentError('action field "timeoutMs"', `${String(t)} is not a whole number of ms in (0, 600000]`);
        a.timeoutMs = t as number;
      }
      return a;
    }
    case 'block-list': return o.dom === undefined ? { op: 'block-list' } : { op: 'block-list', dom: domRef(o) };
    case 'network-attach': return { op: 'network-attach', dom: domRef(o), spec: field(o, 'spec', 'string', false) as string };
    case 'network-detach': {
      const a: Action = { op: 'network-detach', dom: domRef(o), vif: vifRef(o) };
      const force = field(o, 'force', 'boolean', true);
      if (force !== undefined) a.force = force as boolean;
      const t = wholeNumber(o, 'timeoutMs', 600_000);
      if (t !== undefined) a.timeoutMs = t;
      return a;
    }
    case 'network-list': {
      if (o.dom === undefined) return { op: 'network-list' };
      return o.vif === undefined ? { op: 'network-list', dom: domRef(o) } : { op: 'network-list', dom: domRef(o), vif: vifRef(o) };
    }
    case 'vif-addip': return { op: 'vif-addip', dom: domRef(o), vif: vifRef(o), ip: field(o, 'ip', 'string', false) as string };
    case 'vif-rate': {
      const a: Action = { op: 'vif-rate', dom: domRef(o), vif: vifRef(o) };
      const bytes = wholeNumber(o, 'bytes', 2 ** 40);
      const usecs = wholeNumber(o, 'usecs', 3_600_000_000);
      if ((bytes === undefined) !== (usecs === undefined)) throw new InvalidArgumentError('action', 'vif-rate takes both bytes and usecs, or neither (to read the rate)');
      if (bytes !== undefined) { a.bytes = bytes; a.usecs = usecs!; }
      return a;
    }
    case 'nat-forward': {
      const a: Extract<Action, { op: 'nat-forward' }> = { op: 'nat-forward', dom: domRef(o), port: wholeNumber(o, 'port', 65535) ?? 0, guestPort: wholeNumber(o, 'guestPort', 65535) ?? 0 };
      return hostAndProtocol(o, a);
    }
    case 'nat-list': return { op: 'nat-list' };
    case 'save': {
      const a: Action = { op: 'save', dom: domRef(o), file: field(o, 'file', 'string', false) as string };
      for (const k of ['checkpoint', 'force'] as const) {
        const v = field(o, k, 'boolean', true);
        if (v !== undefined) a[k] = v as boolean;
      }
      const t = wholeNumber(o, 'timeoutMs', 3_600_000);
      if (t !== undefined) a.timeoutMs = t;
      return a;
    }
    case 'restore': {
      const a: Action = { op: 'restore', file: field(o, 'file', 'string', false) as string };
      const name = field(o, 'name', 'string', true);
      if (name !== undefined) a.name = name as string;
      const paused = field(o, 'paused', 'boolean', true);
      if (paused !== undefined) a.paused = paused as boolean;
      return a;
    }
    case 'migrate': {
      const a: Action = { op: 'migrate', dom: domRef(o), target: field(o, 'target', 'string', false) as string };
      for (const k of ['paused', 'force'] as const) {
        const v = field(o, k, 'boolean', true);
        if (v !== undefined) a[k] = v as boolean;
      }
      const t = wholeNumber(o, 'timeoutMs', 3_600_000);
      if (t !== undefined) a.timeoutMs = t;
      const r = wholeNumber(o, 'maxRounds', 100);
      if (r !== undefined) a.maxRounds = r;
      return a;
    }
    case 'clone': {
      const a: Action = { op: 'clone', dom: domRef(o), count: wholeNumber(o, 'count', 256) ?? 0 };
      const names = o.names;
      if (names !== undefined) {
        if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) throw new InvalidArgumentError('names', 'must be a list of strings');
        a.names = names as string[];
      }
      const paused = field(o, 'paused', 'boolean', true);
      if (paused !== undefined) a.paused = paused as boolean;
      return a;
    }
    case 'nat-unforward': {
      const a: Extract<Action, { op: 'nat-unforward' }> = { op: 'nat-unforward', port: wholeNumber(o, 'port', 65535) ?? 0 };
      return hostAndProtocol(o, a);
    }
    case 'nat-allow': {
      const a: Action = { op: 'nat-allow' };
      for (const key of ['add', 'remove', 'set'] as const) {
        const v = o[key];
        if (v === undefined) continue;
        if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new InvalidArgumentError(`action field "${key}"`, 'expected an array of strings');
        a[key] = v as string[];
      }
      return a;
    }
    case 'nat-enable': {
      const all = field(o, 'all', 'boolean', true) as boolean | undefined;
      if ((o.dom === undefined) === !all) throw new InvalidArgumentError('action', 'nat-enable takes a domain, or all: true');
      return all ? { op: 'nat-enable', all: true } : { op: 'nat-enable', dom: domRef(o) };
    }
    case 'vd-create': return { op: 'vd-create', name: field(o, 'name', 'string', false) as string, size: vdSize(o) };
    case 'vd-list': return { op: 'vd-list' };
    case 'vd-delete': return { op: 'vd-delete', name: field(o, 'name', 'string', false) as string };
    case 'vd-resize': {
      const a: Action = { op: 'vd-resize', name: field(o, 'name', 'string', false) as string, size: vdSize(o) };
      const force = field(o, 'force', 'boolean', true);
      if (force !== undefined) a.force = force as boolean;
      return a;
    }
    case 'vd-snapshot':
      return { op: 'vd-snapshot', name: field(o, 'name', 'string', false) as string, newName: field(o, 'newName', 'string', false) as string };
  }
}

/** A virtual disk size: bytes, or text such as `64M` (the store checks the value). */
function vdSize(o: Obj): number | string {
  const v = o.size;
  if (typeof v === 'number' || typeof v === 'string') return v;
  throw new InvalidArgumentError('action field "size"', v === undefined ? 'it is missing' : `it must be a number of bytes or a size such as "64M", not ${JSON.stringify(v)}`);
}

/** Where a Controller keeps what outlives a request (virtual disks); without it, `vd-*` actions are refused. */
export interface ControllerOptions {
  /** The daemon's state directory: virtual disks live in STATE/vd. */
  stateDir?: string;
  /** Where virtual disks live, instead of STATE/vd. */
  vdDir?: string;
}

function blockRow(v: VbdInfo): BlockRow {
  return { ...v, sectors: Number(v.sectors) };
}

const DEBUG_KEYS: Record<string, string> = {
  h: 'this help',
  d: 'dump domains (phase, CPU, CPU time, memory, console bytes)',
  q: 'dump domains with their command lines and images',
  r: 'dump the run queues (domains per CPU with their BVT parameters)',
  e: 'dump event channels',
  g: 'dump grant tables (grants in use per domain)',
  m: 'dump the memory budget',
};

export class Controller {
  readonly hv: Hypervisor;
  readonly #startedNs: bigint;
  /** Called after a `shutdown-host` action has stopped every domain. */
  onHostShutdown: (() => void) | undefined;
  readonly #vdDir: string | undefined;
  #vd: VirtualDisks | undefined;

  constructor(hv: Hypervisor, opts: ControllerOptions = {}) {
    this.hv = hv;
    this.#startedNs = hv.kernel.now();
    this.#vdDir = opts.vdDir ?? (opts.stateDir !== undefined ? vdPath(opts.stateDir) : undefined);
    // `vd:NAME` in a disk spec is this controller's virtual disk.
    if (this.#vdDir !== undefined) hv.blk.resolveVd = (name) => this.virtualDisks.pathOf(name);
  }

  /**
   * The virtual disks, opened on first use in `vdDir` (or STATE/vd). A disk
   * attached to a domain cannot be deleted, resized or snapshotted. Throws
   * InvalidArgumentError if the controller was given no directory.
   */
  get virtualDisks(): VirtualDisks {
    if (this.#vd) return this.#vd;
    if (this.#vdDir === undefined) {
      throw new InvalidArgumentError('virtual disk action', 'this controller keeps no virtual disks: give it a directory, new Controller(hv, { stateDir }) or { vdDir }');
    }
    const store: VirtualDisks = VirtualDisks.open(this.#vdDir, { inUse: (name) => this.hv.blk.holderOf(store.get(name).path) });
    this.#vd = store;
    return store;
  }

  /** Close what the controller opened (the virtual disks' database); the hypervisor stays the caller's. */
  async close(): Promise<void> {
    const vd = this.#vd;
    this.#vd = undefined;
    await vd?.close();
  }

  #info(id: number): DomainInfo {
    const row = this.hv.list().find((r) => r.id === id);
    if (!row) throw new InvalidArgumentError('domain', `domain ${id} is gone`);
    return row;
  }

  /** Carry out one action (already checked by `parseAction` if it came from outside). */
  /** Carry out one action; `progress` hears how far long work (save, restore, migrate) is. */
  async handle<A extends Action>(action: A, progress?: (p: { what: string; done: number; total?: number }) => void): Promise<Results[A['op']]> {
    return (await this.#handle(action, progress)) as Results[A['op']];
  }

  async #handle(a: Action, progress?: (p: { what: string; done: number; total?: number }) => void): Promise<Results[Op]> {
    const hv = this.hv;
    switch (a.op) {
      case 'create': {
        const dom = await hv.createDomain(a.spec);
        return this.#info(dom.id);
      }
      case 'list': return hv.list();
      case 'info': return this.#hostInfo();
      case 'dmesg': return hv.dmesg();
      case 'pause': { const d = hv.domain(a.dom); await d.pause(); return this.#info(d.id); }
      case 'unpause': { const d = hv.domain(a.dom); await d.unpause(); return this.#info(d.id); }
      case 'shutdown': {
        const d = hv.domain(a.dom);
        const ended = hv.shutdown(d.id, { reason: a.reason ?? 'poweroff', timeoutMs: a.timeoutMs ?? 30_000 });
        if (a.wait) {
          const exit = await ended;
          return { id: d.id, name: d.name, reason: exit.reason, waited: true };
        }
        ended.catch(() => {});
        return { id: d.id, name: d.name, reason: 'requested', waited: false };
      }
      case 'destroy': { const d = hv.domain(a.dom); const r = { id: d.id, name: d.name }; await d.destroy(); return r; }
      case 'save': {
        const t0 = performance.now();
        const r = await hv.save(hv.domain(a.dom).id, a.file, {
          checkpoint: a.checkpoint ?? false, force: a.force ?? false, ...(a.timeoutMs ? { timeoutMs: a.timeoutMs } : {}),
          ...(progress ? { onProgress: (done: number, total: number | undefined) => progress({ what: 'memory written', done, ...(total !== undefined ? { total } : {}) }) } : {}),
        });
        return { id: r.domid, name: r.name, path: r.path, bytes: r.bytes, rawBytes: r.rawBytes, sha256: r.sha256, checkpoint: a.checkpoint ?? false, ms: Math.round(performance.now() - t0) };
      }
      case 'restore': {
        const d = await hv.restore(a.file, {
          ...(a.name ? { name: a.name } : {}), paused: a.paused ?? false,
          ...(progress ? { onProgress: (done: number, total: number) => progress({ what: 'memory read', done, total }) } : {}),
        });
        return { id: d.id, name: d.name, path: a.file };
      }
      case 'migrate': {
        const t0 = performance.now();
        const d = hv.domain(a.dom);
        const r = await hv.migrate(d.id, a.target, {
          ...(a.paused !== undefined ? { paused: a.paused } : {}), ...(a.force !== undefined ? { force: a.force } : {}),
          ...(a.timeoutMs ? { timeoutMs: a.timeoutMs } : {}), ...(a.maxRounds ? { maxRounds: a.maxRounds } : {}),
          ...(progress ? { onProgress: (p: { round: number; pages: number; bytesSent: number; final: boolean }) => progress({ what: p.final ? 'stop-and-copy pages' : `round ${p.round} pages`, done: p.pages }) } : {}),
        });
        return { id: d.id, name: r.name, target: a.target, remoteId: r.domid, downtimeMs: r.downtimeMs, rounds: r.rounds, bytesSent: r.bytesSent, memoryBytes: r.memoryBytes, finalPages: r.finalPages, ms: Math.round(performance.now() - t0) };
      }
      case 'clone': {
        const t0 = performance.now();
        const d = hv.domain(a.dom);
        const copies = await hv.clone(d.id, a.count, { ...(a.names ? { names: a.names } : {}), ...(a.paused !== undefined ? { paused: a.paused } : {}) });
        const ms = performance.now() - t0;
        return { id: d.id, name: d.name, copies: copies.map((c) => ({ id: c.id, name: c.name })), ms: Math.round(ms), msPerCopy: ms / copies.length };
      }
      case 'rename': {
        const rec = hv.kernel.rename(hv.domain(a.dom).id, a.name);
        hv.store.write(0, `/local/domain/${rec.id}/name`, rec.name);
        return this.#info(rec.id);
      }
      case 'uptime': {
        const now = hv.kernel.now();
        const recs = a.dom === undefined ? hv.kernel.list() : [hv.kernel.get(a.dom)];
        return recs.map((r) => ({ id: r.id, name: r.name, uptimeS: Number(now - (r.id === 0 ? this.#startedNs : r.createdNs)) / 1e9 }));
      }
      case 'pin': { const d = hv.domain(a.dom); return { id: d.id, ...hv.pin(d.id, a.cpu) }; }
      case 'sched-bvt': {
        const d = hv.domain(a.dom);
        if (Object.keys(a.settings).length > 0) hv.setSched(d.id, a.settings);
        return { id: d.id, settings: hv.sched(d.id) };
      }
      case 'bvt-slice': {
        if (a.ms !== undefined) hv.setSlice(a.ms);
        return { sliceMs: hv.sliceMs };
      }
      case 'console-buffer': { const d = hv.domain(a.dom); return { id: d.id, text: d.consoleText() }; }
      case 'console': { const d = hv.domain(a.dom); return { id: d.id, name: d.name }; }
      case 'consoles': return { domains: hv.list().length - 1 };
      case 'debug-keys': return { key: a.key, text: this.#debugKey(a.key) };
      case 'store-ls': {
        const out: Results['store-ls'] = [];
        const walk = (path: string, depth: number): void => {
          const value = hv.store.read(0, path);
          const perms = hv.store.getPerms(0, path);
          if (typeof value === 'number' || typeof perms === 'number') throw storeError(path, value as number);
          out.push({ path, value, ...perms });
          const kids = hv.store.list(0, path);
          if (typeof kids === 'number' || depth > 64) return;
          for (const k of kids) walk(path === '/' ? `/${k}` : `${path}/${k}`, depth + 1);
        };
        walk(absolute(a.path), 0);
        return out;
      }
      case 'store-read': {
        const v = hv.store.read(0, absolute(a.path));
        if (typeof v === 'number') throw storeError(a.path, v);
        return { path: absolute(a.path), value: v };
      }
      case 'store-write': {
        const r = hv.store.write(0, absolute(a.path), a.value);
        if (r < 0) throw storeError(a.path, r);
        return { path: absolute(a.path) };
      }
      case 'store-rm': {
        const r = hv.store.remove(0, absolute(a.path));
        if (r < 0) throw storeError(a.path, r);
        return { path: absolute(a.path) };
      }
      case 'shutdown-host': {
        const doms = hv.list().filter((r) => r.id !== 0);
        await Promise.all(doms.map((r) => hv.shutdown(r.id, { reason: 'poweroff', timeoutMs: a.timeoutMs ?? 10_000 }).catch(() => {})));
        this.onHostShutdown?.();
        return { domains: doms.length };
      }
      case 'block-attach': {
        const d = hv.domain(a.dom);
        if (d.phase === 'shutdown' || d.phase === 'crashed' || d.phase === 'dying') {
          throw new InvalidArgumentError('domain', `domain ${d.id} (${d.name}) is ${d.phase}; a disk can be attached only to a live domain`);
        }
        return blockRow(await hv.blk.attach(d.id, a.spec));
      }
      case 'block-detach': {
        const d = hv.domain(a.dom);
        await hv.blk.detach(d.id, a.vdev, { ...(a.force !== undefined ? { force: a.force } : {}), ...(a.timeoutMs !== undefined ? { timeoutMs: a.timeoutMs } : {}) });
        return { id: d.id, vdev: a.vdev };
      }
      case 'block-list': return hv.blk.list(a.dom === undefined ? undefined : hv.kernel.get(a.dom).id).map(blockRow);
      case 'network-attach': {
        const d = hv.domain(a.dom);
        if (d.phase === 'shutdown' || d.phase === 'crashed' || d.phase === 'dying') {
          throw new InvalidArgumentError('domain', `domain ${d.id} (${d.name}) is ${d.phase}; a vif can be attached only to a live domain`);
        }
        return hv.net.attach(d.id, a.spec);
      }
      case 'network-detach': {
        const d = hv.domain(a.dom);
        const name = hv.net.list(d.id, a.vif)[0]!.name;
        await hv.net.detach(d.id, a.vif, { ...(a.force !== undefined ? { force: a.force } : {}), ...(a.timeoutMs !== undefined ? { timeoutMs: a.timeoutMs } : {}) });
        return { id: d.id, vif: name };
      }
      case 'network-list': return a.dom === undefined ? hv.net.list() : hv.net.list(hv.kernel.get(a.dom).id, a.vif);
      case 'vif-addip': return hv.net.addAddress(hv.domain(a.dom).id, a.vif, a.ip);
      case 'vif-rate': {
        const id = hv.domain(a.dom).id;
        return a.bytes === undefined ? hv.net.list(id, a.vif)[0]! : hv.net.setRate(id, a.vif, { bytes: a.bytes, usecs: a.usecs! });
      }
      case 'nat-forward': {
        hv.net.enableNat();
        const f = await hv.net.forward(a.port, hv.domain(a.dom).id, a.guestPort, a.host, a.protocol ?? 'tcp');
        return { host: f.host, port: f.port, target: f.target };
      }
      case 'nat-list': return hv.net.natInfo();
      case 'nat-unforward': {
        const f = await hv.net.unforward(a.port, a.host, a.protocol);
        return { protocol: f.protocol, host: f.host, port: f.port, target: f.target };
      }
      case 'nat-allow': {
        if (a.set === undefined && a.add === undefined && a.remove === undefined) return { allow: hv.net.natAllow };
        let list = a.set ?? hv.net.natAllow;
        for (const r of a.remove ?? []) {
          if (!list.includes(r.trim())) throw new InvalidArgumentError(`NAT allow "${r}"`, `it is not on the list (${list.join(', ') || 'empty'})`);
          list = list.filter((x) => x !== r.trim());
        }
        for (const x of a.add ?? []) if (!list.includes(x.trim())) list = [...list, x];
        return { allow: hv.net.setNatAllow(list) };
      }
      case 'nat-enable': {
        const ids = a.all ? hv.list().filter((d) => d.id !== 0 && hv.net.list(d.id).length > 0).map((d) => d.id) : [hv.domain(a.dom!).id];
        if (a.all) hv.net.enableNat({ defaultForwards: true });
        else hv.net.enableNat();
        const forwards: Results['nat-enable']['forwards'] = [];
        const failed: string[] = [];
        for (const id of ids) {
          const r = await hv.net.natDomain(id);
          forwards.push(...r.forwards.map((f) => ({ host: f.host, port: f.port, target: f.target })));
          failed.push(...r.failed);
        }
        return { forwards, failed, all: a.all ?? false };
      }
      case 'vd-create': {
        const d = await this.virtualDisks.create(a.name, a.size);
        hv.kernel.log.info(`virtual disk ${d.name} created (${d.sizeBytes} bytes)`);
        return d;
      }
      case 'vd-list': return this.virtualDisks.list();
      case 'vd-delete': {
        const r = await this.virtualDisks.delete(a.name);
        hv.kernel.log.info(`virtual disk ${r.name} deleted`);
        return r;
      }
      case 'vd-resize': {
        const d = await this.virtualDisks.resize(a.name, a.size, { force: a.force ?? false });
        hv.kernel.log.info(`virtual disk ${d.name} resized from ${d.previousBytes} to ${d.sizeBytes} bytes`);
        return d;
      }
      case 'vd-snapshot': {
        const d = await this.virtualDisks.snapshot(a.name, a.newName);
        hv.kernel.log.info(`virtual disk ${d.name} snapshotted from ${a.name}`);
        return d;
      }
    }
  }

  #hostInfo(): HostInfo {
    const hv = this.hv;
    return {
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      pid: process.pid,
      cpus: hv.cpus,
      memoryTotalBytes: hv.kernel.budget.totalBytes,
      memoryFreeBytes: hv.kernel.budget.freeBytes,
      dom0MemoryBytes: hv.kernel.budget.reservedBytes,
      domains: hv.list().length,
      uptimeS: Number(hv.kernel.now() - this.#startedNs) / 1e9,
      sliceMs: hv.sliceMs,
      watchdogMs: hv.watchdogMs,
      node: process.version,
    };
  }

  /** The serial console's debug keys of the Demo CD ('h' lists them). */
  #debugKey(key: string): string {
    const hv = this.hv;
    const rows = hv.list();
    const MiB = 1024 * 1024;
    switch (key) {
      case 'h':
        return `'h' pressed -> showing installed handlers\n${Object.entries(DEBUG_KEYS).map(([k, v]) => ` key '${k}': ${v}`).join('\n')}\n`;
      case 'd':
        return rows.map((r) => `domain ${r.id} (${r.name}): ${r.phase}, cpu ${r.cpu ?? '-'}, ${(r.cpuTimeNs / 1e9).toFixed(3)} s, ${r.memoryBytes / MiB} MiB`).join('\n') + '\n';
      case 'q':
        return hv.kernel.list().map((r) => `domain ${r.id} (${r.name}): image ${r.image}, cmdline "${r.cmdline}", console ${r.console.text().length} bytes`).join('\n') + '\n';
      case 'r': {
        const out: string[] = [];
        for (let cpu = 0; cpu < hv.cpus; cpu++) {
          out.push(`cpu ${cpu}:`);
          for (const r of rows.filter((x) => x.cpu === cpu)) {
            out.push(`  domain ${r.id} (${r.name}) ${r.phase} mcuadv ${r.sched?.mcuadv} warp ${r.sched?.warp} warpl ${r.sched?.warpl} warpu ${r.sched?.warpu}`);
          }
        }
        out.push(`slice ${hv.sliceMs} ms`);
        return out.join('\n') + '\n';
      }
      case 'e': {
        const out: string[] = [];
        const names = ['free', 'unbound', 'interdomain', 'virq'];
        for (const r of rows) {
          for (let port = 1; port < NR_PORTS; port++) {
            const s = hv.evtchn.status(r.id, port);
            if (typeof s === 'number' || s.state === PortState.FREE) continue;
            const peer = s.state === PortState.INTERDOMAIN ? ` -> domain ${s.remote} port ${s.remotePort}` : s.state === PortState.VIRQ ? ` virq ${s.virq}` : s.state === PortState.UNBOUND ? ` for domain ${s.remote}` : '';
            out.push(`domain ${r.id} port ${port}: ${names[s.state] ?? s.state}${peer}`);
          }
        }
        return (out.length ? out.join('\n') : 'no event channels open') + '\n';
      }
      case 'g':
        return rows.map((r) => `domain ${r.id} (${r.name}): ${hv.grants.inUse(r.id)} grants in use`).join('\n') + '\n';
      case 'm': {
        const b = hv.kernel.budget;
        return `memory: ${b.totalBytes / MiB} MiB total, ${b.reservedBytes / MiB} MiB for domain 0, ${b.usedBytes / MiB} MiB to domains, ${b.freeBytes / MiB} MiB free\n`;
      }
      default:
        throw new InvalidArgumentError('debug key', `'${key}' is not one ('h' lists them)`);
    }
  }
}
