import t from 'tap';
import wabtInit from 'wabt';
import { COPY_MODULE, COPY_WAT, CopyEngine } from './copy-engine.ts';

t.test('the copy module binary is its WAT source compiled', async (t) => {
  const wabt = await wabtInit();
  const m = wabt.parseWat('copy.wat', COPY_WAT, { threads: true, multi_memory: true } as never);
  t.same([...new Uint8Array(m.toBinary({}).buffer)], [...COPY_MODULE]);
});

t.test('copies between two domains\' memories, both ways, and forgets', async (t) => {
  const mems = new Map<number, WebAssembly.Memory>();
  for (const d of [1, 2]) mems.set(d, new WebAssembly.Memory({ initial: 1, maximum: 4, shared: true }));
  const e = new CopyEngine(mems);
  new Uint8Array(mems.get(1)!.buffer).set([1, 2, 3, 4], 100);
  e.copy(1, 100, 2, 200, 4);
  t.same([...new Uint8Array(mems.get(2)!.buffer, 200, 4)], [1, 2, 3, 4]);
  e.copy(2, 201, 1, 0, 2);
  t.same([...new Uint8Array(mems.get(1)!.buffer, 0, 2)], [2, 3]);
  t.equal(e.size(1, 0), 65536);
  mems.get(1)!.grow(1);
  t.equal(e.size(1, 65537), 131072, 'a grown memory is seen when more is asked for');
  mems.delete(2);
  e.forget(2);
  t.equal(e.size(2, 0), undefined);
});
