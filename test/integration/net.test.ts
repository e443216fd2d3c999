/**
 * Virtual networks end to end: netd and netclient reference guests on the
 * switch, through netfront, the vif handshake and the guest network stack.
 * Ping and HTTP between domains, anti-spoofing, unroutable and undelivered
 * frames, address clashes, hotplug, addresses and rates at run time.
 */
import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { until } from '../helpers/wat.ts';

t.test('two domains ping each other on 169.254.1.x and one fetches the other\'s page', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const srv = await hv.createDomain({ image: guestPath('netd'), name: 'srv', memory: 32, vifs: ['ip=169.254.1.1'] });
  t.ok(await until(() => srv.consoleText().includes('up on vif 0'), 30_000), 'the server is up before the client starts');
  const cli = await hv.createDomain({ image: guestPath('netclient'), name: 'cli', memory: 32, cmdline: 'target=169.254.1.1 count=3 wait=5000 ip=169.254.1.2::169.254.1.254:255.255.0.0::eth0:off', vifs: ['ip=169.254.1.2'], onPoweroff: 'preserve' });
  t.ok(await until(() => cli.consoleText().includes('fetched'), 30_000), cli.consoleText());
  t.match(srv.consoleText(), /netd: 169\.254\.1\.1 up on vif 0/);
  t.match(cli.consoleText(), /3 packets transmitted, 3 received/);
  t.match(cli.consoleText(), /64 bytes from 169\.254\.1\.1: icmp_seq=1 ttl=64/);
  t.match(cli.consoleText(), /HTTP\/1\.0 200 OK\r\n/);
  t.match(cli.consoleText(), /Served by domain \d+ \(srv\) at 169\.254\.1\.1 over its vif/);
  t.match(cli.consoleText(), /fetched \d+ bytes from http:\/\/169\.254\.1\.1:80\//);
  const [a, b] = hv.net.list();
  t.same([a!.name, a!.state, a!.ips, a!.mac], [`vif${srv.id}.0`, 'connected', ['169.254.1.1'], `00:16:3e:00:0${srv.id}:00`]);
  t.same([b!.name, b!.ips], [`vif${cli.id}.0`, ['169.254.1.2']]);
  t.ok(a!.stats.rxPackets >= 5 && a!.stats.txPackets >= 5, 'the server sent and received');
  t.equal(a!.stats.spoofed + a!.stats.malformed + a!.stats.dropped, 0);
  // The switch answers ARP requests itself: they are sent but not forwarded, and its replies are received but never sent.
  t.equal(b!.stats.txBytes - b!.stats.arpReplies * 42, a!.stats.rxBytes - a!.stats.arpReplies * 42, 'what one sent the other received');
  t.equal(hv.store.read(0, `/local/domain/0/backend/vif/${srv.id}/0/ip`), '169.254.1.1');
});

t.test('a guest that sends from an address that is not its own is not heard (anti-spoofing)', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const srv = await hv.createDomain({ image: guestPath('netd'), memory: 32, vifs: ['ip=169.254.1.1'] });
  t.ok(await until(() => srv.consoleText().includes('up on vif 0'), 30_000));
  // Its vif is 169.254.1.2, but it claims 169.254.1.66.
  const liar = await hv.createDomain({ image: guestPath('netclient'), memory: 32, cmdline: 'target=169.254.1.1 count=2 wait=300 ip=169.254.1.66:::255.255.0.0::eth0:off', vifs: ['ip=169.254.1.2'] });
  t.ok(await until(() => liar.consoleText().includes('2 packets transmitted'), 20_000), liar.consoleText());
  t.match(liar.consoleText(), /2 packets transmitted, 0 received/);
  const [, v] = hv.net.list();
  t.ok(v!.stats.spoofed >= 1, `spoofed frames counted (${v!.stats.spoofed})`);
  t.equal(hv.net.list(srv.id)[0]!.stats.rxPackets, 0, 'nothing reached the server');
});

