/**
 * The control plane: every domain-0 command is one `Action`, handled by one
 * `Controller` (controller.ts). The `wv` CLI sends actions to the daemon
 * over its Unix socket as newline-delimited JSON; an embedding program calls
 * `Controller.handle` in-process. Same actions, same checks, same results.
 *
 * Wire format, one JSON object per line:
 *   request  { "v": 1, "id": 7, "action": { "op": "list" } }
 *   response { "v": 1, "id": 7, "ok": true, "result": ... }
 *          | { "v": 1, "id": 7, "ok": false, "error": { "code": "...", "message": "..." } }
 * A `console` action, once answered, turns the connection into a raw byte
 * stream both ways (the guest's console out, keyboard input in).
 */
import type { DomainConfig, DomainInfo, SchedSettings } from '../hypervisor.ts';
import type { VirtualDiskInfo } from '../../devices/blk/vdisk.ts';
import type { VbdInfo } from '../../devices/blk/vbd.ts';
import type { NatInfo, VifInfo } from '../../devices/net/vif.ts';

/** Bumped when an action or result changes shape; both sides must agree. */
export const PROTOCOL_VERSION = 1;

export type DomRef = number | string;

/** What `create` needs: a domain config that is all serialisable (the image is a path the daemon can read). */
export type CreateSpec = Omit<DomainConfig, 'image' | 'disks' | 'vifs'> & { image: string; disks?: string[]; vifs?: string[] };

/** A VBD as the toolstack reports it (`block-list`): sizes as plain numbers. */
export type BlockRow = Omit<VbdInfo, 'sectors'> & { sectors: number };

export type Action =
  | { op: 'create'; spec: CreateSpec }
  | { op: 'list' }
  | { op: 'info' }
  | { op: 'dmesg' }
  | { op: 'pause'; dom: DomRef }
  | { op: 'unpause'; dom: DomRef }
  | { op: 'shutdown'; dom: DomRef; reason?: 'poweroff' | 'reboot' | 'suspend'; wait?: boolean; timeoutMs?: number }
  /** Save a domain to `file` (absolute, on the daemon's host); restore one from it. */
  | { op: 'save'; dom: DomRef; file: string; checkpoint?: boolean; force?: boolean; timeoutMs?: number }
  | { op: 'restore'; file: string; name?: string; paused?: boolean }
  /** Live-migrate a domain to the wasmvisor at HOST[:PORT] (xl migrate); progress lines come before the result. */
  | { op: 'migrate'; dom: DomRef; target: string; paused?: boolean; force?: boolean; timeoutMs?: number; maxRounds?: number }
  /** Start N copies of a running domain from one snapshot. */
  | { op: 'clone'; dom: DomRef; count: number; names?: string[]; paused?: boolean }
  | { op: 'destroy'; dom: DomRef }
  | { op: 'rename'; dom: DomRef; name: string }
  | { op: 'uptime'; dom?: DomRef }
  | { op: 'pin'; dom: DomRef; cpu: number }
  | { op: 'sched-bvt'; dom: DomRef; settings: SchedSettings }
  | { op: 'bvt-slice'; ms?: number }
  | { op: 'console-buffer'; dom: DomRef }
  | { op: 'console'; dom: DomRef }
  /** Follow every domain's console, each line prefixed with its domain (xen_read_console); a stream like `console`. */
  | { op: 'consoles' }
  | { op: 'debug-keys'; key: string }
  /** The store, as domain 0 sees it (xenstore-ls, -read, -write, -rm). */
  | { op: 'store-ls'; path: string }
  | { op: 'store-read'; path: string }
  | { op: 'store-write'; path: string; value: string }
  | { op: 'store-rm'; path: string }
  /** Virtual disks: sparse images in the daemon's state directory (devices/blk/vdisk.ts); `size` as `64M`, `1G` or bytes. */
  | { op: 'vd-create'; name: string; size: number | string }
  | { op: 'vd-list' }
  | { op: 'vd-delete'; name: string }
  /** Shrinking needs `force` (the data past the new end is lost). */
  | { op: 'vd-resize'; name: string; size: number | string; force?: boolean }
  | { op: 'vd-snapshot'; name: string; newName: string }
  | { op: 'shutdown-host'; timeoutMs?: number }
  /** Virtual block devices (xl block-attach, block-detach, block-list; the CD's vbd_add, vbd_remove, listvbds). */
  | { op: 'block-attach'; dom: DomRef; spec: string }
  | { op: 'block-detach'; dom: DomRef; vdev: string; force?: boolean; timeoutMs?: number }
  | { op: 'block-list'; dom?: DomRef }
  /** Network interfaces (xl network-attach, -detach, -list; the CD's vif_stats, vif_addip, vif_setsched, vif_getsched). */
  | { op: 'network-attach'; dom: DomRef; spec: string }
  | { op: 'network-detach'; dom: DomRef; vif: string | number; force?: boolean; timeoutMs?: number }
  | { op: 'network-list'; dom?: DomRef; vif?: string | number }
  | { op: 'vif-addip'; dom: DomRef; vif: string | number; ip: string }
  | { op: 'vif-rate'; dom: DomRef; vif: string | number; bytes?: number; usecs?: number }
  /** The NAT gateway (enabled by the first forward): host `host`:`port` (0: any free) to the domain's `guestPort`; the list. */
  | { op: 'nat-forward'; host?: string; port: number; dom: DomRef; guestPort: number; protocol?: 'tcp' | 'udp' }
  | { op: 'nat-list' }
  /** The CD's xen_nat_enable: domain N's port 22 at 127.0.0.1:2200+N and 80 at 8000+N (`all`: every domain, and each one created later). */
  | { op: 'nat-enable'; dom?: DomRef; all?: boolean }
  /** Remove the forward from `host`:`port` (default 127.0.0.1, tcp). */
  | { op: 'nat-unforward'; host?: string; port: number; protocol?: 'tcp' | 'udp' }
  /** The allow-list: add entries, remove entries, or replace it (`set`); with none of them, read it. */
  | { op: 'nat-allow'; add?: string[]; remove?: string[]; set?: string[] };

