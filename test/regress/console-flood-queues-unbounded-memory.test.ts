// Regression: a guest writing to its console without pause made its vCPU
// host post copies faster than the kernel took them, queueing unbounded
// memory in the host. Console writes now get -EAGAIN past a bound.
import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { wat, CONSOLE, SHUTDOWN } from '../helpers/wat.ts';

t.test('a console flood gets -EAGAIN and the host stays bounded', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const flood = wat(`(module (import "env" "memory" (memory 4 256 shared)) ${CONSOLE} ${SHUTDOWN}
    (func (export "start") (local $i i32) (local $again i32)
      (memory.fill (i32.const 8192) (i32.const 65) (i32.const 65536))
      (loop $l
        (if (i32.eq (call $write (i32.const 8192) (i32.const 65536)) (i32.const -11))
          (then (local.set $again (i32.add (local.get $again) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 4000))))
      (drop (call $shutdown (select (i32.const 0) (i32.const 3) (local.get $again))))))`);
  const dom = await hv.createDomain({ image: flood, memory: 2 });
  const exit = await dom.waitForExit();
  t.equal(exit.reason, 'poweroff', 'the guest saw -EAGAIN (it reports crash when it never did)');
  const total = dom.record.console.totalBytes;
  t.ok(total < 4000 * 65536, `only ${total} of ${4000 * 65536} bytes were accepted`);
  t.ok(total >= 4 * 65536, 'but output did flow');
});
