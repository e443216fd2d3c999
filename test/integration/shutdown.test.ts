import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { spinner, until } from '../helpers/wat.ts';

t.test('a guest that listens for the shutdown virq stops with the reason asked', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: guestPath('ticker'), memory: 1, cmdline: 'count=1000 period=50', onReboot: 'preserve' });
  t.ok(await until(() => dom.consoleText().includes('tick 2')));
  const t0 = performance.now();
  const exit = await hv.shutdown(dom.id, { reason: 'reboot', timeoutMs: 5000 });
  t.same(exit, { reason: 'reboot' });
  t.ok(performance.now() - t0 < 1000, 'it stopped well before the timeout');
  t.match(dom.consoleText(), /ticker: shutdown requested after \d+ ticks/);
  t.match(hv.dmesg().join('\n'), /reboot requested, destroy in 5000 ms/);
});

t.test('a guest that ignores it is destroyed after the timeout', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: spinner(), memory: 1 });
  // Time from when it runs (a new hypervisor's CPU threads take a moment to start).
  t.ok(await until(() => dom.cpuTimeNs > 0), 'it is running');
  const t0 = performance.now();
  const exit = await hv.shutdown(dom.id, { timeoutMs: 200 });
  const took = performance.now() - t0;
  t.same(exit, { reason: 'destroyed', crash: undefined });
  t.ok(took >= 195 && took < 2000, `destroyed after ${took.toFixed(0)} ms`);
  t.match(hv.dmesg().join('\n'), /did not shut down within 200 ms: destroying it/);
  t.equal(hv.kernel.budget.usedBytes, 0);
});

t.test('bad shutdown requests are refused', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: spinner(), memory: 1 });
  await t.rejects(hv.shutdown(dom.id, { reason: 'crash' as never }), { code: 'WV_ERR_INVALID_ARGUMENT' });
  await t.rejects(hv.shutdown(dom.id, { timeoutMs: 0 }), { code: 'WV_ERR_INVALID_ARGUMENT' });
  await t.rejects(hv.shutdown(99), { code: 'WV_ERR_NO_SUCH_DOMAIN' });
  t.equal(dom.phase, 'running', 'the domain is untouched');
});
