/**
 * Toolstack figures: `wv list` through the CLI against a daemon holding 100
 * domains, and `wv create` until the domain runs, each against a baseline
 * measured in the same run (starting the same Node with an empty script;
 * one request/response on a bare Unix socket).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon } from '../runtime/toolstack/daemon.ts';
import { ToolstackClient } from '../runtime/toolstack/client.ts';
import { guestPath } from '../runtime/guests.ts';
import { quantiles, type CpuFigure } from './cpu.ts';

// The shipped binary (npm run build) when it is there, else the source entry point.
const bundled = fileURLToPath(new URL('../dist/wv.js', import.meta.url));
const wv = existsSync(bundled) ? bundled : fileURLToPath(new URL('../cli/wv.ts', import.meta.url));

const median = (xs: number[]): number => quantiles(xs).median;

async function socketRoundTrip(dir: string, n: number): Promise<number[]> {
  const path = join(dir, 'echo.sock');
  const server = net.createServer((c) => c.on('data', (b) => c.write(b)));
  await new Promise<void>((r) => server.listen(path, r));
  const c = net.connect(path);
  await new Promise((r) => c.once('connect', r));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    c.write('{"x":1}\n');
    await new Promise((r) => c.once('data', r));
    out.push(performance.now() - t0);
  }
  c.destroy();
  server.close();
  return out;
}

export async function toolstackFigures(quick: boolean, log: (s: string) => void): Promise<CpuFigure[]> {
  const dir = mkdtempSync(join(tmpdir(), 'wv-bench-'));
  const d = await startDaemon({ stateDir: dir, boot: 'nosmp' });
  const out: CpuFigure[] = [];
  try {
    const samples = quick ? 5 : 15;
    log(`toolstack: 100 idle domains, wv list through the CLI (${wv.endsWith('.js') ? 'the bundle, dist/wv.js' : 'the source, cli/wv.ts: run npm run build to measure the shipped binary'})`);
    const client = await ToolstackClient.connect(dir);
    for (let i = 0; i < 100; i++) await client.request({ op: 'create', spec: { image: guestPath('echo'), memory: 1, name: `idle${i}` } });
    // The daemon runs in this process, so children are awaited, never waited for synchronously.
    const run = (args: string[]): Promise<{ ms: number; code: number | null; stderr: string }> => new Promise((resolve) => {
      const t0 = performance.now();
      const c = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      c.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
      c.once('exit', (code) => resolve({ ms: performance.now() - t0, code, stderr }));
    });
    const cli = async (...args: string[]) => {
      const r = await run([wv, '--state-dir', dir, ...args]);
      if (r.code !== 0) throw new Error(`wv ${args.join(' ')} failed: ${r.stderr}`);
      return r;
    };
    const bare = async (): Promise<number> => (await run(['-e', '0'])).ms;
    const lists: number[] = [];
    const bases: number[] = [];
    for (let i = 0; i < samples; i++) { lists.push((await cli('list')).ms); bases.push(await bare()); }
    out.push({ name: 'wv list, 100 domains, CLI round trip, median', value: median(lists), unit: 'ms', baseline: median(bases), baselineName: 'starting the same node with an empty script', baselineUnit: 'ms', ratio: median(lists) / median(bases) });

    const api: number[] = [];
    for (let i = 0; i < samples * 10; i++) { const t0 = performance.now(); await client.request({ op: 'list' }); api.push(performance.now() - t0); }
    const raw = await socketRoundTrip(dir, samples * 10);
    out.push({ name: 'list action over the socket (no process start), 100 domains, median', value: median(api), unit: 'ms', baseline: median(raw), baselineName: 'one request/response on a bare Unix socket', baselineUnit: 'ms', ratio: median(api) / median(raw) });

    log('toolstack: wv create until the domain runs');
    const creates: number[] = [];
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      await cli('create', 'echo', '--name', `new${i}`, '-m', '1');
      for (;;) {
        const rows = await client.request({ op: 'list' });
        const row = rows.find((r) => r.name === `new${i}`);
        if (row && (row.phase === 'running' || row.phase === 'blocked') && row.consoleBytes > 0) break;
        await new Promise((r) => setTimeout(r, 1));
      }
      creates.push(performance.now() - t0);
    }
    out.push({ name: 'wv create -> guest running (first console byte), median', value: median(creates), unit: 'ms', baseline: median(bases), baselineName: 'starting the same node with an empty script', baselineUnit: 'ms', ratio: median(creates) / median(bases) });
    client.close();
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}
