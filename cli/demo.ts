/**
 * `wv demo`: boot a hypervisor in-process from the bundled demo config,
 * start its domains, show their consoles interleaved with a prefix per
 * domain and an `xl list`-style table, and stop cleanly.
 */
import { readFileSync } from 'node:fs';
import { Hypervisor } from '../runtime/hypervisor.ts';
import type { Domain } from '../runtime/domain.ts';
import { guestPath } from '../runtime/guests.ts';
import { ConsolePrefixer, formatList } from './format.ts';

interface DemoConfig {
  description: string;
  domains: { name: string; guest: string; memory: number; cmdline: string; delayMs?: number }[];
}

export interface DemoOptions {
  durationMs: number;
  /** Where output goes (stdout by default). */
  out?: (line: string) => void;
  /** Aborts the demo early (Ctrl-C). */
  signal?: AbortSignal;
  cpus?: number;
}

export async function runDemo(opts: DemoOptions): Promise<void> {
  const out = opts.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const config = JSON.parse(readFileSync(new URL('./demo.json', import.meta.url), 'utf8')) as DemoConfig;
  const hv = new Hypervisor({ cpus: opts.cpus });
  const prefixer = new ConsolePrefixer();
  out(`wasmvisor demo: ${config.description}`);
  out(`hypervisor up with ${hv.cpus} CPU(s); running for ${(opts.durationMs / 1000).toFixed(1)} s (Ctrl-C stops)`);
  const domains: Domain[] = [];
  const timers: NodeJS.Timeout[] = [];
  const start = async (d: DemoConfig['domains'][number]): Promise<void> => {
    const dom = await hv.createDomain({ image: guestPath(d.guest), name: d.name, memory: d.memory, cmdline: d.cmdline, onCrash: 'preserve', onPoweroff: 'preserve' });
    const tag = `[${dom.id} ${dom.name}]`.padEnd(14);
    domains.push(dom);
    dom.onConsole((bytes) => { for (const l of prefixer.push(dom.id, tag, bytes)) out(l); });
    dom.onPhase(({ to }) => {
      if (to === 'shutdown' || to === 'crashed') {
        for (const l of prefixer.flush(dom.id, tag)) out(l);
        const r = dom.record;
        out(`${tag} *** ${to}${r.crash ? `: ${r.crash.reason} in ${r.crash.backtrace.map((f) => f.func.split('/').at(-1)).join(' <- ')}` : ` (${r.shutdownReason})`}`);
      }
    });
  };
  try {
    for (const d of config.domains) {
      if (d.delayMs) timers.push(setTimeout(() => { start(d).catch((e: Error) => out(`cannot start ${d.name}: ${e.message}`)); }, d.delayMs));
      else await start(d);
    }
    const table = setInterval(() => out(`\n${formatList(hv.list())}\n`), 2000);
    timers.push(table);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, opts.durationMs);
      timers.push(t);
      opts.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
    for (const t of timers) clearTimeout(t);
    out(`\n${formatList(hv.list())}`);
    out('\nstopping: destroying every domain');
    await Promise.all(domains.filter((d) => hv.kernel.find(d.id)).map((d) => d.destroy()));
    out(`stopped; ${hv.list().length - 1} domains left`);
  } finally {
    for (const t of timers) clearTimeout(t);
    await hv.close();
  }
}

export interface PingpongOptions {
  count: number;
  out?: (line: string) => void;
  cpus?: number;
}

/**
 * `wv demo pingpong`: two domains that meet over an event channel the
 * toolstack connects, set up a ring in a granted page and exchange `count`
 * 64-byte messages.
 */
