/**
 * Virtual network interfaces from the command line: `wv network-attach`,
 * `network-detach`, `network-list` (as xl), `vif-addip`, `vif-rate` and
 * `vif-stats` (the CD's vif_addip, vif_setsched/vif_getsched, vif_stats).
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from '../kernel/errors.ts';
import type { VifInfo } from '../devices/net/vif.ts';
import type { NatStats } from '../devices/net/nat/gateway.ts';
import { parseRate } from '../devices/net/vif.ts';
import { call } from './toolstack.ts';

function domArg(s: string): number | string {
  return /^\d+$/.test(s) ? Number(s) : s;
}

function vifArg(s: string): number | string {
  return /^\d+$/.test(s) ? Number(s) : s;
}

export function formatRate(r: { bytes: number; usecs: number }): string {
  if (r.bytes === 0 || r.usecs === 0) return 'unlimited';
  return `${r.bytes} bytes per ${r.usecs} us (${((r.bytes * 8 * 1e6) / r.usecs / 1e6).toFixed(2)} Mb/s)`;
}

function table(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n') + '\n';
}

/** The `network-list` table. */
export function formatVifList(rows: readonly VifInfo[]): string {
  return table(['DOM', 'NAME', 'VIF', 'MAC', 'STATE', 'FRONTEND', 'RATE', 'IP'], rows.map((r) => [
    String(r.domid), r.domain, r.name, r.mac, r.state, r.frontendState, formatRate(r.rate), `${r.ips.join(' ') || '-'}${r.error ? `  (error: ${r.error})` : ''}`,
  ]));
}

/** The `vif-stats` table: what each vif sent (TX) and received (RX), and what the switch dropped. */
export function formatVifStats(rows: readonly VifInfo[]): string {
  return table(['VIF', 'TX_PKTS', 'TX_BYTES', 'RX_PKTS', 'RX_BYTES', 'DROPPED', 'SPOOFED', 'MALFORMED', 'UNROUTABLE', 'RATE_LIMITED', 'DELAYED', 'ERRORS'], rows.map((r) => [
    r.name, String(r.stats.txPackets), String(r.stats.txBytes), String(r.stats.rxPackets), String(r.stats.rxBytes), String(r.stats.dropped),
    String(r.stats.spoofed), String(r.stats.malformed), String(r.stats.unroutable), String(r.stats.rateLimited), String(r.stats.delayed),
    String(r.stats.txErrors + r.stats.rxErrors),
  ]));
}

