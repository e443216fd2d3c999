/**
 * NatGateway on a bare switch (no domains): options are checked, its
 * addresses are claimed on the switch, forwards that cannot listen fail with
 * WV_ERR_NAT_FORWARD, and a forward to an address nobody owns refuses at once.
 * Relaying to and from real guests is in test/integration/nat.test.ts.
 */
import t from 'tap';
import { connect, createServer, type AddressInfo } from 'node:net';
import { VirtualSwitch } from '../switch.ts';
import { NatGateway } from './gateway.ts';

t.test('options are checked; the gateway claims its address and aliases on the switch', async (t) => {
  const sw = new VirtualSwitch();
  t.throws(() => new NatGateway({ switch: sw, allow: ['127.0.0.1/40'] }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /NAT allow "127\.0\.0\.1\/40"/ });
  t.throws(() => new NatGateway({ switch: sw, bufferSize: 3000 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
  t.throws(() => new NatGateway({ switch: sw, maxConnections: 1 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
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
