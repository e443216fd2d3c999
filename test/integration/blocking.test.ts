import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { wat, MEM, CONSOLE, SHUTDOWN, YIELD } from '../helpers/wat.ts';

t.test('the timer virq fires on time and wakes a blocked domain', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  // Bind the timer virq, arm the timer 30 ms ahead, block without a deadline,
  // then store: the port, block's result, the pending bitmap word and the ns waited.
  const img = wat(`(module ${MEM} ${SHUTDOWN}
    (import "wasmvisor:hypercall/evtchn@0.1.0" "bind-virq" (func $bind_virq (param i32) (result i32)))
    (import "wasmvisor:hypercall/evtchn@0.1.0" "pending" (func $pending (param i32 i32) (result i32)))
    (import "wasmvisor:hypercall/time@0.1.0" "monotonic-now" (func $now (result i64)))
    (import "wasmvisor:hypercall/time@0.1.0" "set-timer" (func $set_timer (param i64) (result i32)))
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (func (export "start") (local $t0 i64)
      (i32.store (i32.const 8192) (call $bind_virq (i32.const 0)))
      (local.set $t0 (call $now))
      (drop (call $set_timer (i64.add (local.get $t0) (i64.const 30000000))))
      (i32.store (i32.const 8196) (call $block (i64.const 0)))
      (drop (call $pending (i32.const 8200) (i32.const 8)))
      (i64.store (i32.const 8240) (i64.sub (call $now) (local.get $t0)))
      (drop (call $shutdown (i32.const 0)))))`);
  const dom = await hv.createDomain({ image: img, memory: 1, onPoweroff: 'preserve' });
  await dom.waitForExit();
  const v = new DataView(dom.memory!.buffer);
  const port = v.getInt32(8192, true);
  t.ok(port > 0, 'the timer virq was bound');
  t.equal(v.getInt32(8196, true), 0, 'block returned for an event');
  t.equal(v.getUint32(8200, true), 1 << port, 'the timer port is the pending one');
  const waitedMs = Number(v.getBigUint64(8240, true)) / 1e6;
  t.ok(waitedMs >= 29 && waitedMs < 80, `woke after ${waitedMs.toFixed(1)} ms for a 30 ms timer`);
  t.ok(dom.cpuTimeNs < 20e6, 'and used almost no CPU while blocked');
});

t.test('block with a deadline returns 1 when nothing happens', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const img = wat(`(module ${MEM} ${SHUTDOWN}
    (import "wasmvisor:hypercall/time@0.1.0" "monotonic-now" (func $now (result i64)))
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (func (export "start")
      (i32.store (i32.const 8192) (call $block (i64.add (call $now) (i64.const 20000000))))
      (i32.store (i32.const 8196) (call $block (i64.const 1)))
      (drop (call $shutdown (i32.const 0)))))`);
  const dom = await hv.createDomain({ image: img, memory: 1, onPoweroff: 'preserve' });
  await dom.waitForExit();
  const v = new DataView(dom.memory!.buffer);
  t.equal(v.getInt32(8192, true), 1, 'the deadline passed');
  t.equal(v.getInt32(8196, true), 1, 'a deadline already in the past returns at once');
});

t.test('yield gives the CPU to the next domain', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const yielder = (letter: string) => wat(`(module ${MEM} ${CONSOLE} ${SHUTDOWN} ${YIELD}
    (data (i32.const 8192) "${letter}")
    (func (export "start") (local $i i32)
      (loop $l
        (drop (call $write (i32.const 8192) (i32.const 1)))
        (drop (call $yield))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 5))))
      (drop (call $shutdown (i32.const 0)))))`);
  const seen: string[] = [];
  const a = await hv.createDomain({ image: yielder('a'), memory: 1, paused: true });
  const b = await hv.createDomain({ image: yielder('b'), memory: 1, paused: true });
  for (const d of [a, b]) d.onConsole((bytes) => seen.push(new TextDecoder().decode(bytes)));
  await a.unpause();
  await b.unpause();
  await Promise.all([a.waitForExit(), b.waitForExit()]);
  const s = seen.join('');
  t.equal(s.length, 10);
  t.ok(/abab|baba/.test(s), `the two alternate: ${s}`);
});
