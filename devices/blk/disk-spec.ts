/**
 * xl's disk specifications, as in `disk = [ 'file:/srv/root.img,xvda,w' ]`
 * and the Demo CD's `phy:cdrom,hdd,r`:
 *
 *   [TYPE:]TARGET,VDEV[,ACCESS]            positional (TYPE file, phy or vd; ACCESS r or w, default w)
 *   target=TARGET,vdev=VDEV,access=ACCESS  keyed (xl's newer form; `format=raw` accepted)
 *
 * `phy:` targets that are not absolute paths are device names under /dev
 * (`phy:sda3`, `phy:cdrom`). `vd:NAME` names a virtual disk of the daemon.
 */
import { InvalidArgumentError } from '../../kernel/errors.ts';

export type DiskKind = 'file' | 'phy' | 'vd';

export interface DiskSpec {
  kind: DiskKind;
  /** A host path (file, phy) or a virtual disk name (vd). */
  target: string;
  /** The guest's name for it: xvda, hda1, sdb... */
  vdev: string;
  readonly: boolean;
  /** The text it was parsed from. */
  spec: string;
}

const VDEV = /^(xvd|hd|sd)[a-z]{1,2}[0-9]{0,2}$/;

/** A virtual disk's name (`vd:NAME`, `wv vd create NAME`): it is also a file name, so no `/` and no leading dot. */
export const VD_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function parseDiskSpec(spec: string): DiskSpec {
  const bad = (why: string): never => { throw new InvalidArgumentError(`disk "${spec}"`, why); };
  const parts = spec.split(',').map((p) => p.trim());
  let target: string | undefined;
  let vdev: string | undefined;
  let access: string | undefined;
  if (parts.some((p) => /^(target|vdev|access|format|devtype)=/.test(p))) {
    for (const p of parts) {
      const eq = p.indexOf('=');
      if (eq < 0) bad(`"${p}" is not key=value (mixing the positional and keyed forms is not allowed)`);
      const k = p.slice(0, eq);
      const v = p.slice(eq + 1);
      if (k === 'target') target = v;
      else if (k === 'vdev') vdev = v;
      else if (k === 'access') access = v;
      else if (k === 'format') { if (v !== 'raw') bad(`format "${v}" is not supported (only raw images)`); }
      else if (k === 'devtype') { if (v !== 'disk') bad(`devtype "${v}" is not supported (only disk)`); }
      else bad(`"${k}" is not a disk setting (target, vdev, access, format)`);
    }
  } else {
    if (parts.length < 2 || parts.length > 3) bad('expected TYPE:TARGET,VDEV[,ACCESS]');
    [target, vdev, access] = parts;
  }
  if (!target) return bad('no target (the backing file or device)');
  if (!vdev) return bad('no virtual device name (such as xvda)');
  let kind: DiskKind = 'file';
  const m = /^(file|phy|vd|aio|tap):(.*)$/.exec(target);
  if (m) {
    kind = m[1] === 'aio' || m[1] === 'tap' ? 'file' : (m[1] as DiskKind);
    target = m[2]!;
  }
  if (target === '') bad('the target is empty');
  if (kind === 'phy' && !target.startsWith('/')) target = `/dev/${target}`;
  if (kind === 'vd' && !VD_NAME.test(target)) bad(`"${target}" is not a virtual disk name`);
  if (!VDEV.test(vdev)) bad(`"${vdev}" is not a virtual device name (xvdX, hdX or sdX, with an optional partition number)`);
  const a = (access ?? 'w').toLowerCase();
  if (!['r', 'ro', 'w', 'rw'].includes(a)) bad(`access "${access}" is not r or w`);
  return { kind, target, vdev, readonly: a === 'r' || a === 'ro', spec };
}

/** The positional form of a spec (`file:/abs/disk.img,xvda,w`), e.g. after making its path absolute. */
export function formatDiskSpec(d: Pick<DiskSpec, 'kind' | 'target' | 'vdev' | 'readonly'>): string {
  return `${d.kind}:${d.target},${d.vdev},${d.readonly ? 'r' : 'w'}`;
}

/** Parse `spec` and make a relative `file:` target absolute against `base`. */
export function absoluteDiskSpec(spec: string, base: string, resolvePath: (base: string, p: string) => string): string {
  const d = parseDiskSpec(spec);
  if (d.kind !== 'file' || d.target.startsWith('/')) return formatDiskSpec(d);
  return formatDiskSpec({ ...d, target: resolvePath(base, d.target) });
}
