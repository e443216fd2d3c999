/**
 * Borrowed Virtual Time (BVT), the scheduler of Xen 1.2 (Duda and Cheriton,
 * SOSP 1999), for the domains of one physical CPU.
 *
 * Each domain has an actual virtual time (avt) that advances, while it runs,
 * by the time it ran times its `mcuadv` (minimum charging unit advance: the
 * inverse of its weight, so two domains with mcuadv 1 and 3 share a CPU
 * 3:1). The runnable domain with the lowest effective virtual time (evt)
 * runs; evt is avt minus `warp` while the domain is warped. A latency-
 * sensitive domain with a warp gets the CPU as soon as it wakes: it stays
 * warped for at most `warpl` and may warp again only after `warpu`
 * unwarped. The running domain keeps the CPU until its evt passes the best
 * waiting evt by the context-switch allowance (half a slice at the default
 * weight). A domain that wakes from sleep is brought up to the lowest avt
 * of the runnable domains, so sleeping earns no credit.
 *
 * All times are in nanoseconds; virtual times are ns x mcuadv.
 */

export interface BvtParams {
  /** Inverse weight, >= 1. Xen's default is 10. */
  readonly mcuadv: number;
  /** Virtual time subtracted while warped, ns (0: never warps). */
  readonly warp: number;
  /** Longest time warped at a stretch, ns (0: no limit). */
  readonly warpl: number;
  /** Unwarped time needed before warping again, ns. */
  readonly warpu: number;
}

export const DEFAULT_BVT: BvtParams = { mcuadv: 10, warp: 0, warpl: 0, warpu: 0 };

/** Check user-supplied parameters; returns an error text or undefined. */
export function bvtParamsProblem(p: BvtParams): string | undefined {
  if (!Number.isSafeInteger(p.mcuadv) || p.mcuadv < 1 || p.mcuadv > 1_000_000) return `mcuadv ${p.mcuadv} is not an integer from 1 to 1000000`;
  for (const k of ['warp', 'warpl', 'warpu'] as const) {
    if (!Number.isFinite(p[k]) || p[k] < 0 || p[k] > 3600e9) return `${k} ${p[k]} is not a time from 0 to 1 hour`;
  }
  return undefined;
}

/** The BVT state of one domain. */
export class BvtEntity {
  params: BvtParams;
  avt = 0;
  warped = false;
  /** When the current warp began, or when the last one ended (ns). */
  #warpEdge = -Infinity;

  constructor(params: BvtParams = DEFAULT_BVT) {
    this.params = params;
  }

  /** Effective virtual time, counting `pendingNs` of running not yet charged. */
  evt(pendingNs = 0): number {
    return this.avt + pendingNs * this.params.mcuadv - (this.warped ? this.params.warp : 0);
  }

  /** Charge `ranNs` of running that ended at `now`. */
  charge(ranNs: number, now: number): void {
    this.avt += ranNs * this.params.mcuadv;
    if (this.warped && this.params.warpl > 0 && now - this.#warpEdge >= this.params.warpl) {
      this.warped = false;
      this.#warpEdge = now;
    }
  }

  /** The domain became runnable after sleeping, at `now`, with `svt` the lowest avt of the runnable domains. */
  wake(now: number, svt: number): void {
    if (Number.isFinite(svt) && svt > this.avt) this.avt = svt;
    if (this.params.warp > 0 && !this.warped && now - this.#warpEdge >= this.params.warpu) {
      this.warped = true;
      this.#warpEdge = now;
    }
  }

  /** The domain blocked (a warp ends when the work that needed it is done). */
  sleep(now: number): void {
    if (this.warped) {
      this.warped = false;
      this.#warpEdge = now;
    }
  }
}

/** BVT decisions for one CPU. */
export class Bvt {
  /** Time slice, ns: the context-switch allowance is half a slice at the default weight. */
  sliceNs: number;

  constructor(sliceNs: number) {
    this.sliceNs = sliceNs;
  }

  get allowance(): number {
    return (this.sliceNs * DEFAULT_BVT.mcuadv) / 2;
  }

  /** The lowest avt among `entities` (the system virtual time), Infinity when empty. */
  svt<T>(entities: Iterable<T>, of: (t: T) => BvtEntity = (t) => t as BvtEntity): number {
    let min = Infinity;
    for (const e of entities) if (of(e).avt < min) min = of(e).avt;
    return min;
  }

  /** Index of the entity to run next: the lowest evt (the first of equals). */
  pick<T>(ready: readonly T[], of: (t: T) => BvtEntity = (t) => t as BvtEntity): number {
    let best = -1;
    let bestEvt = Infinity;
    for (let i = 0; i < ready.length; i++) {
      const evt = of(ready[i]!).evt();
      if (evt < bestEvt) {
        bestEvt = evt;
        best = i;
      }
    }
    return best;
  }

  /** Should the running entity, which has run `ranNs` uncharged, give way to one of `ready`? */
  shouldPreempt<T>(current: BvtEntity, ranNs: number, ready: readonly T[], of: (t: T) => BvtEntity = (t) => t as BvtEntity): boolean {
    if (ready.length === 0) return false;
    const best = of(ready[this.pick(ready, of)]!).evt();
    return current.evt(ranNs) > best + this.allowance;
  }
}
