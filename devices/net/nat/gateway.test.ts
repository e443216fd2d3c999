/**
 * NatGateway on a bare switch (no domains): options are checked, its
 * addresses are claimed on the switch, forwards that cannot listen fail with
 * WV_ERR_NAT_FORWARD, and a forward to an address nobody owns refuses at once
 * (TCP and UDP).
 * Relaying to and from real guests is in test/integration/nat.test.ts.
 */
import t from 'tap';
import { connect, createServer, type AddressInfo } from 'node:net';
import { createSocket } from 'node:dgram';
import { VirtualSwitch } from '../switch.ts';
import { NatGateway } from './gateway.ts';

t.test('options are checked; the gateway claims its address and aliases on the switch', async (t) => {
  const sw = new VirtualSwitch();
  t.throws(() => new NatGateway({ switch: sw, allow: ['127.0.0.1/40'] }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /NAT allow "127\.0\.0\.1\/40"/ });
  t.throws(() => new NatGateway({ switch: sw, bufferSize: 3000 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
  t.throws(() => new NatGateway({ switch: sw, maxConnections: 1 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
  t.throws(() => new NatGateway({ switch: sw, maxUdpFlows: 0 }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /maxUdpFlows/ });
  t.throws(() => new NatGateway({ switch: sw, udpIdleMs: 1 }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /udpIdleMs/ });
  t.equal(sw.ports.length, 0, 'nothing was attached');
  sw.addPort({ name: 'vif1.0', mac: '00:16:3e:00:01:00', ips: ['10.0.0.1'], deliver: () => true });
  t.throws(() => new NatGateway({ switch: sw, address: '10.0.0.1', netmask: '255.0.0.0' }), { code: 'WV_ERR_NET_ADDRESS_IN_USE', message: /in use by vif1\.0/ });
  const nat = new NatGateway({ switch: sw, address: '10.0.0.254', netmask: '255.0.0.0', hostAliases: { '10.0.0.253': '127.0.0.1' } });
  t.teardown(() => nat.close());
  t.same([nat.port.gateway, nat.port.addresses, nat.port.mac], [true, ['10.0.0.254', '10.0.0.253'], '00:16:3e:ff:ff:fe']);
  t.equal(sw.owner('10.0.0.253')?.name, 'nat');
  t.equal(nat.connectionsInUse, 0);
  await nat.close();
  t.equal(sw.ports.length, 1, 'close leaves the switch');
});

t.test('a forward whose host port is taken fails; one to an address nobody owns refuses each connection', async (t) => {
  const sw = new VirtualSwitch();
  const logs: string[] = [];
  const nat = new NatGateway({ switch: sw, log: (_l, m) => logs.push(m) });
  t.teardown(() => nat.close());
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => busy.close());
  const port = (busy.address() as AddressInfo).port;
  await t.rejects(nat.forward({ port }, { ip: '169.254.1.1', port: 80 }), { code: 'WV_ERR_NAT_FORWARD', message: new RegExp(`127\\.0\\.0\\.1:${port} to 169\\.254\\.1\\.1:80: EADDRINUSE`) });
  await t.rejects(nat.forward({ port: 70000 }, { ip: '169.254.1.1', port: 80 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
  const f = await nat.forward({ port: 0 }, { ip: '169.254.1.1', port: 80 });
  t.same(nat.forwards.map((x) => x.target), ['169.254.1.1:80']);
  const closed = await new Promise<string>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: f.port });
    let how = 'closed';
    s.on('error', (e: NodeJS.ErrnoException) => { how = e.code ?? 'error'; });
    s.on('close', () => resolve(how));
  });
  t.ok(['closed', 'ECONNRESET'].includes(closed), `the host connection ended (${closed})`);
  t.same({ ...f.stats }, { open: 0, total: 0, refused: 1, reset: 0, bytesToGuest: 0, bytesFromGuest: 0 });
  t.match(logs.join('\n'), /NAT: refused 127\.0\.0\.1:\d+ -> 169\.254\.1\.1:80: nobody on the switch has 169\.254\.1\.1/);
  await f.close();
  t.same(nat.forwards, []);
});

t.test('UDP forwards: a taken host port fails; datagrams to an address nobody owns are refused, counted and logged', async (t) => {
  const sw = new VirtualSwitch();
  const logs: string[] = [];
  const nat = new NatGateway({ switch: sw, log: (_l, m) => logs.push(m) });
  t.teardown(() => nat.close());
  const busy = createSocket('udp4');
  await new Promise<void>((r) => busy.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => busy.close());
  const port = busy.address().port;
  await t.rejects(nat.forward({ port, protocol: 'udp' }, { ip: '169.254.1.1', port: 7 }), { code: 'WV_ERR_NAT_FORWARD', message: new RegExp(`udp 127\\.0\\.0\\.1:${port} to 169\\.254\\.1\\.1:7: EADDRINUSE`) });
  await t.rejects(nat.forward({ port: 0, protocol: 'sctp' as 'udp' }, { ip: '169.254.1.1', port: 7 }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /sctp/ });
  const f = await nat.forward({ port: 0, protocol: 'udp' }, { ip: '169.254.1.1', port: 7 });
  t.equal(f.protocol, 'udp');
  t.ok(f.port > 0);
  busy.send('hello', f.port, '127.0.0.1');
  busy.send('again', f.port, '127.0.0.1');
  const deadline = Date.now() + 5000;
  while (f.stats.refused < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.same({ ...f.stats }, { open: 0, total: 0, refused: 2, reset: 0, bytesToGuest: 0, bytesFromGuest: 0 });
  t.match(logs.join('\n'), /NAT: refused udp 127\.0\.0\.1:\d+ -> 169\.254\.1\.1:7: nobody on the switch has 169\.254\.1\.1/);
  t.same(nat.udpFlows, { outbound: 0, peers: 0 });
  await f.close();
  t.same(nat.forwards, []);
  // The host port is free again.
  const again = createSocket('udp4');
  await new Promise<void>((r) => again.bind(f.port, '127.0.0.1', () => r()));
  again.close();
  t.pass('rebound after close');
});
