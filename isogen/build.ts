/**
 * `wv iso build`: the bootable live ISO. Steps, each reported on `progress`:
 *
 *   1. check the host tools (and name the Debian packages when some are missing);
 *   2. fetch Debian's kernel package (cached) and pick its network modules;
 *   3. bundle wasmvisor with esbuild (the `wv` command, the vCPU and ticker workers);
 *   4. stage the root: busybox, the pinned node binary (stripped) and the
 *      libraries ldd lists for it, the bundle, the reference guests, the init
 *      and shell scripts (isogen/root), the domains to start (`--config`,
 *      default isogen/config), then `--overlay` copied over it all;
 *   5. pack the root into a zstd-compressed newc cpio (the initramfs: the whole
 *      system runs from RAM, so no CD-ROM driver is needed);
 *   6. grub-mkrescue makes the hybrid BIOS + UEFI image (xorriso).
 *
 * Reproducible: every file gets the same mtime (SOURCE_DATE_EPOCH), owner and
 * normalised mode; cpio entries are sorted; zstd output does not depend on
 * threads; xorriso and mtools take their dates from SOURCE_DATE_EPOCH and the
 * volume uuid is fixed. Same inputs, same bytes (the test builds twice).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync,
  readlinkSync, rmSync, statSync, symlinkSync, writeFileSync, lutimesSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../kernel/errors.ts';
import { defaultCacheDir, fetchKernel, moduleClosure, NIC_MODULES, type Kernel } from './kernel.ts';
import { grubCfg } from './grub.ts';
import { BUILD_PREREQS, checkPrereqs, run, which } from './tools.ts';
import { IsoToolError } from './errors.ts';

/** The repository this module belongs to (from the source tree, isogen/, or the bundle, dist/). */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Where things live inside the ISO's root. */
export const ISO_PATHS = {
  prefix: '/opt/wasmvisor',
  domains: '/etc/wv/domains',
  kernel: '/boot/vmlinuz',
  initrd: '/boot/initrd.zst',
} as const;

/** The CD's tool names, installed as links to the `wv` bundle (it acts as the tool it is called as). */
const CD_TOOL_LINKS = ['wv', 'xc_dom_create.py', 'xc_dom_create', 'xc_dom_control.py', 'xc_dom_control', 'xen_read_console'];

/** The bundle's entry points: the same as `npm run build` (scripts/bundle.ts). */
const BUNDLE_ENTRIES = { wv: 'cli/wv.ts', 'vcpu-worker': 'runtime/executor/vcpu-worker.ts', 'ticker-worker': 'runtime/executor/ticker-worker.ts' };

/** The EFI system partition's FAT volume serial ("WASM"). */
const FAT_SERIAL = '5741534d';

/** zstd level for the initramfs: ~4 s for ~190 MB on one core, within 15 % of -19's size. */
const ZSTD_LEVEL = 9;

export interface BuildOptions {
  /** The ISO to write. */
  output: string;
  /** A directory copied over the root last (the CD's rootpatch). */
  overlay?: string;
  /** A directory of domain configs (*.cfg, xl.cfg syntax) to start at boot, instead of isogen/config. */
  config?: string;
  /** An unpacked ISO (`wv iso unpack`) to rebuild from: its root tree replaces the staged one. */
  from?: string;
  /** Seconds the boot menu waits before the first entry (0 boots at once). */
  timeout?: number;
  /** Words added to every entry's kernel command line. */
  append?: string;
  /** The kernel package: a linux-image-* name or a .deb path (default: what linux-image-amd64 depends on). */
  kernel?: string;
  /** Where downloads are kept (default ~/.cache/wasmvisor). */
  cacheDir?: string;
  /** The timestamp every file gets (default $SOURCE_DATE_EPOCH, else the last commit's time). */
  epoch?: number;
  /** One line per step. */
  progress?: (line: string) => void;
}

