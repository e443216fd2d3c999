/**
 * Virtual block devices as the toolstack and the guest see them: attach,
 * the connection handshake over the store, detach and statistics. The
 * backend half (BlkBackend) does the I/O; this file decides when it exists.
 *
 * The handshake follows Xen's xenbus states. For domain D's device DEVID:
 *
 *   backend  /local/domain/0/backend/vbd/D/DEVID/   owned by 0, readable by D
 *     frontend, frontend-id, params, type, mode, dev, sectors, sector-size,
 *     info (VDISK_READONLY when read-only), feature-flush-cache,
 *     feature-discard, feature-max-indirect-segments, state
 *   frontend /local/domain/D/device/vbd/DEVID/      owned by D
 *     backend, backend-id, virtual-device, device-type, dev, state,
 *     and from the guest: ring-ref, event-channel
 *
 * 1. attach writes both directories, backend state InitWait (2), and
 *    watches the frontend's state.
 * 2. The guest grants a ring page and offers an event channel to domain 0,
 *    writes ring-ref and event-channel, then state Initialised (3).
 * 3. The backend maps the ring, binds the channel, starts serving: state
 *    Connected (4). The guest reads the disk's size and goes Connected.
 * 4. Detach sets the backend Closing (5); the guest finishes what it has in
 *    flight and goes Closed (6); the backend then completes every request
 *    still in flight, unmaps, and removes both directories.
 *
 * A frontend that writes nonsense (a bad ring-ref, a port it did not offer)
 * gets an `error` node in the backend directory and stays unconnected; a
 * frontend that breaks the ring stops only its device.
 */
import type { Store } from '../../kernel/store.ts';
import type { EventChannels } from '../../kernel/evtchn.ts';
import type { GrantTables, GrantMapping } from '../../kernel/grant.ts';
import { MemoryRingPage } from '../../kernel/ring.ts';
import { InvalidArgumentError, WvError } from '../../kernel/errors.ts';
import { BackingStore, SharingTable } from './backing.ts';
import { BlkBackend, type BlkStats } from './backend.ts';
import { parseDiskSpec, type DiskSpec } from './disk-spec.ts';

/** xenbus states. */
export const XenbusState = {
  UNKNOWN: 0, INITIALISING: 1, INIT_WAIT: 2, INITIALISED: 3, CONNECTED: 4, CLOSING: 5, CLOSED: 6,
} as const;
const STATE_NAMES = ['unknown', 'initialising', 'init-wait', 'initialised', 'connected', 'closing', 'closed'];
export function stateName(s: number): string { return STATE_NAMES[s] ?? `state ${s}`; }

/** `info` bit for a read-only device, as in blkif.h. */
export const VDISK_READONLY = 4;

/** The domain has no such device, or a detach did not complete. */
export class BlockDeviceError extends WvError {
  constructor(detail: string) { super('WV_ERR_BLOCK_DEVICE', detail); }
}

/**
 * Xen's device number for a virtual device name: xvdX[N] is
 * 202<<8 | disk<<4 | N for the first 16 disks (the extended form above),
 * hdX[N] and sdX[N] the IDE and SCSI majors.
 */
export function vdevToDevid(vdev: string): number {
  const m = /^(xvd|hd|sd)([a-z]{1,2})([0-9]{0,2})$/.exec(vdev);
  if (!m) throw new InvalidArgumentError('virtual device', `"${vdev}" is not xvdX, hdX or sdX`);
  const letters = m[2]!;
  const disk = letters.length === 1 ? letters.charCodeAt(0) - 97 : (letters.charCodeAt(0) - 96) * 26 + letters.charCodeAt(1) - 97;
  const part = m[3] === '' ? 0 : Number(m[3]);
  const bad = (why: string): never => { throw new InvalidArgumentError('virtual device', `"${vdev}": ${why}`); };
  switch (m[1]) {
    case 'xvd':
      if (disk < 16 && part < 16) return (202 << 8) | (disk << 4) | part;
      if (part > 255) bad('partition number too large');
      return (1 << 28) | (disk << 8) | part;
    case 'hd': {
      if (disk > 3 || part > 63) bad('IDE has disks hda..hdd with partitions 0..63');
      const majors = [3, 3, 22, 22];
      return (majors[disk]! << 8) | ((disk % 2) << 6) | part;
    }
    default:
      if (disk > 15 || part > 15) bad('SCSI has disks sda..sdp with partitions 0..15');
      return (8 << 8) | (disk << 4) | part;
  }
}

