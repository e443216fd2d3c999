import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { until } from '../helpers/wat.ts';

t.test('console input reaches the guest: echo answers each line and stops on quit', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: guestPath('echo'), name: 'echo', memory: 1, onPoweroff: 'preserve' });
  t.ok(await until(() => dom.consoleText().includes('ready')), 'it started');
  const enc = new TextEncoder();
  hv.consoleInput('echo', enc.encode('hello there\n'));
  t.ok(await until(() => dom.consoleText().includes('echo: hello there\n')), 'the line came back');
  // Split across writes, and two lines in one write.
  hv.consoleInput(dom.id, enc.encode('par'));
  hv.consoleInput(dom.id, enc.encode('ts\nsecond\n'));
  t.ok(await until(() => dom.consoleText().includes('echo: parts\necho: second\n')), 'reassembled in order');
  hv.consoleInput(dom.id, enc.encode('quit\n'));
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  t.throws(() => hv.consoleInput(dom.id, enc.encode('late\n')), { code: 'WV_ERR_BAD_PHASE' }, 'no input to a stopped domain');
  t.throws(() => hv.consoleInput('nobody', enc.encode('x')), { code: 'WV_ERR_NO_SUCH_DOMAIN' });
});

t.test('unread console input is bounded; a guest that never reads is not affected', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: guestPath('spin'), memory: 1 });
  const big = new Uint8Array(1 << 20).fill(65);
  for (let i = 0; i < 8; i++) hv.consoleInput(dom.id, big);
  t.ok(await until(() => dom.cpuTimeNs > 50e6), 'the domain keeps running');
  t.equal(dom.phase, 'running');
});