export interface BuildResult {
  path: string;
  bytes: number;
  sha256: string;
  seconds: number;
  epoch: number;
  kernel: { package: string; release: string; bytes: number };
  initrd: { bytes: number; unpackedBytes: number; files: number; compression: string };
  node: { version: string; bytes: number };
  bundleBytes: number;
  guests: string[];
  domains: string[];
  modules: number;
  overlay?: string;
  bootEntries: string[];
}

function isDir(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}

/** Check a directory argument: it exists and is a directory. */
function requireDir(what: string, p: string): string {
  if (!existsSync(p)) throw new InvalidArgumentError(what, `${p} does not exist`);
  if (!isDir(p)) throw new InvalidArgumentError(what, `${p} is not a directory`);
  return resolve(p);
}

/** The default timestamp: $SOURCE_DATE_EPOCH, else the repository's last commit, else 2004-01-24 (the Demo CD's README). */
export function defaultEpoch(): number {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env !== undefined) {
    if (!/^\d+$/.test(env)) throw new InvalidArgumentError('SOURCE_DATE_EPOCH', `"${env}" is not a number of seconds`);
    return Number(env);
  }
  const r = spawnSync('git', ['log', '-1', '--format=%ct'], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (r.status === 0 && /^\d+\s*$/.test(r.stdout)) return Number(r.stdout.trim());
  return 1074902400;
}

function sha256File(p: string): string {
  return createHash('sha256').update(readFileSync(p)).digest('hex');
}

/** Every path under `dir`, relative, sorted (bytewise, as LC_ALL=C sort). */
function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      out.push(r);
      if (lstatSync(join(dir, r)).isDirectory()) walk(r);
    }
  };
  walk('');
  return out.sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))));
}

/** Same owner-independent modes and one mtime for every entry, so the archive does not record the build host. */
function normaliseTree(dir: string, epoch: number): void {
  const paths = listTree(dir).reverse();
  for (const rel of [...paths, '']) {
    const p = join(dir, rel);
    const st = lstatSync(p);
    if (!st.isSymbolicLink()) chmodSync(p, st.isDirectory() || (st.mode & 0o111) !== 0 ? 0o755 : 0o644);
    lutimesSync(p, epoch, epoch);
  }
}

function copyInto(root: string, src: string, dest: string): void {
  mkdirSync(dirname(join(root, dest)), { recursive: true });
  copyFileSync(src, join(root, dest));
}

/** Bundle wasmvisor into `outdir` with esbuild's command (no source maps: the ISO carries what runs). */
function bundle(outdir: string): void {
  const esbuild = join(REPO_ROOT, 'node_modules', '.bin', 'esbuild');
  if (!existsSync(esbuild)) throw new InvalidArgumentError('esbuild', `${esbuild} is missing; run npm ci`);
  run(esbuild, [
    ...Object.entries(BUNDLE_ENTRIES).map(([out, src]) => `${out}=${src}`),
    `--outdir=${outdir}`, '--bundle', '--platform=node', '--format=esm', '--splitting', '--chunk-names=chunk-[hash]',
    '--target=node26', '--legal-comments=none', '--log-level=error',
    "--banner:js=import { createRequire as __wvCreateRequire } from 'node:module'; const require = __wvCreateRequire(import.meta.url);",
  ], { cwd: REPO_ROOT });
  copyFileSync(join(REPO_ROOT, 'cli', 'demo.json'), join(outdir, 'demo.json'));
}

