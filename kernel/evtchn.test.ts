import t from 'tap';
import { PvTable, PortState, Virq, NR_PORTS, H_UPCALL } from './pv-table.ts';
import { EventChannels } from './evtchn.ts';
import { Errno } from './errno.ts';

/** Three live domains (1, 2, 3) on one vCPU host (0); wake-ups are recorded. */
function setup() {
  const table = new PvTable(15, 1);
  for (const d of [1, 2, 3]) { table.claim(d, false); table.setHome(d, 0); }
  const woken: number[] = [];
  const ev = new EventChannels(table, 0, (d) => woken.push(d));
  const pending = (d: number): number[] => {
    const out: number[] = [];
    ev.takePending(d, 8, (k, bits) => { for (let b = 0; b < 32; b++) if (bits & (1 << b)) out.push(k * 32 + b); });
    return out;
  };
  return { table, ev, woken, pending };
}

t.test('alloc-unbound, bind-interdomain, send both ways', async (t) => {
  const { ev, woken, pending } = setup();
  const p1 = ev.allocUnbound(1, 2);
  t.equal(p1, 1);
  t.same(ev.status(1, p1), { state: PortState.UNBOUND, remote: 2, remotePort: 0, virq: 0 });
  const p2 = ev.bindInterdomain(2, 1, p1);
  t.equal(p2, 1);
  t.same(ev.status(1, p1), { state: PortState.INTERDOMAIN, remote: 2, remotePort: p2, virq: 0 });
  t.equal(ev.send(1, p1), 0);
  t.same(woken, [2]);
  t.same(pending(2), [p2]);
  t.same(pending(2), [], 'taking pending clears it');
  t.equal(ev.send(2, p2), 0);
  t.same(woken, [2, 1]);
  t.same(pending(1), [p1]);
});

t.test('a domain may bind to itself (loopback)', async (t) => {
  const { ev, pending } = setup();
  const a = ev.allocUnbound(1, 1);
  const b = ev.bindInterdomain(1, 1, a);
  t.ok(b > 0 && b !== a);
  ev.send(1, a);
  t.same(pending(1), [b]);
});

t.test('hostile: send on unbound, closed, free and foreign ports', async (t) => {
  const { ev, woken } = setup();
  const un = ev.allocUnbound(1, 2);
  t.equal(ev.send(1, un), -Errno.EINVAL, 'unbound');
  t.equal(ev.send(1, 77), -Errno.EINVAL, 'never allocated');
  t.equal(ev.send(1, 0), -Errno.EINVAL, 'port 0');
  t.equal(ev.send(1, NR_PORTS), -Errno.EINVAL, 'past the table');
  t.equal(ev.send(1, -1), -Errno.EINVAL, 'negative (2^32 - 1)');
  const p3 = ev.allocUnbound(3, 2);
  ev.bindInterdomain(2, 3, p3);
  t.equal(ev.send(1, 2), -Errno.EINVAL, 'a port number that is only bound in another domain');
  t.equal(ev.close(1, un), 0);
  t.equal(ev.send(1, un), -Errno.EINVAL, 'closed');
  t.equal(ev.close(1, un), -Errno.EINVAL, 'closing twice');
  t.same(woken, [], 'nobody was woken');
});

t.test('hostile: binding to a missing domain or a port not offered to you', async (t) => {
  const { ev } = setup();
  t.equal(ev.allocUnbound(1, 9), -Errno.ESRCH, 'alloc for a domain that does not exist');
  t.equal(ev.bindInterdomain(1, 9, 1), -Errno.ESRCH, 'bind to a domain that does not exist');
  t.equal(ev.bindInterdomain(1, 100000, 1), -Errno.ESRCH, 'a domain id past the table');
  const offeredTo3 = ev.allocUnbound(2, 3);
  t.equal(ev.bindInterdomain(1, 2, offeredTo3), -Errno.EINVAL, 'offered to someone else');
  t.equal(ev.bindInterdomain(1, 2, 200), -Errno.EINVAL, 'a free port');
  t.equal(ev.bindInterdomain(1, 2, 4096), -Errno.EINVAL, 'out of range');
  t.ok(ev.bindInterdomain(3, 2, offeredTo3) > 0, 'the right domain can bind');
  t.equal(ev.bindInterdomain(3, 2, offeredTo3), -Errno.EINVAL, 'but only once');
});

