/**
 * The ISO builder's failures, each with a stable code (listed in
 * docs/errors.md with the rest). Messages name the tool or path at fault and
 * what to do about it.
 */
import { WvError } from '../kernel/errors.ts';

/** Tools the build (or the QEMU boot) needs are not installed. */
export class IsoPrereqError extends WvError {
  /** The missing commands, and the Debian packages that provide them. */
  readonly missing: readonly { tool: string; pkg: string }[];
  constructor(missing: readonly { tool: string; pkg: string }[]) {
    const pkgs = [...new Set(missing.map((m) => m.pkg))].sort();
    super('WV_ERR_ISO_PREREQ',
      `the ISO build needs ${missing.map((m) => m.tool).join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} not installed; ` +
      `install them with: apt-get install ${pkgs.join(' ')}`);
    this.missing = missing;
  }
}

/** An external tool of the build (apt-get, grub-mkrescue, cpio, ...) failed. */
export class IsoToolError extends WvError {
  constructor(tool: string, detail: string) {
    super('WV_ERR_ISO_TOOL', `${tool} failed: ${detail}`);
  }
}