/** The shared libraries the node binary loads, as ldd resolves them on this host (path in the root -> file on the host). */
function nodeLibraries(nodeBin: string): Map<string, string> {
  const libs = new Map<string, string>();
  for (const line of run('ldd', [nodeBin]).split('\n')) {
    const m = /^\s*(?:(\S+)\s+=>\s+)?(\/\S+)\s+\(0x/.exec(line);
    if (!m) continue;
    const hostPath = m[2]!;
    // The soname's directory in the root: /lib/x86_64-linux-gnu for libraries, /lib64 for the loader.
    const inRoot = m[1] ? join('/lib/x86_64-linux-gnu', m[1]) : hostPath.replace(/^\/usr\/lib64\//, '/lib64/');
    libs.set(inRoot, hostPath);
  }
  if (![...libs.keys()].some((k) => k.includes('ld-linux'))) throw new IsoToolError('ldd', `found no dynamic loader for ${nodeBin}`);
  return libs;
}

function dirBytes(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const rel of listTree(dir)) {
    const st = lstatSync(join(dir, rel));
    if (st.isFile()) { bytes += st.size; files++; }
  }
  return { bytes, files };
}

/** Stage the ISO's root filesystem in `root`; returns what went in. */
async function stageRoot(root: string, k: Kernel, opts: BuildOptions, progress: (s: string) => void): Promise<Pick<BuildResult, 'node' | 'bundleBytes' | 'guests' | 'domains' | 'modules'>> {
  const prefix = join(root, ISO_PATHS.prefix);
  for (const d of ['bin', 'dev', 'etc', 'lib', 'lib64', 'proc', 'root', 'run', 'sbin', 'sys', 'tmp', 'usr/bin', 'usr/sbin', 'var']) {
    mkdirSync(join(root, d), { recursive: true });
  }

  progress('root: busybox');
  const busybox = which('busybox')!;
  copyInto(root, busybox, 'bin/busybox');
  for (const applet of run(busybox, ['--list-full']).split('\n').filter(Boolean).sort()) {
    const link = join(root, applet);
    if (existsSync(link) || applet === 'linuxrc') continue;
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(relative(dirname(link), join(root, 'bin/busybox')), link);
  }

  progress('root: node and its libraries');
  const nodeBin = join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(nodeBin)) throw new InvalidArgumentError('node binary', `${nodeBin} is missing; run npm ci (the pinned Node comes from the npm node package)`);
  mkdirSync(join(prefix, 'bin'), { recursive: true });
  run('strip', ['-o', join(prefix, 'bin', 'node'), nodeBin]);
  const version = run(nodeBin, ['--version']).trim();
  for (const [inRoot, host] of nodeLibraries(nodeBin)) copyInto(root, host, inRoot.slice(1));

  progress('root: bundling wasmvisor (esbuild)');
  bundle(join(prefix, 'dist'));
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  writeFileSync(join(prefix, 'package.json'), `${JSON.stringify({ name: 'wasmvisor', version: pkg.version, type: 'module', private: true }, null, 2)}\n`);
  chmodSync(join(prefix, 'dist', 'wv.js'), 0o755);
  for (const name of CD_TOOL_LINKS) symlinkSync(`../..${ISO_PATHS.prefix}/dist/wv.js`, join(root, 'usr/bin', name));

  progress('root: reference guests');
  const guestDir = join(REPO_ROOT, 'wasm-guests', 'build');
  const guests = existsSync(guestDir) ? readdirSync(guestDir).filter((f) => f.endsWith('.wasm')).sort() : [];
  if (!guests.includes('hello.wasm')) throw new InvalidArgumentError('reference guests', `${guestDir} has no hello.wasm; run npm ci or npm run build`);
  for (const g of guests) copyInto(root, join(guestDir, g), `${ISO_PATHS.prefix.slice(1)}/wasm-guests/build/${g}`);

  progress(`root: kernel modules for network cards (${k.release})`);
  const mods = moduleClosure(k, NIC_MODULES);
  const modBase = `lib/modules/${k.release}`;
  for (const m of mods) copyInto(root, join(k.root, modBase, m), `${modBase}/${m}`);
  for (const f of ['modules.builtin', 'modules.order', 'modules.builtin.modinfo']) {
    if (existsSync(join(k.root, modBase, f))) copyInto(root, join(k.root, modBase, f), `${modBase}/${f}`);
  }
  run(busybox, ['depmod', '-b', root, k.release]);

  progress('root: init, shell and configs');
  cpSync(join(REPO_ROOT, 'isogen', 'root'), root, { recursive: true });
  writeFileSync(join(root, 'etc/wv/version'), `${pkg.version}\n`);
  writeFileSync(join(root, 'etc/wv/build-info'), [
    `version=${pkg.version}`, `kernel_package=${k.deb}`, `kernel_release=${k.release}`, `node=${version}`, `source_date_epoch=${opts.epoch}`, '',
  ].join('\n'));
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
  writeFileSync(join(root, 'etc/hosts'), '127.0.0.1 localhost wasmvisor\n');
  const configDir = opts.config ?? join(REPO_ROOT, 'isogen', 'config');
  const domains = readdirSync(configDir).filter((f) => f.endsWith('.cfg')).sort();
  mkdirSync(join(root, ISO_PATHS.domains), { recursive: true });
  for (const f of readdirSync(configDir).sort()) {
    const src = join(configDir, f);
    if (statSync(src).isFile()) copyFileSync(src, join(root, ISO_PATHS.domains, f));
  }

  if (opts.overlay) {
    progress(`root: overlay ${opts.overlay}`);
    cpSync(opts.overlay, root, { recursive: true, force: true, verbatimSymlinks: true });
  }
  return {
    node: { version, bytes: statSync(join(prefix, 'bin', 'node')).size },
    bundleBytes: dirBytes(join(prefix, 'dist')).bytes,
    guests: guests.map((g) => g.replace(/\.wasm$/, '')),
    domains: domains.map((d) => d.replace(/\.cfg$/, '')),
    modules: mods.length,
  };
}

