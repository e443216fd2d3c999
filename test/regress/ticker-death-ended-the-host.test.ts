/**
 * The bench's density run ended the whole host process: at the address-space
 * limit the ticker thread ran out of heap, and its unhandled worker error
 * killed the process. A dead ticker is now logged and replaced, and guests
 * keep being preempted.
 */
import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { spinner, until } from '../helpers/wat.ts';

t.test('a dead ticker is replaced and a spinner still shares its CPU', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  await hv.killTickerForTest();
  t.ok(await until(() => hv.dmesg().some((l) => /ticker exited with code \d+; a new ticker took over/.test(l))), 'logged');
  // Two spinners on one CPU only both get time if ticks preempt them.
  const a = await hv.createDomain({ image: spinner(), memory: 1 });
  const b = await hv.createDomain({ image: spinner(), memory: 1 });
  t.ok(await until(() => a.cpuTimeNs > 50e6 && b.cpuTimeNs > 50e6, 5000), 'both spinners run: the new ticker preempts');
});