t.test('frames to an address nobody has, and to a domain with no netfront, are dropped and counted', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const deaf = await hv.createDomain({ image: guestPath('echo'), name: 'deaf', memory: 4, vifs: ['ip=169.254.1.9'] });
  const cli = await hv.createDomain({ image: guestPath('netclient'), memory: 32, cmdline: 'target=169.254.1.9 count=2 wait=300', vifs: ['ip=169.254.1.2'] });
  t.ok(await until(() => cli.consoleText().includes('2 packets transmitted'), 20_000));
  t.match(cli.consoleText(), /0 received/);
  const d = hv.net.list(deaf.id)[0]!;
  t.equal(d.frontendState, 'initialising', 'the echo guest never connected its vif');
  t.ok(d.stats.dropped >= 2, `frames to it were dropped (${d.stats.dropped})`);
  const lonely = await hv.createDomain({ image: guestPath('netclient'), memory: 32, cmdline: 'target=169.254.9.9 count=1 wait=300', vifs: ['ip=169.254.1.3'] });
  t.ok(await until(() => lonely.consoleText().includes('1 packets transmitted'), 20_000));
  t.ok(hv.net.list(lonely.id)[0]!.stats.unroutable >= 1, 'an ARP request for nobody is unroutable');
});

t.test('addresses are unique on the switch; vifs attach, change and detach at run time', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const a = await hv.createDomain({ image: guestPath('netd'), name: 'a', memory: 32, vifs: ['ip=169.254.1.1'] });
  await t.rejects(hv.createDomain({ image: guestPath('netd'), name: 'b', memory: 32, vifs: ['ip=169.254.1.1'] }),
    { code: 'WV_ERR_NET_ADDRESS_IN_USE', message: /address 169\.254\.1\.1 is already in use by vif\d+\.0/ });
  t.same(hv.list().map((d) => d.name), ['Domain-0', 'a'], 'the refused domain is gone');
  await t.rejects(hv.createDomain({ image: guestPath('netd'), memory: 32, vifs: ['ip=1.2.3'] }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /"1\.2\.3" is not an IPv4 address/ });
  t.ok(await until(() => a.consoleText().includes('up on vif 0'), 30_000));
  t.equal(hv.net.list(a.id)[0]?.state, 'connected');
  const extra = hv.net.attach(a.id, 'ip=169.254.2.1,mac=00:16:3e:aa:bb:cc,rate=1MB/s');
  t.same([extra.name, extra.mac, extra.ips, extra.rate], [`vif${a.id}.1`, '00:16:3e:aa:bb:cc', ['169.254.2.1'], { bytes: 50000, usecs: 50000 }]);
  t.equal(extra.state, 'init-wait', 'netd only uses vif 0');
  t.same(hv.net.addAddress(a.id, 0, '169.254.1.100').ips, ['169.254.1.1', '169.254.1.100']);
  t.equal(hv.store.read(0, `/local/domain/0/backend/vif/${a.id}/0/ip`), '169.254.1.1 169.254.1.100');
  t.throws(() => hv.net.addAddress(a.id, 1, '169.254.1.100'), { code: 'WV_ERR_NET_ADDRESS_IN_USE' });
  t.same(hv.net.setRate(a.id, `vif${a.id}.0`, { bytes: 1000, usecs: 1000 }).rate, { bytes: 1000, usecs: 1000 });
  t.throws(() => hv.net.setRate(a.id, 7, { bytes: 1, usecs: 1 }), { code: 'WV_ERR_NET_DEVICE', message: /has no vif 7 \(it has vif\d+\.0, vif\d+\.1\)/ });
  await hv.net.detach(a.id, 1);
  try {
    await hv.net.detach(a.id, 0);
  } catch (err) {
    t.fail(`detach: ${(err as Error).message}\nconsole: ${a.consoleText()}\nphase: ${a.phase}\n${hv.dmesg().slice(-15).join('\n')}`);
  }
  t.ok(await until(() => a.consoleText().includes('vif 0 released')), a.consoleText());
  t.same(hv.net.list(a.id), []);
  t.equal(hv.net.switch.owner('169.254.1.1'), undefined, 'its addresses are free again');
});

