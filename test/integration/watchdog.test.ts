import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { wat, MEM, SHUTDOWN } from '../helpers/wat.ts';

const WATCHDOG = '(import "wasmvisor:hypercall/sched@0.1.0" "watchdog" (func $watchdog (param i32) (result i32)))';
const BLOCK = '(import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))';
const NOW = '(import "wasmvisor:hypercall/time@0.1.0" "monotonic-now" (func $now (result i64)))';

/** Arms a 100 ms watchdog, then spins without petting it. */
const hung = wat(`(module ${MEM} ${WATCHDOG}
  (func (export "start") (local i32)
    (drop (call $watchdog (i32.const 100)))
    (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br $l))))`);

t.test('a domain that stops petting its watchdog is shut down with reason watchdog', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: hung, memory: 1 });
  const t0 = performance.now();
  const exit = await dom.waitForExit();
  const took = performance.now() - t0;
  t.same(exit, { reason: 'watchdog' });
  t.ok(took >= 90 && took < 2000, `after ${took.toFixed(0)} ms for a 100 ms watchdog`);
  t.match(hv.dmesg().join('\n'), /watchdog expired/);
  t.equal(hv.kernel.budget.usedBytes, 0, 'destroyed by default');
});

t.test('a domain that pets its watchdog runs to the end; -EINVAL for an absurd timeout', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  // Pet a 100 ms watchdog every 20 ms, 15 times (300 ms in all), then disarm and power off.
  const healthy = wat(`(module ${MEM} ${WATCHDOG} ${BLOCK} ${NOW} ${SHUTDOWN}
    (func (export "start") (local $i i32)
      (i32.store (i32.const 8192) (call $watchdog (i32.const 4000000)))
      (loop $l
        (drop (call $watchdog (i32.const 100)))
        (drop (call $block (i64.add (call $now) (i64.const 20000000))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 15))))
      (drop (call $watchdog (i32.const 0)))
      (drop (call $shutdown (i32.const 0)))))`);
  const dom = await hv.createDomain({ image: healthy, memory: 1, onPoweroff: 'preserve' });
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  t.equal(new DataView(dom.memory!.buffer).getInt32(8192, true), -22, 'more than an hour is refused');
});

t.test('by policy, a domain whose watchdog expired is restarted', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: hung, name: 'hung', memory: 1, onWatchdog: 'restart' });
  t.same(await dom.waitForExit(), { reason: 'watchdog' });
  const deadline = Date.now() + 5000;
  while (!hv.kernel.find('hung') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const again = hv.domain('hung');
  t.not(again.id, dom.id, 'a new domain with the same name');
  t.match(hv.dmesg().join('\n'), /hung\): restarting after watchdog/);
  await again.destroy();
});

t.test('the watchdog boot option arms every domain: one that never pets it is shut down, one that pets it lives', async (t) => {
  const hv = new Hypervisor({ boot: 'nosmp watchdog watchdog_timeout=0.15' });
  t.teardown(() => hv.close());
  t.equal(hv.cpus, 1, 'nosmp');
  t.equal(hv.watchdogMs, 150);
  // Spins without ever calling sched.watchdog.
  const spin = wat(`(module ${MEM} (func (export "start") (local i32)
    (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br $l))))`);
  // Pets every 30 ms for 400 ms (longer than the timeout), then powers off.
  const pet = wat(`(module ${MEM} ${WATCHDOG} ${BLOCK} ${NOW} ${SHUTDOWN}
    (func (export "start") (local $i i32)
      (loop $l
        (drop (call $watchdog (i32.const 150)))
        (drop (call $block (i64.add (call $now) (i64.const 30000000))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 13))))
      (drop (call $shutdown (i32.const 0)))))`);
  // Both images are loaded first, so the second one's load (binaryen, on this thread) does not run down the silent one's watchdog before the clock starts.
  const [spinImage, petImage] = await Promise.all([hv.loadImage(spin), hv.loadImage(pet)]);
  const a = await hv.createDomain({ image: spinImage, name: 'silent', memory: 1, onWatchdog: 'preserve' });
  const b = await hv.createDomain({ image: petImage, name: 'petting', memory: 1, onPoweroff: 'preserve' });
  const t0 = performance.now();
  t.same(await a.waitForExit(), { reason: 'watchdog' });
  const took = performance.now() - t0;
  t.ok(took >= 140 && took < 3000, `the silent one after ${took.toFixed(0)} ms`);
  t.same(await b.waitForExit(), { reason: 'poweroff' }, 'the petting one ran to its end');
  t.match(hv.dmesg().join('\n'), /silent\): watchdog expired/);
});

t.test('without the boot option a guest that never arms its watchdog is left alone', async (t) => {
  const hv = new Hypervisor({ boot: 'nosmp' });
  t.teardown(() => hv.close());
  t.equal(hv.watchdogMs, undefined);
  const quiet = wat(`(module ${MEM} ${BLOCK} ${NOW} ${SHUTDOWN}
    (func (export "start") (drop (call $block (i64.add (call $now) (i64.const 300000000)))) (drop (call $shutdown (i32.const 0)))))`);
  const d = await hv.createDomain({ image: quiet, memory: 1 });
  t.same(await d.waitForExit(), { reason: 'poweroff' });
});
