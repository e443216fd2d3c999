import t from 'tap';
import { Kernel } from './kernel.ts';
import { canTransition } from './domain.ts';
import { ConsoleBuffer } from './console-buffer.ts';
import { OutOfMemoryBudgetError, DomainExistsError, InvalidArgumentError, DomainPhaseError } from './errors.ts';

const MiB = 1024 * 1024;
const kernel = (total = 64 * MiB, dom0 = 16 * MiB): Kernel =>
  new Kernel({ totalMemoryBytes: total, dom0MemoryBytes: dom0, clock: () => 0n });

t.test('domain 0 is the host and is listed first', async (t) => {
  const k = kernel();
  const [d0] = k.list();
  t.equal(d0?.id, 0);
  t.equal(d0?.name, 'Domain-0');
  t.equal(d0?.memoryBytes, 16 * MiB);
});

t.test('the budget refuses overcommit and says how much is free', async (t) => {
  const k = kernel(64 * MiB, 16 * MiB);
  k.createDomain({ memoryBytes: 40 * MiB, image: 'a' });
  const err = t.throws(() => k.createDomain({ memoryBytes: 16 * MiB, image: 'b' })) as unknown as OutOfMemoryBudgetError;
  t.ok(err instanceof OutOfMemoryBudgetError);
  t.equal(err.code, 'WV_ERR_NO_MEMORY');
  t.equal(err.freeBytes, 8 * MiB);
  t.match(err.message, /needs 16 MiB, 8 MiB of 48 MiB is free/);
  t.equal(k.budget.usedBytes, 40 * MiB, 'a refused create charges nothing');
});

t.test('release returns memory to the budget', async (t) => {
  const k = kernel(64 * MiB, 16 * MiB);
  const d = k.createDomain({ memoryBytes: 48 * MiB, image: 'a' });
  t.equal(k.budget.freeBytes, 0);
  k.release(d);
  t.equal(k.budget.freeBytes, 48 * MiB);
  t.equal(k.find(d.id), undefined);
});

t.test('ids count up from 1 and are reused only after wrapping', async (t) => {
  const k = kernel();
  const a = k.createDomain({ memoryBytes: MiB, image: 'a' });
  const b = k.createDomain({ memoryBytes: MiB, image: 'a' });
  t.same([a.id, b.id], [1, 2]);
  k.release(a);
  t.equal(k.createDomain({ memoryBytes: MiB, image: 'a' }).id, 3);
});

t.test('names are unique and validated', async (t) => {
  const k = kernel();
  k.createDomain({ name: 'web', memoryBytes: MiB, image: 'a' });
  t.throws(() => k.createDomain({ name: 'web', memoryBytes: MiB, image: 'a' }), DomainExistsError);
  t.throws(() => k.createDomain({ name: 'bad name', memoryBytes: MiB, image: 'a' }), InvalidArgumentError);
  t.throws(() => k.createDomain({ memoryBytes: MiB, cmdline: 'x'.repeat(1025), image: 'a' }), /longer than the limit of 1024/);
});

t.test('lifecycle transitions are checked', async (t) => {
  t.ok(canTransition('building', 'running'));
  t.ok(canTransition('running', 'blocked'));
  t.ok(canTransition('paused', 'running'));
  t.notOk(canTransition('shutdown', 'running'), 'a stopped domain never runs again');
  t.notOk(canTransition('crashed', 'paused'));
  t.notOk(canTransition('dying', 'running'));
  const k = kernel();
  const d = k.createDomain({ memoryBytes: MiB, image: 'a' });
  const seen: string[] = [];
  k.events.on('phase', (e) => seen.push(`${e.from}->${e.to}`));
  k.setPhase(d, 'running');
  k.setPhase(d, 'paused');
  t.equal(d.phaseBeforePause, 'running');
  k.markShutdown(d, 'reboot');
  t.equal(d.shutdownReason, 'reboot');
  t.same(seen, ['building->running', 'running->paused', 'paused->shutdown']);
  t.equal(k.setPhase(d, 'running'), false, 'late reports about a stopped domain are ignored');
  const e = k.createDomain({ memoryBytes: MiB, image: 'a' });
  t.throws(() => k.setPhase(e, 'shutting-down'), DomainPhaseError, 'building cannot go to shutting-down');
});

t.test('a crash is recorded with its backtrace and logged', async (t) => {
  const k = kernel();
  const d = k.createDomain({ memoryBytes: MiB, image: 'a' });
  k.setPhase(d, 'running');
  k.markCrashed(d, { reason: 'trap: unreachable', backtrace: [{ func: 'inner' }, { func: 'outer' }] });
  t.equal(d.phase, 'crashed');
  t.equal(d.shutdownReason, 'crash');
  t.match(k.log.lines().at(-1), /crashed: trap: unreachable at inner <- outer/);
});

t.test('the console buffer keeps the newest bytes', async (t) => {
  const c = new ConsoleBuffer(8);
  c.append(new TextEncoder().encode('abcdef'));
  c.append(new TextEncoder().encode('ghij'));
  t.equal(c.text(), 'cdefghij');
  t.equal(c.totalBytes, 10);
  c.append(new TextEncoder().encode('0123456789'));
  t.equal(c.text(), '23456789');
});
