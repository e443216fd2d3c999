/**
 * The start-info page: facts the kernel writes into guest memory before the
 * entry point runs (like Xen's start_info). Layout (little-endian):
 *
 * | offset | size | field |
 * | --- | --- | --- |
 * | 0 | 4 | magic 0x49535657 (bytes "WVSI") |
 * | 4 | 4 | ABI version, major<<16 \| minor<<8 \| patch |
 * | 8 | 4 | domain id |
 * | 12 | 4 | flags (bit 0: privileged domain) |
 * | 16 | 8 | memory allocation in bytes |
 * | 24 | 8 | creation time, monotonic ns |
 * | 32 | 4 | command line length in bytes |
 * | 36 | 4 | guest address of the command line |
 * | 40 | 4 | shutdown requested by the toolstack: 0 none, else 1 + reason (1 poweroff, 2 reboot, 3 suspend); set before virq 2 is raised |
 * | 256 | <= 1024 | command line, UTF-8, NUL-terminated |
 */
export const START_INFO_MAGIC = 0x49535657;
export const START_INFO_ABI = (0 << 16) | (1 << 8) | 0;
export const CMDLINE_OFFSET = 256;
/** Offset of the shutdown-request word. */
export const SHUTDOWN_REQUEST_OFFSET = 40;
/** Longest command line a domain may have, in bytes (Xen's MAX_GUEST_CMDLINE). */
export const MAX_CMDLINE = 1024;

export interface StartInfo {
  readonly domid: number;
  readonly privileged: boolean;
  readonly memoryBytes: number;
  readonly createdNs: bigint;
  /** UTF-8 bytes of the command line, at most MAX_CMDLINE. */
  readonly cmdline: Uint8Array;
}

/** Write `info` into `mem` at guest address `page`. The caller checked bounds. */
/** Offset of the domain id in the start-info page (a restore rewrites it). */
export const START_INFO_DOMID_OFFSET = 8;

export function writeStartInfo(mem: Uint8Array, page: number, info: StartInfo): void {
  const view = new DataView(mem.buffer, mem.byteOffset + page, CMDLINE_OFFSET + MAX_CMDLINE + 1);
  view.setUint32(0, START_INFO_MAGIC, true);
  view.setUint32(4, START_INFO_ABI, true);
  view.setUint32(START_INFO_DOMID_OFFSET, info.domid, true);
  view.setUint32(12, info.privileged ? 1 : 0, true);
  view.setBigUint64(16, BigInt(info.memoryBytes), true);
  view.setBigUint64(24, info.createdNs, true);
  view.setUint32(32, info.cmdline.length, true);
  view.setUint32(36, page + CMDLINE_OFFSET, true);
  mem.set(info.cmdline, page + CMDLINE_OFFSET);
  mem[page + CMDLINE_OFFSET + info.cmdline.length] = 0;
}
