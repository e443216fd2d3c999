/**
 * Virtual block devices from the command line: `wv block-attach`,
 * `block-detach`, `block-list` (as xl), and the table the CD's `listvbds`
 * prints too.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { absoluteDiskSpec } from '../devices/blk/disk-spec.ts';
import type { BlockRow } from '../runtime/toolstack/protocol.ts';
import { call } from './toolstack.ts';

function domArg(s: string): number | string {
  return /^\d+$/.test(s) ? Number(s) : s;
}

function size(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 1 : 0)}${units[u]}`;
}

/** The `block-list` table: one row per VBD with its state and I/O counters. */
export function formatBlockList(rows: readonly BlockRow[]): string {
  const head = ['DOM', 'NAME', 'VDEV', 'DEVID', 'MODE', 'SIZE', 'STATE', 'FRONTEND', 'RD', 'WR', 'RD_BYTES', 'WR_BYTES', 'ERR', 'BACKING'];
  const body = rows.map((r) => [
    String(r.domid), r.domain, r.vdev, String(r.devid), r.readonly ? 'r' : 'w', size(r.sectors * r.sectorSize), r.state, r.frontendState,
    String(r.stats.reads), String(r.stats.writes), size(r.stats.bytesRead), size(r.stats.bytesWritten), String(r.stats.errors),
    `${r.kind}:${r.target}${r.error ? `  (error: ${r.error})` : ''}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n') + '\n';
}

/** A disk spec from the command line: a relative `file:` path is the caller's, so make it absolute for the daemon. */
export function cliDiskSpec(spec: string): string {
  return absoluteDiskSpec(spec, process.cwd(), resolve);
}

export function addBlockCommands(program: Command): void {
  program.command('block-attach')
    .description('attach a virtual block device to a running domain (vbd_add): the guest finds it in the store')
    .argument('<domain>', 'id or name')
    .argument('<disk-spec>', "[file|phy|vd:]TARGET,VDEV[,r|w], e.g. file:disk.img,xvdb,w or phy:sdb,xvdc,r or vd:data,xvdd")
    .option('--json', 'print the device as JSON')
    .action(async (dom: string, spec: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'block-attach', dom: domArg(dom), spec: cliDiskSpec(spec) });
      process.stdout.write(opts.json ? `${JSON.stringify(r)}\n` : `wv: ${r.kind}:${r.target} attached to domain ${r.domid} (${r.domain}) as ${r.vdev}, ${r.readonly ? 'read-only' : 'read-write'}\n`);
    });

  program.command('block-detach')
    .description('detach a virtual block device (vbd_remove): the guest lets go, requests in flight complete, then it is removed')
    .argument('<domain>', 'id or name')
    .argument('<vdev>', 'the device as the guest knows it (xvdb) or its number')
    .option('-f, --force', 'detach even if the guest does not let go in time (its requests in flight still complete)')
    .option('-t, --timeout <seconds>', 'how long to wait for the guest', '10')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, vdev: string, opts: { force?: boolean; timeout: string; json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'block-detach', dom: domArg(dom), vdev, force: opts.force ?? false, timeoutMs: Math.round(Number(opts.timeout) * 1000) });
      process.stdout.write(opts.json ? `${JSON.stringify(r)}\n` : `wv: ${r.vdev} detached from domain ${r.id}\n`);
    });

  program.command('block-list')
    .description('list virtual block devices, with their state and I/O counters (listvbds)')
    .argument('[domain]', 'id or name (default: every domain)')
    .option('--json', 'print the devices as JSON')
    .action(async (dom: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const rows = await call(cmd, dom === undefined ? { op: 'block-list' } : { op: 'block-list', dom: domArg(dom) });
      process.stdout.write(opts.json ? `${JSON.stringify(rows)}\n` : formatBlockList(rows));
    });
}
