/**
 * A domain's virtual devices across a save, a migration or a clone: what
 * the 'devices' section holds, how the backends are kept still while the
 * domain's memory is written, and how a restored domain's disks and vifs
 * are opened and its backends reconnected to the rings in its memory
 * (docs/save-format.md, "Devices").
 *
 * runtime/hypervisor.ts calls these in order:
 *   save:    devicesSaveProblem -> (capture) -> quiesceDevices -> exportDevices
 *            -> (memory written) -> the resume quiesceDevices returned, for a
 *            checkpoint or a failed save (a saved domain is destroyed instead)
 *   restore: prepareDevices (before the domain exists) -> the domain is
 *            created with prepared.disks and prepared.vifs, its ports
 *            (restorablePorts: all but its device channels) and grants
 *            restored -> connectDevices (before it runs)
 *
 * The guest is not told: it was captured at a block, yield or shutdown
 * hypercall believing its devices connected, and after a restore they are.
 * Each backend takes up the saved connection (the ring grants came back
 * with the domain, its event channel is joined to a new domain-0 port) and
 * goes on from the responses published in the rings: requests the guest
 * had published and that were not answered are done (again), as Xen's
 * frontends reissue theirs on resume.
 */
import { SaveUnsupportedError } from './errors.ts';
import type { BlockDevices, OpenedDisk, SavedVbd } from '../../devices/blk/vbd.ts';
import type { DiskSpec } from '../../devices/blk/disk-spec.ts';
import type { NetDevices, SavedVif, VifSpec } from '../../devices/net/vif.ts';
import type { SavedConnection } from '../../devices/xenbus.ts';
import type { EventChannels, SavedPort } from '../../kernel/evtchn.ts';
import type { GrantTables } from '../../kernel/grant.ts';
import { RestoreError } from './errors.ts';

/** What the device code reaches in the hypervisor. */
export interface DeviceHost {
  readonly blk: BlockDevices;
  readonly net: NetDevices;
  readonly evtchn: EventChannels;
  readonly grants: GrantTables;
  log(level: 'info' | 'warn' | 'error', line: string): void;
}

/** The 'devices' section (JSON). */
export interface SavedDevices {
  /** 1: this layout. */
  version: number;
  vbds: SavedVbd[];
  vifs: SavedVif[];
}

/** A restored domain's devices, opened before the domain is created. */
export interface PreparedDevices {
  readonly disks: OpenedDisk[];
  readonly vifs: VifSpec[];
  /** The saved section, checked, for connectDevices. */
  readonly saved: SavedDevices;
  /**
   * The guest's ports of its device channels (their saved mask bits):
   * restorablePorts keeps them out of the ports restored, connectDevices
   * joins them to the backends.
   */
  readonly channelPorts: Map<number, { masked: boolean }>;
}

/** Why the devices of `domid` keep it from being saved now, or undefined. */
export function devicesSaveProblem(host: DeviceHost, domid: number): string | undefined {
  return host.blk.saveProblem(domid) ?? host.net.saveProblem(domid);
}

/**
 * Keep the backends of a captured domain from touching its memory and rings
 * until the returned function is called (work in flight is finished first:
 * a block request in flight completes and is answered, so what is written
 * holds its answer).
 */
