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
import { GRANTS, GRANT_WORDS, GrantFlag, NR_GRANTS, PAGE_SIZE, PvTable } from './pv-table.ts';

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

  constructor(table: PvTable, memory: GuestMemories) {
    this.table = table;
    this.#w = table.words;
    this.#memory = memory;
  }

  #entry(dom: number, gref: number): number {
    return this.table.slot(dom) + GRANTS + gref * GRANT_WORDS;
  }

  /** Grant `grantee` access to page `page` of `dom`'s memory (`memBytes` long). */
  grantAccess(dom: number, grantee: number, page: number, readonly: number, memBytes: number): number {
    grantee >>>= 0;
    page >>>= 0;
    readonly >>>= 0;
    if (readonly > 1) return -Errno.EINVAL;
    if (grantee === dom) return -Errno.EINVAL;
    if (!this.table.live(grantee)) return -Errno.ESRCH;
    if ((page + 1) * PAGE_SIZE > memBytes) return -Errno.EFAULT;
    for (let g = 1; g < NR_GRANTS; g++) {
      const e = this.#entry(dom, g);
      if (Atomics.load(this.#w, e) !== 0 || Atomics.load(this.#w, e + 3) !== 0) continue;
      this.#w[e + 1] = grantee;
      this.#w[e + 2] = page;
      this.#w[e + 4] = this.table.generation(grantee);
      Atomics.store(this.#w, e, GrantFlag.IN_USE | (readonly ? GrantFlag.READONLY : 0));
      return g;
    }
    return -Errno.ENOSPC;
  }

  /** End grant `gref` of `dom`: 0, -EINVAL, or -EBUSY while a copy uses it. */
  endAccess(dom: number, gref: number): number {
    gref >>>= 0;
    if (gref === 0 || gref >= NR_GRANTS) return -Errno.EINVAL;
    const e = this.#entry(dom, gref);
    const flags = Atomics.load(this.#w, e);
    if ((flags & GrantFlag.IN_USE) === 0) return -Errno.EINVAL;
    if (Atomics.compareExchange(this.#w, e, flags, flags | GrantFlag.ENDING) !== flags) return -Errno.EBUSY;
    if (Atomics.load(this.#w, e + 3) !== 0) {
      Atomics.store(this.#w, e, flags);
      return -Errno.EBUSY;
    }
    Atomics.store(this.#w, e, 0);
    return 0;
  }

  /** End every grant of a domain being destroyed. */
  endAll(dom: number): void {
    for (let g = 1; g < NR_GRANTS; g++) Atomics.store(this.#w, this.#entry(dom, g), 0);
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
    if (gref === 0 || gref >= NR_GRANTS) return -Errno.EINVAL;
    if (offset + len > PAGE_SIZE) return -Errno.EINVAL;
    const mine = this.#memory.size(dom, local + len);
    if (mine === undefined) return -Errno.ESRCH;
    if (local + len > mine) return -Errno.EFAULT;
    const e = this.#entry(granter, gref);
    Atomics.add(this.#w, e + 3, 1);
    try {
      const flags = Atomics.load(this.#w, e);
      if ((flags & GrantFlag.IN_USE) === 0 || (flags & GrantFlag.ENDING) !== 0) return -Errno.EINVAL;
      if (this.#w[e + 1] !== dom || this.#w[e + 4] !== this.table.generation(dom)) return -Errno.EINVAL;
      if (toGrant && (flags & GrantFlag.READONLY) !== 0) return -Errno.EACCES;
      const at = this.#w[e + 2]! * PAGE_SIZE + offset;
      const theirs = this.#memory.size(granter, at + len);
      if (theirs === undefined) return -Errno.ESRCH;
      if (at + len > theirs) return -Errno.EFAULT;
      if (toGrant) this.#memory.copy(dom, local, granter, at, len);
      else this.#memory.copy(granter, at, dom, local, len);
      return len;
    } finally {
      Atomics.sub(this.#w, e + 3, 1);
    }
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
    if (gref === 0 || gref >= NR_GRANTS) return -Errno.EINVAL;
    const e = this.#entry(granter, gref);
    Atomics.add(this.#w, e + 3, 1);
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      Atomics.sub(this.#w, e + 3, 1);
    };
    const flags = Atomics.load(this.#w, e);
    let err = 0;
    if ((flags & GrantFlag.IN_USE) === 0 || (flags & GrantFlag.ENDING) !== 0) err = -Errno.EINVAL;
    else if (this.#w[e + 1] !== dom || this.#w[e + 4] !== this.table.generation(dom)) err = -Errno.EINVAL;
    else if (writable && (flags & GrantFlag.READONLY) !== 0) err = -Errno.EACCES;
    const mem = err === 0 ? this.#memory.view?.(granter) : undefined;
    const at = this.#w[e + 2]! * PAGE_SIZE;
    if (err === 0 && (mem === undefined || at + PAGE_SIZE > mem.length)) err = mem === undefined ? -Errno.ESRCH : -Errno.EFAULT;
    if (err !== 0) { release(); return err; }
    return { bytes: mem!.subarray(at, at + PAGE_SIZE), release };
  }

  /** How many grants `dom` has in use (for listings). */
  inUse(dom: number): number {
    let n = 0;
    for (let g = 1; g < NR_GRANTS; g++) if ((Atomics.load(this.#w, this.#entry(dom, g)) & GrantFlag.IN_USE) !== 0) n++;
    return n;
  }
}
