import t from 'tap';
import { PvTable, PAGE_SIZE, GRANTS, GRANT_WORDS, GrantWord, H_GRANT_HI, NR_GRANTS } from './pv-table.ts';
import { GrantTables, viewMemories } from './grant.ts';
import { Errno } from './errno.ts';

function setup() {
  const table = new PvTable(15, 1);
  const mem = new Map<number, Uint8Array>();
  for (const d of [1, 2, 3]) {
    table.claim(d, false);
    mem.set(d, new Uint8Array(new SharedArrayBuffer(4 * PAGE_SIZE)));
  }
  const gt = new GrantTables(table, viewMemories((d) => mem.get(d)));
  return { table, gt, mem };
}

t.test('grant, copy both ways, end', async (t) => {
  const { gt, mem } = setup();
  mem.get(1)!.set(new TextEncoder().encode('granted bytes'), 2 * PAGE_SIZE + 100);
  const g = gt.grantAccess(1, 2, 2, 0, 4 * PAGE_SIZE);
  t.equal(g, 1);
  t.equal(gt.copy(2, 1, g, 100, 500, 13, false), 13);
  t.equal(new TextDecoder().decode(mem.get(2)!.subarray(500, 513)), 'granted bytes');
  mem.get(2)!.set(new TextEncoder().encode('REPLY'), 600);
  t.equal(gt.copy(2, 1, g, 0, 600, 5, true), 5);
  t.equal(new TextDecoder().decode(mem.get(1)!.subarray(2 * PAGE_SIZE, 2 * PAGE_SIZE + 5)), 'REPLY');
  t.equal(gt.inUse(1), 1);
  t.equal(gt.endAccess(1, g), 0);
  t.equal(gt.inUse(1), 0);
  t.equal(gt.copy(2, 1, g, 0, 0, 1, false), -Errno.EINVAL, 'an ended grant is gone');
});

t.test('hostile grant copies change nothing', async (t) => {
  const { gt, mem } = setup();
  const snapshot = () => [...mem.values()].map((m) => Buffer.from(m).toString('hex'));
  mem.get(1)!.fill(7, PAGE_SIZE, 2 * PAGE_SIZE);
  const ro = gt.grantAccess(1, 2, 1, 1, 4 * PAGE_SIZE);
  const rw = gt.grantAccess(1, 2, 0, 0, 4 * PAGE_SIZE);
  const before = snapshot();
  t.equal(gt.copy(3, 1, ro, 0, 0, 16, false), -Errno.EINVAL, 'a domain the grant is not for');
  t.equal(gt.copy(2, 9, ro, 0, 0, 16, false), -Errno.ESRCH, 'a granter that does not exist');
  t.equal(gt.copy(2, 3, ro, 0, 0, 16, false), -Errno.EINVAL, 'the wrong granter');
  t.equal(gt.copy(2, 1, 99, 0, 0, 16, false), -Errno.EINVAL, 'a reference never granted');
  t.equal(gt.copy(2, 1, 0, 0, 0, 16, false), -Errno.EINVAL, 'reference 0');
  t.equal(gt.copy(2, 1, 100000, 0, 0, 16, false), -Errno.EINVAL, 'a reference past the table');
  t.equal(gt.copy(2, 1, ro, 0, 0, 16, true), -Errno.EACCES, 'writing through a read-only grant');
  t.equal(gt.copy(2, 1, rw, 4090, 0, 16, true), -Errno.EINVAL, 'offset + length past the page');
  t.equal(gt.copy(2, 1, rw, 4097, 0, 0, true), -Errno.EINVAL, 'offset past the page');
  t.equal(gt.copy(2, 1, rw, 0xffffffff, 0, 2, false), -Errno.EINVAL, 'offset + length overflowing 32 bits');
  t.equal(gt.copy(2, 1, rw, 16, 0, 0xfffffff8, false), -Errno.EINVAL, 'length overflowing 32 bits');
  t.equal(gt.copy(2, 1, rw, 0, 4 * PAGE_SIZE - 8, 16, false), -Errno.EFAULT, 'past the caller\'s memory');
  t.equal(gt.copy(2, 1, rw, 0, -8, 16, true), -Errno.EFAULT, 'a wild (negative) local pointer');
  t.equal(gt.copy(1, 1, rw, 0, 0, 16, false), -Errno.EINVAL, 'copying from your own grant');
  t.same(snapshot(), before, 'no memory changed');
  gt.endAccess(1, rw);
  t.equal(gt.copy(2, 1, rw, 0, 0, 16, true), -Errno.EINVAL, 'a revoked grant');
  t.same(snapshot(), before, 'still no memory changed');
});