export function addNetCommands(program: Command): void {
  const json = (v: unknown): void => { process.stdout.write(`${JSON.stringify(v)}\n`); };

  program.command('network-attach')
    .description('give a running domain a network interface: ip=A[ B],mac=M,rate=R (its addresses are routed to it on the switch)')
    .argument('<domain>', 'id or name')
    .argument('[vif-spec]', 'ip=169.254.1.5,mac=00:16:3e:00:00:05,rate=10Mb/s (all optional)', '')
    .option('--json', 'print the vif as JSON')
    .action(async (dom: string, spec: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'network-attach', dom: domArg(dom), spec });
      if (opts.json) json(r); else process.stdout.write(`wv: ${r.name} (${r.mac}${r.ips.length ? ` ${r.ips.join(' ')}` : ''}) attached to domain ${r.domid} (${r.domain})\n`);
    });

  program.command('network-detach')
    .description('remove a network interface (the guest lets go first; its addresses are freed)')
    .argument('<domain>', 'id or name')
    .argument('<vif>', 'its number, name (vif3.0) or MAC')
    .option('-f, --force', 'detach even if the guest does not let go in time')
    .option('-t, --timeout <seconds>', 'how long to wait for the guest', '10')
    .option('--json', 'print the result as JSON')
    .action(async (dom: string, vif: string, opts: { force?: boolean; timeout: string; json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'network-detach', dom: domArg(dom), vif: vifArg(vif), force: opts.force ?? false, timeoutMs: Math.round(Number(opts.timeout) * 1000) });
      if (opts.json) json(r); else process.stdout.write(`wv: ${r.vif} detached from domain ${r.id}\n`);
    });

  program.command('network-list')
    .description('list network interfaces: MAC, addresses, state, rate limit')
    .argument('[domain]', 'id or name (default: every domain)')
    .option('--json', 'print the vifs as JSON')
    .action(async (dom: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const rows = await call(cmd, dom === undefined ? { op: 'network-list' } : { op: 'network-list', dom: domArg(dom) });
      if (opts.json) json(rows); else process.stdout.write(formatVifList(rows));
    });

  program.command('vif-addip')
    .description('route one more IPv4 address to a vif (the CD\'s vif_addip)')
    .argument('<domain>', 'id or name').argument('<vif>', 'number, name or MAC').argument('<ip>', 'the address')
    .option('--json', 'print the vif as JSON')
    .action(async (dom: string, vif: string, ip: string, opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'vif-addip', dom: domArg(dom), vif: vifArg(vif), ip });
      if (opts.json) json(r); else process.stdout.write(`wv: ${r.name} now has ${r.ips.join(' ')}\n`);
    });

  program.command('vif-rate')
    .description('show or set what a vif may send: RATE/s[@INTERVAL] (10Mb/s, 1MB/s@20ms), "BYTES USECS" as the CD\'s vif_setsched, or 0 for unlimited')
    .argument('<domain>', 'id or name').argument('<vif>', 'number, name or MAC').argument('[rate...]', 'the new rate')
    .option('--json', 'print the vif as JSON')
    .action(async (dom: string, vif: string, rate: string[], opts: { json?: boolean }, cmd: Command) => {
      let set: { bytes: number; usecs: number } | undefined;
      if (rate.length === 1 && rate[0] === '0') set = { bytes: 0, usecs: 0 };
      else if (rate.length === 1) set = parseRate(rate[0]!);
      else if (rate.length === 2) {
        const [b, u] = rate.map(Number);
        if (!Number.isSafeInteger(b) || !Number.isSafeInteger(u) || b! < 0 || u! < 0) throw new InvalidArgumentError('rate', `"${rate.join(' ')}" is not BYTES USECS`);
        set = { bytes: b!, usecs: u! };
      } else if (rate.length > 2) throw new InvalidArgumentError('rate', 'expected RATE/s[@INTERVAL] or BYTES USECS');
      const r = await call(cmd, { op: 'vif-rate', dom: domArg(dom), vif: vifArg(vif), ...(set ?? {}) });
      if (opts.json) json(r); else process.stdout.write(`${r.name}: ${formatRate(r.rate)}\n`);
    });

  program.command('vif-stats')
    .description('per-vif counters: packets and bytes each way, drops, spoofed, malformed, rate-limited (the CD\'s vif_stats)')
    .argument('[domain]', 'id or name').argument('[vif]', 'number, name or MAC')
    .option('--json', 'print the vifs as JSON')
    .action(async (dom: string | undefined, vif: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const rows = await call(cmd, dom === undefined ? { op: 'network-list' } : vif === undefined ? { op: 'network-list', dom: domArg(dom) } : { op: 'network-list', dom: domArg(dom), vif: vifArg(vif) });
      if (opts.json) json(rows); else process.stdout.write(formatVifStats(rows));
    });

  const nat = program.command('nat').description('the NAT gateway at 169.254.0.1: host ports forwarded to domains, and guests\' connections to the host (docs/net.md)');
  nat.command('forward').description('forward a host port to a domain\'s port (enables the gateway): wv nat forward 127.0.0.1:2201 1:22')
    .argument('<host-port>', '[ADDRESS:]PORT on the host (default address 127.0.0.1; port 0 picks a free one)')
    .argument('<domain-port>', 'DOMAIN:PORT, the domain by id or name')
    .option('-u, --udp', 'forward UDP instead of TCP')
    .option('--json', 'print the forward as JSON')
    .action(async (from: string, to: string, opts: { udp?: boolean; json?: boolean }, cmd: Command) => {
      const f = /^(?:(.+):)?(\d+)$/.exec(from);
      const d = /^(.+):(\d+)$/.exec(to);
      if (!f) throw new InvalidArgumentError(`host port "${from}"`, 'expected [ADDRESS:]PORT, e.g. 127.0.0.1:2201');
      if (!d) throw new InvalidArgumentError(`domain port "${to}"`, 'expected DOMAIN:PORT, e.g. 1:22 or web:80');
      const r = await call(cmd, { op: 'nat-forward', ...(f[1] ? { host: f[1] } : {}), port: Number(f[2]), dom: domArg(d[1]!), guestPort: Number(d[2]), ...(opts.udp ? { protocol: 'udp' as const } : {}) });
      if (opts.json) json(r); else process.stdout.write(`wv: forwarding ${r.host}:${r.port} to ${r.target}\n`);
    });
  nat.command('enable').description('the Demo CD\'s xen_nat_enable: domain N\'s port 22 at 127.0.0.1:2200+N and port 80 at 127.0.0.1:8000+N')
    .argument('[domain]', 'id or name')
    .option('-a, --all', 'every domain with a vif, and each one created later')
    .option('--json', 'print the forwards as JSON')
    .action(async (dom: string | undefined, opts: { all?: boolean; json?: boolean }, cmd: Command) => {
      if ((dom === undefined) === !opts.all) throw new InvalidArgumentError('arguments', 'give a domain, or --all');
      const r = await call(cmd, opts.all ? { op: 'nat-enable', all: true } : { op: 'nat-enable', dom: domArg(dom!) });
      if (opts.json) return json(r);
      for (const f of r.forwards) process.stdout.write(`wv: forwarding ${f.host}:${f.port} to ${f.target}\n`);
      for (const f of r.failed) process.stderr.write(`wv: ${f}\n`);
      if (r.all) process.stdout.write('wv: domains created from now on get these forwards too\n');
    });
  nat.command('unforward').description('remove a forward: its host port closes and the connections it relays are reset')
    .argument('<host-port>', '[ADDRESS:]PORT on the host (default address 127.0.0.1)')
    .option('-u, --udp', 'the UDP forward on that port')
    .option('--json', 'print the removed forward as JSON')
    .action(async (from: string, opts: { udp?: boolean; json?: boolean }, cmd: Command) => {
      const f = /^(?:(.+):)?(\d+)$/.exec(from);
      if (!f) throw new InvalidArgumentError(`host port "${from}"`, 'expected [ADDRESS:]PORT, e.g. 127.0.0.1:2201');
      const r = await call(cmd, { op: 'nat-unforward', ...(f[1] ? { host: f[1] } : {}), port: Number(f[2]), ...(opts.udp ? { protocol: 'udp' as const } : {}) });
      if (opts.json) json(r); else process.stdout.write(`wv: removed the ${r.protocol} forward ${r.host}:${r.port} to ${r.target}\n`);
    });
  nat.command('allow').description('host addresses guests may reach through the gateway: add entries, or with none print the list (default 127.0.0.0/8)')
    .argument('[entries...]', 'a.b.c.d[/bits][:port], e.g. 10.0.0.0/8 or 192.168.1.5:443')
    .option('--only', 'replace the list with the entries given (none: allow nothing)')
    .option('--json', 'print the list as JSON')
    .action(async (entries: string[], opts: { only?: boolean; json?: boolean }, cmd: Command) => {
      const r = await call(cmd, opts.only ? { op: 'nat-allow', set: entries } : entries.length > 0 ? { op: 'nat-allow', add: entries } : { op: 'nat-allow' });
      if (opts.json) json(r); else process.stdout.write(r.allow.length > 0 ? `${r.allow.join('\n')}\n` : 'wv: guests may reach no host address\n');
    });
  nat.command('disallow').description('remove entries from the allow-list (as they were given to wv nat allow)')
    .argument('<entries...>', 'entries on the list')
    .option('--json', 'print the list left as JSON')
    .action(async (entries: string[], opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'nat-allow', remove: entries });
      if (opts.json) json(r); else process.stdout.write(r.allow.length > 0 ? `${r.allow.join('\n')}\n` : 'wv: guests may reach no host address\n');
    });
  nat.command('list').description('the gateway, its forwards and their counters (connections open, total, refused; bytes each way)')
    .option('--json', 'print them as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const r = await call(cmd, { op: 'nat-list' });
      if (opts.json) return json(r);
      if (!r.enabled) return void process.stdout.write(`NAT is not enabled (wv nat forward enables it); guests will reach ${r.allow.join(', ') || 'no host address'}\n`);
      const row = (name: string, s: NatStats): string[] => [name, `${s.open}`, `${s.total}`, `${s.refused}`, `${s.bytesToGuest}`, `${s.bytesFromGuest}`];
      process.stdout.write(`gateway ${r.address}/${r.netmask}; 169.254.0.2 is the host's 127.0.0.1; guests may reach ${r.allow.join(', ') || 'no host address'}\n`);
      process.stdout.write(table(['FORWARD', 'OPEN', 'TOTAL', 'REFUSED', 'TO_GUEST', 'FROM_GUEST'],
        [...r.forwards.map((x) => row(`${x.protocol} ${x.host}:${x.port} -> ${x.target}`, x.stats)), row('tcp outbound (guests to host)', r.outbound!),
          ...(r.udpOutbound ? [row('udp outbound (guests to host)', r.udpOutbound)] : [])]));
    });
}