/** What the block devices need from the hypervisor. */
export interface VbdPlatform {
  readonly store: Store;
  readonly evtchn: EventChannels;
  readonly grants: GrantTables;
  /** Call `fn` when domain 0's port `port` is notified; returns a remover. */
  onPort(port: number, fn: () => void): () => void;
  /** Call `fn` (with the changed path) when `path` or anything under it changes, and once at once; returns a remover. */
  watch(path: string, fn: (changed: string) => void): () => void;
  /** The domain's name, for messages and the sharing table. */
  domainName(domid: number): string;
  log(level: 'info' | 'warn' | 'error', line: string): void;
}

/** One VBD as `block-list` shows it. */
export interface VbdInfo {
  domid: number;
  domain: string;
  vdev: string;
  devid: number;
  kind: DiskSpec['kind'];
  /** What the spec named (a path, or a virtual disk's name). */
  target: string;
  /** The host path opened. */
  path: string;
  readonly: boolean;
  sectors: bigint;
  sectorSize: number;
  /** Backend and frontend states. */
  state: string;
  frontendState: string;
  inflight: number;
  stats: BlkStats;
  /** The last connection error, if any. */
  error?: string;
}

/** A disk opened before its domain exists (a create checks every disk before starting the guest). */
export interface OpenedDisk {
  spec: DiskSpec;
  path: string;
  backing: BackingStore;
}

interface Vbd {
  domid: number;
  devid: number;
  spec: DiskSpec;
  path: string;
  backing: BackingStore;
  be: string;
  fe: string;
  state: number;
  backend?: BlkBackend;
  ring?: GrantMapping;
  port?: number;
  offPort?: () => void;
  unwatch: () => void;
  error?: string;
  /** Set while the device is going away. */
  teardown?: Promise<void>;
  /** Wake a detach waiting for the frontend to close. */
  onFrontendClosed?: () => void;
  stats: BlkStats;
}

const ZERO_STATS: BlkStats = { reads: 0, writes: 0, flushes: 0, discards: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };

export interface DetachOptions {
  /** How long to wait for the guest to let go, ms (default 10 s). */
  timeoutMs?: number;
  /** Detach even if the guest does not answer (requests in flight still complete first). */
  force?: boolean;
}

export class BlockDevices {
  readonly sharing = new SharingTable();
  readonly #p: VbdPlatform;
  readonly #vbds = new Map<number, Map<number, Vbd>>();
  /** Turns `vd:NAME` into a host path; set by whoever manages virtual disks. */
  resolveVd: (name: string) => string = (name) => {
    throw new InvalidArgumentError(`disk "vd:${name}"`, 'virtual disks need the toolstack daemon (wv boot), which keeps them');
  };

  constructor(platform: VbdPlatform) {
    this.#p = platform;
  }

  /** Open a disk's backing store (the path is checked now; a missing image fails here, naming it). */
  async open(spec: DiskSpec | string): Promise<OpenedDisk> {
    const s = typeof spec === 'string' ? parseDiskSpec(spec) : spec;
    const path = s.kind === 'vd' ? this.resolveVd(s.target) : s.target;
    const backing = await BackingStore.open(path, s.readonly);
    return { spec: s, path, backing };
  }

