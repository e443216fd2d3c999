/**
 * The hypervisor's boot line, as Xen's GRUB entry gives it
 * (`kernel /boot/xen.gz dom0_mem=131072 nosmp watchdog`): options separated
 * by spaces, each `name` or `name=value`. An unknown option or a bad value
 * is refused with an error that names it, so a typo does not boot a
 * different machine than the one asked for.
 *
 * | option | meaning |
 * |---|---|
 * | `nosmp` | use one physical CPU |
 * | `maxcpus=N` | use at most N physical CPUs |
 * | `dom0_mem=SIZE` | memory kept for domain 0 (`K`, `M`, `G` suffix; bare numbers are KiB, as in Xen) |
 * | `watchdog` | every domain must pet its watchdog (`sched.watchdog`) at least every `watchdog_timeout` seconds, from when it starts |
 * | `watchdog_timeout=S` | the boot watchdog's timeout, seconds (default 10) |
 * | `sched=bvt` | the scheduler (BVT is the only one) |
 * | `slice=MS` | the BVT time slice, ms (as `cpu_bvtslice`) |
 * | `nat` | put the NAT gateway on the switch at boot |
 * | `nat_allow=LIST` | host addresses guests may reach through NAT: `a.b.c.d[/bits][:port]` entries joined by commas, or `none` (default 127.0.0.0/8) |
 * | `migrate_listen=[ADDR:]PORT` | take domains migrated here by other wasmvisors on that TCP port (address default 127.0.0.1; Xen's relocation server) |
 */
import { InvalidArgumentError } from '../kernel/errors.ts';
import type { HypervisorOptions } from './hypervisor.ts';
import { parseAllow } from '../devices/net/nat/gateway.ts';

export const DEFAULT_WATCHDOG_S = 10;

function size(name: string, v: string): number {
  const m = /^(\d+)([KkMmGg]?)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`boot option ${name}`, `"${v}" is not a size (a number with an optional K, M or G)`);
  const unit = { '': 1024, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(m[1]) * unit;
}

function count(name: string, v: string | undefined, max: number): number {
  const n = Number(v);
  if (v === undefined || !/^\d+(\.\d+)?$/.test(v) || !(n > 0) || n > max) {
    throw new InvalidArgumentError(`boot option ${name}`, `"${v ?? ''}" is not a number in (0, ${max}]`);
  }
  return n;
}

/** Parse a boot line into hypervisor options (which the caller may still override). */
export function parseBootOptions(line: string, available: number): HypervisorOptions {
  const opts: HypervisorOptions = {};
  let watchdog = false;
  let watchdogS = DEFAULT_WATCHDOG_S;
  for (const word of line.split(/\s+/).filter(Boolean)) {
    const eq = word.indexOf('=');
    const name = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? undefined : word.slice(eq + 1);
    const flag = (): void => {
      if (value !== undefined) throw new InvalidArgumentError(`boot option ${name}`, 'it takes no value');
    };
    switch (name) {
      case 'nosmp': flag(); opts.cpus = 1; break;
      case 'maxcpus': opts.cpus = Math.min(available, Math.floor(count(name, value, 4096))); break;
      case 'dom0_mem':
        if (value === undefined) throw new InvalidArgumentError('boot option dom0_mem', 'it needs a size, as in dom0_mem=512M');
        opts.dom0MemoryBytes = size(name, value);
        break;
      case 'watchdog': flag(); watchdog = true; break;
      case 'watchdog_timeout': watchdogS = count(name, value, 3600); break;
      case 'sched':
        if (value !== 'bvt') throw new InvalidArgumentError('boot option sched', `"${value ?? ''}" is not a scheduler here (only bvt)`);
        break;
      case 'slice': opts.sliceMs = count(name, value, 1000); break;
      case 'nat': flag(); opts.nat = true; break;
      case 'nat_allow':
        if (!value) throw new InvalidArgumentError('boot option nat_allow', 'it needs a list, as in nat_allow=127.0.0.0/8,10.0.0.5:80 (or none)');
        opts.natAllow = value === 'none' ? [] : value.split(',');
        opts.natAllow.forEach(parseAllow);
        break;
      case 'migrate_listen': {
        const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost):)?(\d{1,5})$/.exec(value ?? '');
        const port = m ? Number(m[2]) : NaN;
        if (!m || !(port >= 0 && port <= 65535)) throw new InvalidArgumentError('boot option migrate_listen', `"${value ?? ''}" is not [ADDR:]PORT, as in migrate_listen=8002 or migrate_listen=0.0.0.0:8002`);
        opts.migrateListen = { host: (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
        break;
      }
      default:
        throw new InvalidArgumentError('boot option', `"${word}" is not known (known: nosmp, maxcpus=, dom0_mem=, watchdog, watchdog_timeout=, sched=bvt, slice=, nat, nat_allow=, migrate_listen=)`);
    }
  }
  if (watchdog) opts.watchdogMs = Math.round(watchdogS * 1000);
  return opts;
}