export async function quiesceDevices(host: DeviceHost, domid: number, timeoutMs = 10_000): Promise<() => void> {
  // Network first: its pause is immediate, and no frame is delivered while the disks finish.
  const net = host.net.quiesce(domid);
  const pending = host.blk.quiesce(domid);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SaveUnsupportedError(domid, `its disks did not finish their requests in flight within ${timeoutMs / 1000} s (a host disk that does not answer)`)), timeoutMs);
  });
  let blk: { resume: () => void };
  try {
    blk = await Promise.race([pending, late]);
  } catch (err) {
    net.resume();
    // The disks' pause ends once their requests do.
    pending.then((b) => b.resume(), () => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
  let resumed = false;
  return () => {
    if (resumed) return;
    resumed = true;
    blk.resume();
    net.resume();
  };
}

/** The 'devices' section: the domain's devices and their connections (JSON). */
export function exportDevices(host: DeviceHost, domid: number): SavedDevices {
  return { version: 1, vbds: host.blk.exportDomain(domid), vifs: host.net.exportDomain(domid) };
}

const VDEV = /^(xvd|hd|sd)[a-z]{1,2}[0-9]{0,2}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Check the 'devices' section of `source`; a RestoreError names the first field that is wrong. */
export function checkSavedDevices(source: string, saved: unknown): SavedDevices {
  const bad = (field: string, why: string): never => { throw new RestoreError(source, `its devices section is malformed: ${field} ${why}`); };
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObj(saved)) return bad('the section', 'is not an object');
  // A save without devices (before this layout) is { vbds: [], vifs: [] } with no version.
  if (saved.version !== undefined && saved.version !== 1) bad('version', `is ${JSON.stringify(saved.version)}, not 1`);
  if (!Array.isArray(saved.vbds)) bad('vbds', 'is not a list');
  if (!Array.isArray(saved.vifs)) bad('vifs', 'is not a list');
  const isCount = (x: unknown, max: number): boolean => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= max;
  const checkFrontend = (where: string, f: unknown): void => {
    if (!isObj(f)) bad(`${where}.frontend`, 'is not an object');
    for (const [k, v] of Object.entries(f as object)) if (typeof v !== 'string') bad(`${where}.frontend.${k}`, 'is not a string');
  };
  const checkConnection = (where: string, c: unknown, rings: number): void => {
    if (c === null) return;
    if (!isObj(c)) bad(`${where}.connection`, 'is neither null nor an object');
    const cc = c as Record<string, unknown>;
    if (!Array.isArray(cc.grefs) || cc.grefs.length !== rings || !cc.grefs.every((g) => isCount(g, 0xffffffff) && g !== 0)) {
      bad(`${where}.connection.grefs`, `is not a list of ${rings} grant reference${rings === 1 ? '' : 's'}`);
    }
    if (!isCount(cc.port, 0xffff) || cc.port === 0) bad(`${where}.connection.port`, 'is not a port number');
  };
  const vdevs = new Set<string>();
  for (const [i, v] of (saved.vbds as unknown[]).entries()) {
    const where = `vbds[${i}]`;
    if (!isObj(v)) bad(where, 'is not an object');
    const d = v as Record<string, unknown>;
    if (typeof d.vdev !== 'string' || !VDEV.test(d.vdev)) bad(`${where}.vdev`, 'is not xvdX, hdX or sdX');
    if (vdevs.has(d.vdev as string)) bad(`${where}.vdev`, `${d.vdev} appears twice`);
    vdevs.add(d.vdev as string);
    if (d.kind !== 'file' && d.kind !== 'phy' && d.kind !== 'vd') bad(`${where}.kind`, 'is not file, phy or vd');
    for (const k of ['target', 'path', 'spec'] as const) if (typeof d[k] !== 'string' || d[k] === '') bad(`${where}.${k}`, 'is not a non-empty string');
    if (typeof d.readonly !== 'boolean') bad(`${where}.readonly`, 'is not true or false');
    checkFrontend(where, d.frontend);
    checkConnection(where, d.connection, 1);
  }
  for (const [i, v] of (saved.vifs as unknown[]).entries()) {
    const where = `vifs[${i}]`;
    if (!isObj(v)) bad(where, 'is not an object');
    const n = v as Record<string, unknown>;
    if (n.index !== i) bad(`${where}.index`, `is ${JSON.stringify(n.index)}, not ${i} (vifs are numbered from 0 in order)`);
    if (typeof n.mac !== 'string' || !MAC.test(n.mac)) bad(`${where}.mac`, 'is not a MAC address (xx:xx:xx:xx:xx:xx, lower case)');
    if (!Array.isArray(n.ips) || !n.ips.every((a) => typeof a === 'string' && IPV4.test(a) && a.split('.').every((o) => Number(o) <= 255))) {
      bad(`${where}.ips`, 'is not a list of IPv4 addresses');
    }
    const r = n.rate as Record<string, unknown> | undefined;
    if (!isObj(r) || !isCount(r.bytes, Number.MAX_SAFE_INTEGER) || !isCount(r.usecs, Number.MAX_SAFE_INTEGER)) bad(`${where}.rate`, 'is not { bytes, usecs }');
    if (typeof n.spec !== 'string') bad(`${where}.spec`, 'is not a string');
    checkFrontend(where, n.frontend);
    checkConnection(where, n.connection, 2);
  }
  const ports = new Set<number>();
  for (const [list, name] of [[saved.vbds, 'vbds'], [saved.vifs, 'vifs']] as const) {
    for (const [i, d] of (list as Array<{ connection: SavedConnection | null }>).entries()) {
      if (!d.connection) continue;
      if (ports.has(d.connection.port)) bad(`${name}[${i}].connection.port`, `${d.connection.port} is used by two devices`);
      ports.add(d.connection.port);
    }
  }
  return { version: 1, vbds: saved.vbds as SavedVbd[], vifs: saved.vifs as SavedVif[] };
}

