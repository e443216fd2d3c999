/**
 * Grant tables, as in Xen: a domain grants one other domain access to one
 * 4 KiB page of its memory, read-only or read-write; the grantee copies to or
 * from the page through the kernel, which checks every copy against the
 * grant. Entries live in the shared PvTable, so a copy runs on the grantee's
 * own thread.
 *
 * Ending a grant while a copy uses it: the copier marks the entry busy
 * before it checks the entry and copies; `end` marks the entry ending before
 * it checks for busy copiers, and backs off with -EBUSY if there are any. With
 * sequentially consistent atomics one of the two always sees the other, so a
 * grant that `end` reports ended is never written again: the granter sees no
 * torn state from a copy that started after it believed the grant gone.
 */
import { Errno } from './errno.ts';
import { GRANTEE_SHIFT, GRANTS, GRANT_WORDS, GrantFlag, GrantWord, H_FROZEN, H_GRANT_HI, NR_GRANTS, PAGE_SIZE, PvTable } from './pv-table.ts';

const { FLAGS, PAGE, BUSY, GEN } = GrantWord;
const FLAG_MASK = (1 << GRANTEE_SHIFT) - 1;

/** How grant copies reach domains' memories. */
export interface GuestMemories {
  /**
   * The size in bytes of `domid`'s memory, at least `atLeast` if it is that
   * large (implementations may cache and refresh only when a memory has
   * grown), or undefined for a domain this thread does not know.
   */
  size(domid: number, atLeast: number): number | undefined;
  /** Copy `len` bytes; both ranges have been checked against size(). */
  copy(fromDom: number, fromOffset: number, toDom: number, toOffset: number, len: number): void;
  /** The domain's memory itself, where this thread can see it (for `map`). */
  view?(domid: number): Uint8Array | undefined;
}

/** A grant as a save holds it. */
export interface SavedGrant { gref: number; grantee: number; page: number; readonly: boolean; gen: number }

/** A granted page mapped by a backend: its bytes, until `release`. */
export interface GrantMapping {
  readonly bytes: Uint8Array;
  release(): void;
}

/** GuestMemories over plain views (tests, the main thread). */
export function viewMemories(lookup: (domid: number) => Uint8Array | undefined): GuestMemories {
  return {
    size: (domid) => lookup(domid)?.length,
    copy: (from, fromOffset, to, toOffset, len) => {
      lookup(to)!.set(lookup(from)!.subarray(fromOffset, fromOffset + len), toOffset);
    },
    view: lookup,
  };
}

export class GrantTables {
  readonly table: PvTable;
  readonly #w: Int32Array;
  readonly #memory: GuestMemories;
  // hold's arguments to holdMany (synchronous, so one pair serves every call).
  readonly #oneRef = new Uint32Array(1);
  readonly #oneOffset = new Int32Array(1);

  constructor(table: PvTable, memory: GuestMemories) {
    this.table = table;
    this.#w = table.words;
    this.#memory = memory;
  }

