/**
 * Event channels between a guest and the host (domain 0), which host
 * backends use: a guest notifies a port of domain 0 and the host's handler
 * runs; the host notifies back and the guest wakes.
 */
import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { wat, until, MEM, SHUTDOWN } from '../helpers/wat.ts';

const EV = (f: string, p: string) => `(import "wasmvisor:hypercall/evtchn@0.1.0" "${f}" (func $${f.replace('-', '_')} ${p} (result i32)))`;
const BLOCK = '(import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))';

t.test('a guest and the host notify each other over an interdomain port', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  // The guest binds domain 0's port (given on its command line as a digit), sends 3 times, waiting for the answer on its port each time.
  const guest = wat(`(module ${MEM} ${EV('bind-interdomain', '(param i32 i32)')} ${EV('send', '(param i32)')} ${EV('pending', '(param i32 i32)')} ${BLOCK} ${SHUTDOWN}
    (import "wasmvisor:hypercall/start-info@0.1.0" "cmdline" (func $cmdline (param i32 i32) (result i32)))
    (func (export "start") (local $port i32) (local $i i32)
      (drop (call $cmdline (i32.const 0x1000) (i32.const 4)))
      (local.set $port (call $bind_interdomain (i32.const 0) (i32.sub (i32.load8_u (i32.const 0x1000)) (i32.const 48))))
      (i32.store (i32.const 0x2000) (local.get $port))
      (loop $l
        (drop (call $send (local.get $port)))
        ;; Wait for the answer on our port: block can also return for another reason (a spurious
        ;; wake), and sending again before the host has taken the first would coalesce the two.
        (block $answered
          (loop $wait
            (drop (call $pending (i32.const 0x3000) (i32.const 8)))
            (br_if $answered (i32.and (i32.load (i32.const 0x3000)) (i32.shl (i32.const 1) (local.get $port))))
            (drop (call $block (i64.const 0)))
            (br $wait)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (i32.store (i32.const 0x2004) (local.get $i))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 3))))
      (drop (call $shutdown (i32.const 0)))))`);
  // Created paused; the host offers its port (the first of domain 0's, so 1, as the command line says), then lets it run.
  const dom = await hv.createDomain({ image: guest, memory: 1, cmdline: '1', onPoweroff: 'preserve', paused: true });
  const hostPort = hv.evtchn.allocUnbound(0, dom.id);
  t.equal(hostPort, 1, 'domain 0\'s first port');
  let heard = 0;
  hv.hostEvents.on(hostPort, () => { heard++; hv.evtchn.send(0, hostPort); });
  await dom.unpause();
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  t.equal(heard, 3, 'the host heard each notification');
  t.equal(new Int32Array(dom.memory!.buffer, 0x2000, 2)[1], 3, 'the guest woke for each answer');
  t.ok(new Int32Array(dom.memory!.buffer, 0x2000, 1)[0]! > 0, 'the guest bound domain 0\'s port');
});

t.test('a host handler that throws is removed and logged; others keep working', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: wat(`(module ${MEM} ${BLOCK} (func (export "start") (drop (call $block (i64.const 0)))))`), memory: 1 });
  const a = hv.evtchn.allocUnbound(0, d.id);
  t.ok(a > 0);
  const off = hv.hostEvents.on(a, () => { throw new Error('backend bug'); });
  hv.evtchn.setPending(0, a);
  await until(() => hv.dmesg().some((l) => /host handler of port \d+ failed: backend bug/.test(l)), 1000);
  t.match(hv.dmesg().join('\n'), /host handler of port \d+ failed: backend bug; it is removed/);
  off();
});
