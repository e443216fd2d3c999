/**
 * From a parsed xl.cfg-style file to what the toolstack creates: every key
 * is checked for its type and range, and a bad one is reported at its file,
 * line and column. `-D` variables come in as `var=value[:var2=value2]`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { ExitAction } from '../domain.ts';
import type { CreateSpec } from './protocol.ts';
import { isDomainName } from '../../kernel/kernel.ts';
import { absoluteDiskSpec } from '../../devices/blk/disk-spec.ts';
import { parseVifSpec } from '../../devices/net/vif.ts';
import { ConfigError, parseConfig, type CfgEntry, type CfgValue, type ParsedConfig } from './xlcfg.ts';

/** A domain as its config file describes it, with paths resolved. */
export interface ResolvedDomain {
  file: string;
  name: string | undefined;
  /** The guest image: a path (resolved against the config's folder) or a reference guest name. */
  kernel: string;
  ramdisk: string | undefined;
  /** MiB. */
  memory: number;
  vcpus: number;
  cmdline: string;
  /** xl disk specs, checked, with relative `file:` paths made absolute against the config's folder. */
  disk: string[];
  /** xl vif specs, as written (`ip=10.0.0.2,mac=...`). */
  vif: string[];
  /** The IP addresses the vif specs give. */
  ips: string[];
  onPoweroff: ExitAction;
  onReboot: ExitAction;
  onCrash: ExitAction;
  onWatchdog: ExitAction;
  /** Physical CPU to pin to. */
  cpu: number | undefined;
  sched: { mcuadv?: number; warp?: number; warpl?: number; warpu?: number };
}

/** The keys a config may set (anything else is refused, so a typo is caught). */
export const CONFIG_KEYS = [
  'name', 'kernel', 'ramdisk', 'memory', 'vcpus', 'cmdline', 'extra', 'root', 'disk', 'vif',
  'on_poweroff', 'on_reboot', 'on_crash', 'on_watchdog', 'cpus', 'mcuadv', 'warp', 'warpl', 'warpu', 'require', 'type',
] as const;

/** Parse `-D` arguments: each `var=value`, several joined by `:` (as the CD's `-D vmid=3:ip=`). */
export function parseDefines(args: readonly string[]): Map<string, string> {
  const vars = new Map<string, string>();
  for (const arg of args) {
    for (const part of arg.split(':')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const name = eq < 0 ? part : part.slice(0, eq);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ConfigError('-D', 1, 1, `"${part}" is not var=value`);
      vars.set(name, eq < 0 ? '' : part.slice(eq + 1));
    }
  }
  return vars;
}

