import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import type { Domain } from '../../runtime/index.ts';
import { printer, idler, spinner, wat, until, MEM, CONSOLE } from '../helpers/wat.ts';

const MiB = 1024 * 1024;
const text = (d: Domain) => d.consoleText();

t.test('shutdown reasons reach the host', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const reasons = ['poweroff', 'reboot', 'suspend', 'crash'] as const;
  const doms = await Promise.all(reasons.map((_, code) => hv.createDomain({ image: printer(`bye ${code}\n`, code), memory: 1, onReboot: 'preserve', onPoweroff: 'preserve', onCrash: 'preserve' })));
  const exits = await Promise.all(doms.map((d) => d.waitForExit()));
  t.same(exits.map((e) => e.reason), [...reasons]);
  t.same(doms.map(text), ['bye 0\n', 'bye 1\n', 'bye 2\n', 'bye 3\n']);
  t.same(doms.map((d) => d.phase), ['shutdown', 'shutdown', 'shutdown', 'shutdown'], 'preserved domains stay listed as shut down');
  t.equal(hv.list().length, 5);
  for (const d of doms) await d.destroy();
  t.equal(hv.list().length, 1, 'only domain 0 is left');
  t.equal(hv.kernel.budget.usedBytes, 0);
});

t.test('lifecycle: building -> running -> blocked -> paused -> running -> dying', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: idler(), memory: 1 });
  const seen: string[] = [];
  d.onPhase(({ from, to }) => seen.push(`${from}->${to}`));
  t.ok(await until(() => d.phase === 'blocked'));
  t.equal(text(d), 'idle\n');
  await d.pause();
  t.equal(d.phase, 'paused');
  await d.unpause();
  t.equal(d.phase, 'blocked', 'unpause returns to the phase it had');
  await d.destroy();
  t.equal(d.phase, 'dying');
  // running <-> blocked is read from shared memory, not announced (it changes at every event).
  t.same(seen, ['running->paused', 'paused->running', 'running->dying']);
  t.same(d.exit, { reason: 'destroyed', crash: undefined });
});

t.test('an invalid shutdown code is refused with -EINVAL and the guest goes on', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const img = wat(`(module ${MEM} ${CONSOLE}
    (import "wasmvisor:hypercall/sched@0.1.0" "shutdown" (func $shutdown (param i32) (result i32)))
    (func (export "start")
      (i32.store (i32.const 8192) (i32.add (i32.const 0x30) (i32.sub (i32.const 0) (call $shutdown (i32.const 99)))))
      (drop (call $write (i32.const 8192) (i32.const 2)))
      (drop (call $write (i32.const 0x7fffffff) (i32.const 10)))
      (i32.store (i32.const 8192) (i32.add (i32.const 0x30) (i32.sub (i32.const 0) (call $write (i32.const 0xfffffff0) (i32.const 32)))))
      (drop (call $write (i32.const 8192) (i32.const 1)))
      (drop (call $shutdown (i32.const 0)))))`);
  const d = await hv.createDomain({ image: img, memory: 1 });
  t.same(await d.waitForExit(), { reason: 'poweroff' });
  // -22 (EINVAL) -> '0' + 22 = 'F'; then -14 (EFAULT) for the wild pointer -> '>'
  t.equal(text(d).slice(0, 1), String.fromCharCode(0x30 + 22));
  t.equal(text(d).slice(-1), String.fromCharCode(0x30 + 14));
});

t.test('a crashing domain beside a healthy one', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const crasher = wat(`(module ${MEM}
    (func $inner unreachable)
    (func $outer (call $inner))
    (func (export "start") (call $outer)))`);
  const lines = wat(`(module ${MEM} ${CONSOLE}
    (import "wasmvisor:hypercall/sched@0.1.0" "yield" (func $yield (result i32)))
    (data (i32.const 8192) "line\\n")
    (func (export "start") (local i32)
      (loop $l
        (drop (call $write (i32.const 8192) (i32.const 5)))
        (drop (call $yield))
        (local.set 0 (i32.add (local.get 0) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get 0) (i32.const 50))))))`);
  const healthy = await hv.createDomain({ image: lines, memory: 1 });
  const bad = await hv.createDomain({ image: crasher, memory: 1 });
  const crash = await bad.waitForExit();
  t.equal(crash.reason, 'crash');
  t.match(crash.crash?.reason, /unreachable/);
  t.same(crash.crash?.backtrace.slice(0, 2).map((f) => f.func), ['inner', 'outer'], 'the backtrace names the functions');
  t.same(await healthy.waitForExit(), { reason: 'poweroff' });
  t.equal(text(healthy), 'line\n'.repeat(50), 'the healthy domain finished its output');
  t.match(hv.dmesg().join('\n'), /crashed: trap: unreachable at inner <- outer/);
});

