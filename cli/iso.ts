/**
 * `wv iso ...`: the live ISO (isogen/). Thin commander wiring over the
 * builder: progress on stderr, the result on stdout (`--json` for scripts).
 */
import { Command, InvalidArgumentError as CommanderArgError } from 'commander';
import { InvalidArgumentError } from '../kernel/errors.ts';

function seconds(v: string): number {
  if (!/^\d+$/.test(v)) throw new CommanderArgError(`"${v}" is not a whole number of seconds`);
  return Number(v);
}

/** Register `wv iso build|unpack|grub-entry`. */
export function addIsoCommands(program: Command): void {
  const iso = program.command('iso').description('the bootable live ISO: build one, unpack one to customise it, or print a Grub entry for a disk install');

  iso.command('build')
    .description('build a hybrid BIOS/UEFI live ISO: Debian\'s kernel (downloaded with apt-get, cached), a busybox init, the pinned node, the wasmvisor bundle, the reference guests and the domains to start')
    .option('-o, --output <file>', 'the ISO to write', 'wasmvisor.iso')
    .option('--overlay <dir>', 'a directory copied over the root filesystem last (the Demo CD\'s rootpatch)')
    .option('--config <dir>', 'the domain configs (*.cfg, xl.cfg syntax) to start at boot, instead of isogen/config')
    .option('--from <dir>', 'rebuild from a tree made by `wv iso unpack` (its root, kernel and menu, as edited)')
    .option('--timeout <seconds>', 'how long the boot menu waits before the first entry (0: boot at once)', seconds)
    .option('--append <words>', 'kernel command line words added to every boot entry (e.g. "noreboot autostart=hello")')
    .option('--kernel <package|deb>', 'the kernel: a linux-image-* package name or a .deb file (default: what linux-image-amd64 depends on)')
    .option('--cache-dir <dir>', 'where the kernel package is kept (default $WV_CACHE_DIR or ~/.cache/wasmvisor)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: { output: string; overlay?: string; config?: string; from?: string; timeout?: number; append?: string; kernel?: string; cacheDir?: string; json?: boolean }) => {
      const { buildIso, describeBuild } = await import('../isogen/build.ts');
      const r = await buildIso({
        output: opts.output,
        ...(opts.overlay !== undefined ? { overlay: opts.overlay } : {}),
        ...(opts.config !== undefined ? { config: opts.config } : {}),
        ...(opts.from !== undefined ? { from: opts.from } : {}),
        ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
        ...(opts.append !== undefined ? { append: opts.append } : {}),
        ...(opts.kernel !== undefined ? { kernel: opts.kernel } : {}),
        ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
        progress: (line) => process.stderr.write(`wv iso: ${line}\n`),
      });
      process.stdout.write(opts.json ? `${JSON.stringify(r)}\n` : describeBuild(r));
    });

  iso.command('unpack')
    .description('extract an ISO\'s files into DIR/iso and its root filesystem (the initramfs) into DIR/root, to edit and rebuild with `wv iso build --from DIR`')
    .argument('<iso>', 'the ISO image')
    .argument('<dir>', 'an empty or new directory')
    .option('--json', 'print the result as JSON')
    .action(async (isoPath: string, dir: string, opts: { json?: boolean }) => {
      const { unpackIso } = await import('../isogen/unpack.ts');
      const r = unpackIso(isoPath, dir);
      process.stdout.write(opts.json ? `${JSON.stringify(r)}\n`
        : `unpacked ${isoPath}: ${r.iso} (the ISO's files), ${r.root} (the root, ${r.files} files)\nrebuild with: wv iso build --from ${r.dir} -o NEW.iso\n`);
    });

  iso.command('grub-entry')
    .description('print a Grub menu entry that boots wasmvisor from a disk with Grub already installed (copy the ISO\'s boot/vmlinuz and boot/initrd.zst to --dir first)')
    .option('--dir <path>', 'where the kernel and initrd are, as Grub sees the partition', '/boot/wasmvisor')
    .option('--append <words>', 'kernel command line words to add')
    .option('--title <text>', 'the entry\'s title', 'wasmvisor')
    .action(async (opts: { dir: string; append?: string; title: string }) => {
      if (!opts.dir.startsWith('/')) throw new InvalidArgumentError('--dir', `"${opts.dir}" is not an absolute path`);
      const { grubEntry } = await import('../isogen/grub.ts');
      process.stdout.write(grubEntry({ dir: opts.dir, title: opts.title, ...(opts.append !== undefined ? { append: opts.append } : {}) }));
    });
}
