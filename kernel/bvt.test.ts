import t from 'tap';
import { Bvt, BvtEntity, bvtParamsProblem, DEFAULT_BVT } from './bvt.ts';

/** Simulate one CPU: always-runnable entities, 100 µs scheduling granularity, for `totalNs`. */
function simulate(bvt: Bvt, entities: BvtEntity[], totalNs: number): number[] {
  const ran = entities.map(() => 0);
  const step = 100_000;
  let now = 0;
  let cur = bvt.pick(entities);
  let pending = 0;
  while (now < totalNs) {
    now += step;
    pending += step;
    ran[cur] = ran[cur]! + step;
    const others = entities.filter((_, i) => i !== cur);
    if (bvt.shouldPreempt(entities[cur]!, pending, others)) {
      entities[cur]!.charge(pending, now);
      pending = 0;
      cur = bvt.pick(entities);
    }
  }
  return ran;
}

t.test('CPU time follows the weights (mcuadv 1:3 gets 3:1)', async (t) => {
  const heavy = new BvtEntity({ ...DEFAULT_BVT, mcuadv: 1 });
  const light = new BvtEntity({ ...DEFAULT_BVT, mcuadv: 3 });
  const [h, l] = simulate(new Bvt(10e6), [heavy, light], 2e9);
  t.ok(Math.abs(h! / l! - 3) < 0.3, `ratio ${(h! / l!).toFixed(2)}`);
});

t.test('equal weights share equally and switch about once a slice', async (t) => {
  const a = new BvtEntity();
  const b = new BvtEntity();
  const [x, y] = simulate(new Bvt(10e6), [a, b], 1e9);
  t.ok(Math.abs(x! / y! - 1) < 0.05);
});

t.test('a sleeper wakes at the system virtual time and earns no credit', async (t) => {
  const bvt = new Bvt(10e6);
  const runner = new BvtEntity();
  runner.charge(5e9, 5e9);
  const sleeper = new BvtEntity();
  sleeper.wake(5e9, bvt.svt([runner]));
  t.equal(sleeper.avt, runner.avt, 'brought up to the runner');
  t.notOk(bvt.shouldPreempt(runner, 0, [sleeper]), 'so it does not preempt at once');
});

t.test('a warped domain preempts at once, within its warp limits', async (t) => {
  const bvt = new Bvt(10e6);
  const spinner = new BvtEntity();
  const fast = new BvtEntity({ mcuadv: 10, warp: 1e9, warpl: 50e6, warpu: 100e6 });
  spinner.charge(1e9, 1e9);
  fast.wake(1e9, bvt.svt([spinner]));
  t.ok(fast.warped);
  t.ok(bvt.shouldPreempt(spinner, 0, [fast]), 'the warped domain takes the CPU');
  fast.charge(60e6, 1.06e9);
  t.notOk(fast.warped, 'it unwarps after warpl');
  fast.sleep(1.07e9);
  fast.wake(1.08e9, bvt.svt([spinner]));
  t.notOk(fast.warped, 'and may not warp again before warpu');
  fast.sleep(1.09e9);
  fast.wake(1.2e9, bvt.svt([spinner]));
  t.ok(fast.warped, 'but may after it');
});

t.test('parameters are checked', async (t) => {
  t.equal(bvtParamsProblem(DEFAULT_BVT), undefined);
  t.match(bvtParamsProblem({ ...DEFAULT_BVT, mcuadv: 0 }), /mcuadv 0/);
  t.match(bvtParamsProblem({ ...DEFAULT_BVT, warp: -1 }), /warp -1/);
  t.match(bvtParamsProblem({ ...DEFAULT_BVT, warpl: Number.NaN }), /warpl NaN/);
});