  #entry(dom: number, gref: number): number {
    return this.table.slot(dom) + GRANTS + gref * GRANT_WORDS;
  }

  /** Highest reference `dom` has used: entries above it are free and were never written. */
  #hi(dom: number): number {
    return Atomics.load(this.#w, this.table.slot(dom) + H_GRANT_HI);
  }

  /**
   * Grant `grantee` access to page `page` of `dom`'s memory (`memBytes`
   * long). Called only by `dom`'s own thread (or the host for domain 0):
   * it is the one writer of `dom`'s entries and high mark. The lowest free
   * reference is used, so a domain touches only as many entries as it
   * holds at its peak.
   */
  grantAccess(dom: number, grantee: number, page: number, readonly: number, memBytes: number): number {
    grantee >>>= 0;
    page >>>= 0;
    readonly >>>= 0;
    if (readonly > 1) return -Errno.EINVAL;
    if (grantee === dom) return -Errno.EINVAL;
    if (!this.table.live(grantee)) return -Errno.ESRCH;
    if ((page + 1) * PAGE_SIZE > memBytes) return -Errno.EFAULT;
    const hi = this.#hi(dom);
    let g = 1;
    for (; g <= hi; g++) {
      const e = this.#entry(dom, g);
      if (Atomics.load(this.#w, e + FLAGS) === 0 && Atomics.load(this.#w, e + BUSY) === 0) break;
    }
    if (g >= NR_GRANTS) return -Errno.ENOSPC;
    const e = this.#entry(dom, g);
    this.#w[e + PAGE] = page;
    this.#w[e + GEN] = this.table.generation(grantee);
    // The high mark before the flags: a reader that sees the entry in use sees it within the mark.
    if (g > hi) Atomics.store(this.#w, this.table.slot(dom) + H_GRANT_HI, g);
    Atomics.store(this.#w, e + FLAGS, GrantFlag.IN_USE | (readonly ? GrantFlag.READONLY : 0) | (grantee << GRANTEE_SHIFT));
    return g;
  }

  /** End grant `gref` of `dom`: 0, -EINVAL, or -EBUSY while a copy or mapping uses it. */
  endAccess(dom: number, gref: number): number {
    gref >>>= 0;
    if (gref === 0 || gref >= NR_GRANTS || gref > this.#hi(dom)) return -Errno.EINVAL;
    const e = this.#entry(dom, gref);
    const flags = Atomics.load(this.#w, e + FLAGS);
    if ((flags & GrantFlag.IN_USE) === 0) return -Errno.EINVAL;
    if (Atomics.compareExchange(this.#w, e + FLAGS, flags, flags | GrantFlag.ENDING) !== flags) return -Errno.EBUSY;
    if (Atomics.load(this.#w, e + BUSY) !== 0) {
      Atomics.store(this.#w, e + FLAGS, flags);
      return -Errno.EBUSY;
    }
    Atomics.store(this.#w, e + FLAGS, 0);
    return 0;
  }

  /**
   * Keep other domains' grant copies out of `dom`'s memory while it is
   * saved: from now on they fail with -ESRCH, as if it were away. Copies
   * already under way finish; `copiesUnderWay` says when none is left.
   * `thaw` ends it.
   */
  freeze(dom: number): void {
    Atomics.store(this.#w, this.table.slot(dom) + H_FROZEN, 1);
  }

  thaw(dom: number): void {
    Atomics.store(this.#w, this.table.slot(dom) + H_FROZEN, 0);
  }

  /** True while a domain other than 0 is copying to or from one of `dom`'s grants (domain 0's backends hold ring pages mapped for as long as they are connected). */
  copiesUnderWay(dom: number): boolean {
    const hi = Math.min(this.#hi(dom), NR_GRANTS - 1);
    for (let g = 1; g <= hi; g++) {
      const e = this.#entry(dom, g);
      if (Atomics.load(this.#w, e + BUSY) !== 0 && (Atomics.load(this.#w, e + FLAGS) >>> GRANTEE_SHIFT) !== 0) return true;
    }
    return false;
  }

  /** The grants `dom` holds out, as a save keeps them (main thread). */
  exportGrants(dom: number): SavedGrant[] {
    const out: SavedGrant[] = [];
    const hi = Math.min(this.#hi(dom), NR_GRANTS - 1);
    for (let g = 1; g <= hi; g++) {
      const e = this.#entry(dom, g);
      const flags = Atomics.load(this.#w, e + FLAGS);
      if ((flags & GrantFlag.IN_USE) === 0 || (flags & GrantFlag.ENDING) !== 0) continue;
      out.push({ gref: g, grantee: flags >>> GRANTEE_SHIFT, page: this.#w[e + PAGE]!, readonly: (flags & GrantFlag.READONLY) !== 0, gen: this.#w[e + GEN]! });
    }
    return out;
  }

  /**
   * Put a saved domain's grants back at the same references, on `dom` (a
   * fresh domain of `memBytes`, before it runs). A grant comes back when its
   * grantee is still the domain it was (same generation). Returns the grants
   * it could not bring back, with why.
   */
  restoreGrants(dom: number, grants: readonly SavedGrant[], memBytes: number): string[] {
    const lost: string[] = [];
    let hi = this.#hi(dom);
    for (const sg of grants) {
      const ok = typeof sg === 'object' && sg !== null && Number.isInteger(sg.gref) && sg.gref >= 1 && sg.gref < NR_GRANTS
        && Number.isInteger(sg.page) && sg.page >= 0 && (sg.page + 1) * PAGE_SIZE <= memBytes && Number.isInteger(sg.grantee);
      if (!ok) {
        lost.push(`grant ${sg?.gref}: malformed or outside the domain's memory`);
        continue;
      }
      const e = this.#entry(dom, sg.gref);
      if (Atomics.load(this.#w, e + FLAGS) !== 0) {
        lost.push(`grant ${sg.gref}: given twice`);
        continue;
      }
      if (sg.grantee === dom || !this.table.live(sg.grantee) || this.table.generation(sg.grantee) !== sg.gen) {
        lost.push(`grant ${sg.gref}: to domain ${sg.grantee}, which is gone`);
        continue;
      }
      this.#w[e + PAGE] = sg.page;
      this.#w[e + GEN] = sg.gen;
      if (sg.gref > hi) {
        hi = sg.gref;
        Atomics.store(this.#w, this.table.slot(dom) + H_GRANT_HI, hi);
      }
      Atomics.store(this.#w, e + FLAGS, GrantFlag.IN_USE | (sg.readonly ? GrantFlag.READONLY : 0) | (sg.grantee << GRANTEE_SHIFT));
    }
    return lost;
  }

  /** End every grant of a domain being destroyed. */
  endAll(dom: number): void {
    const hi = Math.min(this.#hi(dom), NR_GRANTS - 1);
    for (let g = 1; g <= hi; g++) Atomics.store(this.#w, this.#entry(dom, g) + FLAGS, 0);
  }

  /**
   * Check a grant entry for use by `dom` (of generation `gen`), with its busy
   * count already raised: 0 or a negative errno.
   */
  #check(dom: number, gen: number, e: number, writable: boolean): number {
    const flags = Atomics.load(this.#w, e + FLAGS);
    // In use, granted to `dom`, not ending; READONLY is the one flag that may differ.
    if ((flags & ~GrantFlag.READONLY) !== (GrantFlag.IN_USE | (dom << GRANTEE_SHIFT)) || this.#w[e + GEN] !== gen) return -Errno.EINVAL;
    if (writable && (flags & GrantFlag.READONLY) !== 0) return -Errno.EACCES;
    return 0;
  }

  /**
   * Copy between `dom`'s memory and the page `granter` granted as `gref`.
   * `toGrant` writes into the granted page. Returns `len` or a negative errno.
   */
  copy(dom: number, granter: number, gref: number, offset: number, local: number, len: number, toGrant: boolean): number {
    granter >>>= 0;
    gref >>>= 0;
    offset >>>= 0;
    local >>>= 0;
    len >>>= 0;
    if (!this.table.live(granter) || granter === dom) return granter === dom ? -Errno.EINVAL : -Errno.ESRCH;
    const frozen = this.table.slot(granter) + H_FROZEN;
    if (dom !== 0 && Atomics.load(this.#w, frozen) !== 0) return -Errno.ESRCH;
    if (gref === 0 || gref >= NR_GRANTS || gref > this.#hi(granter)) return -Errno.EINVAL;
    if (offset + len > PAGE_SIZE) return -Errno.EINVAL;
    const mine = this.#memory.size(dom, local + len);
    if (mine === undefined) return -Errno.ESRCH;
    if (local + len > mine) return -Errno.EFAULT;
    const e = this.#entry(granter, gref);
    Atomics.add(this.#w, e + BUSY, 1);
    try {
      // After raising busy: a freeze either sees this copy busy and waits for it, or this copy sees the freeze.
      // Domain 0's backends are not kept out: a save stops them itself (runtime/save/devices.ts).
      if (dom !== 0 && Atomics.load(this.#w, frozen) !== 0) return -Errno.ESRCH;
      const err = this.#check(dom, this.table.generation(dom), e, toGrant);
      if (err !== 0) return err;
      const at = this.#w[e + PAGE]! * PAGE_SIZE + offset;
      const theirs = this.#memory.size(granter, at + len);
      if (theirs === undefined) return -Errno.ESRCH;
      if (at + len > theirs) return -Errno.EFAULT;
      if (toGrant) this.#memory.copy(dom, local, granter, at, len);
      else this.#memory.copy(granter, at, dom, local, len);
      return len;
    } finally {
      Atomics.sub(this.#w, e + BUSY, 1);
    }
  }

  /**
   * The memory of `granter` as this thread sees it, for `hold`: one lookup
   * for a request of many pages.
   */
  memoryOf(granter: number): Uint8Array | undefined {
    return this.#memory.view?.(granter >>> 0);
  }

  /**
   * Hold the page `granter` granted to `dom` as `gref`, for a backend in the
   * host that reads or writes it directly, without allocating. `limit` is
   * the length of the caller's view of the granter's memory (`memoryOf`).
   * Returns the page's byte offset in that view, or a negative errno (as
   * `copy`). While held the granter cannot end the grant (-EBUSY). Every
   * success must be matched by exactly one `unhold(granter, gref)`; a
   * failure holds nothing.
   */
  hold(dom: number, granter: number, gref: number, writable: boolean, limit: number): number {
    this.#oneRef[0] = gref;
    const r = this.holdMany(dom, granter, this.#oneRef, 1, writable, limit, this.#oneOffset);
    return r < 0 ? r : this.#oneOffset[0]!;
  }

  /**
   * `hold` for the first `count` references of `grefs` at once (a block
   * request's 256 pages): the granter is looked up once, each entry costs
   * two atomic operations. All or nothing: returns 0 with every page held
   * and its offset in `offsets[i]`, or the first error with none held.
   * Release with `unholdMany(granter, grefs, count)`.
   */
  holdMany(dom: number, granter: number, grefs: ArrayLike<number>, count: number, writable: boolean, limit: number, offsets: { [i: number]: number }): number {
    granter >>>= 0;
    if (!this.table.live(granter) || granter === dom) return granter === dom ? -Errno.EINVAL : -Errno.ESRCH;
    const hi = Math.min(this.#hi(granter), NR_GRANTS - 1);
    const gen = this.table.generation(dom);
    const base = this.table.slot(granter) + GRANTS;
    const w = this.#w;
    // #check, inlined: this loop runs for every page of every block request.
    const want = GrantFlag.IN_USE | (dom << GRANTEE_SHIFT);
    const ro = GrantFlag.READONLY;
    for (let i = 0; i < count; i++) {
      const gref = grefs[i]! >>> 0;
      let err = -Errno.EINVAL;
      if (gref !== 0 && gref <= hi) {
        const e = base + gref * GRANT_WORDS;
        Atomics.add(w, e + BUSY, 1);
        const flags = Atomics.load(w, e + FLAGS);
        const at = w[e + PAGE]! * PAGE_SIZE;
        const mine = (flags & ~ro) === want && w[e + GEN] === gen;
        if (mine && (!writable || (flags & ro) === 0) && at + PAGE_SIZE <= limit) {
          offsets[i] = at;
          continue;
        }
        err = !mine ? -Errno.EINVAL : writable && (flags & ro) !== 0 ? -Errno.EACCES : -Errno.EFAULT;
        Atomics.sub(w, e + BUSY, 1);
      }
      this.unholdMany(granter, grefs, i);
      return err;
    }
    return 0;
  }

  /** Let go of a page `hold` returned. */
  unhold(granter: number, gref: number): void {
    Atomics.sub(this.#w, this.#entry(granter >>> 0, gref >>> 0) + BUSY, 1);
  }

  /** Let go of the pages one `holdMany` held. */
  unholdMany(granter: number, grefs: ArrayLike<number>, count: number): void {
    const base = this.table.slot(granter >>> 0) + GRANTS;
    for (let i = 0; i < count; i++) Atomics.sub(this.#w, base + (grefs[i]! >>> 0) * GRANT_WORDS + BUSY, 1);
  }

  /**
   * Map the page `granter` granted to `dom` as `gref`, for a backend in the
   * host to read or write it directly (a block backend reads the disk
   * straight into it). Returns the page's bytes and a release function, or
   * a negative errno (as `copy`). Until released the granter cannot end the
   * grant (-EBUSY), as with a Xen grant mapping; `release` is idempotent.
   */
  map(dom: number, granter: number, gref: number, writable: boolean): GrantMapping | number {
    granter >>>= 0;
    gref >>>= 0;
    if (!this.table.live(granter) || granter === dom) return granter === dom ? -Errno.EINVAL : -Errno.ESRCH;
    const mem = this.memoryOf(granter);
    if (mem === undefined) {
      // Report a bad reference before a memory this thread cannot see.
      const r = this.hold(dom, granter, gref, writable, Number.MAX_SAFE_INTEGER);
      if (r < 0) return r;
      this.unhold(granter, gref);
      return -Errno.ESRCH;
    }
    const at = this.hold(dom, granter, gref, writable, mem.length);
    if (at < 0) return at;
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      this.unhold(granter, gref);
    };
    return { bytes: mem.subarray(at, at + PAGE_SIZE), release };
  }

  /** How many grants `dom` has in use (for listings). */
  inUse(dom: number): number {
    let n = 0;
    const hi = Math.min(this.#hi(dom), NR_GRANTS - 1);
    for (let g = 1; g <= hi; g++) if ((Atomics.load(this.#w, this.#entry(dom, g) + FLAGS) & GrantFlag.IN_USE) !== 0) n++;
    return n;
  }
}
