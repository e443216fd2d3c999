import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { pinger, ponger, wat, until, CONSOLE, SHUTDOWN } from '../helpers/wat.ts';

t.test('an event channel round trip between two domains on different CPUs', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  const pong = await hv.createDomain({ image: ponger(), memory: 1, paused: true });
  const ping = await hv.createDomain({ image: pinger(1000), memory: 1, paused: true });
  t.not(pong.cpu, ping.cpu, 'they run on different CPUs');
  t.same(hv.connect(ping.id, pong.id), [1, 1]);
  await pong.unpause();
  const t0 = performance.now();
  await ping.unpause();
  t.same(await ping.waitForExit(), { reason: 'poweroff' }, '1000 round trips completed');
  t.comment(`${((performance.now() - t0) * 1000 / 1000).toFixed(1)} µs per round trip`);
  t.ok(await until(() => pong.phase === 'blocked'), 'the ponger waits for more, without burning CPU');
  const cpu = pong.cpuTimeNs;
  await new Promise((r) => setTimeout(r, 50));
  t.equal(pong.cpuTimeNs, cpu);
});

t.test('connect refuses a domain that does not exist', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const a = await hv.createDomain({ image: ponger(), memory: 1 });
  t.throws(() => hv.connect(a.id, 42), { code: 'WV_ERR_NO_SUCH_DOMAIN' });
});

t.test('grant copy between two guests, and a hostile one cannot touch a third', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  // The granter writes a message into page 3, grants it to its peer (port 1's remote) and notifies.
  const granter = wat(`(module (import "env" "memory" (memory 4 256 shared)) ${SHUTDOWN}
    (import "wasmvisor:hypercall/evtchn@0.1.0" "status" (func $status (param i32 i32) (result i32)))
    (import "wasmvisor:hypercall/evtchn@0.1.0" "send" (func $send (param i32) (result i32)))
    (import "wasmvisor:hypercall/grant@0.1.0" "grant-access" (func $grant (param i32 i32 i32) (result i32)))
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (data (i32.const 12288) "through a grant")
    (func (export "start")
      (drop (call $status (i32.const 1) (i32.const 8192)))
      (drop (call $grant (i32.load (i32.const 8196)) (i32.const 3) (i32.const 1)))
      (drop (call $send (i32.const 1)))
      (loop $forever (drop (call $block (i64.const 0))) (br $forever))))`);
  // The grantee waits, copies 15 bytes of gref 1 to 8192, prints them, tries to write (read-only), reports.
  const grantee = wat(`(module (import "env" "memory" (memory 4 256 shared)) ${CONSOLE} ${SHUTDOWN}
    (import "wasmvisor:hypercall/evtchn@0.1.0" "status" (func $status (param i32 i32) (result i32)))
    (import "wasmvisor:hypercall/grant@0.1.0" "copy-from" (func $copy_from (param i32 i32 i32 i32 i32) (result i32)))
    (import "wasmvisor:hypercall/grant@0.1.0" "copy-to" (func $copy_to (param i32 i32 i32 i32 i32) (result i32)))
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (data (i32.const 9000) "X")
    (func (export "start") (local $peer i32)
      (drop (call $block (i64.const 0)))
      (drop (call $status (i32.const 1) (i32.const 4096)))
      (local.set $peer (i32.load (i32.const 4100)))
      (drop (call $copy_from (local.get $peer) (i32.const 1) (i32.const 0) (i32.const 8192) (i32.const 15)))
      (drop (call $write (i32.const 8192) (i32.const 15)))
      ;; a write through the read-only grant must fail with -EACCES (-13)
      (if (i32.eq (call $copy_to (local.get $peer) (i32.const 1) (i32.const 0) (i32.const 9000) (i32.const 1)) (i32.const -13))
        (then (drop (call $shutdown (i32.const 0))))
        (else (drop (call $shutdown (i32.const 3)))))))`);
  const a = await hv.createDomain({ image: granter, memory: 1, paused: true });
  const b = await hv.createDomain({ image: grantee, memory: 1, paused: true });
  hv.connect(a.id, b.id);
  await b.unpause();
  await a.unpause();
  t.same(await b.waitForExit(), { reason: 'poweroff' }, 'the read-only grant refused the write');
  t.equal(b.consoleText(), 'through a grant');
  const page = new Uint8Array(a.memory!.buffer, 12288, 15);
  t.equal(new TextDecoder().decode(page), 'through a grant', 'the granter\'s page is unchanged');
});