/**
 * Open what a restored domain's devices need before the domain is created:
 * its disks (the same paths), checked against the disks other domains hold;
 * and its vifs' MACs and addresses, checked free on the switch. `source`
 * names the save in errors: a RestoreError naming the disk or vif, with
 * nothing left open.
 */
export async function prepareDevices(host: DeviceHost, source: string, saved: unknown): Promise<PreparedDevices> {
  const s = checkSavedDevices(source, saved);
  for (const v of s.vifs) {
    const mac = host.net.holderOf({ mac: v.mac });
    if (mac) throw new RestoreError(source, `vif ${v.index}: its MAC ${v.mac} is in use by ${mac}`);
    for (const ip of v.ips) {
      const holder = host.net.holderOf({ ip });
      if (holder) throw new RestoreError(source, `vif ${v.index}: its address ${ip} is in use by ${holder}`);
    }
  }
  const disks: OpenedDisk[] = [];
  try {
    for (const v of s.vbds) {
      const spec: DiskSpec = { kind: v.kind, target: v.target, vdev: v.vdev, readonly: v.readonly, spec: v.spec };
      let disk: OpenedDisk;
      try {
        disk = await host.blk.open(spec);
      } catch (err) {
        throw new RestoreError(source, `disk ${v.vdev} (${v.path}) cannot be opened: ${(err as Error).message}`);
      }
      disks.push(disk);
      // The same rules as an attach, checked before anything is created.
      const holders = host.blk.sharing.holders(disk.backing.info.identity);
      const writer = holders.find((h) => !h.readonly);
      const clash = writer ?? (!v.readonly ? holders[0] : undefined);
      if (clash) {
        throw new RestoreError(source, `disk ${v.vdev} (${disk.path}) is attached ${clash.readonly ? 'read-only' : 'read-write'} to domain ${clash.domid} (${clash.name}) as ${clash.vdev}`);
      }
      // The host path may differ from the saved one for a virtual disk on another host.
    }
  } catch (err) {
    await Promise.allSettled(disks.map((d) => d.backing.close()));
    throw err;
  }
  const vifs: VifSpec[] = s.vifs.map((v) => ({
    ips: [...v.ips], mac: v.mac, spec: v.spec, ...(v.rate.bytes > 0 && v.rate.usecs > 0 ? { rate: { bytes: v.rate.bytes, usecs: v.rate.usecs } } : {}),
  }));
  const channelPorts = new Map<number, { masked: boolean }>();
  for (const d of [...s.vbds, ...s.vifs]) if (d.connection) channelPorts.set(d.connection.port, { masked: false });
  return { disks, vifs, saved: s, channelPorts };
}

/**
 * The saved ports to restore with EventChannels.restorePorts: all but the
 * guest's ends of its device channels, which connectDevices joins to the
 * new backends (their saved domain-0 ends are gone).
 */
export function restorablePorts(prepared: PreparedDevices, ports: readonly SavedPort[]): SavedPort[] {
  return ports.filter((p) => {
    const mine = typeof p === 'object' && p !== null ? prepared.channelPorts.get(p.port) : undefined;
    if (mine === undefined || p.remote !== 0) return true;
    mine.masked = p.masked === true;
    return false;
  });
}

/**
 * Reconnect the backends of restored domain `domid` (created with the
 * prepared disks and vifs, its ports and grants back) to the rings in its
 * memory, before it runs. Returns what could not be brought back, with why.
 */
export function connectDevices(host: DeviceHost, domid: number, prepared: PreparedDevices): string[] {
  const problems: string[] = [];
  const { vbds, vifs } = prepared.saved;
  for (const v of vbds) {
    try {
      for (const why of host.blk.restoreConnection(domid, v.vdev, v.frontend, v.connection)) problems.push(`disk ${v.vdev}: ${why}`);
    } catch (err) {
      problems.push(`disk ${v.vdev}: ${(err as Error).message}`);
    }
  }
  for (const v of vifs) {
    try {
      for (const why of host.net.restoreConnection(domid, v.index, v.frontend, v.connection)) problems.push(`vif ${v.index}: ${why}`);
    } catch (err) {
      problems.push(`vif ${v.index}: ${(err as Error).message}`);
    }
  }
  for (const [port, { masked }] of prepared.channelPorts) if (masked) host.evtchn.mask(domid, port);
  return problems;
}