/** Pack `root` as a sorted newc cpio, zstd-compressed, into `out`. */
function packInitrd(root: string, out: string): void {
  const list = `${listTree(root).map((p) => `./${p}`).join('\n')}\n`;
  const cpio = spawnSync('cpio', ['--quiet', '-o', '-H', 'newc', '--reproducible', '-R', '0:0'], { cwd: root, input: `.\n${list}`, maxBuffer: 2 ** 31 - 1 });
  if (cpio.status !== 0) throw new IsoToolError('cpio', String(cpio.stderr).trim() || `exit status ${cpio.status}`);
  const z = spawnSync('zstd', ['-q', `-${ZSTD_LEVEL}`, '-T0', '-c'], { input: cpio.stdout, maxBuffer: 2 ** 31 - 1 });
  if (z.status !== 0) throw new IsoToolError('zstd', String(z.stderr).trim() || `exit status ${z.status}`);
  writeFileSync(out, z.stdout);
}

/** The volume and file dates xorriso writes, as its --modification-date wants them (YYYYMMDDhhmmsscc, UTC). */
function isoDate(epoch: number): string {
  return `${new Date(epoch * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14)}00`;
}

/** Build the ISO. Throws IsoPrereqError first when host tools are missing. */
export async function buildIso(opts: BuildOptions): Promise<BuildResult> {
  const t0 = performance.now();
  const progress = opts.progress ?? (() => {});
  checkPrereqs(BUILD_PREREQS);
  if (opts.config !== undefined) opts = { ...opts, config: requireDir('--config', opts.config) };
  if (opts.overlay !== undefined) opts = { ...opts, overlay: requireDir('--overlay', opts.overlay) };
  if (opts.from !== undefined) opts = { ...opts, from: requireDir('--from', opts.from) };
  if (opts.from !== undefined && !existsSync(join(opts.from, 'root', 'init'))) {
    throw new InvalidArgumentError('--from', `${opts.from} is not an unpacked ISO (no root/init; make one with wv iso unpack ISO DIR)`);
  }
  const timeout = opts.timeout ?? 1;
  if (!Number.isInteger(timeout) || timeout < 0 || timeout > 600) throw new InvalidArgumentError('--timeout', `"${opts.timeout}" is not a whole number of seconds in [0, 600]`);
  const output = resolve(opts.output);
  if (!isDir(dirname(output))) throw new InvalidArgumentError('-o', `the directory of ${output} does not exist`);
  if (isDir(output)) throw new InvalidArgumentError('-o', `${output} is a directory; give a file name`);
  const epoch = opts.epoch ?? defaultEpoch();
  opts = { ...opts, epoch };

  const work = mkdtempSync(join(tmpdir(), 'wv-iso-'));
  try {
    progress('prerequisites: all found');
    let kernel: Kernel;
    let staged: Pick<BuildResult, 'node' | 'bundleBytes' | 'guests' | 'domains' | 'modules'>;
    const root = join(work, 'root');
    const tree = join(work, 'iso');
    mkdirSync(join(tree, 'boot', 'grub'), { recursive: true });
    if (opts.from) {
      // Rebuild an unpacked ISO: its kernel and root as they are now, then --config and --overlay.
      progress(`root: from ${opts.from}`);
      cpSync(join(opts.from, 'root'), root, { recursive: true, verbatimSymlinks: true });
      const info = Object.fromEntries(readFileSync(join(root, 'etc/wv/build-info'), 'utf8').split('\n').filter(Boolean).map((l) => l.split('=', 2) as [string, string]));
      kernel = { deb: info.kernel_package ?? 'unknown', release: info.kernel_release ?? 'unknown', root: opts.from, vmlinuz: join(opts.from, 'iso', ISO_PATHS.kernel) };
      if (!existsSync(kernel.vmlinuz)) throw new InvalidArgumentError('--from', `${opts.from} has no iso${ISO_PATHS.kernel}`);
      if (opts.config) {
        rmSync(join(root, ISO_PATHS.domains), { recursive: true, force: true });
        cpSync(opts.config, join(root, ISO_PATHS.domains), { recursive: true });
      }
      if (opts.overlay) { progress(`root: overlay ${opts.overlay}`); cpSync(opts.overlay, root, { recursive: true, force: true, verbatimSymlinks: true }); }
      const prefix = join(root, ISO_PATHS.prefix);
      staged = {
        node: { version: (info.node ?? ''), bytes: statSync(join(prefix, 'bin', 'node')).size },
        bundleBytes: dirBytes(join(prefix, 'dist')).bytes,
        guests: readdirSync(join(prefix, 'wasm-guests', 'build')).filter((f) => f.endsWith('.wasm')).sort().map((f) => f.slice(0, -5)),
        domains: readdirSync(join(root, ISO_PATHS.domains)).filter((f) => f.endsWith('.cfg')).sort().map((f) => f.slice(0, -4)),
        modules: run('find', [join(root, 'lib', 'modules'), '-name', '*.ko']).split('\n').filter(Boolean).length,
      };
    } else {
      kernel = fetchKernel(opts.cacheDir ?? defaultCacheDir(), opts.kernel, progress);
      staged = await stageRoot(root, kernel, opts, progress);
    }
    normaliseTree(root, epoch);
    const unpacked = dirBytes(root);

    progress(`initramfs: cpio + zstd -${ZSTD_LEVEL} (${unpacked.files} files, ${(unpacked.bytes / 2 ** 20).toFixed(0)} MiB)`);
    packInitrd(root, join(tree, ISO_PATHS.initrd));
    copyFileSync(kernel.vmlinuz, join(tree, ISO_PATHS.kernel));
    // An unpacked ISO keeps its (perhaps edited) menu unless --timeout or --append ask for a new one.
    const keptCfg = opts.from && opts.timeout === undefined && opts.append === undefined ? join(opts.from, 'iso', 'boot', 'grub', 'grub.cfg') : undefined;
    if (keptCfg && existsSync(keptCfg)) copyFileSync(keptCfg, join(tree, 'boot', 'grub', 'grub.cfg'));
    else writeFileSync(join(tree, 'boot', 'grub', 'grub.cfg'), grubCfg({ timeout, kernel: ISO_PATHS.kernel, initrd: ISO_PATHS.initrd, ...(opts.append ? { append: opts.append } : {}) }));
    writeFileSync(join(tree, 'README.TXT'), readmeText(kernel, staged));
    normaliseTree(tree, epoch);

    progress('image: grub-mkrescue (BIOS + UEFI) and xorriso');
    const tmpIso = `${output}.tmp-${process.pid}`;
    // grub-mkrescue's mformat gives the EFI system partition a random FAT serial: fix it (the only byte that varied).
    const shim = join(work, 'shim');
    mkdirSync(shim);
    writeFileSync(join(shim, 'mformat'), `#!/bin/sh\nexec ${JSON.stringify(which('mformat'))} -N ${FAT_SERIAL} "$@"\n`, { mode: 0o755 });
    const env = { ...process.env, PATH: `${shim}:${process.env.PATH ?? ''}`, SOURCE_DATE_EPOCH: String(epoch), TZ: 'UTC', LC_ALL: 'C' };
    run('grub-mkrescue', [
      '-o', tmpIso,
      '--fonts=', '--locales=', '--themes=',
      tree,
      // After "--", xorriso's own commands: they override the build time grub-mkrescue passes.
      '--',
      '-volid', 'WASMVISOR',
      '-volume_date', 'uuid', isoDate(epoch),
      '-volume_date', 'c', `=${epoch}`,
      '-volume_date', 'm', `=${epoch}`,
      '-volume_date', 'all_file_dates', `=${epoch}`,
    ], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    rmSync(output, { force: true });
    run('mv', [tmpIso, output]);

    const bytes = statSync(output).size;
    const result: BuildResult = {
      path: output,
      bytes,
      sha256: sha256File(output),
      seconds: (performance.now() - t0) / 1000,
      epoch,
      kernel: { package: kernel.deb, release: kernel.release, bytes: statSync(kernel.vmlinuz).size },
      initrd: { bytes: statSync(join(tree, ISO_PATHS.initrd)).size, unpackedBytes: unpacked.bytes, files: unpacked.files, compression: `zstd -${ZSTD_LEVEL}` },
      ...staged,
      bootEntries: ['normal', 'ip', 'safe', 'hwinfo'],
      ...(opts.overlay ? { overlay: opts.overlay } : {}),
    };
    progress(`done in ${result.seconds.toFixed(1)} s`);
    return result;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function readmeText(k: Kernel, s: Pick<BuildResult, 'node' | 'guests' | 'domains'>): string {
  return [
    'wasmvisor live ISO',
    '==================',
    '',
    'A hypervisor whose guests are WebAssembly modules, booted on x86 like the',
    '2004 Xen Demo CD. Boot it (BIOS or UEFI), pick an entry, and use the `wv`',
    'shell on the serial console (or the screen): `list`, `console NAME`, `h`.',
    '',
    `kernel:  ${k.deb} (Linux ${k.release})`,
    `node:    ${s.node.version}`,
    `guests:  ${s.guests.join(', ')}`,
    `domains: ${s.domains.join(', ') || '(none)'} (started at boot, from /etc/wv/domains)`,
    '',
    'Files: /boot/vmlinuz (Linux), /boot/initrd.zst (the whole root: init,',
    'busybox, node, wasmvisor), /boot/grub/grub.cfg (the menu).',
    'Customise: wv iso unpack THIS.iso DIR; edit DIR/root; wv iso build --from DIR -o NEW.iso',
    '',
  ].join('\n');
}

/** The human summary `wv iso build` prints on stdout. */
export function describeBuild(r: BuildResult): string {
  const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
  return [
    `${r.path}`,
    `  size       ${mib(r.bytes)} (${r.bytes} bytes), sha256 ${r.sha256}`,
    `  kernel     ${r.kernel.package} (Linux ${r.kernel.release}, ${mib(r.kernel.bytes)}), ${r.modules} network modules`,
    `  initramfs  ${mib(r.initrd.bytes)} ${r.initrd.compression}, ${r.initrd.files} files, ${mib(r.initrd.unpackedBytes)} unpacked`,
    `  node       ${r.node.version} (${mib(r.node.bytes)} stripped); wasmvisor bundle ${mib(r.bundleBytes)}`,
    `  guests     ${r.guests.join(', ')}`,
    `  domains    ${r.domains.join(', ') || '(none)'} (started at boot)`,
    `  boot menu  ${r.bootEntries.join(', ')}`,
    ...(r.overlay ? [`  overlay    ${r.overlay}`] : []),
    `  built in   ${r.seconds.toFixed(1)} s (SOURCE_DATE_EPOCH=${r.epoch})`,
    '',
  ].join('\n');
}
