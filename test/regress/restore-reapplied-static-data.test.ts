/**
 * Regression: a restored domain's static data went back to what its image
 * held. Instantiating a module writes its active data segments into the
 * memory it is given; for a restored domain that memory already held what
 * the guest had made of that data (a ring page ping had set up), so the
 * restore undid it, and ping saw its ring's response index go back to 0.
 * The loader now takes the segments out of the module and a fresh domain's
 * memory is filled from the image instead.
 */
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hypervisor } from '../../runtime/index.ts';
import { MEM, CONSOLE, YIELD, wat, until } from '../helpers/wat.ts';
import { buildImage } from '../../runtime/loader/image.ts';

// Starts with "A" at 8192, writes "B" there, says so, then yields forever.
const guest = wat(`(module ${MEM} ${CONSOLE} ${YIELD}
  (data (i32.const 8192) "A")
  (data (i32.const 8200) "wrote B")
  (func (export "start")
    (i32.store8 (i32.const 8192) (i32.const 66))
    (drop (call $write (i32.const 8200) (i32.const 7)))
    (loop $idle (drop (call $yield)) (br $idle))))`);

t.test('the loader keeps static data out of the module and a fresh domain still starts with it', async (t) => {
  const image = await buildImage(guest, 'static.wasm');
  t.ok(image.capture.saveable, image.capture.why ?? '');
  t.same(image.data.map((s) => [s.offset, new TextDecoder().decode(s.bytes)]), [[8192, 'A'], [8200, 'wrote B']]);
  // The module's segments are empty now: instantiating it writes nothing into a memory.
  t.notOk(new TextDecoder('latin1').decode(image.bytes).includes('wrote B'), 'the bytes are not in the module');
});

t.test('a restored domain keeps what it wrote over its static data', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const d = await hv.createDomain({ image: guest, name: 'static', memory: 1 });
  t.ok(await until(() => d.consoleText().includes('wrote B')), d.consoleText());
  t.equal(String.fromCharCode(new Uint8Array(d.memory!.buffer)[8192]!), 'B', 'the fresh domain started from "A" and wrote "B"');
  const file = join(mkdtempSync(join(tmpdir(), 'wv-static-')), 'static.save');
  await hv.save(d.id, file);
  const r = await hv.restore(file);
  await new Promise((res) => setTimeout(res, 100));
  t.equal(r.phase === 'running' || r.phase === 'blocked', true, `it runs (${r.phase})`);
  t.equal(String.fromCharCode(new Uint8Array(r.memory!.buffer)[8192]!), 'B', 'the restored domain still has "B"');
  t.equal(r.consoleText().match(/wrote B/g)?.length, 1, 'it did not start again');
});
