/**
 * The store from a guest: its home, reading, writing, listing, watching
 * (virq 4), permissions against another domain, and hostile arguments.
 */
import t from 'tap';
import { Hypervisor } from '../../runtime/index.ts';
import { wat, MEM, SHUTDOWN } from '../helpers/wat.ts';
import { Errno } from '../../kernel/errno.ts';

const S = (f: string, params: string) => `(import "wasmvisor:hypercall/store@0.1.0" "${f}" (func $${f} ${params} (result i32)))`;
const IMPORTS = [S('read', '(param i32 i32 i32 i32)'), S('write', '(param i32 i32 i32 i32)'), S('directory', '(param i32 i32 i32 i32)'),
  S('remove', '(param i32 i32)'), S('watch', '(param i32 i32)'), S('unwatch', '(param i32 i32)'), S('next-event', '(param i32 i32)')].join('\n');
const BIND = '(import "wasmvisor:hypercall/evtchn@0.1.0" "bind-virq" (func $bind (param i32) (result i32)))';
const BLOCK = '(import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))';
const PENDING = '(import "wasmvisor:hypercall/evtchn@0.1.0" "pending" (func $pending (param i32 i32) (result i32)))';

/** Strings at fixed addresses; results (i32) stored from 0x8000 on. */
function guest(other: number): Uint8Array<ArrayBuffer> {
  const str: Array<[number, string]> = [[0x1000, 'name'], [0x1100, 'device/vbd/0/state'], [0x1200, '1'], [0x1300, 'device'], [0x1400, `/local/domain/${other}/name`], [0x1500, 'bad path//x'], [0x1600, '']];
  const data = str.map(([a, s]) => `(data (i32.const ${a}) "${s}")`).join('\n');
  const len = (a: number) => str.find(([x]) => x === a)![1].length;
  const r = (i: number, expr: string) => `(i32.store (i32.const ${0x8000 + i * 4}) ${expr})`;
  return wat(`(module ${MEM} ${IMPORTS} ${BIND} ${BLOCK} ${PENDING} ${SHUTDOWN}
    ${data}
    (func (export "start")
      ${r(0, `(call $read (i32.const 0x1000) (i32.const ${len(0x1000)}) (i32.const 0x2000) (i32.const 64))`)}
      ${r(1, `(call $bind (i32.const 4))`)}
      ${r(2, `(call $watch (i32.const 0x1300) (i32.const ${len(0x1300)}))`)}
      ${r(3, `(call $next-event (i32.const 0x2100) (i32.const 64))`)}
      ${r(4, `(call $write (i32.const 0x1100) (i32.const ${len(0x1100)}) (i32.const 0x1200) (i32.const 1))`)}
      ${r(5, `(call $next-event (i32.const 0x2200) (i32.const 64))`)}
      ${r(6, `(call $directory (i32.const 0x1300) (i32.const ${len(0x1300)}) (i32.const 0x2300) (i32.const 64))`)}
      ${r(7, `(call $read (i32.const 0x1400) (i32.const ${len(0x1400)}) (i32.const 0x2400) (i32.const 64))`)}
      ${r(8, `(call $read (i32.const 0x1500) (i32.const ${len(0x1500)}) (i32.const 0x2400) (i32.const 64))`)}
      ${r(9, `(call $read (i32.const 0x7fffff00) (i32.const 16) (i32.const 0x2400) (i32.const 64))`)}
      ${r(10, `(call $read (i32.const 0x1000) (i32.const ${len(0x1000)}) (i32.const 0xfffff0) (i32.const 64))`)}
      ${r(11, `(call $write (i32.const 0x1400) (i32.const ${len(0x1400)}) (i32.const 0x1200) (i32.const 1))`)}
      ;; wait for the host to write under device/ (virq 4 wakes it)
      (block $done (loop $l
        ;; take the pending ports first (as a guest must), then look for an event
        (drop (call $pending (i32.const 0x3000) (i32.const 8)))
        ${r(12, `(call $next-event (i32.const 0x2500) (i32.const 64))`)}
        (br_if $done (i32.load (i32.const ${0x8000 + 12 * 4})))
        (drop (call $block (i64.const 0)))
        (br $l)))
      ${r(13, `(call $remove (i32.const 0x1300) (i32.const ${len(0x1300)}))`)}
      ${r(14, `(call $read (i32.const 0x1100) (i32.const ${len(0x1100)}) (i32.const 0x2400) (i32.const 64))`)}
      (drop (call $shutdown (i32.const 0)))))`);
}

t.test('a guest uses the store: home, read, write, directory, watches, permissions, bad arguments', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const other = await hv.createDomain({ image: wat(`(module ${MEM} ${BLOCK} (func (export "start") (drop (call $block (i64.const 0)))))`), name: 'other', memory: 1 });
  const dom = await hv.createDomain({ image: guest(other.id), name: 'storer', memory: 1, onPoweroff: 'preserve' });
  const results = () => [...new Int32Array(dom.memory!.buffer, 0x8000, 15)];
  // Wait until the guest blocks (after its first batch of calls), then write under its device/.
  for (let i = 0; i < 200 && results()[11] === 0; i++) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  t.equal(hv.store.write(0, `/local/domain/${dom.id}/device/backend-said`, 'hi'), 0);
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  const r = results();
  const text = (addr: number, n: number) => new TextDecoder().decode(new Uint8Array(dom.memory!.buffer, addr, n));
  t.equal(r[0], 6, 'its name is in its home');
  t.equal(text(0x2000, 6), 'storer');
  t.ok(r[1]! > 0, 'virq 4 (store) binds');
  t.equal(r[2], 0, 'watch');
  t.equal(text(0x2100, r[3]!), `/local/domain/${dom.id}/device`, 'a new watch fires once');
  t.equal(r[4], 0, 'write');
  t.equal(text(0x2200, r[5]!), `/local/domain/${dom.id}/device/vbd/0/state`, 'the write fired the watch');
  t.equal(text(0x2300, r[6]!), 'vbd\0', 'directory lists children, NUL-terminated');
  t.equal(r[7], -Errno.EACCES, 'another domain\'s home is not readable');
  t.equal(r[8], -Errno.EINVAL, 'a malformed path');
  t.equal(r[9], -Errno.EFAULT, 'a path outside memory');
  t.equal(r[10], -Errno.EFAULT, 'a buffer outside memory');
  t.equal(r[11], -Errno.EACCES, 'another domain\'s node is not writable');
  t.equal(text(0x2500, r[12]!), `/local/domain/${dom.id}/device/backend-said`, 'the host\'s write woke it with an event');
  t.equal(r[13], 0, 'remove');
  t.equal(r[14], -Errno.ENOENT, 'gone');
  t.equal(hv.store.read(0, `/local/domain/${dom.id}/device`), -Errno.ENOENT);
  await dom.destroy();
  t.equal(hv.store.read(0, `/local/domain/${dom.id}`), -Errno.ENOENT, 'a destroyed domain\'s home is removed');
  t.equal(hv.store.read(0, `/local/domain/${other.id}/name`), 'other', 'the other domain is untouched');
});