/** Read, parse and resolve a config file. */
export function loadDomainConfig(file: string, vars: ReadonlyMap<string, string> = new Map(), isGuestName: (s: string) => boolean = () => false): ResolvedDomain {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, 0, 0, `cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return resolveDomainConfig(parseConfig(text, file, vars), isGuestName);
}

export function resolveDomainConfig(cfg: ParsedConfig, isGuestName: (s: string) => boolean = () => false): ResolvedDomain {
  const { file, entries } = cfg;
  const at = (e: CfgEntry, msg: string): never => { throw new ConfigError(file, e.line, e.column, msg); };
  for (const [key, e] of entries) {
    if (!(CONFIG_KEYS as readonly string[]).includes(key)) at(e, `unknown setting "${key}" (known: ${CONFIG_KEYS.join(', ')})`);
  }
  const str = (key: string): string | undefined => {
    const e = entries.get(key);
    if (!e) return undefined;
    if (typeof e.value === 'number') return String(e.value);
    if (typeof e.value !== 'string') return at(e, `"${key}" must be a string`);
    return e.value;
  };
  const num = (key: string, min: number, max: number, integer = true): number | undefined => {
    const e = entries.get(key);
    if (!e) return undefined;
    const n = typeof e.value === 'number' ? e.value : typeof e.value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(e.value) ? Number(e.value) : NaN;
    if (Number.isNaN(n)) return at(e, `"${key}" must be a number, not ${JSON.stringify(e.value)}`);
    if (integer && !Number.isInteger(n)) return at(e, `"${key}" must be a whole number, not ${n}`);
    if (n < min || n > max) return at(e, `"${key}" = ${n} is out of range (${min}..${max})`);
    return n;
  };
  const list = (key: string): string[] => {
    const e = entries.get(key);
    if (!e) return [];
    const v: CfgValue[] = Array.isArray(e.value) ? e.value : [e.value];
    return v.map((x) => (typeof x === 'string' ? x : at(e, `"${key}" must be a list of strings`)));
  };
  const action = (key: string): ExitAction => {
    const e = entries.get(key);
    const v = str(key) ?? 'destroy';
    if (v === 'destroy' || v === 'restart' || v === 'preserve') return v;
    return at(e!, `"${key}" must be destroy, restart or preserve, not "${v}"`);
  };

  const kernelEntry = entries.get('kernel');
  if (!kernelEntry) throw new ConfigError(file, 1, 1, 'no "kernel" (the guest image) is set');
  const kernelRaw = str('kernel')!;
  const base = dirname(file);
  const path = (raw: string, e: CfgEntry, what: string): string => {
    const p = resolve(base, raw);
    if (!existsSync(p)) at(e, `${what} "${raw}" does not exist (looked for ${p})`);
    return p;
  };
  const kernel = isGuestName(kernelRaw) && !existsSync(resolve(base, kernelRaw)) ? kernelRaw : path(kernelRaw, kernelEntry, 'the kernel image');
  const ramdiskRaw = str('ramdisk');
  const ramdisk = ramdiskRaw === undefined ? undefined : path(ramdiskRaw, entries.get('ramdisk')!, 'the ramdisk');
  const type = str('type');
  if (type !== undefined && type !== 'pv') at(entries.get('type')!, `"type" must be "pv" (every guest is paravirtual), not "${type}"`);

  const vif = list('vif');
  for (const spec of vif) {
    try {
      parseVifSpec(spec);
    } catch (err) {
      at(entries.get('vif')!, (err as Error).message);
    }
  }
  const ips = vif.flatMap((spec) => spec.split(',').filter((kv) => kv.startsWith('ip=')).flatMap((kv) => kv.slice(3).split(/\s+/).filter(Boolean)));
  const cmdline = [str('root') !== undefined ? `root=${str('root')}` : '', str('cmdline') ?? '', str('extra') ?? ''].filter(Boolean).join(' ');
  const sched: ResolvedDomain['sched'] = {};
  for (const k of ['mcuadv', 'warp', 'warpl', 'warpu'] as const) {
    const v = num(k, k === 'mcuadv' ? 1 : 0, k === 'mcuadv' ? 1_000_000 : 10_000_000);
    if (v !== undefined) sched[k] = v;
  }
  const name = str('name');
  if (name !== undefined && !isDomainName(name)) {
    at(entries.get('name')!, `"name" = "${name}" must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  }
  return {
    file,
    name,
    kernel,
    ramdisk,
    memory: num('memory', 1, 1 << 20) ?? 16,
    vcpus: num('vcpus', 1, 1) ?? 1,
    cmdline,
    disk: list('disk').map((spec) => {
      try {
        return absoluteDiskSpec(spec, base, resolve);
      } catch (err) {
        return at(entries.get('disk')!, (err as Error).message);
      }
    }),
    vif,
    ips,
    onPoweroff: action('on_poweroff'),
    onReboot: action('on_reboot'),
    onCrash: action('on_crash'),
    onWatchdog: action('on_watchdog'),
    cpu: num('cpus', 0, 4095),
    sched,
  };
}

/** The dry-run report (`create -n`), in the shape of the CD's `xc_dom_create.py -n`. */
export function describeDomain(d: ResolvedDomain): string {
  const rows: Array<[string, string]> = [
    ['VM name', d.name ?? '(assigned at create)'],
    ['VM image', d.kernel],
    ['VM ramdisk', d.ramdisk ?? ''],
    ['VM memory (MB)', String(d.memory)],
    ['VM IP address(es)', d.ips.join(',')],
    ['VM block device(s)', d.disk.join(' ')],
    ['VM network interface(s)', d.vif.join(' ')],
    ['VM cmdline', d.cmdline],
    ['VM cpu', d.cpu === undefined ? 'any' : String(d.cpu)],
    ['VM on poweroff/reboot/crash/watchdog', `${d.onPoweroff}/${d.onReboot}/${d.onCrash}/${d.onWatchdog}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return `Parsing config file '${d.file}'\n\n${rows.map(([k, v]) => `${k.padEnd(w)} : "${v}"`).join('\n')}\n`;
}

/**
 * What `Hypervisor.createDomain` (and the `create` action) takes; the one
 * place a resolved config becomes a domain, for the API, `wv run -f`, `wv
 * create -f` and `xc_dom_create`. Ramdisks are not supported (a guest is
 * one Wasm module): a config that asks for one is refused rather than
 * started without it.
 */
export function toDomainConfig(d: ResolvedDomain, image: (kernel: string) => string = (k) => k): CreateSpec {
  if (d.ramdisk !== undefined) throw new ConfigError(d.file, 0, 0, '"ramdisk" is not supported by this version (a guest is one Wasm module)');
  return {
    image: image(d.kernel),
    ...(d.name !== undefined ? { name: d.name } : {}),
    memory: d.memory,
    cmdline: d.cmdline,
    onPoweroff: d.onPoweroff,
    onReboot: d.onReboot,
    onCrash: d.onCrash,
    onWatchdog: d.onWatchdog,
    ...(d.cpu !== undefined ? { cpu: d.cpu } : {}),
    sched: d.sched,
    ...(d.disk.length > 0 ? { disks: d.disk } : {}),
    ...(d.vif.length > 0 ? { vifs: d.vif } : {}),
  };
}
