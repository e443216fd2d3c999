/**
 * Which safepoint checks the rewrite keeps: counted by running rewritten
 * modules with the attention word set, so every check that runs calls the
 * safepoint import once.
 */
import t from 'tap';
import { FLAGS_NAME, SAFEPOINT_MODULE, SAFEPOINT_NAME, rewriteWithSafepoints, type Instrumented } from './instrument.ts';
import { wat } from '../../test/helpers/wat.ts';

async function checked(src: string, features: Record<string, boolean>, run: (exports: Record<string, (...a: number[]) => number>) => unknown): Promise<{ calls: number; result: unknown; done: Instrumented }> {
  let done: Instrumented | undefined;
  const bytes = await rewriteWithSafepoints(wat(src, features), (d) => { done = d; });
  const flags = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  new Int32Array(flags.buffer)[0] = 1;
  let calls = 0;
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>), {
    [SAFEPOINT_MODULE]: { [SAFEPOINT_NAME]: () => { calls++; }, [FLAGS_NAME]: flags },
  });
  const result = run(inst.exports as Record<string, (...a: number[]) => number>);
  return { calls, result, done: done! };
}

t.test('every loop iteration passes one check', async (t) => {
  const r = await checked(`(module (func (export "f") (param $n i32) (result i32) (local $s i32)
      (loop $l
        (local.set $s (i32.add (local.get $s) (local.get $n)))
        (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
      (local.get $s)))`, {}, (e) => e.f!(10));
  t.equal(r.result, 55, 'the loop computes as before');
  t.equal(r.calls, 10, 'ten iterations, ten checks');
});

t.test('a leaf function without loops has no check; early returns add none', async (t) => {
  const r = await checked(`(module (func $leaf (export "leaf") (param i32) (result i32)
      (if (i32.eqz (local.get 0)) (then (return (i32.const 7))))
      (if (i32.eq (local.get 0) (i32.const 1)) (then (return (i32.const 8))))
      (i32.const 9)))`, {}, (e) => [e.leaf!(0), e.leaf!(1), e.leaf!(2)]);
  t.same(r.result, [7, 8, 9]);
  t.equal(r.calls, 0);
  t.equal(r.done.checks, 0, 'no check placed');
  t.ok(r.done.dropped >= 3, `entry, exit and return checks dropped (${r.done.dropped})`);
});

t.test('a function that calls outside its loops checks at entry, once per call', async (t) => {
  // A call tree that doubles at each level, without loops: 2^10 - 1 calls of
  // non-leaf functions; each must pass a check, or such a tree could run
  // for an unbounded time between checks.
  const levels = 10;
  let fns = '(func $f0 (result i32) (i32.const 1))';
  for (let i = 1; i < levels; i++) fns += `(func $f${i} (result i32) (i32.add (call $f${i - 1}) (call $f${i - 1})))`;
  const r = await checked(`(module ${fns} (export "top" (func $f${levels - 1})))`, {}, (e) => e.top!());
  t.equal(r.result, 2 ** (levels - 1));
  t.equal(r.calls, 2 ** (levels - 1) - 1, 'one check per call of a non-leaf function');
});

t.test('recursion whose call sits in a loop is checked by the loop alone', async (t) => {
  // fib as clang emits it: one recursive call inside a loop.
  const r = await checked(`(module (func $fib (export "fib") (param $n i32) (result i32) (local $acc i32)
      (if (i32.ge_u (local.get $n) (i32.const 2)) (then
        (loop $l
          (local.set $acc (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1))) (local.get $acc)))
          (br_if $l (i32.gt_u (local.tee $n (i32.sub (local.get $n) (i32.const 2))) (i32.const 1))))))
      (i32.add (local.get $n) (local.get $acc))))`, {}, (e) => e.fib!(20));
  t.equal(r.result, 6765);
  t.equal(r.done.checks, 1, 'only the loop header is checked');
  t.ok(r.calls > 6000, `every call made passed a check (${r.calls})`);
});

t.test('a recursive function with a call outside loops checks at entry', async (t) => {
  const r = await checked(`(module (func $down (export "down") (param $n i32) (result i32)
      (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))
        (else (i32.add (i32.const 1) (call $down (i32.sub (local.get $n) (i32.const 1))))))))`, {}, (e) => e.down!(100));
  t.equal(r.result, 100);
  t.equal(r.calls, 101, 'each of the 101 calls checked once');
});

t.test('tail calls and indirect calls count as calls', async (t) => {
  const r = await checked(`(module (type $t (func (param i32) (result i32)))
      (table 1 funcref) (elem (i32.const 0) $leaf)
      (func $leaf (param i32) (result i32) (local.get 0))
      (func (export "ind") (param i32) (result i32) (call_indirect (type $t) (local.get 0) (i32.const 0)))
      (func $count (export "tail") (param $n i32) (result i32)
        (if (result i32) (i32.eqz (local.get $n)) (then (i32.const 0))
          (else (return_call $count (i32.sub (local.get $n) (i32.const 1)))))))`, { tail_call: true }, (e) => [e.ind!(5), e.tail!(50)]);
  t.same(r.result, [5, 0]);
  t.equal(r.calls, 1 + 51, 'the indirect caller once, the tail-recursive function once per call');
});

t.test('code the walk cannot see into keeps every check', async (t) => {
  // try_table is not among the kinds the walk knows: it must give up and
  // leave log-execution's checks, entry and exit included.
  const r = await checked(`(module (tag $e)
      (func (export "f") (result i32)
        (block $h (try_table (catch $e $h) (throw $e)))
        (i32.const 3)))`, { exceptions: true }, (e) => e.f!());
  t.equal(r.result, 3);
  t.match(r.done.fallback, /expression kind/, 'the reason is reported');
  t.equal(r.done.dropped, 0, 'nothing dropped');
  t.equal(r.calls, 2, 'entry and exit checks both ran');
});