  /**
   * Attach an opened disk to a domain: claim it in the sharing table, write
   * the store entries and wait for the guest's frontend. Throws (and leaves
   * nothing behind) when the sharing rules or the vdev forbid it; the caller
   * still owns `disk` then.
   */
  install(domid: number, disk: OpenedDisk): VbdInfo {
    const devid = vdevToDevid(disk.spec.vdev);
    const mine = this.#vbds.get(domid) ?? new Map<number, Vbd>();
    if (mine.has(devid)) {
      throw new BlockDeviceError(`domain ${domid} already has a device ${disk.spec.vdev} (${mine.get(devid)!.spec.spec})`);
    }
    const name = this.#p.domainName(domid);
    this.sharing.claim(disk.backing.info, { domid, name, readonly: disk.spec.readonly, vdev: disk.spec.vdev });
    const be = `/local/domain/0/backend/vbd/${domid}/${devid}`;
    const fe = `/local/domain/${domid}/device/vbd/${devid}`;
    const vbd: Vbd = {
      domid, devid, spec: disk.spec, path: disk.path, backing: disk.backing, be, fe,
      state: XenbusState.INITIALISING, unwatch: () => {}, stats: { ...ZERO_STATS },
    };
    const st = this.#p.store;
    const info = disk.backing.info;
    const w = (path: string, value: string | number): void => {
      const r = st.write(0, path, String(value));
      if (r < 0) throw new BlockDeviceError(`cannot write ${path} in the store (${r})`);
    };
    try {
      w(be, '');
      st.setPerms(0, be, { owner: 0, others: [{ domid, write: false }] });
      w(`${be}/frontend`, fe);
      w(`${be}/frontend-id`, domid);
      w(`${be}/params`, disk.path);
      w(`${be}/type`, disk.spec.kind);
      w(`${be}/mode`, disk.spec.readonly ? 'r' : 'w');
      w(`${be}/dev`, disk.spec.vdev);
      w(`${be}/sectors`, info.sectors.toString());
      w(`${be}/sector-size`, info.sectorSize);
      w(`${be}/info`, disk.spec.readonly ? VDISK_READONLY : 0);
      w(`${be}/feature-flush-cache`, 1);
      w(`${be}/feature-discard`, 1);
      // The guest owns its frontend directory (domain 0's writes under a
      // guest's home belong to the guest), so it can write its half.
      w(fe, '');
      w(`${fe}/backend`, be);
      w(`${fe}/backend-id`, 0);
      w(`${fe}/virtual-device`, devid);
      w(`${fe}/device-type`, 'disk');
      w(`${fe}/dev`, disk.spec.vdev);
      w(`${fe}/state`, XenbusState.INITIALISING);
      vbd.state = XenbusState.INIT_WAIT;
      w(`${be}/state`, vbd.state);
    } catch (err) {
      st.remove(0, be);
      st.remove(0, fe);
      this.sharing.release(info.identity, domid, disk.spec.vdev);
      throw err;
    }
    mine.set(devid, vbd);
    this.#vbds.set(domid, mine);
    vbd.unwatch = this.#p.watch(`${fe}/state`, () => this.#frontendChanged(vbd));
    this.#p.log('info', `block: domain ${domid} ${disk.spec.vdev}: ${disk.path} attached ${disk.spec.readonly ? 'read-only' : 'read-write'}`);
    return this.#info(vbd);
  }

  /** Open and attach in one step (hotplug: `block-attach`). */
  async attach(domid: number, spec: DiskSpec | string): Promise<VbdInfo> {
    const disk = await this.open(spec);
    try {
      return this.install(domid, disk);
    } catch (err) {
      await disk.backing.close();
      throw err;
    }
  }

