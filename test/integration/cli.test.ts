import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const wv = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [wv, ...args], { encoding: 'utf8', timeout: 60_000 });

t.test('wv run hello prints the console and exits 0', async (t) => {
  const r = run('run', 'hello', '-c', 'quiet', '--json');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, 'cmdline: quiet');
  const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  t.equal(last.reason, 'poweroff');
});

t.test('wv run crash exits 3 with the backtrace on stderr', async (t) => {
  const r = run('run', 'crash');
  t.equal(r.status, 3);
  t.match(r.stderr, /crashed: trap: unreachable/);
  t.match(r.stderr, /\n {4}at \S+/);
});

t.test('wv run spin --timeout destroys it and exits 4', async (t) => {
  const r = run('run', 'spin', '--timeout', '0.5');
  t.equal(r.status, 4);
  t.match(r.stderr, /ended: destroyed/);
});

t.test('wv run --boot: the watchdog option shuts a spinner down (exit 2); a bad option is named (exit 1)', async (t) => {
  const r = run('run', 'spin', '--boot', 'nosmp watchdog watchdog_timeout=0.3', '--json');
  t.equal(r.status, 2);
  t.equal(JSON.parse(r.stdout.trim().split('\n').at(-1)!).reason, 'watchdog');
  t.match(r.stderr, /ended: watchdog/);
  const bad = run('run', 'hello', '--boot', 'nosmp dom0_mem=lots');
  t.equal(bad.status, 1);
  t.match(bad.stderr, /wv: invalid boot option dom0_mem: "lots" is not a size/);
});

t.test('wv run -f runs a domain from an xl.cfg file with -D variables; --dry-run creates nothing; errors name file:line:col', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-'));
  const cfg = join(dir, 'defaults');
  writeFileSync(cfg, 'require = [ "ip" ]\nname = "vm-${vmid:-1}"\nkernel = "hello"\nmemory = "${mem:-64}"\ncmdline = "ip=${ip} 4"\n');
  const dry = run('run', '-f', cfg, '-D', 'ip=10.0.0.7:mem=100', '-D', 'vmid=3', '--dry-run');
  t.equal(dry.status, 0, dry.stderr);
  t.match(dry.stdout, /VM name\s+: "vm-3"/);
  t.match(dry.stdout, /VM memory \(MB\)\s+: "100"/);
  t.match(dry.stdout, /VM cmdline\s+: "ip=10\.0\.0\.7 4"/);
  const j = JSON.parse(run('run', '-f', cfg, '-D', 'ip=1.2.3.4', '--dry-run', '--json').stdout);
  t.same([j.name, j.memory, j.cmdline], ['vm-1', 64, 'ip=1.2.3.4 4']);
  const real = run('run', '-f', cfg, '-D', 'ip=10.0.0.9', '--json');
  t.equal(real.status, 0, real.stderr);
  t.match(real.stdout, 'cmdline: ip=10.0.0.9 4', 'the guest saw the command line from the config');
  t.equal(JSON.parse(real.stdout.trim().split('\n').at(-1)!).name, 'vm-1');
  const missing = run('run', '-f', cfg, '--dry-run');
  t.equal(missing.status, 1);
  t.match(missing.stderr, /defaults:1:1: this config requires variable "ip": give it with -D ip=VALUE \[WV_ERR_CONFIG\]/);
  writeFileSync(cfg, 'kernel = "hello"\nmemory = 64 64\n');
  t.match(run('run', '-f', cfg).stderr, /defaults:2:13: expected the end of the line/);
});

t.test('wv check refuses a non-Wasm file with its code', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-'));
  const bad = join(dir, 'bad.wasm');
  writeFileSync(bad, 'not wasm at all');
  const r = run('check', bad);
  t.equal(r.status, 1);
  t.match(r.stderr, /wv: guest image .*bad\.wasm is not WebAssembly.*\[WV_ERR_IMAGE_NOT_WASM\]/);
  const j = run('check', bad, '--json');
  t.same(JSON.parse(j.stdout).code, 'WV_ERR_IMAGE_NOT_WASM');
  const ok = run('check', 'hello', '--json');
  t.equal(ok.status, 0);
  t.equal(JSON.parse(ok.stdout).ok, true);
});

t.test('wv run with a bad memory size is a usage error', async (t) => {
  const r = run('run', 'hello', '-m', '-3');
  t.not(r.status, 0);
  t.match(r.stderr, /memory must be a positive number/);
});

t.test('wv demo shows prefixed consoles and a list table, then stops', async (t) => {
  const r = run('demo', '--duration', '3');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /\[\d+ hello\]\s+hello from domain \d+/);
  t.match(r.stdout, /\[\d+ ticker\]\s+tick/);
  t.match(r.stdout, /\[\d+ crasher\]\s+\*\*\* crashed: trap: unreachable/);
  t.match(r.stdout, /Name\s+ID\s+Mem\(MiB\)\s+CPU\s+State\s+Time\(s\)/);
  t.match(r.stdout, /spinner\s+\d+\s+1\s+\d\s+(running|paused)/);
  t.match(r.stdout, /stopped; 0 domains left/);
});

t.test('wv demo pingpong exchanges messages over a ring', async (t) => {
  const r = run('demo', 'pingpong', '-n', '2000', '--cpus', '1');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /toolstack: event channel domain \d+ port 1 <-> domain \d+ port 1/);
  t.match(r.stdout, /\[\d+ ping\]\s+ping: 2000 messages answered in \d+ us/);
  t.match(r.stdout, /\[\d+ pong\]\s+pong: answered 2000 requests/);
  t.match(r.stdout, /messages\/s/);
  const bad = run('demo', 'nope');
  t.not(bad.status, 0);
  t.match(bad.stderr, /Allowed choices are domains, pingpong, net/);
});

t.test('wv demo net: two domains ping each other on 169.254.1.x and fetch a page', async (t) => {
  const r = run('demo', 'net', '-n', '3');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /\[\d+ web\]\s+netd: 169\.254\.1\.1 up on vif 0/);
  t.match(r.stdout, /\[\d+ client\]\s+64 bytes from 169\.254\.1\.1: icmp_seq=3 ttl=64 time=\d+\.\d{3} ms/);
  t.match(r.stdout, /\[\d+ client\]\s+netclient: 3 packets transmitted, 3 received/);
  t.match(r.stdout, /\[\d+ client\]\s+HTTP\/1\.0 200 OK/);
  t.match(r.stdout, /vif1\.0 \(web\) 00:16:3e:00:01:00 169\.254\.1\.1: sent \d+ frames/);
  t.match(r.stdout, /demo: every ping was answered and the page came back/);
});

t.test('the esbuild bundle runs the same commands', async (t) => {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const b = spawnSync(process.execPath, [join(root, 'scripts/bundle.ts')], { encoding: 'utf8', timeout: 120_000 });
  t.equal(b.status, 0, b.stderr);
  t.match(b.stdout, /built dist\/wv\.js/);
  const r = spawnSync(process.execPath, [join(root, 'dist/wv.js'), 'run', 'hello', '-c', 'bundled'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, 'cmdline: bundled');
  const s = spawnSync(process.execPath, [join(root, 'dist/wv.js'), 'run', 'spin', '--timeout', '0.3'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(s.status, 4, 'the spinner is preempted and destroyed (the ticker thread is in the bundle)');
});
