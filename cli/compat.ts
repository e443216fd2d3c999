/**
 * The Xen Demo CD's tool names, so its README's command lines run as
 * written (with our guest images): `xc_dom_create.py`, `xc_dom_control.py`
 * (and without `.py`) and `xen_read_console`. Each is `wv compat NAME ...`,
 * and the `wv` binary answers to those names when installed under them.
 * Every CD command maps onto a toolstack action; the ones whose subsystem is
 * not built yet fail with
 * a message that says so.
 */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { formatBlockList, cliDiskSpec } from './block.ts';
import { formatRate, formatVifStats } from './net.ts';
import { parseConfig } from '../runtime/toolstack/xlcfg.ts';
import { InvalidArgumentError } from '../kernel/errors.ts';
import { ToolstackClient } from '../runtime/toolstack/client.ts';
import { describeDomain, loadDomainConfig, parseDefines, toDomainConfig } from '../runtime/toolstack/domain-config.ts';
import { formatList } from './format.ts';
import { call, stateDir } from './toolstack.ts';

export const CD_TOOLS = ['xc_dom_create.py', 'xc_dom_create', 'xc_dom_control.py', 'xc_dom_control', 'xen_read_console'] as const;

const CONTROL_USAGE = `Usage: xc_dom_control [command] <params>

  stop      [dom]        -- pause a domain
  start     [dom]        -- un-pause a domain
  shutdown  [dom]        -- request a domain to shutdown
  destroy   [dom]        -- immediately terminate a domain
  pincpu    [dom] [cpu]  -- pin a domain to the specified CPU
  save      [dom] [file] -- suspend a domain's memory to file
  restore   [file]       -- resume a domain from a file
  list                   -- print info about all domains
  listvbds               -- print info about all virtual block devs
  cpu_bvtset [dom] [mcuadv] [warp] [warpl] [warpu]
                         -- set scheduling parameters for domain
  cpu_bvtslice [slice]   -- default scheduler slice
  vif_stats [dom] [vif]  -- get stats for a given network vif
  vif_addip [dom] [vif] [ip] -- add an IP address to a given vif
  vif_setsched [dom] [vif] [bytes] [usecs] -- rate limit vif bandwidth
  vif_getsched [dom] [vif] -- print vif's scheduling parameters
  vbd_add [dom] [uname] [dev] [mode] -- make disk/partition uname available to
                         domain as dev e.g. 'vbd_add phy:sda3 hda1 rw'
  vbd_remove [dom] [dev] -- remove disk or partition attached as 'dev'
`;

const NOT_YET: Record<string, string> = {};

function dom(s: string | undefined, usage: string): number | string {
  if (s === undefined) throw new InvalidArgumentError('arguments', `missing domain: ${usage}`);
  return /^\d+$/.test(s) ? Number(s) : s;
}

function vifRef(s: string): number | string {
  return /^\d+$/.test(s) ? Number(s) : s;
}

function num(s: string | undefined, what: string, usage: string): number {
  const n = Number(s);
  if (s === undefined || !Number.isFinite(n)) throw new InvalidArgumentError(what, `${s === undefined ? 'missing' : `"${s}" is not a number`}: ${usage}`);
  return n;
}

/** What the CD's `xc_dom_create.py -h` added: the variables the default config requires. */
function requiredVarsHelp(file: string): string {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch { return `\nThe default config file ${file} does not exist (give one with -f).\n`; }
  try {
    // Parse with every variable defaulted, just to read the declarations.
    const names = new Set<string>();
    for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)) names.add(m[1]!);
    const req = parseConfig(text, file, new Map([...names].map((n) => [n, '']))).entries.get('require')?.value;
    const list = Array.isArray(req) ? req.map(String) : typeof req === 'string' ? [req] : [];
    const optional = [...names].filter((n) => !list.includes(n));
    return `\nThe config file ${file} requires the following vars to be defined:\n${list.map((n) => `  ${n}`).join('\n') || '  (none)'}\n`
      + (optional.length ? `The following variables may be optionally defined:\n${optional.map((n) => `  ${n}`).join('\n')}\n` : '');
  } catch (err) {
    return `\nThe config file ${file} has an error: ${(err as Error).message}\n`;
  }
}

