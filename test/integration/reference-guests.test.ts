import t from 'tap';
import { existsSync } from 'node:fs';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { until } from '../helpers/wat.ts';

t.test('hello prints its command line and start info, then powers off', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: guestPath('hello'), memory: 2, cmdline: 'root=/dev/xvda1 ro' });
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  const out = dom.consoleText();
  t.match(out, `hello from domain ${dom.id}`);
  t.match(out, 'cmdline: root=/dev/xvda1 ro');
  t.match(out, String(2 * 1024 * 1024), 'it reports its memory size');
});

for (const name of ['hello-wat', 'hello-c']) {
  const present = (() => { try { guestPath(name); return true; } catch { return false; } })();
  t.test(`${name} behaves like hello`, { skip: present ? false : `${name} is not built (clang/lld missing?)` }, async (t) => {
    const hv = new Hypervisor({ cpus: 1 });
    t.teardown(() => hv.close());
    const dom = await hv.createDomain({ image: guestPath(name), memory: 2, cmdline: 'lang=neutral' });
    t.same(await dom.waitForExit(), { reason: 'poweroff' });
    t.match(dom.consoleText(), `hello from domain ${dom.id}`);
    t.match(dom.consoleText(), 'cmdline: lang=neutral');
  });
}

t.test('crash traps with a backtrace naming its functions', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: guestPath('crash'), memory: 1 });
  const exit = await dom.waitForExit();
  t.equal(exit.reason, 'crash');
  t.match(dom.consoleText(), 'about to crash');
  t.ok((exit.crash?.backtrace.length ?? 0) >= 2, 'a backtrace with several frames');
  t.ok(exit.crash?.backtrace.every((f) => !/^func\[/.test(f.func)), 'every frame has a name');
});

t.test('a ticker beside a spinner on one CPU keeps its timing within 50 ms', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const spin = await hv.createDomain({ image: guestPath('spin'), memory: 1 });
  t.ok(await until(() => spin.cpuTimeNs > 20e6), 'the spinner is burning CPU');
  const period = 100;
  const count = 10;
  const ticker = await hv.createDomain({ image: guestPath('ticker'), memory: 1, cmdline: `count=${count} period=${period}` });
  const at: number[] = [];
  ticker.onConsole((b) => {
    const n = new TextDecoder().decode(b).split('\n').filter((l) => l.startsWith('tick')).length;
    for (let i = 0; i < n; i++) at.push(performance.now());
  });
  t.same(await ticker.waitForExit(), { reason: 'poweroff' });
  t.equal(at.length, count, 'every tick arrived');
  const late = at.map((time, i) => Math.abs(time - at[0]! - i * period));
  t.ok(Math.max(...late) <= 50, `worst deviation from schedule ${Math.max(...late).toFixed(1)} ms`);
  t.equal(spin.phase, 'running', 'the spinner is still running');
  t.ok(spin.cpuTimeNs > 0.5e9, 'and got most of the CPU meanwhile');
  await spin.destroy();
});

t.test('the reference guests are all built', async (t) => {
  for (const g of ['hello', 'ticker', 'spin', 'crash', 'hello-wat']) t.ok(existsSync(guestPath(g)), g);
});