t.test('closing one end makes the other unbound, offered back', async (t) => {
  const { ev, woken } = setup();
  const a = ev.allocUnbound(1, 2);
  const b = ev.bindInterdomain(2, 1, a);
  t.equal(ev.close(2, b), 0);
  t.same(ev.status(1, a), { state: PortState.UNBOUND, remote: 2, remotePort: 0, virq: 0 });
  t.equal(ev.send(1, a), -Errno.EINVAL);
  t.ok(ev.bindInterdomain(2, 1, a) > 0, 'can be bound again');
  t.same(woken, []);
});

t.test('mask and unmask', async (t) => {
  const { table, ev, woken, pending } = setup();
  const a = ev.allocUnbound(1, 2);
  const b = ev.bindInterdomain(2, 1, a);
  t.equal(ev.mask(2, b), 0);
  ev.send(1, a);
  t.same(woken, [], 'a masked port does not wake');
  t.same(pending(2), [], 'and is not reported');
  t.equal(ev.unmask(2, b), 0);
  t.same(woken, [2], 'unmasking a pending port wakes the domain');
  t.equal(Atomics.load(table.words, table.slot(2) + H_UPCALL), 1);
  t.same(pending(2), [b]);
  t.equal(ev.mask(2, 0), -Errno.EINVAL);
  t.equal(ev.unmask(2, 999), -Errno.EINVAL);
});

t.test('virqs', async (t) => {
  const { table, ev, woken, pending } = setup();
  const p = ev.bindVirq(1, Virq.TIMER);
  t.ok(p > 0);
  t.equal(ev.bindVirq(1, Virq.TIMER), -Errno.EINVAL, 'already bound');
  t.equal(ev.bindVirq(1, 99), -Errno.EINVAL, 'unknown');
  t.equal(ev.bindVirq(1, Virq.DOM_EXC), -Errno.EPERM, 'dom-exc is for privileged domains');
  table.claim(4, true);
  t.ok(ev.bindVirq(4, Virq.DOM_EXC) > 0, 'a privileged domain may');
  t.equal(ev.send(1, p), -Errno.EINVAL, 'a virq port cannot be sent on');
  t.ok(ev.raiseVirq(1, Virq.TIMER));
  t.same(woken, [1]);
  t.same(pending(1), [p]);
  t.same(ev.status(1, p), { state: PortState.VIRQ, remote: 0, remotePort: 0, virq: Virq.TIMER });
  ev.close(1, p);
  t.notOk(ev.raiseVirq(1, Virq.TIMER), 'closed virq ports are not raised');
});

t.test('the port limit is enforced', async (t) => {
  const { ev } = setup();
  for (let i = 1; i < NR_PORTS; i++) t.equal(ev.allocUnbound(1, 2), i);
  t.equal(ev.allocUnbound(1, 2), -Errno.ENOSPC);
  t.equal(ev.bindVirq(1, Virq.TIMER), -Errno.ENOSPC);
  ev.close(1, 17);
  t.equal(ev.allocUnbound(1, 2), 17, 'a closed port is reused');
});

t.test('destroying a domain unbinds its peers and stale generations are ignored', async (t) => {
  const { table, ev, woken } = setup();
  const a = ev.allocUnbound(1, 2);
  const b = ev.bindInterdomain(2, 1, a);
  const offered = ev.allocUnbound(3, 2);
  ev.closeAll(2);
  t.notOk(table.live(2));
  t.same(ev.status(1, a), { state: PortState.UNBOUND, remote: 2, remotePort: 0, virq: 0 });
  table.claim(2, false); // a new domain 2
  table.setHome(2, 0);
  t.equal(ev.bindInterdomain(2, 3, offered), -Errno.EINVAL, 'a port offered to the old domain 2 is not offered to the new one');
  t.equal(ev.bindInterdomain(2, 1, a), -Errno.EINVAL, 'nor is the old binding');
  t.same(woken, []);
  void b;
});
