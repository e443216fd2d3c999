/**
 * The `wv` binary against a real daemon (`wv boot`), each test with its own
 * state directory.
 */
import t, { type Test } from 'tap';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chmodSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const wvPath = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));

function daemonDir(t: Test): { dir: string; wv: (...args: string[]) => SpawnSyncReturns<string> } {
  const dir = mkdtempSync(join(tmpdir(), 'wv-state-'));
  const wv = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', dir, ...args], { encoding: 'utf8', timeout: 60_000 });
  t.teardown(() => {
    if (existsSync(join(dir, 'wv.sock'))) wv('shutdown-host', '--timeout', '1');
    const pidFile = join(dir, 'wv.pid');
    if (existsSync(pidFile)) { try { process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL'); } catch { /* gone */ } }
  });
  return { dir, wv };
}

const json = <T>(r: { stdout: string }): T => JSON.parse(r.stdout) as T;

t.test('boot, create from a config with -D, list, pause, unpause, shutdown -w, destroy, dmesg, info, shutdown-host', async (t) => {
  const { dir, wv } = daemonDir(t);
  const boot = wv('boot');
  t.equal(boot.status, 0, boot.stderr);
  t.match(boot.stderr, /daemon running \(pid \d+\)/);
  const sock = join(dir, 'wv.sock');
  t.equal(statSync(sock).mode & 0o777, 0o600, 'the socket is mode 0600');
  t.ok(existsSync(join(dir, 'wv.pid')) && existsSync(join(dir, 'wv.log')), 'pid file and log');

  const cfg = join(dir, 'ticker.cfg');
  writeFileSync(cfg, 'require = ["n"]\nname = "tick-${n}"\nkernel = "ticker"\nmemory = 8\ncmdline = "count=${count:-1000} period=50"\non_poweroff = "preserve"\n');
  const dry = wv('create', '-f', cfg, '-D', 'n=1', '-n');
  t.equal(dry.status, 0, dry.stderr);
  t.match(dry.stdout, /VM name\s+: "tick-1"/);
  t.equal(json<unknown[]>(wv('list', '--json')).length, 1, 'the dry run created nothing');

  const made = wv('create', '-f', cfg, '-D', 'n=1:count=1000', '--json');
  t.equal(made.status, 0, made.stderr);
  const d = json<{ id: number; name: string; memoryBytes: number }>(made);
  t.same([d.name, d.memoryBytes], ['tick-1', 8 * 1024 * 1024]);
  t.equal(wv('create', 'spin', '--name', 'sp').status, 0);

  const list = wv('list');
  t.match(list.stdout, /^Name\s+ID\s+Mem\(MiB\)\s+CPU\s+State\s+Time\(s\)/);
  t.match(list.stdout, /tick-1\s+1\s+8\s/);
  t.match(wv('list', '-l').stdout, /sp \(id 2\)\n {2}phase {6}running/);

  t.match(wv('pause', 'sp').stdout, /domain 2 \(sp\) paused/);
  const t1 = json<Array<{ name: string; cpuTimeNs: number }>>(wv('list', '--json')).find((r) => r.name === 'sp')!.cpuTimeNs;
  await new Promise((r) => setTimeout(r, 300));
  const t2 = json<Array<{ name: string; cpuTimeNs: number }>>(wv('list', '--json')).find((r) => r.name === 'sp')!.cpuTimeNs;
  t.equal(t2, t1, 'a paused domain uses no CPU');
  t.match(wv('unpause', '2').stdout, /running/);

  const sd = wv('shutdown', 'tick-1', '-w', '--json');
  t.equal(sd.status, 0, sd.stderr);
  t.same(json<{ reason: string; waited: boolean }>(sd), { id: 1, name: 'tick-1', reason: 'poweroff', waited: true });
  t.match(wv('list').stdout, /tick-1\s+1\s+8\s+-?\d*\s+shutdown\(poweroff\)/, 'preserved by on_poweroff');
  t.match(wv('destroy', 'sp').stdout, /domain 2 \(sp\) destroyed/);
  t.equal(wv('destroy', 'tick-1').status, 0);

  const dm = wv('dmesg');
  t.match(dm.stdout, /domain 1 \(tick-1\) created/);
  t.match(dm.stdout, /toolstack daemon listening/);
  t.match(readFileSync(join(dir, 'wv.log'), 'utf8'), /domain 2 \(sp\) created/, 'the log file follows the kernel log');
  const info = json<{ cpus: number; domains: number; protocol: number; memoryFreeBytes: number; memoryTotalBytes: number }>(wv('info', '--json'));
  t.equal(info.domains, 1, 'only domain 0 left');
  t.equal(info.protocol, 1);
  t.ok(info.memoryFreeBytes > 0 && info.memoryFreeBytes < info.memoryTotalBytes);

  const bye = wv('shutdown-host');
  t.equal(bye.status, 0);
  for (let i = 0; i < 50 && existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
  t.notOk(existsSync(sock), 'the socket is removed');
  const after = wv('list');
  t.equal(after.status, 1);
  t.match(after.stderr, /no wasmvisor daemon on .*wv\.sock: the socket does not exist \(start one with: wv boot\) \[WV_ERR_NO_DAEMON\]/);
});

t.test('console: replays the buffer, sends input, the guest echoes it; rename, uptime, vcpu-pin, sched-bvt, debug-keys', async (t) => {
  const { wv, dir } = daemonDir(t);
  t.equal(wv('boot', '--boot', 'nosmp').status, 0);
  t.equal(wv('create', 'echo', '--name', 'e').status, 0);
  await new Promise((r) => setTimeout(r, 300));
  const con = spawn(process.execPath, [wvPath, '--state-dir', dir, 'console', 'e'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let seen = '';
  con.stdout.on('data', (b: Buffer) => { seen += b.toString(); });
  const waitFor = async (s: string) => { for (let i = 0; i < 100 && !seen.includes(s); i++) await new Promise((r) => setTimeout(r, 50)); return seen.includes(s); };
  t.ok(await waitFor('echo: ready'), 'the buffered console is replayed on attach');
  con.stdin.write('hello wasmvisor\n');
  t.ok(await waitFor('echo: hello wasmvisor'), 'input reaches the guest and its answer comes back');
  con.stdin.write('quit\n');
  const code = await new Promise<number | null>((r) => con.once('exit', r));
  t.equal(code, 0, 'console returns when the domain stops');
  t.ok(seen.includes('echo: bye'));

  t.equal(wv('create', 'spin', '--name', 'a').status, 0);
  t.match(wv('rename', 'a', 'b').stdout, /is now b/);
  // The store, as domain 0 sees it.
  const ls = wv('store', 'ls', '/local/domain');
  t.equal(ls.status, 0, ls.stderr);
  t.match(ls.stdout, /\/local\/domain\/(\d+)\/name = "b"  \(n0,r\1\)/, 'a domain\'s name, readable by it, and renamed');
  t.equal(wv('store', 'write', 'tool/setting', 'on').status, 0);
  t.equal(wv('store', 'read', '/tool/setting').stdout, 'on\n');
  t.equal(wv('store', 'rm', 'tool').status, 0);
  const gone = wv('store', 'read', '/tool/setting');
  t.equal(gone.status, 1);
  t.match(gone.stderr, /invalid store path \/tool\/setting: it does not exist/);
  t.match(wv('store', 'write', 'bad//path', 'x').stderr, /it is not a valid path/);
  t.equal(wv('rename', 'b', 'Domain-0').status, 1, 'a taken name is refused');
  t.match(wv('uptime', 'b').stdout, /b\s+\d+\s+00:0\d:\d\d/);
  t.match(wv('vcpu-pin', 'b', '0').stdout, /pinned to cpu 0/);
  const vp = wv('vcpu-pin', 'b', '5');
  t.equal(vp.status, 1);
  t.match(vp.stderr, /5 is not a CPU of this hypervisor \(0\.\.0\)/);
  t.same(json<{ settings: unknown }>(wv('sched-bvt', 'b', '--mcuadv', '3', '--warp', '100', '--json')).settings, { mcuadv: 3, warp: 100, warpl: 0, warpu: 0 });
  t.match(wv('bvt-slice', '20').stdout, /bvt slice 20 ms/);
  t.match(wv('debug-keys', 'r').stdout, /cpu 0:\n {2}domain \d+ \(b\) running mcuadv 3 warp 100/);
  t.match(wv('debug-keys', 'm').stdout, /MiB free/);
  const bad = wv('debug-keys', 'z');
  t.equal(bad.status, 1);
  t.match(bad.stderr, /'z' is not one \('h' lists them\)/);
});

t.test('bad input: unknown domain, duplicate name, config errors, missing image, live and stale sockets, foreign protocol', async (t) => {
  const { dir, wv } = daemonDir(t);
  t.equal(wv('boot').status, 0);
  const again = wv('boot');
  t.equal(again.status, 1);
  t.match(again.stderr, /a wasmvisor daemon is already running on .*wv\.sock \(pid \d+\) \[WV_ERR_DAEMON_RUNNING\]/);

  const nod = wv('pause', 'ghost');
  t.equal(nod.status, 1);
  t.match(nod.stderr, /no domain named "ghost" \[WV_ERR_NO_SUCH_DOMAIN\]/);
  t.match(wv('pause', '99').stderr, /no domain with id 99/);
  t.equal(wv('create', 'spin', '--name', 'dup').status, 0);
  const dup = wv('create', 'spin', '--name', 'dup');
  t.equal(dup.status, 1);
  t.match(dup.stderr, /a domain named "dup" already exists \[WV_ERR_DOMAIN_EXISTS\]/);

  const cfg = join(dir, 'bad.cfg');
  writeFileSync(cfg, 'kernel = "spin"\nmemory = [1\n');
  const syn = wv('create', '-f', cfg);
  t.equal(syn.status, 1);
  t.match(syn.stderr, /bad\.cfg:3:1: expected "," or "\]" in a list, found the end of the file \[WV_ERR_CONFIG\]/);
  writeFileSync(cfg, 'require = ["ip"]\nkernel = "spin"\n');
  t.match(wv('create', '-f', cfg).stderr, /bad\.cfg:1:1: this config requires variable "ip": give it with -D ip=VALUE/);
  const missing = wv('create', join(dir, 'nope.wasm'));
  t.equal(missing.status, 1);
  t.match(missing.stderr, /nope\.wasm/);
  writeFileSync(cfg, 'kernel = "spin"\nmemory = 4000000\n');
  const huge = wv('create', '-f', cfg);
  t.equal(huge.status, 1, 'more memory than the host has');
  const rows = json<Array<{ name: string }>>(wv('list', '--json'));
  t.same(rows.map((r) => r.name), ['Domain-0', 'dup'], 'no failed create left anything behind');

  // A client speaking another protocol version gets told so.
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(join(dir, 'wv.sock'), () => s.write('{"v":99,"id":1,"action":{"op":"list"}}\n'));
    s.once('data', (b) => { resolve(b.toString()); s.destroy(); });
  });
  t.match(JSON.parse(reply).error, { code: 'WV_ERR_PROTOCOL', message: /protocol version 99 is not this daemon's \(1\)/ });
  const garbage = await new Promise<string>((resolve) => {
    const s = net.connect(join(dir, 'wv.sock'), () => s.write('{"v":1,"id":2,"action":{"op":"destroy","dom":{"x":1}}}\n'));
    s.once('data', (b) => { resolve(b.toString()); s.destroy(); });
  });
  t.match(JSON.parse(garbage).error, { code: 'WV_ERR_INVALID_ARGUMENT', message: /is not a domain id or name/ });

  // The daemon dies in the middle of a request: the waiting client says so.
  t.equal(wv('create', 'spin', '--name', 'stubborn').status, 0);
  const waiting = spawn(process.execPath, [wvPath, '--state-dir', dir, 'shutdown', '-w', '--timeout', '60', 'stubborn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let waitErr = '';
  waiting.stderr.on('data', (b: Buffer) => { waitErr += b.toString(); });
  // Wait until the daemon has the request (it logs it), then kill it.
  for (let i = 0; i < 200 && !/\(stubborn\): poweroff requested/.test(readFileSync(join(dir, 'wv.log'), 'utf8')); i++) await new Promise((r) => setTimeout(r, 50));
  const pid = Number(readFileSync(join(dir, 'wv.pid'), 'utf8'));
  process.kill(pid, 'SIGKILL');
  const waitCode = await new Promise<number | null>((r) => waiting.once('exit', r));
  t.equal(waitCode, 1);
  t.match(waitErr, /the daemon closed the connection.*see its log, wv\.log in the state directory\) \[WV_ERR_PROTOCOL\]/);

  // Its socket is now stale; commands say so and boot cleans up.
  for (let i = 0; i < 50; i++) { try { process.kill(pid, 0); } catch { break; } await new Promise((r) => setTimeout(r, 50)); }
  const stale = wv('list');
  t.equal(stale.status, 1);
  t.match(stale.stderr, /the socket is stale \(its daemon died\) \(start one with: wv boot\) \[WV_ERR_NO_DAEMON\]/);
  const reboot = wv('boot');
  t.equal(reboot.status, 0, reboot.stderr);
  t.equal(json<unknown[]>(wv('list', '--json')).length, 1, 'a fresh daemon');
});

t.test('a state directory owned by someone else is refused', { skip: process.getuid?.() !== 0 ? 'needs root to chown' : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-foreign-'));
  const { chownSync } = await import('node:fs');
  chownSync(dir, 65534, 65534);
  chmodSync(dir, 0o777);
  const r = spawnSync(process.execPath, [wvPath, '--state-dir', dir, 'boot', '--foreground'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 1);
  t.match(r.stderr, /state directory .*: it belongs to uid 65534, not to you \(uid 0\) \[WV_ERR_STATE_DIR\]/);
  writeFileSync(join(dir, 'wv.sock'), '');
  chownSync(join(dir, 'wv.sock'), 65534, 65534);
  const l = spawnSync(process.execPath, [wvPath, '--state-dir', dir, 'list'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(l.status, 1);
  t.match(l.stderr, /the socket belongs to uid 65534, not to you/);
});

t.test("the CD's command lines run as written: xc_dom_create.py, xc_dom_control, xen_read_console", async (t) => {
  const { dir, wv } = daemonDir(t);
  t.equal(wv('boot').status, 0);
  const defaults = join(dir, 'defaults');
  writeFileSync(defaults, 'require = [ "ip" ]\nname = "vm-${vmid:-1}"\nkernel = "ticker"\nmemory = "${mem:-64}"\ncmdline = "ip=${ip} root=/dev/ram0 rw init=/linuxrc 4 count=1000 period=100"\n');
  const env = { ...process.env, WV_DEFAULT_CONFIG: defaults };
  const cd = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', dir, 'compat', ...args], { encoding: 'utf8', timeout: 60_000, env });

  // xen_read_console follows every domain's console.
  const reader = spawn(process.execPath, [wvPath, '--state-dir', dir, 'compat', 'xen_read_console'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let read = '';
  reader.stdout.on('data', (b: Buffer) => { read += b.toString(); });
  t.teardown(() => { reader.kill(); });
  await new Promise((r) => setTimeout(r, 500));

  const dry = cd('xc_dom_create.py', '-D', 'ip=commando-1.xeno,', '-Dmem=100', '-n');
  t.equal(dry.status, 0, dry.stderr);
  t.match(dry.stdout, /Parsing config file '.*defaults'/);
  t.match(dry.stdout, /VM memory \(MB\)\s+: "100"/);
  t.match(dry.stdout, /VM cmdline\s+: "ip=commando-1\.xeno, root=\/dev\/ram0 rw init=\/linuxrc 4/);
  const help = cd('xc_dom_create.py', '-h');
  t.match(help.stdout, /requires the following vars to be defined:\n {2}ip\nThe following variables may be optionally defined:\n {2}vmid\n {2}mem/, "-h lists the default config's variables, as the CD's did");
  const noip = cd('xc_dom_create.py', '-n');
  t.equal(noip.status, 1);
  t.match(noip.stderr, /requires variable "ip"/);

  const made = cd('xc_dom_create.py', '-Dip=,', '-Dmem=72');
  t.equal(made.status, 0, made.stderr);
  t.match(made.stdout, /VM started in domain 1/);
  t.match(cd('xc_dom_control.py', 'list').stdout, /vm-1\s+1\s+72\s/);
  t.match(cd('xc_dom_control', 'stop', '1').stdout, /domain 1 paused/);
  t.match(cd('xc_dom_control', 'cpu_bvtset', '1', '5', '0', '0', '0').stdout, /mcuadv 5 warp 0 warpl 0 warpu 0/);
  t.match(cd('xc_dom_control', 'cpu_bvtslice', '20').stdout, /bvt slice 20 ms/);
  t.match(cd('xc_dom_control', 'start', '1').stdout, /domain 1 unpaused/);
  t.match(cd('xc_dom_control', 'pincpu', '1', '0').stdout, /domain 1 pinned to cpu 0/);
  for (let i = 0; i < 60 && !read.includes('[vm-1] tick 1'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(read, /\[vm-1\] tick 0\n\[vm-1\] tick 1\n/, 'xen_read_console shows the new domain\'s console');
  t.match(cd('xc_dom_control', 'shutdown', '1').stdout, /shutdown requested for domain 1/);
  const save = cd('xc_dom_control', 'save', '99', join(dir, 'x.img'));
  t.equal(save.status, 1);
  t.match(save.stderr, /99/, 'save names the domain it cannot find');
  const restore = cd('xc_dom_control', 'restore', join(dir, 'missing.img'));
  t.equal(restore.status, 1);
  t.match(restore.stderr, /missing\.img/, 'restore names the file it cannot read');
  t.match(cd('xc_dom_control').stdout, /^Usage: xc_dom_control \[command\] <params>/);
  t.match(cd('xc_dom_control', 'bogus').stderr, /"bogus" is not one/);
  t.match(cd('xc_dom_control', 'pincpu', '1').stderr, /missing: pincpu/);
});