t.test('a spinning domain is paused and destroyed promptly and frees its memory', async (t) => {
  const hv = new Hypervisor({ cpus: 1, memoryBytes: 64 * MiB, dom0MemoryBytes: 16 * MiB });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: spinner(), memory: 32 });
  t.ok(await until(() => d.cpuTimeNs > 20e6), 'it has been running');
  await d.pause();
  const cpu = d.cpuTimeNs;
  await new Promise((r) => setTimeout(r, 50));
  t.equal(d.cpuTimeNs, cpu, 'a paused domain uses no CPU');
  await d.unpause();
  t.ok(await until(() => d.cpuTimeNs > cpu), 'it runs again after unpause');
  t.equal(hv.kernel.budget.freeBytes, 16 * MiB);
  await d.destroy();
  t.equal(d.exit?.reason, 'destroyed');
  t.equal(hv.kernel.budget.freeBytes, 48 * MiB, 'its memory is back in the budget');
});

t.test('the memory budget refuses overcommit through the API', async (t) => {
  const hv = new Hypervisor({ cpus: 1, memoryBytes: 40 * MiB, dom0MemoryBytes: 8 * MiB });
  t.teardown(() => hv.close());
  await hv.createDomain({ image: idler(), memory: 24 });
  await t.rejects(hv.createDomain({ image: idler(), memory: 16 }), {
    code: 'WV_ERR_NO_MEMORY',
    message: /needs 16 MiB, 8 MiB of 32 MiB is free/,
  });
  t.equal(hv.list().length, 2, 'the refused domain does not exist');
});

t.test('1,000 domains alive at once, then shut down', async (t) => {
  const hv = new Hypervisor({ memoryBytes: 4096 * MiB, dom0MemoryBytes: 512 * MiB });
  t.teardown(() => hv.close());
  const image = await hv.loadImage(idler());
  const doms: Domain[] = [];
  for (let i = 0; i < 1000; i++) doms.push(await hv.createDomain({ image, memory: 1 }));
  const deadline = Date.now() + 30_000;
  while (doms.some((d) => d.phase !== 'blocked' || d.consoleText() === '') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(doms.filter((d) => d.phase === 'blocked').length, 1000, 'all 1,000 are alive and idle');
  t.equal(doms.filter((d) => d.consoleText() === 'idle\n').length, 1000, 'each printed once');
  t.equal(hv.list().length, 1001);
  t.same(new Set(doms.map((d) => d.cpu)).size, hv.cpus, 'spread over every CPU');
  await Promise.all(doms.map((d) => d.destroy()));
  t.equal(hv.list().length, 1);
  t.equal(hv.kernel.budget.usedBytes, 0);
});

t.test('two hypervisors in one process do not share domains', async (t) => {
  const a = new Hypervisor({ cpus: 1 });
  const b = new Hypervisor({ cpus: 1 });
  t.teardown(async () => { await a.close(); await b.close(); });
  const da = await a.createDomain({ image: printer('from a\n'), name: 'same', memory: 1, onPoweroff: 'preserve' });
  const db = await b.createDomain({ image: printer('from b\n'), name: 'same', memory: 1, onPoweroff: 'preserve' });
  await Promise.all([da.waitForExit(), db.waitForExit()]);
  t.equal(da.id, 1);
  t.equal(db.id, 1, 'each has its own id space');
  t.equal(a.domain('same').consoleText(), 'from a\n');
  t.equal(b.domain('same').consoleText(), 'from b\n');
  await a.close();
  t.equal(b.domain('same').phase, 'shutdown', 'closing one leaves the other');
});

t.test('a closed hypervisor refuses work', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  await hv.close();
  await t.rejects(hv.createDomain({ image: idler() }), { code: 'WV_ERR_CLOSED' });
});

t.test('pause takes under 10 ms and destroy under 50 ms, even mid-loop', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: spinner(), memory: 1 });
  t.ok(await until(() => d.cpuTimeNs > 20e6), 'it is spinning');
  // The median of several pauses: one sample can meet a garbage collection.
  const pauses: number[] = [];
  for (let i = 0; i < 9; i++) {
    const t0 = performance.now();
    await d.pause();
    pauses.push(performance.now() - t0);
    const cpu = d.cpuTimeNs;
    await d.unpause();
    t.ok(await until(() => d.cpuTimeNs > cpu + 2e6), 'spinning again');
  }
  const median = pauses.sort((a, b) => a - b)[4]!;
  t.ok(median < 10, `paused in ${median.toFixed(2)} ms (median of 9; all: ${pauses.map((p) => p.toFixed(1)).join(', ')})`);
  const t0 = performance.now();
  await d.destroy();
  const destroyMs = performance.now() - t0;
  t.ok(destroyMs < 50, `destroyed in ${destroyMs.toFixed(2)} ms`);
});