export function addCompatCommands(program: Command, resolveImage: (s: string) => string, isGuestName: (s: string) => boolean, defaultConfig: () => string): void {
  const compat = program.command('compat').description('the Xen Demo CD\'s tools: xc_dom_create.py, xc_dom_control.py, xen_read_console');

  compat.command('xc_dom_create.py').alias('xc_dom_create')
    .description('create and start a domain from a defaults file (the CD\'s xc_dom_create.py)')
    .option('-f <config_file>', `use the specified defaults file (default ${defaultConfig()})`)
    .option('-D <foo=bar>', "set variable foo=bar before parsing the config, e.g. '-D vmid=3:ip='", (v: string, prev: string[] = []) => [...prev, v])
    .option('-n', "dry run only, don't actually create the domain")
    .addHelpText('after', () => requiredVarsHelp(defaultConfig()))
    .action(async (opts: { f?: string; D?: string[]; n?: boolean }, cmd: Command) => {
      const file = resolve(opts.f ?? defaultConfig());
      const d = loadDomainConfig(file, parseDefines(opts.D ?? []), isGuestName);
      process.stdout.write(describeDomain(d));
      if (opts.n) return;
      const r = await call(cmd, { op: 'create', spec: toDomainConfig(d, (k) => resolve(resolveImage(k))) });
      process.stdout.write(`VM started in domain ${r.id}\n`);
    });

  compat.command('xc_dom_control.py').alias('xc_dom_control')
    .description('control running domains (the CD\'s xc_dom_control.py); run without arguments for its usage')
    .argument('[command]').argument('[params...]')
    .allowExcessArguments(true)
    .action(async (sub: string | undefined, p: string[], _opts: unknown, cmd: Command) => {
      if (sub === undefined) { process.stdout.write(CONTROL_USAGE); return; }
      const usage = CONTROL_USAGE.split('\n').find((l) => l.trim().startsWith(`${sub} `))?.trim() ?? sub;
      if (NOT_YET[sub]) throw new InvalidArgumentError(`xc_dom_control ${sub}`, `${NOT_YET[sub]} are not built in this version yet`);
      switch (sub) {
        case 'stop': { const r = await call(cmd, { op: 'pause', dom: dom(p[0], usage) }); process.stdout.write(`domain ${r.id} paused\n`); return; }
        case 'start': { const r = await call(cmd, { op: 'unpause', dom: dom(p[0], usage) }); process.stdout.write(`domain ${r.id} unpaused\n`); return; }
        case 'shutdown': { const r = await call(cmd, { op: 'shutdown', dom: dom(p[0], usage) }); process.stdout.write(`shutdown requested for domain ${r.id}\n`); return; }
        case 'destroy': { const r = await call(cmd, { op: 'destroy', dom: dom(p[0], usage) }); process.stdout.write(`domain ${r.id} destroyed\n`); return; }
        case 'save': {
          if (p[1] === undefined) throw new InvalidArgumentError('arguments', `missing file: ${usage}`);
          const r = await call(cmd, { op: 'save', dom: dom(p[0], usage), file: resolve(p[1]) });
          process.stdout.write(`domain ${r.id} saved to ${r.path}\n`);
          return;
        }
        case 'restore': {
          if (p[0] === undefined) throw new InvalidArgumentError('arguments', `missing file: ${usage}`);
          const r = await call(cmd, { op: 'restore', file: resolve(p[0]) });
          process.stdout.write(`domain ${r.id} (${r.name}) restored from ${r.path}\n`);
          return;
        }
        case 'pincpu': {
          const r = await call(cmd, { op: 'pin', dom: dom(p[0], usage), cpu: num(p[1], 'cpu', usage) });
          process.stdout.write(`domain ${r.id} pinned to cpu ${r.pinned}${r.effective === 'now' ? '' : ' (from its next start)'}\n`);
          return;
        }
        case 'list': process.stdout.write(`${formatList(await call(cmd, { op: 'list' }))}\n`); return;
        case 'cpu_bvtset': {
          const r = await call(cmd, { op: 'sched-bvt', dom: dom(p[0], usage), settings: {
            mcuadv: num(p[1], 'mcuadv', usage), warp: num(p[2], 'warp', usage), warpl: num(p[3], 'warpl', usage), warpu: num(p[4], 'warpu', usage),
          } });
          process.stdout.write(`domain ${r.id}: mcuadv ${r.settings.mcuadv} warp ${r.settings.warp} warpl ${r.settings.warpl} warpu ${r.settings.warpu}\n`);
          return;
        }
        case 'listvbds': process.stdout.write(formatBlockList(await call(cmd, { op: 'block-list' }))); return;
        case 'vbd_add': {
          if (p.length < 4) throw new InvalidArgumentError('arguments', `expected a domain, a uname, a device and a mode: ${usage}`);
          const r = await call(cmd, { op: 'block-attach', dom: dom(p[0], usage), spec: cliDiskSpec(`${p[1]},${p[2]},${p[3]}`) });
          process.stdout.write(`${r.kind}:${r.target} added to domain ${r.domid} as ${r.vdev} (${r.readonly ? 'r' : 'w'})\n`);
          return;
        }
        case 'vbd_remove': {
          if (p[1] === undefined) throw new InvalidArgumentError('arguments', `expected a domain and a device: ${usage}`);
          const r = await call(cmd, { op: 'block-detach', dom: dom(p[0], usage), vdev: p[1] });
          process.stdout.write(`${r.vdev} removed from domain ${r.id}\n`);
          return;
        }
        case 'vif_stats': {
          if (p[1] === undefined) throw new InvalidArgumentError('arguments', `expected a domain and a vif: ${usage}`);
          process.stdout.write(formatVifStats(await call(cmd, { op: 'network-list', dom: dom(p[0], usage), vif: vifRef(p[1]) })));
          return;
        }
        case 'vif_addip': {
          if (p[2] === undefined) throw new InvalidArgumentError('arguments', `expected a domain, a vif and an address: ${usage}`);
          const r = await call(cmd, { op: 'vif-addip', dom: dom(p[0], usage), vif: vifRef(p[1]!), ip: p[2] });
          process.stdout.write(`${r.name}: ${r.ips.join(' ')}\n`);
          return;
        }
        case 'vif_setsched': {
          if (p[3] === undefined) throw new InvalidArgumentError('arguments', `expected a domain, a vif, bytes and usecs: ${usage}`);
          const r = await call(cmd, { op: 'vif-rate', dom: dom(p[0], usage), vif: vifRef(p[1]!), bytes: num(p[2], 'bytes', usage), usecs: num(p[3], 'usecs', usage) });
          process.stdout.write(`${r.name}: ${formatRate(r.rate)}\n`);
          return;
        }
        case 'vif_getsched': {
          if (p[1] === undefined) throw new InvalidArgumentError('arguments', `expected a domain and a vif: ${usage}`);
          const r = await call(cmd, { op: 'vif-rate', dom: dom(p[0], usage), vif: vifRef(p[1]) });
          process.stdout.write(`${r.name}: bytes ${r.rate.bytes} usecs ${r.rate.usecs}\n`);
          return;
        }
        case 'cpu_bvtslice': { const r = await call(cmd, { op: 'bvt-slice', ms: num(p[0], 'slice', usage) }); process.stdout.write(`bvt slice ${r.sliceMs} ms\n`); return; }
        default:
          throw new InvalidArgumentError('xc_dom_control command', `"${sub}" is not one (run xc_dom_control without arguments for the list)`);
      }
    });

  compat.command('xen_read_console')
    .description('show every domain\'s console output, each line prefixed with its domain (the CD\'s xen_read_console)')
    .action(async (_opts: unknown, cmd: Command) => {
      const c = await ToolstackClient.connect(stateDir(cmd));
      const s = await c.followConsoles((b) => process.stdout.write(b));
      const stop = (): void => c.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      await s.ended;
    });
}
