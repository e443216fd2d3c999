// Regression: a domain created paused was parked before its first run and,
// once unpaused, was resumed instead of booted, so it never ran at all.
import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { printer } from '../helpers/wat.ts';

t.test('a domain created paused boots when unpaused', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: printer('booted\n'), memory: 1, paused: true });
  t.equal(dom.phase, 'paused');
  await new Promise((r) => setTimeout(r, 50));
  t.equal(dom.consoleText(), '', 'nothing ran while paused');
  await dom.unpause();
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  t.equal(dom.consoleText(), 'booted\n');
});
