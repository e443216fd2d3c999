/**
 * Networks through the toolstack: vif = [...] in a config, network-list,
 * network-attach/-detach, vif-addip, vif-rate, vif-stats, the CD's vif_*
 * commands, NET columns in top, and bad input as CLI errors.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import dgram from 'node:dgram';

const wvPath = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));

interface Vif { domid: number; name: string; mac: string; ips: string[]; state: string; rate: { bytes: number; usecs: number }; stats: { rxPackets: number; txPackets: number } }

t.test('vifs from a config, run-time changes, listings and errors through wv', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-netcli-'));
  const wv = (...args: string[]) => spawnSync(process.execPath, [wvPath, '--state-dir', dir, ...args], { encoding: 'utf8', timeout: 60_000, cwd: dir });
  t.teardown(() => { if (existsSync(join(dir, 'wv.sock'))) wv('shutdown-host', '--timeout', '1'); });
  t.equal(wv('boot').status, 0);
  writeFileSync(join(dir, 'web.cfg'), `name = "web"\nkernel = "netd"\nmemory = 32\nvif = [ 'ip=169.254.1.1,mac=00:16:3e:01:01:01' ]\n`);
  writeFileSync(join(dir, 'cli.cfg'), `name = "cli"\nkernel = "netclient"\nmemory = 32\ncmdline = "target=169.254.1.1 count=2"\nvif = [ 'ip=169.254.1.2' ]\non_poweroff = "preserve"\n`);
  t.equal(wv('create', '-f', join(dir, 'web.cfg')).status, 0);
  const c = wv('create', '-f', join(dir, 'cli.cfg'));
  t.equal(c.status, 0, c.stderr);
  const vifs = (...a: string[]): Vif[] => JSON.parse(wv('network-list', ...a, '--json').stdout) as Vif[];
  for (let i = 0; i < 100 && !((vifs()[0]?.stats.rxPackets ?? 0) >= 2); i++) await new Promise((r) => setTimeout(r, 100));
  const [web] = vifs('web');
  t.same([web!.name, web!.mac, web!.ips, web!.state], ['vif1.0', '00:16:3e:01:01:01', ['169.254.1.1'], 'connected']);
  const table = wv('network-list');
  t.match(table.stdout, /^DOM\s+NAME\s+VIF\s+MAC\s+STATE\s+FRONTEND\s+RATE\s+IP\n/);
  t.match(table.stdout, /\n1\s+web\s+vif1\.0\s+00:16:3e:01:01:01\s+connected\s+connected\s+unlimited\s+169\.254\.1\.1\n/);

  t.match(wv('vif-addip', 'web', '0', '169.254.1.100').stdout, /vif1\.0 now has 169\.254\.1\.1 169\.254\.1\.100/);
  t.match(wv('vif-rate', 'web', 'vif1.0', '1MB/s').stdout, /vif1\.0: 50000 bytes per 50000 us \(8\.00 Mb\/s\)/);
  t.match(wv('vif-rate', 'web', '0').stdout, /vif1\.0: 50000 bytes per 50000 us/);
  t.match(wv('compat', 'xc_dom_control.py', 'vif_setsched', '1', '0', '100000', '100000').stdout, /vif1\.0: 100000 bytes per 100000 us/);
  t.match(wv('compat', 'xc_dom_control.py', 'vif_getsched', '1', '0').stdout, /vif1\.0: bytes 100000 usecs 100000/);
  t.match(wv('vif-rate', 'web', '0', '0').stdout, /unlimited/);
  t.match(wv('compat', 'xc_dom_control.py', 'vif_addip', '1', '0', '169.254.1.101').stdout, /169\.254\.1\.101/);
  const stats = wv('vif-stats', 'web');
  t.match(stats.stdout, /^VIF\s+TX_PKTS\s+TX_BYTES\s+RX_PKTS\s+RX_BYTES\s+DROPPED\s+SPOOFED\s+MALFORMED\s+UNROUTABLE\s+RATE_LIMITED\s+DELAYED\s+ERRORS\nvif1\.0\s+[1-9]/);
  t.match(wv('compat', 'xc_dom_control.py', 'vif_stats', '1', '0').stdout, /vif1\.0\s+[1-9]\d*\s/);
  t.match(wv('top', '-b', '-n', '1', '-d', '0.1').stdout, /VIFS\s+NET_TX\s+NET_TKiB\s+NET_RX\s+NET_RKiB\s+NET_DROP\n[\s\S]*\bweb\s+1\s.*\s1\s+[1-9]\d*\s+\d+\s+[1-9]\d*\s+\d+\s+0\s/);

  const att = wv('network-attach', 'web', 'ip=169.254.3.1', '--json');
  t.equal(att.status, 0, att.stderr);
  t.same((JSON.parse(att.stdout) as Vif).name, 'vif1.1');
  t.match(wv('network-detach', 'web', 'vif1.1').stdout, /vif1\.1 detached from domain 1/);
  t.same(vifs('web').map((v) => v.name), ['vif1.0']);

  // Bad input: each is an error on stderr with a non-zero exit.
  const cases: Array<[string[], RegExp]> = [
    [['network-attach', 'web', 'ip=169.254.1.2'], /address 169\.254\.1\.2 is already in use by vif2\.0/],
    [['network-attach', 'web', 'ip=300.1.1.1'], /"300\.1\.1\.1" is not an IPv4 address/],
    [['network-attach', 'cli', 'ip=169.254.1.9'], /domain 2 \(cli\) is shutdown; a vif can be attached only to a live domain/],
    [['vif-rate', 'web', '0', 'fast'], /expected RATE\/s/],
    [['vif-addip', 'web', '5', '169.254.9.9'], /domain 1 has no vif 5 \(it has vif1\.0\)/],
    [['network-detach', 'nobody', '0'], /no domain named "nobody"/],
    [['compat', 'xc_dom_control.py', 'vif_setsched', '1', '0', '100'], /expected a domain, a vif, bytes and usecs/],
  ];
  for (const [args, why] of cases) {
    const r = wv(...args);
    t.not(r.status, 0, args.join(' '));
    t.match(r.stderr, why, args.join(' '));
  }
  // The CD's xen_nat_enable: domain 1's port 80 at 127.0.0.1:8001 (22 at 2201); real HTTP from the host.
  const en = wv('nat', 'enable', 'web', '--json');
  t.equal(en.status, 0, en.stderr);
  const r = JSON.parse(en.stdout) as { forwards: Array<{ host: string; port: number; target: string }>; failed: string[] };
  const web80 = r.forwards.find((f) => f.port === 8001);
  if (web80) {
    t.equal(web80.target, 'domain 1 port 80');
    const page = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: 8001, path: '/' }, (res) => { let b = ''; res.on('data', (d) => { b += d; }); res.on('end', () => resolve(b)); }).on('error', reject);
    });
    t.match(page, /Served by domain 1 \(web\)/, 'the page came through the forward');
  } else {
    t.match(r.failed.join('\n'), /8001/, 'port 8001 was taken on this host: reported, not fatal');
  }
  t.match(wv('nat', 'list').stdout, /tcp 127\.0\.0\.1:8001 -> /);
  const udp = wv('nat', 'forward', '--udp', '127.0.0.1:0', 'web:7', '--json');
  t.equal(udp.status, 0, udp.stderr);
  const uport = (JSON.parse(udp.stdout) as { port: number }).port;
  const echoed = await new Promise<string>((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => { s.close(); reject(new Error('no UDP echo')); }, 10_000);
    s.on('message', (m) => { clearTimeout(timer); s.close(); resolve(m.toString()); });
    s.send('hello over udp', uport, '127.0.0.1');
  });
  t.equal(echoed, 'hello over udp', 'a UDP forward made with wv reaches netd\'s UDP echo');
  t.match(wv('nat', 'list').stdout, /udp 127\.0\.0\.1:\d+ -> domain 1 udp port 7/);
  const both = wv('nat', 'enable');
  t.not(both.status, 0);
  t.match(both.stderr, /give a domain, or --all/);
  writeFileSync(join(dir, 'bad.cfg'), `kernel = "netd"\nvif = [ 'ip=169.254.1.7,speed=9' ]\n`);
  const bad = wv('create', '-f', join(dir, 'bad.cfg'));
  t.not(bad.status, 0);
  t.match(bad.stderr, /bad\.cfg:2:1: .*"speed" is not a vif setting/);
});
