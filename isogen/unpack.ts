/**
 * `wv iso unpack ISO DIR`: the ISO's tree and its root, ready to edit and
 * rebuild (the Demo CD's unpack-iso.sh). DIR/iso is the ISO's files
 * (xorriso -osirrox), DIR/root the initramfs unpacked (zstd, cpio). Rebuild
 * with `wv iso build --from DIR -o NEW.iso`: it packs DIR/root again and
 * boots DIR/iso/boot/vmlinuz with DIR/iso/boot/grub/grub.cfg.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError } from '../kernel/errors.ts';
import { IsoToolError } from './errors.ts';
import { ISO_PATHS } from './build.ts';
import { checkPrereqs, run } from './tools.ts';

export interface UnpackResult { dir: string; iso: string; root: string; files: number }

export function unpackIso(isoPath: string, dir: string): UnpackResult {
  checkPrereqs([{ tool: 'xorriso', pkg: 'xorriso' }, { tool: 'zstd', pkg: 'zstd' }, { tool: 'cpio', pkg: 'cpio' }]);
  const iso = resolve(isoPath);
  if (!existsSync(iso)) throw new InvalidArgumentError('ISO', `${iso} does not exist`);
  if (!statSync(iso).isFile()) throw new InvalidArgumentError('ISO', `${iso} is not a file`);
  const out = resolve(dir);
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) {
    throw new InvalidArgumentError('DIR', `${out} exists and is not an empty directory`);
  }
  const tree = join(out, 'iso');
  const root = join(out, 'root');
  mkdirSync(tree, { recursive: true });
  mkdirSync(root, { recursive: true });
  run('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/', tree], { stdio: ['ignore', 'pipe', 'pipe'] });
  run('chmod', ['-R', 'u+w', tree]);
  const initrd = join(tree, ISO_PATHS.initrd);
  if (!existsSync(initrd)) throw new InvalidArgumentError('ISO', `${iso} has no ${ISO_PATHS.initrd}; it is not a wasmvisor ISO`);
  const z = spawnSync('zstd', ['-q', '-d', '-c', initrd], { maxBuffer: 2 ** 31 - 1 });
  if (z.status !== 0) throw new IsoToolError('zstd -d', String(z.stderr).trim());
  const c = spawnSync('cpio', ['--quiet', '-i', '-d', '-m', '--no-absolute-filenames'], { cwd: root, input: z.stdout, maxBuffer: 64 * 2 ** 20 });
  if (c.status !== 0) throw new IsoToolError('cpio -i', String(c.stderr).trim());
  const files = run('find', [root, '-type', 'f']).split('\n').filter(Boolean).length;
  return { dir: out, iso: tree, root, files };
}
