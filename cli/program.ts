/**
 * The `wv` command tree (commander): built here so that the CLI, shell
 * completion and docs/cli.md all come from one definition.
 */
import { Argument, Command, InvalidArgumentError as CommanderArgError } from 'commander';
import type { DomainConfig } from '../runtime/hypervisor.ts';
import { InvalidArgumentError, WvError } from '../kernel/errors.ts';
import { describeDomain, loadDomainConfig, parseDefines, toDomainConfig } from '../runtime/toolstack/domain-config.ts';
import { guestPath, REFERENCE_GUESTS } from '../runtime/guests.ts';
import { addToolstackCommands, defaultConfigPath } from './toolstack.ts';
import { addCompatCommands } from './compat.ts';
import { addBlockCommands } from './block.ts';
import { addNetCommands } from './net.ts';
import { addVdCommands } from './vd.ts';
import { addIsoCommands } from './iso.ts';
import { VERSION } from '../runtime/toolstack/controller.ts';
import { renderCompletion } from './docs.ts';
import { existsSync } from 'node:fs';


function positiveNumber(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new CommanderArgError(`${what} must be a positive number, got "${v}"`);
    return n;
  };
}

/** A guest argument: a path, or the name of a reference guest. */
function resolveImage(arg: string): string {
  if (existsSync(arg)) return arg;
  if ((REFERENCE_GUESTS as readonly string[]).includes(arg)) return guestPath(arg);
  return arg;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('wv')
    .description('wasmvisor: a hypervisor whose guests are WebAssembly modules')
    .version(VERSION);

  program
    .command('demo')
    .description('boot a hypervisor in-process and run a demo scene: "domains" (default), "pingpong" or "net"')
    .addArgument(new Argument('[scene]', 'domains: four domains, one spinning and one crashing; pingpong: two domains over a ring; net: two domains pinging each other on 169.254.1.x')
      .choices(['domains', 'pingpong', 'net']).default('domains'))
    .option('-d, --duration <seconds>', 'how long to run the domains scene', positiveNumber('duration'), 8)
    .option('-n, --count <messages>', 'messages the pingpong scene exchanges (default 100000), pings the net scene sends (default 4, at most 100)', positiveNumber('count'))
    .option('--cpus <n>', 'physical CPUs to use (default: all)', positiveNumber('cpus'))
    .action(async (scene: string, opts: { duration: number; count?: number; cpus?: number }) => {
      if (scene === 'net') {
        const { runNetDemo } = await import('./demo.ts');
        if (!(await runNetDemo({ count: Math.min(100, Math.floor(opts.count ?? 4)), cpus: opts.cpus }))) process.exitCode = 1;
        return;
      }
      if (scene === 'pingpong') {
        const { runPingpong } = await import('./demo.ts');
        if (!(await runPingpong({ count: Math.floor(opts.count ?? 100000), cpus: opts.cpus }))) process.exitCode = 1;
        return;
      }
      const ac = new AbortController();
      const onSig = (): void => ac.abort();
      process.once('SIGINT', onSig);
      process.once('SIGTERM', onSig);
      try {
        const { runDemo } = await import('./demo.ts');
        await runDemo({ durationMs: opts.duration * 1000, signal: ac.signal, cpus: opts.cpus });
      } finally {
        process.off('SIGINT', onSig);
        process.off('SIGTERM', onSig);
      }
    });

  program
    .command('run')
    .description('run one guest to completion, its console on stdout; the exit status tells how it ended')
    .argument('[image]', 'guest image: a .wasm path or a reference guest name (hello, ticker, spin, crash, ...); or give -f')
    .option('-f, --config <file>', 'an xl.cfg-style domain config file (kernel, memory, cmdline, on_*, cpus, BVT; see docs/config.md)')
    .option('-D, --define <var=value>', 'set a config variable (several joined by ":", or repeat -D)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--dry-run', 'with -f: print the resolved domain and create nothing')
    .option('-n, --name <name>', 'domain name')
    .option('-m, --memory <MiB>', 'memory allocation in MiB', positiveNumber('memory'), 16)
    .option('-c, --cmdline <text>', 'guest command line', '')
    .option('-t, --timeout <seconds>', 'destroy the domain after this long', positiveNumber('timeout'))
    .option('--json', 'print how it ended as JSON on stdout after the console')
    .option('-b, --boot <options>', 'hypervisor boot line, as Xen\'s: nosmp, maxcpus=N, dom0_mem=SIZE, watchdog, watchdog_timeout=S, slice=MS, nat, nat_allow=LIST')
    .action(async (image: string | undefined, opts: { name?: string; memory: number; cmdline: string; timeout?: number; json?: boolean; boot?: string; config?: string; define?: string[]; dryRun?: boolean }, cmd: Command) => {
      const explicit = (k: string): boolean => cmd.getOptionValueSource(k) === 'cli';
      let config: DomainConfig;
      if (opts.config !== undefined) {
        if (image !== undefined) throw new InvalidArgumentError('arguments', 'give an image or -f, not both');
        const d = loadDomainConfig(opts.config, parseDefines(opts.define ?? []), (s) => (REFERENCE_GUESTS as readonly string[]).includes(s));
        if (opts.dryRun) {
          process.stdout.write(opts.json ? `${JSON.stringify(d)}\n` : describeDomain(d));
          return;
        }
        config = {
          ...toDomainConfig(d, resolveImage),
          ...(explicit('name') ? { name: opts.name } : {}),
          ...(explicit('memory') ? { memory: opts.memory } : {}),
          ...(explicit('cmdline') ? { cmdline: opts.cmdline } : {}),
        };
      } else {
        if (image === undefined) throw new InvalidArgumentError('arguments', 'give a guest image or -f CONFIG');
        if (opts.dryRun) throw new InvalidArgumentError('arguments', '--dry-run needs -f CONFIG');
        config = { image: resolveImage(image), name: opts.name, memory: opts.memory, cmdline: opts.cmdline };
      }
      const { Hypervisor } = await import('../runtime/hypervisor.ts');
      const hv = new Hypervisor(opts.boot !== undefined ? { boot: opts.boot } : {});
      try {
        const dom = await hv.createDomain(config);
        dom.onConsole((b) => process.stdout.write(b));
        const timer = opts.timeout ? setTimeout(() => { void dom.destroy(); }, opts.timeout * 1000) : undefined;
        // Ctrl-C asks the guest to shut down (virq 2) and destroys it 3 s later if it does not.
        const onSig = (): void => { void hv.shutdown(dom.id, { timeoutMs: 3000 }).catch(() => {}); };
        process.once('SIGINT', onSig);
        process.once('SIGTERM', onSig);
        const exit = await dom.waitForExit();
        process.off('SIGINT', onSig);
        process.off('SIGTERM', onSig);
        clearTimeout(timer);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({ domid: dom.id, name: dom.name, reason: exit.reason, crash: exit.crash, cpuTimeNs: Math.round(dom.cpuTimeNs) })}\n`);
        }
        if (exit.crash) {
          process.stderr.write(`wv: domain ${dom.id} (${dom.name}) crashed: ${exit.crash.reason}\n`);
          for (const f of exit.crash.backtrace) process.stderr.write(`    at ${f.func}${f.offset !== undefined ? ` (offset 0x${f.offset.toString(16)})` : ''}\n`);
          process.exitCode = 3;
        } else if (exit.reason !== 'poweroff') {
          process.stderr.write(`wv: domain ${dom.id} (${dom.name}) ended: ${exit.reason}\n`);
          process.exitCode = exit.reason === 'destroyed' ? 4 : 2;
        }
      } finally {
        await hv.close();
      }
    });

  program
    .command('check')
    .description('validate a guest image against the hypercall ABI without running it')
    .argument('<image>', 'guest image path or reference guest name')
    .option('--json', 'print the result as JSON')
    .action(async (image: string, opts: { json?: boolean }) => {
      const { Hypervisor } = await import('../runtime/hypervisor.ts');
      const hv = new Hypervisor({ cpus: 1 });
      try {
        const img = await hv.loadImage(resolveImage(image));
        const info = { image: img.label, ok: true, format: img.format, sha256: img.id, minPages: img.minPages, maxPages: img.maxPages, hasInit: img.hasInit };
        process.stdout.write(opts.json ? `${JSON.stringify(info)}\n` : `${img.label}: ok (${img.format} module, memory ${img.minPages}..${img.maxPages} pages${img.hasInit ? ', has _initialize' : ''})\n`);
      } catch (err) {
        if (opts.json && err instanceof WvError) {
          process.stdout.write(`${JSON.stringify({ image, ok: false, code: err.code, message: err.message })}\n`);
        }
        throw err;
      } finally {
        await hv.close();
      }
    });

  program
    .command('guests')
    .description('list the reference guests and where their images are')
    .action(() => {
      for (const g of REFERENCE_GUESTS) {
        let where: string;
        try { where = guestPath(g); } catch { where = '(not built)'; }
        process.stdout.write(`${g.padEnd(10)} ${where}\n`);
      }
    });

  const isGuestName = (s: string): boolean => (REFERENCE_GUESTS as readonly string[]).includes(s);
  addToolstackCommands(program, resolveImage, isGuestName);
  addBlockCommands(program);
  addNetCommands(program);
  addVdCommands(program);
  addIsoCommands(program);
  addCompatCommands(program, resolveImage, isGuestName, defaultConfigPath);

  program
    .command('completion')
    .description('print a shell completion script: source <(wv completion bash)')
    .addArgument(new Argument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
    .action((shell: 'bash' | 'zsh') => { process.stdout.write(renderCompletion(program, shell)); });
  return program;
}
