// Seeded fuzz of event channel and grant operations: random hypercall
// sequences from four domains with hostile arguments. Invariants: nothing
// throws; every result is a valid value or a known errno; memory changes
// only where a successful grant copy says it should; interdomain bindings
// always point at each other.
import t from 'tap';
import { PvTable, PortState, NR_PORTS, NR_GRANTS, PAGE_SIZE, GRANTS, GRANT_WORDS, GrantWord } from '../../kernel/pv-table.ts';
import { EventChannels } from '../../kernel/evtchn.ts';
import { GrantTables, viewMemories } from '../../kernel/grant.ts';
import { Errno } from '../../kernel/errno.ts';
import { prng, edgyI32 } from './prng.ts';

const SEED = Number(process.env.WV_FUZZ_SEED ?? 0xe7c4);
const ERRNOS = new Set(Object.values(Errno).map((n) => -n));
const DOMS = [1, 2, 3, 4];

t.test(`random event channel and grant operations (seed ${SEED})`, async (t) => {
  const rand = prng(SEED);
  const table = new PvTable(15, 1);
  const mem = new Map<number, Uint8Array>();
  const shadow = new Map<number, Uint8Array>();
  for (const d of DOMS) {
    table.claim(d, false);
    table.setHome(d, 0);
    const m = new Uint8Array(new SharedArrayBuffer(4 * PAGE_SIZE));
    for (let i = 0; i < m.length; i++) m[i] = (i * 31 + d) & 0xff;
    mem.set(d, m);
    shadow.set(d, m.slice());
  }
  const ev = new EventChannels(table, 0, () => {});
  const gt = new GrantTables(table, viewMemories((d) => mem.get(d)));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const small = (): number => (rand() < 0.7 ? Math.floor(rand() * 8) : edgyI32(rand));
  const domArg = (): number => (rand() < 0.8 ? pick(DOMS) : edgyI32(rand));
  const problems: string[] = [];
  const grants: [number, number, number][] = [];
  const succeeded = new Map<string, number>();
  const check = (what: string, r: number, ok: (r: number) => boolean): void => {
    if (ok(r)) succeeded.set(what, (succeeded.get(what) ?? 0) + 1);
    else if (!ERRNOS.has(r)) problems.push(`${what} returned ${r}`);
  };
  for (let step = 0; step < 20_000 && problems.length === 0; step++) {
    const me = pick(DOMS);
    const op = Math.floor(rand() * 11);
    try {
      switch (op) {
        case 0: check('alloc', ev.allocUnbound(me, domArg()), (r) => r > 0 && r < NR_PORTS); break;
        case 1: check('bind', ev.bindInterdomain(me, domArg(), small()), (r) => r > 0 && r < NR_PORTS); break;
        case 2: check('virq', ev.bindVirq(me, small()), (r) => r > 0 && r < NR_PORTS); break;
        case 3: check('send', ev.send(me, small()), (r) => r === 0); break;
        case 4: check('close', ev.close(me, small()), (r) => r === 0); break;
        case 5: check('unmask', rand() < 0.5 ? ev.mask(me, small()) : ev.unmask(me, small()), (r) => r === 0); break;
        case 6: check('pending', ev.takePending(me, small(), () => {}), (r) => r >= 0 && r <= NR_PORTS); break;
        case 7: {
          const grantee = domArg();
          const r = gt.grantAccess(me, grantee, small(), rand() < 0.5 ? 0 : small(), 4 * PAGE_SIZE);
          check('grant', r, (x) => x > 0 && x < NR_GRANTS);
          if (r > 0) grants.push([me, r, grantee]);
          break;
        }
        case 8: check('end', gt.endAccess(me, small()), (r) => r === 0); break;
        default: {
          // Half the time use a grant that was really made (it may have ended since).
          const known = grants.length > 0 && rand() < 0.5 ? pick(grants) : undefined;
          const granter = known ? known[0] : domArg();
          const gref = known ? known[1] : small();
          const caller = known ? known[2] : me;
          const offset = rand() < 0.7 ? Math.floor(rand() * PAGE_SIZE) : edgyI32(rand);
          const local = rand() < 0.7 ? Math.floor(rand() * 4 * PAGE_SIZE) : edgyI32(rand);
          const len = rand() < 0.7 ? Math.floor(rand() * 512) : edgyI32(rand);
          const toGrant = op === 10;
          // Work out the page before the copy: the grant entry may be ended later.
          const r = gt.copy(caller, granter, gref, offset, local, len, toGrant);
          check('copy', r, (x) => x === (len >>> 0));
          if (r >= 0) {
            const e = table.slot(granter) + GRANTS + (gref >>> 0) * GRANT_WORDS;
            const at = table.words[e + GrantWord.PAGE]! * PAGE_SIZE + (offset >>> 0);
            if (toGrant) shadow.get(granter)!.set(shadow.get(caller)!.subarray(local >>> 0, (local >>> 0) + r), at);
            else shadow.get(caller)!.set(shadow.get(granter)!.subarray(at, at + r), local >>> 0);
          }
        }
      }
    } catch (err) {
      problems.push(`step ${step} op ${op} threw ${String(err)}`);
    }
    for (const d of DOMS) {
      if (Buffer.compare(mem.get(d)!, shadow.get(d)!) !== 0) {
        problems.push(`step ${step} op ${op}: domain ${d}'s memory changed where no successful copy wrote`);
        break;
      }
    }
  }
  // Bindings are symmetric.
  for (const d of DOMS) {
    for (let p = 1; p < NR_PORTS; p++) {
      const s = ev.status(d, p);
      if (typeof s === 'number' || s.state !== PortState.INTERDOMAIN) continue;
      const back = ev.status(s.remote, s.remotePort);
      if (typeof back === 'number' || back.state !== PortState.INTERDOMAIN || back.remote !== d || back.remotePort !== p) {
        problems.push(`port ${d}:${p} -> ${s.remote}:${s.remotePort} is not bound back`);
      }
    }
  }
  t.same(problems, [], 'every invariant held');
  for (const what of ['alloc', 'bind', 'send', 'close', 'grant', 'end', 'copy']) {
    t.ok((succeeded.get(what) ?? 0) > 20, `${what} succeeded ${succeeded.get(what) ?? 0} times (the fuzz reaches real work)`);
  }
});