t.test('hostile grant-access and end-access', async (t) => {
  const { gt } = setup();
  t.equal(gt.grantAccess(1, 2, 4, 0, 4 * PAGE_SIZE), -Errno.EFAULT, 'a page outside your memory');
  t.equal(gt.grantAccess(1, 2, 0xffffffff, 0, 4 * PAGE_SIZE), -Errno.EFAULT, 'a huge page number');
  t.equal(gt.grantAccess(1, 9, 0, 0, 4 * PAGE_SIZE), -Errno.ESRCH, 'to a domain that does not exist');
  t.equal(gt.grantAccess(1, 1, 0, 0, 4 * PAGE_SIZE), -Errno.EINVAL, 'to yourself');
  t.equal(gt.grantAccess(1, 2, 0, 2, 4 * PAGE_SIZE), -Errno.EINVAL, 'a bad read-only flag');
  t.equal(gt.endAccess(1, 5), -Errno.EINVAL, 'ending a grant not in use');
  t.equal(gt.endAccess(1, 0), -Errno.EINVAL);
  t.equal(gt.endAccess(1, 1 << 20), -Errno.EINVAL);
  let lowest = 0;
  for (let i = 1; i < NR_GRANTS; i++) if (gt.grantAccess(1, 2, 0, 1, 4 * PAGE_SIZE) === i) lowest++;
  t.equal(lowest, NR_GRANTS - 1, `references 1..${NR_GRANTS - 1}, lowest first`);
  t.equal(gt.grantAccess(1, 2, 0, 1, 4 * PAGE_SIZE), -Errno.ENOSPC, 'the table is full');
});

t.test('ending a grant while a copy is in progress is refused with -EBUSY', async (t) => {
  const { table, gt } = setup();
  const g = gt.grantAccess(1, 2, 0, 0, 4 * PAGE_SIZE);
  // Simulate a copy in flight on another thread: its busy count is held.
  const busy = table.slot(1) + GRANTS + g * GRANT_WORDS + GrantWord.BUSY;
  Atomics.add(table.words, busy, 1);
  t.equal(gt.endAccess(1, g), -Errno.EBUSY);
  t.equal(gt.copy(2, 1, g, 0, 0, 4, false), 4, 'the grant is still usable');
  Atomics.sub(table.words, busy, 1);
  t.equal(gt.endAccess(1, g), 0, 'once the copy is done it ends');
});

t.test('a grant to a domain id that was reused is not honoured', async (t) => {
  const { table, gt } = setup();
  const g = gt.grantAccess(1, 2, 0, 0, 4 * PAGE_SIZE);
  table.claim(2, false); // domain 2 destroyed and the id reused
  t.equal(gt.copy(2, 1, g, 0, 0, 4, false), -Errno.EINVAL);
});

t.test('a backend maps a granted page: direct bytes, the grant cannot end while mapped, bad maps are refused', async (t) => {
  const { gt, mem } = setup();
  const g = gt.grantAccess(1, 2, 3, 0, 4 * PAGE_SIZE);
  const ro = gt.grantAccess(1, 2, 1, 1, 4 * PAGE_SIZE);
  const m = gt.map(2, 1, g, true);
  if (typeof m === 'number') { t.fail(`map failed: ${m}`); return; }
  t.equal(m.bytes.length, PAGE_SIZE);
  m.bytes.set([1, 2, 3], 10);
  t.same([...mem.get(1)!.subarray(3 * PAGE_SIZE + 10, 3 * PAGE_SIZE + 13)], [1, 2, 3], 'writes land in the granter\'s page');
  t.equal(gt.endAccess(1, g), -Errno.EBUSY, 'a mapped grant cannot end');
  m.release();
  m.release();
  t.equal(gt.endAccess(1, g), 0, 'released once, however often release is called');
  t.equal(gt.map(2, 1, g, false), -Errno.EINVAL, 'an ended grant');
  t.equal(gt.map(2, 1, ro, true), -Errno.EACCES, 'writable map of a read-only grant');
  const r = gt.map(2, 1, ro, false);
  t.type(r, 'object', 'read-only map of a read-only grant');
  if (typeof r !== 'number') r.release();
  t.equal(gt.map(3, 1, ro, false), -Errno.EINVAL, 'not granted to this domain');
  t.equal(gt.map(2, 1, 0, false), -Errno.EINVAL);
  t.equal(gt.map(2, 1, 9999, false), -Errno.EINVAL);
  t.equal(gt.map(2, 9, 1, false), -Errno.ESRCH, 'no such granter');
  t.equal(gt.map(1, 1, ro, false), -Errno.EINVAL, 'mapping your own grant');
  t.equal(gt.endAccess(1, ro), 0, 'failed maps hold nothing');
});

