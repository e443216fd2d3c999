/**
 * A domain's virtual devices across a save, a migration or a clone: what
 * the 'devices' section holds, how the backends are kept still while the
 * domain's memory is written, and how a restored domain's disks and vifs
 * are opened and its backends reconnected to the rings in its memory.
 *
 * runtime/hypervisor.ts calls these in order:
 *   save:    devicesSaveProblem -> (capture) -> quiesceDevices -> exportDevices
 *            -> (memory written) -> the resume quiesceDevices returned, for a
 *            checkpoint or a failed save (a saved domain is destroyed instead)
 *   restore: prepareDevices (before the domain exists) -> the domain is
 *            created with prepared.disks and prepared.vifs, its ports and
 *            grants restored -> connectDevices (before it runs)
 */
import type { BlockDevices, OpenedDisk } from '../../devices/blk/vbd.ts';
import type { NetDevices, VifSpec } from '../../devices/net/vif.ts';
import type { EventChannels } from '../../kernel/evtchn.ts';
import type { GrantTables } from '../../kernel/grant.ts';

/** What the device code reaches in the hypervisor. */
export interface DeviceHost {
  readonly blk: BlockDevices;
  readonly net: NetDevices;
  readonly evtchn: EventChannels;
  readonly grants: GrantTables;
  log(level: 'info' | 'warn' | 'error', line: string): void;
}

/** A restored domain's devices, opened before the domain is created. */
export interface PreparedDevices {
  readonly disks: OpenedDisk[];
  readonly vifs: VifSpec[];
  /** The saved section, for connectDevices. */
  readonly saved: unknown;
}

/** Why the devices of `domid` keep it from being saved now, or undefined. */
export function devicesSaveProblem(host: DeviceHost, domid: number): string | undefined {
  if (host.net.list(domid).length > 0 || host.blk.list(domid).length > 0) return 'it has virtual devices (vifs or disks), which a save cannot hold yet';
  return undefined;
}

/**
 * Keep the backends of a captured domain from touching its memory and rings
 * until the returned function is called (work in flight is finished first).
 */
export async function quiesceDevices(_host: DeviceHost, _domid: number): Promise<() => void> {
  return () => {};
}

/** The 'devices' section: the domain's devices and their connections (JSON). */
export function exportDevices(_host: DeviceHost, _domid: number): unknown {
  return { vbds: [], vifs: [] };
}

/**
 * Open what a restored domain's devices need (its disks) before the domain
 * is created. `source` names the save in errors (a RestoreError when a disk
 * cannot be opened).
 */
export async function prepareDevices(_host: DeviceHost, _source: string, saved: unknown): Promise<PreparedDevices> {
  return { disks: [], vifs: [], saved };
}

/**
 * Reconnect the backends of restored domain `domid` (created with the
 * prepared disks and vifs, its ports and grants back) to the rings in its
 * memory, before it runs. Returns what could not be brought back, with why.
 */
export function connectDevices(_host: DeviceHost, _domid: number, _prepared: PreparedDevices): string[] {
  return [];
}
