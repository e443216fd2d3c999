/**
 * The host tools the ISO build and its QEMU boot use, the Debian packages
 * that provide them, and one way to run them (failures name the tool and
 * end with the tail of its stderr).
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { IsoPrereqError, IsoToolError } from './errors.ts';

/** A prerequisite: a command on PATH, or a file a package installs. */
export interface Prereq { tool: string; pkg: string; path?: string }

/** What `wv iso build` needs. */
export const BUILD_PREREQS: readonly Prereq[] = [
  { tool: 'apt-get', pkg: 'apt' },
  { tool: 'apt-cache', pkg: 'apt' },
  { tool: 'dpkg-deb', pkg: 'dpkg' },
  { tool: 'busybox', pkg: 'busybox-static' },
  { tool: 'cpio', pkg: 'cpio' },
  { tool: 'zstd', pkg: 'zstd' },
  { tool: 'strip', pkg: 'binutils' },
  { tool: 'ldd', pkg: 'libc-bin' },
  { tool: 'grub-mkrescue', pkg: 'grub-common' },
  { tool: 'grub BIOS modules', pkg: 'grub-pc-bin', path: '/usr/lib/grub/i386-pc/modinfo.sh' },
  { tool: 'grub UEFI modules', pkg: 'grub-efi-amd64-bin', path: '/usr/lib/grub/x86_64-efi/modinfo.sh' },
  { tool: 'xorriso', pkg: 'xorriso' },
  { tool: 'mformat', pkg: 'mtools' },
  { tool: 'mcopy', pkg: 'mtools' },
];

/** What booting the ISO in QEMU (the tests, the bench) needs. */
export const QEMU_PREREQS: readonly Prereq[] = [
  { tool: 'qemu-system-x86_64', pkg: 'qemu-system-x86' },
];

/** Where a command is on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin'])) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try { accessSync(p, constants.X_OK); return p; } catch { /* next */ }
  }
  return undefined;
}

/** The prerequisites that are missing. */
export function missingPrereqs(list: readonly Prereq[]): Prereq[] {
  return list.filter((p) => (p.path ? !existsSync(p.path) : which(p.tool) === undefined));
}

/** Throw IsoPrereqError naming every missing tool and the packages to install. */
export function checkPrereqs(list: readonly Prereq[]): void {
  const missing = missingPrereqs(list);
  if (missing.length) throw new IsoPrereqError(missing);
}

/** Run a tool to completion; stdout as a string. A non-zero exit throws IsoToolError with the tail of stderr. */
export function run(tool: string, args: readonly string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(tool, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error) throw new IsoToolError(tool, r.error.message);
  if (r.status !== 0) {
    const err = String(r.stderr ?? '').trim().split('\n').slice(-6).join('\n');
    throw new IsoToolError(`${tool} ${args.slice(0, 3).join(' ')}${args.length > 3 ? ' ...' : ''}`,
      `exit status ${r.status ?? r.signal}${err ? `:\n${err}` : ''}`);
  }
  return String(r.stdout ?? '');
}
