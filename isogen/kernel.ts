/**
 * Debian's Linux kernel for the ISO: the hardware layer, as Xen 1.2 borrowed
 * Linux's drivers. Fetched as a package with apt-get (never taken from the
 * build host's /boot), kept in a cache directory, unpacked with dpkg-deb.
 * Only the kernel image and the few modules the ISO loads (network cards)
 * are used.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { InvalidArgumentError } from '../kernel/errors.ts';
import { run } from './tools.ts';

/** The metapackage that names Debian's current amd64 kernel. */
export const KERNEL_METAPACKAGE = 'linux-image-amd64';

/** Network drivers the ISO carries (the Demo CD's e1000, tg3, 3c59x, and what VMs offer), with their dependencies. */
export const NIC_MODULES = ['e1000', 'e1000e', 'igb', 'tg3', 'r8169', '3c59x', 'pcnet32', '8139cp', '8139too', 'ne2k-pci', 'virtio_net', 'virtio_pci', 'vmxnet3'];

/** An unpacked kernel package. */
export interface Kernel {
  /** The package file name, e.g. linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb. */
  deb: string;
  /** The release, as `uname -r` prints it: 6.1.0-57-amd64. */
  release: string;
  /** The package's root, unpacked. */
  root: string;
  /** The compressed kernel image. */
  vmlinuz: string;
}

/** The per-user cache: `$WV_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmvisor`, else ~/.cache/wasmvisor. */
export function defaultCacheDir(): string {
  return process.env.WV_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'wasmvisor');
}

/** The versioned package `linux-image-amd64` depends on now (apt-cache, from the configured sources). */
export function resolveKernelPackage(): string {
  const out = run('apt-cache', ['depends', KERNEL_METAPACKAGE]);
  const m = /Depends:\s+(linux-image-\S+)/.exec(out);
  if (!m) throw new InvalidArgumentError('kernel package', `apt-cache does not know ${KERNEL_METAPACKAGE} (are Debian's apt sources configured and \`apt-get update\` run?)`);
  return m[1]!;
}

/**
 * The kernel package `pkg` (a package name, or a path to a .deb), fetched
 * into `cacheDir` unless a .deb of it is there, and unpacked there once.
 */
export function fetchKernel(cacheDir: string, pkg: string | undefined, progress: (s: string) => void): Kernel {
  mkdirSync(cacheDir, { recursive: true });
  let deb: string;
  if (pkg?.endsWith('.deb')) {
    if (!existsSync(pkg)) throw new InvalidArgumentError('kernel package', `${pkg} does not exist`);
    deb = pkg;
  } else {
    const name = pkg ?? resolveKernelPackage();
    if (!/^linux-image-[\w.+-]+$/.test(name)) throw new InvalidArgumentError('kernel package', `"${name}" is not a linux-image package name`);
    const cached = readdirSync(cacheDir).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.deb')).sort();
    if (cached.length) {
      deb = join(cacheDir, cached.at(-1)!);
      progress(`kernel: ${basename(deb)} (cached in ${cacheDir})`);
    } else {
      progress(`kernel: downloading ${name} with apt-get`);
      // As root, apt's sandbox user cannot write a cache under /root: download as root then.
      const sandbox = process.getuid?.() === 0 ? ['-o', 'APT::Sandbox::User=root'] : [];
      run('apt-get', [...sandbox, '-q', 'download', name], { cwd: cacheDir });
      const got = readdirSync(cacheDir).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.deb')).sort();
      if (!got.length) throw new InvalidArgumentError('kernel package', `apt-get download ${name} left no .deb in ${cacheDir}`);
      deb = join(cacheDir, got.at(-1)!);
      progress(`kernel: ${basename(deb)} (${(statSync(deb).size / 2 ** 20).toFixed(1)} MiB)`);
    }
  }
  const root = join(cacheDir, basename(deb, '.deb'));
  if (!existsSync(join(root, '.unpacked'))) {
    progress(`kernel: unpacking ${basename(deb)}`);
    const tmp = `${root}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    run('dpkg-deb', ['-x', deb, tmp]);
    rmSync(root, { recursive: true, force: true });
    renameSync(tmp, root);
    run('touch', [join(root, '.unpacked')]);
  }
  const images = readdirSync(join(root, 'boot')).filter((f) => f.startsWith('vmlinuz-'));
  if (images.length !== 1) throw new InvalidArgumentError('kernel package', `${basename(deb)} holds ${images.length} kernel images in /boot, expected one`);
  const release = images[0]!.slice('vmlinuz-'.length);
  return { deb: basename(deb), release, root, vmlinuz: join(root, 'boot', images[0]!) };
}

/** The value of a key in a module's .modinfo section (the strings `key=value` in the .ko). */
function modinfo(ko: Buffer, key: string): string | undefined {
  const needle = Buffer.from(`\0${key}=`);
  const at = ko.indexOf(needle);
  if (at < 0) return undefined;
  const start = at + needle.length;
  return ko.subarray(start, ko.indexOf(0, start)).toString('utf8');
}

/**
 * The module files (relative to lib/modules/RELEASE) for `names` and
 * everything they depend on. Names not built as modules (built in, or
 * absent from this kernel) are skipped.
 */
export function moduleClosure(k: Kernel, names: readonly string[]): string[] {
  const base = join(k.root, 'lib', 'modules', k.release);
  const index = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(base, dir), { withFileTypes: true })) {
      const rel = join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ko')) index.set(e.name.slice(0, -3).replace(/-/g, '_'), rel);
    }
  };
  walk('kernel');
  const out = new Set<string>();
  const todo = names.map((n) => n.replace(/-/g, '_'));
  while (todo.length) {
    const n = todo.pop()!;
    const rel = index.get(n);
    if (!rel || out.has(rel)) continue;
    out.add(rel);
    const deps = modinfo(readFileSync(join(base, rel)), 'depends');
    if (deps) todo.push(...deps.split(',').filter(Boolean).map((d) => d.replace(/-/g, '_')));
  }
  return [...out].sort();
}