t.test('hold and unhold: no allocation, the same checks as map, and a held grant cannot end', async (t) => {
  const { gt, mem } = setup();
  const view = gt.memoryOf(1)!;
  t.equal(view, mem.get(1), 'memoryOf gives the granter\'s memory');
  const g = gt.grantAccess(1, 2, 3, 0, 4 * PAGE_SIZE);
  const ro = gt.grantAccess(1, 2, 1, 1, 4 * PAGE_SIZE);
  t.equal(gt.hold(2, 1, g, true, view.length), 3 * PAGE_SIZE, 'the page\'s offset');
  t.equal(gt.hold(2, 1, g, false, view.length), 3 * PAGE_SIZE, 'held twice');
  t.equal(gt.endAccess(1, g), -Errno.EBUSY);
  gt.unhold(1, g);
  t.equal(gt.endAccess(1, g), -Errno.EBUSY, 'still held once');
  gt.unhold(1, g);
  t.equal(gt.endAccess(1, g), 0);
  t.equal(gt.hold(2, 1, g, false, view.length), -Errno.EINVAL, 'an ended grant');
  t.equal(gt.hold(2, 1, ro, true, view.length), -Errno.EACCES, 'writable hold of a read-only grant');
  t.equal(gt.hold(3, 1, ro, false, view.length), -Errno.EINVAL, 'not granted to this domain');
  t.equal(gt.hold(2, 1, ro, false, 2 * PAGE_SIZE - 1), -Errno.EFAULT, 'the page past the caller\'s view');
  t.equal(gt.hold(2, 1, 700, false, view.length), -Errno.EINVAL, 'above the highest reference used');
  t.equal(gt.hold(2, 9, ro, false, view.length), -Errno.ESRCH);
  t.equal(gt.endAccess(1, ro), 0, 'failed holds hold nothing');
});

t.test('a domain touches only the grant entries it used; claim clears them for the next domain', async (t) => {
  const table = new PvTable(15, 1);
  table.claim(1, false);
  table.claim(2, false);
  const mem = new Uint8Array(new SharedArrayBuffer(4 * PAGE_SIZE));
  const gt = new GrantTables(table, viewMemories((d) => (d === 1 ? mem : undefined)));
  const hiWord = table.slot(1) + H_GRANT_HI;
  t.equal(table.words[hiWord], 0, 'a new domain has used no grant');
  const refs = Array.from({ length: 40 }, () => gt.grantAccess(1, 2, 0, 0, mem.length));
  t.same(refs, Array.from({ length: 40 }, (_, i) => i + 1));
  t.equal(table.words[hiWord], 40);
  t.equal(gt.endAccess(1, 5), 0);
  t.equal(gt.grantAccess(1, 2, 1, 0, mem.length), 5, 'a freed reference is reused before the mark grows');
  t.equal(table.words[hiWord], 40);
  const slotEnd = table.slot(1) + GRANTS + NR_GRANTS * GRANT_WORDS;
  const above = table.words.subarray(table.slot(1) + GRANTS + 41 * GRANT_WORDS, slotEnd);
  t.equal(above.some((w) => w !== 0), false, 'nothing written above the mark');
  t.equal(gt.inUse(1), 40);
  gt.endAll(1);
  t.equal(gt.inUse(1), 0);
  table.claim(1, false); // the id is reused
  t.equal(table.words[hiWord], 0, 'the mark is reset');
  t.equal(table.words.subarray(table.slot(1) + GRANTS, slotEnd).some((w) => w !== 0), false, 'every entry the last domain used is clear');
  t.equal(gt.grantAccess(1, 2, 0, 0, mem.length), 1);
});

t.test('a frozen granter (being saved) refuses copies until thawed; saved grants come back only to the same grantee', async (t) => {
  const { table, gt, mem } = setup();
  const g = gt.grantAccess(1, 2, 2, 0, 4 * PAGE_SIZE);
  gt.freeze(1);
  t.equal(gt.copiesUnderWay(1), false);
  mem.get(2)!.fill(9, 0, 8);
  t.equal(gt.copy(2, 1, g, 0, 0, 8, true), -Errno.ESRCH, 'a copy into a frozen domain fails as if it were away');
  t.equal(mem.get(1)![2 * PAGE_SIZE], 0, 'and writes nothing');
  gt.thaw(1);
  t.equal(gt.copy(2, 1, g, 0, 0, 8, true), 8);
  const saved = gt.exportGrants(1);
  t.same(saved, [{ gref: g, grantee: 2, page: 2, readonly: false, gen: table.generation(2) }]);
  table.claim(1, false, table.generation(1));
  t.equal(gt.inUse(1), 0, 'a new claim clears the grants');
  t.same(gt.restoreGrants(1, saved, 4 * PAGE_SIZE), []);
  t.equal(gt.copy(2, 1, g, 0, 16, 8, false), 8, 'the grant works again at the same reference');
  table.claim(2, false);
  table.claim(1, false);
  const lost = gt.restoreGrants(1, saved, 4 * PAGE_SIZE);
  t.match(lost, [/grant 1: to domain 2, which is gone/], 'a grantee of another generation is a stranger');
  t.match(gt.restoreGrants(1, [{ gref: 5, grantee: 2, page: 99, readonly: false, gen: 0 }], 4 * PAGE_SIZE), [/outside the domain's memory/]);
});
