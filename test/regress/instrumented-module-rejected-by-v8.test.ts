// Regression: binaryen emitted the instrumented module with every feature
// enabled, including encodings V8 does not ship ("unknown import kind 0x7f"),
// so every image was refused. The loader now asks binaryen for V8's features
// only; guests using the shipped post-MVP features must still load and run.
import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { wat, MEM, CONSOLE, SHUTDOWN } from '../helpers/wat.ts';

t.test('a guest using SIMD, bulk memory, multi-value and atomics loads and runs', async (t) => {
  const img = wat(`(module ${MEM} ${CONSOLE} ${SHUTDOWN}
    (data (i32.const 8192) "ok\\n")
    (func $pair (result i32 i32) (i32.const 8192) (i32.const 3))
    (func (export "start")
      (v128.store (i32.const 9000) (i32x4.splat (i32.const 7)))
      (memory.copy (i32.const 9100) (i32.const 8192) (i32.const 3))
      (drop (i32.atomic.rmw.add (i32.const 9200) (i32.const 1)))
      (call $pair)
      (drop (call $write))
      (drop (call $shutdown (i32.const 0)))))`);
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const dom = await hv.createDomain({ image: img, memory: 1 });
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  t.equal(dom.consoleText(), 'ok\n');
});
