import t from 'tap';
import { Store, MAX_EVENTS } from './store.ts';
import { Errno } from './errno.ts';

/** The toolstack's setup for a domain and a VBD, as Xen's does. */
function setup() {
  const raised: number[] = [];
  const s = new Store({ quota: 50, onEvent: (d) => raised.push(d) });
  for (const d of [1, 2]) {
    s.write(0, `/local/domain/${d}`, '');
    s.setPerms(0, `/local/domain/${d}`, { owner: d, others: [] });
  }
  return { s, raised };
}

t.test('read, write, list, remove; relative paths are the caller\'s home', async (t) => {
  const { s } = setup();
  t.equal(s.write(1, 'device/vbd/51712/state', '1'), 0);
  t.equal(s.read(1, '/local/domain/1/device/vbd/51712/state'), '1');
  t.same(s.list(1, 'device/vbd'), ['51712']);
  t.equal(s.read(1, 'device/vbd'), '', 'parents are created empty');
  t.equal(s.read(1, 'nothing/here'), -Errno.ENOENT);
  t.equal(s.remove(1, 'device'), 0);
  t.equal(s.read(1, 'device/vbd/51712/state'), -Errno.ENOENT, 'removed with everything under it');
  t.equal(s.owned(1), 1, 'only its home is left');
});

t.test('domains cannot see or touch each other\'s nodes unless allowed', async (t) => {
  const { s } = setup();
  s.write(1, 'secret', 'x');
  t.equal(s.read(2, '/local/domain/1/secret'), -Errno.EACCES);
  t.equal(s.write(2, '/local/domain/1/secret', 'y'), -Errno.EACCES);
  t.equal(s.write(2, '/local/domain/1/new', 'y'), -Errno.EACCES, 'creating under someone else\'s node');
  t.equal(s.remove(2, '/local/domain/1/secret'), -Errno.EACCES);
  t.equal(s.list(2, '/local/domain/1'), -Errno.EACCES);
  t.equal(s.write(1, '/local/domain/2/x', 'y'), -Errno.EACCES);
  t.equal(s.setPerms(2, '/local/domain/1/secret', { owner: 2, others: [] }), -Errno.EACCES);
  // The backend's directory, readable by the frontend domain (as the toolstack sets it up).
  s.write(0, '/local/domain/0/backend/vbd/1/51712/sectors', '2048');
  s.setPerms(0, '/local/domain/0/backend/vbd/1/51712', { owner: 0, others: [{ domid: 1, write: false }] });
  s.write(0, '/local/domain/0/backend/vbd/1/51712/sector-size', '512');
  t.equal(s.read(1, '/local/domain/0/backend/vbd/1/51712/sector-size'), '512', 'new nodes inherit the parent\'s readers');
  t.equal(s.write(1, '/local/domain/0/backend/vbd/1/51712/sectors', '9'), -Errno.EACCES, 'read-only for the frontend');
  t.equal(s.read(2, '/local/domain/0/backend/vbd/1/51712/sector-size'), -Errno.EACCES, 'invisible to others');
  t.equal(s.read(0, '/local/domain/1/secret'), 'x', 'domain 0 reads everything');
});

t.test('hostile paths, values and quotas', async (t) => {
  const { s } = setup();
  for (const p of ['', '//x', 'a//b', 'a/', '../x', 'a b', 'ä', 'x'.repeat(1100)]) t.equal(s.write(1, p, 'v'), -Errno.EINVAL, JSON.stringify(p.slice(0, 20)));
  t.equal(s.write(1, 'big', 'x'.repeat(4097)), -Errno.E2BIG);
  t.equal(s.write(1, '/', 'x'), -Errno.EINVAL);
  t.equal(s.remove(0, '/'), -Errno.EINVAL);
  let i = 0;
  while (s.write(1, `n${i}`, 'v') === 0) i++;
  t.equal(i, 49, 'stops at the quota (its home counts)');
  t.equal(s.write(1, 'one/more', 'v'), -Errno.ENOSPC);
  t.equal(s.write(2, 'fine', 'v'), 0, 'another domain is not affected');
  t.equal(s.write(1, 'n0', 'rewriting an existing node is fine'), 0);
});

t.test('watches fire at once, on changes they may see, and on removal; the queue is bounded', async (t) => {
  const { s, raised } = setup();
  t.equal(s.watch(1, 'device'), 0);
  t.equal(s.nextEvent(1), '/local/domain/1/device', 'fires once when set');
  s.write(1, 'device/vbd/1/state', '3');
  t.equal(s.nextEvent(1), '/local/domain/1/device/vbd/1/state');
  t.equal(s.nextEvent(1), undefined);
  s.write(1, 'elsewhere', 'x');
  t.equal(s.nextEvent(1), undefined, 'outside the watch');
  s.watch(2, '/local/domain/1');
  s.nextEvent(2);
  s.write(1, 'device/private', 'x');
  t.equal(s.nextEvent(2), undefined, 'no event for a node it may not read');
  s.remove(1, 'device');
  t.equal(s.nextEvent(2), '/local/domain/1/device', 'removals always');
  t.ok(raised.includes(1) && raised.includes(2), 'each watcher\'s virq was raised');
  for (let i = 0; i < MAX_EVENTS + 10; i++) s.write(1, 'device/x', String(i));
  let n = 0;
  while (s.nextEvent(1) !== undefined) n++;
  t.equal(n, MAX_EVENTS, 'bounded');
  t.equal(s.unwatch(1, 'device'), 0);
  t.equal(s.unwatch(1, 'device'), -Errno.ENOENT);
});

t.test('releasing a domain removes its home and tells watchers', async (t) => {
  const { s } = setup();
  s.write(1, 'device/vbd/1/state', '4');
  s.watch(2, '/local/domain/1');
  s.nextEvent(2);
  s.releaseDomain(1);
  t.equal(s.read(0, '/local/domain/1'), -Errno.ENOENT);
  t.equal(s.nextEvent(2), '/local/domain/1');
  t.equal(s.owned(1), 0);
});
