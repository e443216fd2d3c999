import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { spinner, ponger, timedPinger, until, wat, MEM, SHUTDOWN } from '../helpers/wat.ts';

t.test('two spinning domains with mcuadv 1:3 on one CPU share it 3:1 within 10 %', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const heavy = await hv.createDomain({ image: spinner(), memory: 1, paused: true, sched: { mcuadv: 1 } });
  const light = await hv.createDomain({ image: spinner(), memory: 1, paused: true, sched: { mcuadv: 3 } });
  await heavy.unpause();
  await light.unpause();
  t.ok(await until(() => heavy.cpuTimeNs > 0 && light.cpuTimeNs > 0), 'both run');
  const h0 = heavy.cpuTimeNs;
  const l0 = light.cpuTimeNs;
  await new Promise((r) => setTimeout(r, 2000));
  const ratio = (heavy.cpuTimeNs - h0) / (light.cpuTimeNs - l0);
  t.ok(Math.abs(ratio - 3) <= 0.3, `CPU time ratio ${ratio.toFixed(2)} (want 3 +- 10 %)`);
  t.same(hv.sched(heavy.id), { mcuadv: 1, warp: 0, warpl: 0, warpu: 0 });
  // Changed at run time, the shares follow.
  hv.setSched(light.id, { mcuadv: 1 });
  await new Promise((r) => setTimeout(r, 300));
  const h1 = heavy.cpuTimeNs;
  const l1 = light.cpuTimeNs;
  await new Promise((r) => setTimeout(r, 1000));
  const even = (heavy.cpuTimeNs - h1) / (light.cpuTimeNs - l1);
  t.ok(Math.abs(even - 1) <= 0.15, `after cpu_bvtset to 1:1 the ratio is ${even.toFixed(2)}`);
});

t.test('warped domains answer events within a slice while another spins', async (t) => {
  const hv = new Hypervisor({ cpus: 1, sliceMs: 10 });
  t.teardown(() => hv.close());
  // The spinner has a much larger weight: without a warp, the light domains'
  // virtual time runs ahead of it and they wait for its slice to end.
  const warp = { mcuadv: 100, warp: 10_000_000, warpl: 0, warpu: 0 };
  await hv.createDomain({ image: spinner(), memory: 1, sched: { mcuadv: 1 } });
  const pong = await hv.createDomain({ image: ponger(), memory: 1, paused: true, sched: warp });
  const rounds = 200;
  const ping = await hv.createDomain({ image: timedPinger(rounds), memory: 1, paused: true, sched: warp, onPoweroff: 'preserve' });
  hv.connect(ping.id, pong.id);
  await pong.unpause();
  await ping.unpause();
  t.same(await ping.waitForExit(), { reason: 'poweroff' });
  const us = [...new Uint32Array(ping.memory!.buffer, 65536, rounds)].map((ns) => ns / 1000).sort((a, b) => a - b);
  const median = us[rounds / 2]!;
  const p95 = us[Math.floor(rounds * 0.95)]!;
  // Without the warp the median is a whole slice (10 ms): the light domains wait for the spinner.
  t.ok(median < 1_000, `median round trip ${median.toFixed(0)} us, well within a slice`);
  t.ok(p95 < 10_000, `95 % of round trips within one slice (p95 ${p95.toFixed(0)} us, worst ${us[rounds - 1]!.toFixed(0)} us)`);
});

t.test('bad scheduling parameters and CPUs are refused', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  await t.rejects(hv.createDomain({ image: spinner(), memory: 1, sched: { mcuadv: 0 } }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /mcuadv 0/ });
  await t.rejects(hv.createDomain({ image: spinner(), memory: 1, cpu: 3 }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /3 is not a CPU of this hypervisor \(0\.\.0\)/ });
  t.throws(() => hv.setSlice(0), { code: 'WV_ERR_INVALID_ARGUMENT' });
  t.equal(hv.list().length, 1, 'nothing was created');
});

t.test('nosmp: with one CPU every domain runs on CPU 0; with two, pinning is obeyed', async (t) => {
  const one = new Hypervisor({ cpus: 1 });
  const two = new Hypervisor({ cpus: 2 });
  t.teardown(async () => { await one.close(); await two.close(); });
  const a = await Promise.all([1, 2, 3].map(() => one.createDomain({ image: spinner(), memory: 1 })));
  t.same(a.map((d) => d.cpu), [0, 0, 0]);
  const b = await Promise.all([1, 2, 3].map(() => two.createDomain({ image: spinner(), memory: 1, cpu: 1 })));
  t.same(b.map((d) => d.cpu), [1, 1, 1]);
  t.same(two.list().filter((d) => d.id !== 0).map((d) => d.cpu), [1, 1, 1], 'list shows where each runs');
});

t.test('pincpu: a domain already on the CPU is pinned now; one elsewhere moves there at its next start', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  // Sleeps 300 ms, then reboots (shutdown reason 1).
  const rebooter = wat(`(module ${MEM} ${SHUTDOWN}
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (import "wasmvisor:hypercall/time@0.1.0" "monotonic-now" (func $now (result i64)))
    (func (export "start") (drop (call $block (i64.add (call $now) (i64.const 300000000)))) (drop (call $shutdown (i32.const 1)))))`);
  const d = await hv.createDomain({ image: rebooter, name: 'pinme', memory: 1, cpu: 0, onReboot: 'restart' });
  t.same(hv.pin('pinme', 0), { cpu: 0, pinned: 0, effective: 'now' });
  t.same(hv.pin(d.id, 1), { cpu: 0, pinned: 1, effective: 'next-start' });
  const row = hv.list().find((r) => r.id === d.id)!;
  t.equal(row.cpu, 0, 'still running on CPU 0');
  t.equal(row.pinned, 1, 'list shows the pin');
  t.throws(() => hv.pin(d.id, 2), { code: 'WV_ERR_INVALID_ARGUMENT', message: /2 is not a CPU of this hypervisor \(0\.\.1\)/ });
  t.throws(() => hv.pin(d.id, -1), { code: 'WV_ERR_INVALID_ARGUMENT' });
  t.throws(() => hv.pin(999, 0), { code: 'WV_ERR_NO_SUCH_DOMAIN' });
  // It reboots and is restarted by policy: the new domain starts on the pinned CPU.
  t.same(await d.waitForExit(), { reason: 'reboot' });
  const deadline = Date.now() + 5000;
  while (!hv.kernel.find('pinme') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const again = hv.domain('pinme');
  t.not(again.id, d.id);
  t.equal(again.cpu, 1, 'the restarted domain runs on CPU 1');
  await again.destroy();
});