export async function runPingpong(opts: PingpongOptions): Promise<boolean> {
  const out = opts.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const hv = new Hypervisor({ cpus: opts.cpus });
  const prefixer = new ConsolePrefixer();
  try {
    out(`wasmvisor demo: pingpong, ${opts.count} messages over a shared ring (${hv.cpus} CPU${hv.cpus === 1 ? '' : 's'})`);
    const keep = { onPoweroff: 'preserve', onCrash: 'preserve' } as const;
    const pong = await hv.createDomain({ image: guestPath('pong'), name: 'pong', memory: 1, paused: true, cmdline: `count=${opts.count}`, ...keep });
    const ping = await hv.createDomain({ image: guestPath('ping'), name: 'ping', memory: 1, paused: true, cmdline: `count=${opts.count}`, ...keep });
    for (const d of [ping, pong]) {
      const tag = `[${d.id} ${d.name}]`.padEnd(10);
      d.onConsole((bytes) => { for (const l of prefixer.push(d.id, tag, bytes)) out(l); });
    }
    const [pp, qp] = hv.connect(ping.id, pong.id);
    out(`toolstack: event channel domain ${ping.id} port ${pp} <-> domain ${pong.id} port ${qp}`);
    await pong.unpause();
    await ping.unpause();
    const [a, b] = await Promise.all([ping.waitForExit(), pong.waitForExit()]);
    const m = /answered in (\d+) us/.exec(ping.consoleText());
    if (m) out(`${opts.count} round trips of 64-byte messages: ${Math.round(opts.count / (Number(m[1]) / 1e6)).toLocaleString('en')} messages/s`);
    out(`\n${formatList(hv.list())}`);
    return a.reason === 'poweroff' && b.reason === 'poweroff';
  } finally {
    await hv.close();
  }
}

export interface NetDemoOptions {
  cpus?: number | undefined;
  /** Pings each way. */
  count: number;
  out?: (line: string) => void;
}

/**
 * The network scene: two domains on the virtual switch with link-local
 * addresses, as on the Demo CD. netd (169.254.1.1) answers ping and serves a
 * page; netclient (169.254.1.2) pings it and fetches the page. Then the vif
 * counters.
 */
export async function runNetDemo(opts: NetDemoOptions): Promise<boolean> {
  const out = opts.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const hv = new Hypervisor({ cpus: opts.cpus });
  const prefixer = new ConsolePrefixer();
  try {
    out(`wasmvisor demo: net, two domains on the virtual switch (${hv.cpus} CPU${hv.cpus === 1 ? '' : 's'})`);
    const keep = { onPoweroff: 'preserve', onCrash: 'preserve' } as const;
    const show = (d: { id: number; name: string; onConsole(fn: (b: Uint8Array) => void): unknown }): void => {
      const tag = `[${d.id} ${d.name}]`.padEnd(14);
      d.onConsole((bytes) => { for (const l of prefixer.push(d.id, tag, bytes)) out(l); });
    };
    const srv = await hv.createDomain({ image: guestPath('netd'), name: 'web', memory: 32, cmdline: 'ip=169.254.1.1:::255.255.0.0::eth0:off', vifs: ['ip=169.254.1.1'], ...keep });
    show(srv);
    // The client's first ping must find the server listening.
    for (let i = 0; i < 600 && !srv.consoleText().includes('up on vif 0'); i++) await new Promise((r) => setTimeout(r, 50));
    const cli = await hv.createDomain({
      image: guestPath('netclient'), name: 'client', memory: 32, vifs: ['ip=169.254.1.2'], ...keep,
      cmdline: `ip=169.254.1.2:::255.255.0.0::eth0:off target=169.254.1.1 count=${opts.count}`,
    });
    show(cli);
    const exit = await cli.waitForExit();
    const rows = hv.net.list();
    out('');
    for (const v of rows) out(`${v.name} (${v.domain}) ${v.mac} ${v.ips.join(' ')}: sent ${v.stats.txPackets} frames (${v.stats.txBytes} bytes), received ${v.stats.rxPackets} (${v.stats.rxBytes} bytes), dropped ${v.stats.dropped + v.stats.spoofed + v.stats.malformed + v.stats.unroutable}`);
    const ok = exit.reason === 'poweroff' && new RegExp(`${opts.count} packets transmitted, ${opts.count} received`).test(cli.consoleText()) && cli.consoleText().includes('200 OK');
    out(ok ? 'demo: every ping was answered and the page came back' : 'demo: something was lost (see above)');
    return ok;
  } finally {
    await hv.close();
  }
}
