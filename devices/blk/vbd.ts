/**
 * Virtual block devices as the toolstack and the guest see them: attach,
 * the connection (devices/xenbus.ts), detach and statistics. The backend
 * half (BlkBackend) does the I/O; this file decides when it exists.
 *
 * Besides the handshake's own keys, the backend directory
 * (/local/domain/0/backend/vbd/D/DEVID) holds params, type, mode, dev,
 * sectors, sector-size, info (VDISK_READONLY when read-only) and
 * feature-flush-cache, feature-discard, feature-max-indirect-segments;
 * the frontend directory
 * (/local/domain/D/device/vbd/DEVID) virtual-device, device-type and dev,
 * and from the guest ring-ref and event-channel.
 */
import { InvalidArgumentError } from '../../kernel/errors.ts';
import { BackingStore, SharingTable } from './backing.ts';
import { BlkBackend, type BlkStats } from './backend.ts';
import { parseDiskSpec, type DiskKind, type DiskSpec } from './disk-spec.ts';
import { MAX_INDIRECT_SEGMENTS } from './protocol.ts';
import { DeviceError, XenbusDevice, XenbusState, stateName, type DetachOptions, type SavedConnection, type XenbusPlatform } from '../xenbus.ts';

export { XenbusState, stateName, type DetachOptions } from '../xenbus.ts';

/** `info` bit for a read-only device, as in blkif.h. */
export const VDISK_READONLY = 4;

/** The domain has no such block device, or a detach did not complete. */
export class BlockDeviceError extends DeviceError {
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
export type VbdPlatform = XenbusPlatform;

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

/** A VBD as a save holds it (docs/save-format.md, "Devices"). */
export interface SavedVbd {
  vdev: string;
  devid: number;
  kind: DiskKind;
  /** What the spec named (a path, or a virtual disk's name). */
  target: string;
  /** The host path that was open. */
  path: string;
  readonly: boolean;
  /** The spec text it was attached with. */
  spec: string;
  /** The frontend directory as the guest left it. */
  frontend: Record<string, string>;
  /** The ring and event channel the backend served, or null when it was not connected. */
  connection: SavedConnection | null;
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
  dev: XenbusDevice<BlkBackend>;
  /** Counters of the backends that served before the current one. */
  stats: BlkStats;
  /** Set while the device is going away. */
  teardown?: Promise<void>;
}

const ZERO_STATS: BlkStats = { reads: 0, writes: 0, flushes: 0, discards: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };

function addStats(into: BlkStats, s: BlkStats): void {
  for (const k of Object.keys(into) as (keyof BlkStats)[]) into[k] += s[k];
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
    const info = disk.backing.info;
    const stats: BlkStats = { ...ZERO_STATS };
    const dev = new XenbusDevice<BlkBackend>(this.#p, {
      kind: 'vbd', domid, devid, label: `block: domain ${domid} ${disk.spec.vdev}`, code: 'WV_ERR_BLOCK_DEVICE',
      backend: {
        params: disk.path, type: disk.spec.kind, mode: disk.spec.readonly ? 'r' : 'w', dev: disk.spec.vdev,
        sectors: info.sectors.toString(), 'sector-size': info.sectorSize, info: disk.spec.readonly ? VDISK_READONLY : 0,
        'feature-flush-cache': 1, 'feature-discard': 1, 'feature-max-indirect-segments': MAX_INDIRECT_SEGMENTS,
      },
      frontend: { 'virtual-device': devid, 'device-type': 'disk', dev: disk.spec.vdev },
      rings: ['ring-ref'],
      start: ({ pages, notify, broken, resumed }) => new BlkBackend({
        grants: this.#p.grants, self: 0, domid, page: pages[0]!, store: disk.backing, notify, onBroken: broken, resumed,
      }),
      // Requests in flight complete (and are answered) first.
      stop: async (backend) => {
        await backend.close();
        addStats(stats, backend.stats);
      },
    });
    try {
      dev.install();
    } catch (err) {
      this.sharing.release(info.identity, domid, disk.spec.vdev);
      throw err;
    }
    const vbd: Vbd = { domid, devid, spec: disk.spec, path: disk.path, backing: disk.backing, dev, stats };
    mine.set(devid, vbd);
    this.#vbds.set(domid, mine);
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
    await vbd.dev.detach(vbd.spec.vdev, opts);
    await this.#remove(vbd);
  }

  #remove(vbd: Vbd): Promise<void> {
    vbd.teardown ??= (async () => {
      await vbd.dev.remove();
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

  /** Why a domain's VBDs keep it from being saved now (one is being detached), or undefined. */
  saveProblem(domid: number): string | undefined {
    for (const v of this.#vbds.get(domid)?.values() ?? []) {
      if (v.teardown || v.dev.removing || v.dev.state === XenbusState.CLOSING) return `its disk ${v.spec.vdev} is being detached`;
    }
    return undefined;
  }

  /** A domain's VBDs as a save holds them (its backends quiesced: see `quiesce`). */
  exportDomain(domid: number): SavedVbd[] {
    return [...(this.#vbds.get(domid)?.values() ?? [])].sort((a, b) => a.devid - b.devid).map((v) => ({
      vdev: v.spec.vdev, devid: v.devid, kind: v.spec.kind, target: v.spec.target, path: v.path, readonly: v.spec.readonly, spec: v.spec.spec,
      frontend: v.dev.frontendKeys(), connection: v.dev.connection ?? null,
    }));
  }

  /**
   * Keep a domain's block backends off its memory: they stop taking
   * requests, and this resolves once the requests in flight have completed
   * and been answered (`inflight` says how many there were). `resume` lets
   * them take requests again (a checkpoint, or a save that failed).
   */
  async quiesce(domid: number): Promise<{ inflight: number; resume: () => void }> {
    const backends = [...(this.#vbds.get(domid)?.values() ?? [])].map((v) => ({ v, b: v.dev.backend })).filter((x) => x.b !== undefined);
    const counts = await Promise.all(backends.map(async ({ v, b }) => {
      const n = await b!.pause();
      if (n > 0) this.#p.log('info', `block: domain ${domid} ${v.spec.vdev}: ${n} request${n === 1 ? '' : 's'} in flight completed before the save`);
      return n;
    }));
    return { inflight: counts.reduce((a, b) => a + b, 0), resume: () => { for (const { b } of backends) b!.resume(); } };
  }

  /**
   * Bring back a restored domain's VBD `vdev` (installed, not connected):
   * the keys its frontend had written, then, if it was connected, its saved
   * ring and event channel (XenbusDevice.takeOver). Returns what did not
   * come back, with why.
   */
  restoreConnection(domid: number, vdev: string, frontend: Record<string, string>, connection: SavedConnection | null): string[] {
    const v = this.#find(domid, vdev);
    return v.dev.restore(frontend, connection);
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
    const backend = vbd.dev.backend;
    if (backend) addStats(stats, backend.stats);
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
      state: stateName(vbd.dev.state),
      frontendState: stateName(vbd.dev.frontendState()),
      inflight: backend?.inflight ?? 0,
      stats,
      ...(vbd.dev.error !== undefined ? { error: vbd.dev.error } : {}),
    };
  }
}