  #frontendState(vbd: Vbd): number {
    const v = this.#p.store.read(0, `${vbd.fe}/state`);
    return typeof v === 'string' && /^[0-6]$/.test(v) ? Number(v) : XenbusState.UNKNOWN;
  }

  #setState(vbd: Vbd, state: number): void {
    vbd.state = state;
    this.#p.store.write(0, `${vbd.be}/state`, String(state));
  }

  #fail(vbd: Vbd, why: string): void {
    vbd.error = why;
    this.#p.store.write(0, `${vbd.be}/error`, why);
    this.#p.log('warn', `block: domain ${vbd.domid} ${vbd.spec.vdev}: ${why}`);
  }

  #frontendChanged(vbd: Vbd): void {
    if (vbd.teardown) return;
    const fs = this.#frontendState(vbd);
    if (fs === XenbusState.INITIALISED || (fs === XenbusState.CONNECTED && !vbd.backend)) {
      if (!vbd.backend && vbd.state !== XenbusState.CLOSING) this.#connect(vbd);
    } else if (fs === XenbusState.CLOSING || fs === XenbusState.CLOSED) {
      if (vbd.onFrontendClosed && fs === XenbusState.CLOSED) vbd.onFrontendClosed();
      else if (vbd.backend && vbd.state !== XenbusState.CLOSING) void this.#disconnect(vbd).then(() => this.#setState(vbd, XenbusState.CLOSED));
    } else if (fs === XenbusState.INITIALISING && vbd.state === XenbusState.CLOSED) {
      // The guest's driver starts again (a reboot of its driver): offer the device again.
      this.#setState(vbd, XenbusState.INIT_WAIT);
    }
  }

  #connect(vbd: Vbd): void {
    const st = this.#p.store;
    const num = (key: string, max: number): number | undefined => {
      const v = st.read(0, `${vbd.fe}/${key}`);
      if (typeof v !== 'string' || !/^[0-9]{1,10}$/.test(v) || Number(v) > max) {
        this.#fail(vbd, `frontend ${key} is ${typeof v === 'string' ? `"${v.slice(0, 40)}"` : 'missing'}, not a number up to ${max}`);
        return undefined;
      }
      return Number(v);
    };
    const gref = num('ring-ref', 0xffffffff);
    const remotePort = num('event-channel', 0xffff);
    if (gref === undefined || remotePort === undefined) return;
    const ring = this.#p.grants.map(0, vbd.domid, gref, true);
    if (typeof ring === 'number') return this.#fail(vbd, `cannot map the ring (grant ${gref}): error ${ring}`);
    const port = this.#p.evtchn.bindInterdomain(0, vbd.domid, remotePort);
    if (port < 0) {
      ring.release();
      return this.#fail(vbd, `cannot bind event channel ${remotePort}: error ${port}`);
    }
    let backend: BlkBackend;
    try {
      backend = new BlkBackend({
        grants: this.#p.grants, self: 0, domid: vbd.domid, page: new MemoryRingPage(ring.bytes, 0), store: vbd.backing,
        notify: () => { this.#p.evtchn.send(0, port); },
        onBroken: (err) => {
          this.#fail(vbd, `the frontend broke the ring protocol: ${err.message}; the device is stopped`);
          this.#setState(vbd, XenbusState.CLOSING);
        },
      });
    } catch (err) {
      ring.release();
      this.#p.evtchn.close(0, port);
      return this.#fail(vbd, `cannot use the ring: ${(err as Error).message}`);
    }
    vbd.ring = ring;
    vbd.port = port;
    vbd.backend = backend;
    vbd.error = undefined;
    st.remove(0, `${vbd.be}/error`);
    vbd.offPort = this.#p.onPort(port, () => backend.kick());
    this.#setState(vbd, XenbusState.CONNECTED);
    backend.kick();
    this.#p.log('info', `block: domain ${vbd.domid} ${vbd.spec.vdev}: connected (ring grant ${gref}, port ${port})`);
  }

  /** Stop serving: requests in flight complete (and are answered) first. */
  async #disconnect(vbd: Vbd): Promise<void> {
    const backend = vbd.backend;
    if (!backend) return;
    await backend.close();
    this.#addStats(vbd.stats, backend.stats);
    vbd.backend = undefined;
    vbd.offPort?.();
    vbd.offPort = undefined;
    if (vbd.port !== undefined) this.#p.evtchn.close(0, vbd.port);
    vbd.port = undefined;
    vbd.ring?.release();
    vbd.ring = undefined;
  }

  #addStats(into: BlkStats, s: BlkStats): void {
    for (const k of Object.keys(into) as (keyof BlkStats)[]) into[k] += s[k];
  }

  #find(domid: number, vdev: string): Vbd {
    let devid: number;
    try { devid = vdevToDevid(vdev); } catch { devid = Number.isInteger(Number(vdev)) ? Number(vdev) : -1; }
    const vbd = this.#vbds.get(domid)?.get(devid);
    if (!vbd) {
      const have = [...(this.#vbds.get(domid)?.values() ?? [])].map((v) => v.spec.vdev);
      throw new BlockDeviceError(`domain ${domid} has no block device ${vdev}${have.length ? ` (it has ${have.join(', ')})` : ' (it has none)'}`);
    }
    return vbd;
  }

  /**
   * Detach a device while the domain runs: ask the guest to let go, wait
   * for it (up to the timeout), complete every request in flight, then
   * remove the device. Without `force` a guest that does not answer keeps
   * its device and the call fails, saying so.
   */
  async detach(domid: number, vdev: string, opts: DetachOptions = {}): Promise<void> {
    const vbd = this.#find(domid, vdev);
    if (vbd.teardown) return vbd.teardown;
    const fs = this.#frontendState(vbd);
    const engaged = fs === XenbusState.INITIALISED || fs === XenbusState.CONNECTED || vbd.backend !== undefined;
    if (engaged) {
      const closed = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), opts.timeoutMs ?? 10_000);
        vbd.onFrontendClosed = () => { clearTimeout(timer); resolve(true); };
      });
      this.#setState(vbd, XenbusState.CLOSING);
      if (this.#frontendState(vbd) === XenbusState.CLOSED) vbd.onFrontendClosed?.();
      const answered = await closed;
      vbd.onFrontendClosed = undefined;
      if (!answered && !opts.force) {
        if (!vbd.teardown) this.#setState(vbd, vbd.backend ? XenbusState.CONNECTED : XenbusState.INIT_WAIT);
        throw new BlockDeviceError(`domain ${domid} did not release ${vbd.spec.vdev} within ${opts.timeoutMs ?? 10_000} ms (its frontend is ${stateName(this.#frontendState(vbd))}); use --force to detach it anyway`);
      }
    }
    await this.#remove(vbd);
  }

  #remove(vbd: Vbd): Promise<void> {
    if (vbd.teardown) return vbd.teardown;
    vbd.teardown = (async () => {
      vbd.unwatch();
      await this.#disconnect(vbd);
      this.#p.store.remove(0, vbd.be);
      this.#p.store.remove(0, vbd.fe);
      try {
        await vbd.backing.close();
      } finally {
        this.sharing.release(vbd.backing.info.identity, vbd.domid, vbd.spec.vdev);
        const mine = this.#vbds.get(vbd.domid);
        mine?.delete(vbd.devid);
        if (mine && mine.size === 0) {
          this.#vbds.delete(vbd.domid);
          this.#p.store.remove(0, `/local/domain/0/backend/vbd/${vbd.domid}`);
        }
      }
      this.#p.log('info', `block: domain ${vbd.domid} ${vbd.spec.vdev}: detached`);
    })();
    return vbd.teardown;
  }

  /** A domain is gone: finish its devices' requests in flight and close them. */
  async releaseDomain(domid: number): Promise<void> {
    const mine = this.#vbds.get(domid);
    if (!mine) return;
    await Promise.allSettled([...mine.values()].map((v) => this.#remove(v)));
  }

  /** Every VBD, or one domain's. */
  list(domid?: number): VbdInfo[] {
    const out: VbdInfo[] = [];
    for (const [d, mine] of [...this.#vbds].sort((a, b) => a[0] - b[0])) {
      if (domid !== undefined && d !== domid) continue;
      for (const vbd of [...mine.values()].sort((a, b) => a.devid - b.devid)) out.push(this.#info(vbd));
    }
    return out;
  }

  /** Who holds the backing file at `path` (virtual disks refuse to change under a domain). */
  holderOf(path: string): string | undefined {
    for (const mine of this.#vbds.values()) {
      for (const v of mine.values()) {
        if (v.path === path && !v.teardown) return `domain ${v.domid} (${this.#p.domainName(v.domid)}) as ${v.spec.vdev}`;
      }
    }
    return undefined;
  }

  #info(vbd: Vbd): VbdInfo {
    const stats = { ...vbd.stats };
    if (vbd.backend) this.#addStats(stats, vbd.backend.stats);
    const info = vbd.backing.info;
    return {
      domid: vbd.domid,
      domain: this.#p.domainName(vbd.domid),
      vdev: vbd.spec.vdev,
      devid: vbd.devid,
      kind: vbd.spec.kind,
      target: vbd.spec.target,
      path: vbd.path,
      readonly: vbd.spec.readonly,
      sectors: info.sectors,
      sectorSize: info.sectorSize,
      state: stateName(vbd.state),
      frontendState: stateName(this.#frontendState(vbd)),
      inflight: vbd.backend?.inflight ?? 0,
      stats,
      ...(vbd.error !== undefined ? { error: vbd.error } : {}),
    };
  }
}
