import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { guestPath } from '../../runtime/guests.ts';
import { wat } from '../helpers/wat.ts';

for (const cpus of [1, 2]) {
  t.test(`ping and pong exchange 5,000 messages over a ring (${cpus} CPU${cpus > 1 ? 's' : ''})`, async (t) => {
    const hv = new Hypervisor({ cpus });
    t.teardown(() => hv.close());
    const pong = await hv.createDomain({ image: guestPath('pong'), name: 'pong', memory: 1, paused: true, cmdline: 'count=5000' });
    const ping = await hv.createDomain({ image: guestPath('ping'), name: 'ping', memory: 1, paused: true, cmdline: 'count=5000' });
    hv.connect(ping.id, pong.id);
    await pong.unpause();
    await ping.unpause();
    t.same(await ping.waitForExit(), { reason: 'poweroff' });
    t.same(await pong.waitForExit(), { reason: 'poweroff' });
    t.match(ping.consoleText(), /ping: 5000 messages answered in \d+ us/);
    t.match(pong.consoleText(), `pong: answered 5000 requests from domain ${ping.id}`);
    t.equal(hv.grants.inUse(ping.id), 0, 'the grant went with the domain');
  });
}

t.test('pong sees a protocol error, not a hang, when ping corrupts the ring', async (t) => {
  const hv = new Hypervisor({ cpus: 2 });
  t.teardown(() => hv.close());
  // A hostile front end: grants page 2 with req_prod = 0x7fffffff (far more requests than slots) and notifies.
  const hostile = wat(`(module (import "env" "memory" (memory 4 256 shared))
    (import "wasmvisor:hypercall/evtchn@0.1.0" "status" (func $status (param i32 i32) (result i32)))
    (import "wasmvisor:hypercall/evtchn@0.1.0" "send" (func $send (param i32) (result i32)))
    (import "wasmvisor:hypercall/grant@0.1.0" "grant-access" (func $grant (param i32 i32 i32) (result i32)))
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (func (export "start")
      (drop (call $status (i32.const 1) (i32.const 4096)))
      (drop (call $grant (i32.load (i32.const 4100)) (i32.const 2) (i32.const 0)))
      (i32.store (i32.const 8192) (i32.const 0x7fffffff))
      (drop (call $send (i32.const 1)))
      (loop $idle (drop (call $block (i64.const 0))) (br $idle))))`);
  const pong = await hv.createDomain({ image: guestPath('pong'), name: 'pong', memory: 1, paused: true, cmdline: 'count=10' });
  const evil = await hv.createDomain({ image: hostile, name: 'evil', memory: 1, paused: true });
  hv.connect(evil.id, pong.id);
  await pong.unpause();
  await evil.unpause();
  const exit = await pong.waitForExit();
  t.equal(exit.reason, 'crash', 'pong stops itself');
  t.match(pong.consoleText(), /pong: ring protocol error -22/);
  t.equal(evil.phase, 'blocked', 'the hostile domain is untouched');
});