t.test('a rate-limited vif sends at its limit (within 10%), set at create and changed at run time', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const sink = await hv.createDomain({ image: guestPath('netd'), memory: 32, vifs: ['ip=169.254.1.1'] });
  t.ok(await until(() => sink.consoleText().includes('up on vif 0'), 30_000));
  const measure = async (rate: string | { bytes: number; usecs: number }, mib: number): Promise<number> => {
    const cli = await hv.createDomain({ image: guestPath('netclient'), memory: 32, cmdline: `target=169.254.1.1 bulk=${mib}`, vifs: [typeof rate === 'string' ? `ip=169.254.1.2,rate=${rate}` : 'ip=169.254.1.2'], onPoweroff: 'preserve' });
    if (typeof rate !== 'string') hv.net.setRate(cli.id, 0, rate);
    t.ok(await until(() => /sent \d+ bytes in \d+ us/.test(cli.consoleText()), 60_000), cli.consoleText());
    const us = Number(/sent \d+ bytes in (\d+) us/.exec(cli.consoleText())![1]);
    const v = hv.net.list(cli.id)[0]!;
    t.ok(v.stats.delayed > 0, 'frames were held back by the limit');
    await hv.destroy(cli.id);
    return v.stats.txBytes / (us / 1e6); // frame bytes per second
  };
  const limited = await measure('8Mb/s', 2); // 1,000,000 bytes/s
  t.ok(limited > 0.9e6 && limited < 1.1e6, `1 MB/s limit: sent ${(limited / 1e6).toFixed(3)} MB/s`);
  const changed = await measure({ bytes: 100_000, usecs: 50_000 }, 3); // 2,000,000 bytes/s, set after create
  t.ok(changed > 1.8e6 && changed < 2.2e6, `2 MB/s limit set at run time: sent ${(changed / 1e6).toFixed(3)} MB/s`);
});

t.test('a flooding guest (ARP storm, spoofed, malformed, and never reading its ring) does not stop two others talking', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const srv = await hv.createDomain({ image: guestPath('netd'), name: 'srv', memory: 32, vifs: ['ip=169.254.1.1'] });
  t.ok(await until(() => srv.consoleText().includes('up on vif 0'), 30_000));
  const bad = await hv.createDomain({ image: guestPath('netclient'), name: 'flood', memory: 32, cmdline: 'target=169.254.1.1 flood=30000', vifs: ['ip=169.254.1.3'] });
  t.ok(await until(() => bad.consoleText().includes('flooding'), 20_000), bad.consoleText());
  const during = hv.net.list(bad.id)[0]!.stats.txPackets;
  const cli = await hv.createDomain({ image: guestPath('netclient'), name: 'cli', memory: 32, cmdline: 'target=169.254.1.1 count=3 wait=5000', vifs: ['ip=169.254.1.2'], onPoweroff: 'preserve' });
  t.ok(await until(() => cli.consoleText().includes('fetched'), 30_000), cli.consoleText());
  t.notMatch(bad.consoleText(), /flooded/, 'the flood was still going while the others talked');
  // The flood aims at the server, whose receive ring it fills: a ping may be lost there, but the service answers.
  t.match(cli.consoleText(), /3 packets transmitted, [123] received/);
  t.match(cli.consoleText(), /HTTP\/1\.0 200 OK/);
  const v = hv.net.list(bad.id)[0]!.stats;
  t.ok(v.txPackets > during, 'the flooder kept sending');
  t.ok(v.unroutable > 100, `its ARP storm reached nobody (${v.unroutable} unroutable)`);
  t.ok(v.spoofed > 100, `its spoofed datagrams were dropped (${v.spoofed})`);
  t.ok(v.malformed > 100, `its short frames were dropped (${v.malformed})`);
  t.ok(v.dropped > 0, `the echoes it never reads were dropped and counted on it (${v.dropped})`);
  t.equal(hv.net.list(cli.id)[0]!.stats.dropped, 0, 'the client lost nothing');
  // The flooder stops at once when destroyed, and its address is free again.
  await hv.destroy(bad.id);
  t.equal(hv.net.switch.owner('169.254.1.3'), undefined);
  t.equal(srv.phase === 'running' || srv.phase === 'blocked', true, `the server is still up (${srv.phase})`);
});