export type Op = Action['op'];

export interface HostInfo {
  version: string;
  protocol: number;
  pid: number;
  cpus: number;
  memoryTotalBytes: number;
  memoryFreeBytes: number;
  dom0MemoryBytes: number;
  domains: number;
  uptimeS: number;
  sliceMs: number;
  watchdogMs: number | undefined;
  node: string;
}

export interface UptimeRow { id: number; name: string; uptimeS: number }

/** Results by action. */
export interface Results {
  create: DomainInfo;
  list: DomainInfo[];
  info: HostInfo;
  dmesg: string[];
  pause: DomainInfo;
  unpause: DomainInfo;
  shutdown: { id: number; name: string; reason: string; waited: boolean };
  destroy: { id: number; name: string };
  save: { id: number; name: string; path: string; bytes: number; rawBytes: number; sha256: string; checkpoint: boolean; ms: number };
  restore: { id: number; name: string; path: string };
  migrate: { id: number; name: string; target: string; remoteId: number; downtimeMs: number; rounds: number; bytesSent: number; memoryBytes: number; finalPages: number; ms: number };
  clone: { id: number; name: string; copies: Array<{ id: number; name: string }>; ms: number; msPerCopy: number };
  rename: DomainInfo;
  uptime: UptimeRow[];
  pin: { id: number; cpu: number | undefined; pinned: number; effective: 'now' | 'next-start' };
  'sched-bvt': { id: number; settings: Required<SchedSettings> };
  'bvt-slice': { sliceMs: number };
  'console-buffer': { id: number; text: string };
  console: { id: number; name: string };
  consoles: { domains: number };
  'debug-keys': { key: string; text: string };
  'store-ls': Array<{ path: string; value: string; owner: number; others: Array<{ domid: number; write: boolean }> }>;
  'store-read': { path: string; value: string };
  'store-write': { path: string };
  'store-rm': { path: string };
  'vd-create': VirtualDiskInfo;
  'vd-list': VirtualDiskInfo[];
  'vd-delete': { name: string; path: string };
  'vd-resize': VirtualDiskInfo & { previousBytes: number };
  'vd-snapshot': VirtualDiskInfo;
  'shutdown-host': { domains: number };
  'block-attach': BlockRow;
  'block-detach': { id: number; vdev: string };
  'block-list': BlockRow[];
  'network-attach': VifInfo;
  'network-detach': { id: number; vif: string };
  'network-list': VifInfo[];
  'vif-addip': VifInfo;
  'vif-rate': VifInfo;
  'nat-forward': { host: string; port: number; target: string };
  'nat-list': NatInfo;
  'nat-enable': { forwards: Array<{ host: string; port: number; target: string }>; failed: string[]; all: boolean };
  'nat-unforward': { protocol: 'tcp' | 'udp'; host: string; port: number; target: string };
  'nat-allow': { allow: string[] };
}

export interface Request { v: number; id: number; action: Action }
export type Response =
  | { v: number; id: number; ok: true; result: unknown }
  /** Long work (save, restore, migrate) reports how far it is before its result: `done` of `total` (bytes, or pages for a migration round). */
  | { v: number; id: number; progress: { what: string; done: number; total?: number } }
  | { v: number; id: number; ok: false; error: { code: string; message: string } };
