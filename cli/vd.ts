/**
 * `wv vd ...`: the daemon's virtual disks (devices/blk/vdisk.ts), each
 * command one `vd-*` action. A disk is attached as `vd:NAME` in a disk spec.
 */
import type { Command } from 'commander';
import { formatVdSize, type VirtualDiskInfo } from '../devices/blk/vdisk.ts';
import { call } from './toolstack.ts';

/** The `wv vd list` table: NAME SIZE USED PARENT CREATED PATH; a disk whose image is gone shows USED `missing`. */
export function formatVdList(rows: readonly VirtualDiskInfo[]): string {
  const head = ['NAME', 'SIZE', 'USED', 'PARENT', 'CREATED', 'PATH'];
  const body = rows.map((r) => [
    r.name,
    formatVdSize(r.sizeBytes),
    r.state === 'missing' ? 'missing' : r.usedBytes === 0 ? '0' : formatVdSize(r.usedBytes),
    r.parent === null ? '-' : `${r.parent}${r.parentDeleted ? ' (deleted)' : ''}`,
    `${r.created.slice(0, 19)}Z`,
    r.path,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const right = new Set([1, 2]);
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n') + '\n';
}

function out(json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : text());
}

export function addVdCommands(program: Command): void {
  const vd = program.command('vd').description('virtual disks: sparse images the daemon keeps in its state directory, attached as vd:NAME in a disk spec');

  vd.command('create').description('create an empty disk (sparse: it takes host space only as it is written)')
    .argument('<name>', 'the disk\'s name: letters, digits, ".", "_", "-"')
    .argument('<size>', 'its size: 512K, 64M, 1G, 1T or bytes (a multiple of 512, at most 2T)')
    .option('--json', 'print the disk as JSON')
    .action(async (name: string, size: string, opts: { json?: boolean }, cmd: Command) => {
      const d = await call(cmd, { op: 'vd-create', name, size });
      out(opts.json, d, () => `wv: created virtual disk ${d.name} (${formatVdSize(d.sizeBytes)}) at ${d.path}\n`);
    });

  vd.command('list').description('the disks: size, host space used, parent (for snapshots), created, path')
    .option('--json', 'print the disks as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const rows = await call(cmd, { op: 'vd-list' });
      out(opts.json, rows, () => formatVdList(rows));
    });

  vd.command('delete').description('delete a disk and its image (refused while a domain has it attached); its snapshots stay')
    .argument('<name>', 'the disk')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'vd-delete', name });
      out(opts.json, r, () => `wv: deleted virtual disk ${r.name}\n`);
    });

  vd.command('resize').description('grow or shrink a disk (refused while attached); shrinking loses the data past the new end and needs --force')
    .argument('<name>', 'the disk')
    .argument('<size>', 'the new size, as for create')
    .option('-f, --force', 'allow shrinking')
    .option('--json', 'print the disk as JSON')
    .action(async (name: string, size: string, opts: { force?: boolean; json?: boolean }, cmd: Command) => {
      const d = await call(cmd, { op: 'vd-resize', name, size, force: opts.force ?? false });
      out(opts.json, d, () => `wv: virtual disk ${d.name} resized from ${formatVdSize(d.previousBytes)} to ${formatVdSize(d.sizeBytes)}\n`);
    });

  vd.command('snapshot').description('copy a disk into a new, independent one (sparse; a reflink where the host filesystem can); refused while attached')
    .argument('<name>', 'the disk to copy')
    .argument('<new-name>', 'the new disk')
    .option('--json', 'print the new disk as JSON')
    .action(async (name: string, newName: string, opts: { json?: boolean }, cmd: Command) => {
      const d = await call(cmd, { op: 'vd-snapshot', name, newName });
      out(opts.json, d, () => `wv: virtual disk ${d.name} is a snapshot of ${name} (${formatVdSize(d.sizeBytes)}, ${d.usedBytes === 0 ? '0' : formatVdSize(d.usedBytes)} used)\n`);
    });
}
