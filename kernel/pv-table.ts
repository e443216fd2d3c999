/**
 * The paravirtual state every thread of a hypervisor shares: one
 * SharedArrayBuffer with a fixed-size slot per domain id holding its event
 * channel ports, pending and mask bitmaps and grant table. The main thread
 * and every vCPU host see the same words, so `send` and grant copies run on
 * the caller's own thread without a round trip; structural changes that
 * touch two domains (bind, close, destroy) take one global lock.
 *
 * The buffer is allocated once, untouched, for every possible domain id; the
 * operating system backs only the pages written. A domain pays for the grant
 * entries it uses, not for NR_GRANTS: grants are handed out lowest first and
 * a slot records the highest reference its domain ever used (H_GRANT_HI), so
 * `claim` clears only that much and an idle domain never touches its grant
 * pages (see docs/design.md, "Grants per domain"). Each slot has a generation,
 * bumped at every domain creation, so that state naming an earlier domain
 * with the same id (a port bound to it, a grant to it) is recognised as stale.
 */
import { InvalidArgumentError } from './errors.ts';

/** Ports per domain (port 0 is never used). */
export const NR_PORTS = 256;
/**
 * Grant references per domain (reference 0 is never used): enough for a
 * block frontend with two 1 MiB requests in flight (257 grants each) besides
 * its other devices. Costs virtual address space only, 16 bytes per grant;
 * memory is backed for the grants a domain has used.
 */
export const NR_GRANTS = 1024;
/** The page size of grants. */
export const PAGE_SIZE = 4096;
/** Virtual interrupts a domain can bind. */
export const Virq = { TIMER: 0, CONSOLE: 1, SHUTDOWN: 2, DOM_EXC: 3, STORE: 4 } as const;
export const NR_VIRQS = 5;

// Word offsets inside a slot.
export const H_LIVE = 0;          // 1 while a domain with this id exists
export const H_GEN = 1;           // generation of the current (or last) domain with this id
export const H_UPCALL = 2;        // 1 when an unmasked port became pending
export const H_HOME = 3;          // vCPU host index + 1 running the domain, 0 = none
export const H_PRIV = 4;          // 1 for a privileged domain
export const H_GRANT_HI = 5;      // highest grant reference this domain has used (0: none); written by its granter only
export const H_FROZEN = 6;        // 1 while the domain's memory is being saved: other domains' grant copies fail with -ESRCH
export const H_PENDING = 8;       // NR_PORTS / 32 words
export const H_MASK = H_PENDING + NR_PORTS / 32;
export const H_VIRQ = H_MASK + NR_PORTS / 32; // NR_VIRQS words: virq -> port (0 = unbound)
export const PORTS = 64;          // 4 words per port
export const PORT_WORDS = 4;
export const GRANTS = PORTS + NR_PORTS * PORT_WORDS; // GRANT_WORDS words per grant
export const GRANT_WORDS = 4;
export const SLOT_WORDS = GRANTS + NR_GRANTS * GRANT_WORDS;

/** Port states (word 0 of a port). */
export const PortState = { FREE: 0, UNBOUND: 1, INTERDOMAIN: 2, VIRQ: 3 } as const;
// Port words: 0 state, 1 remote domain, 2 remote port (or virq), 3 remote generation.

/** Grant flags (the low byte of a grant's FLAGS word). */
export const GrantFlag = { IN_USE: 1, READONLY: 2, ENDING: 4 } as const;
/** The grantee's domain id sits above the flags in the FLAGS word, so one atomic load reads both. */
export const GRANTEE_SHIFT = 8;
/**
 * Words of a grant entry: FLAGS (flags | grantee << GRANTEE_SHIFT; 0 = free),
 * PAGE (the granted page of the granter's memory), BUSY (copies and mappings
 * in progress), GEN (the grantee's generation when granted).
 */
export const GrantWord = { FLAGS: 0, PAGE: 1, BUSY: 2, GEN: 3 } as const;

/**
 * Extra words after the slots: 0 the global lock, 1 the host's doorbell
 * (events for domain 0's ports); then one doorbell and a wake bitmap per
 * vCPU host.
 */
const GLOBAL_WORDS = 16;

export class PvTable {
  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;
  readonly maxDomid: number;
  readonly hosts: number;
  readonly #base: number;
  readonly #wakeWords: number;

  /** Create a table, or attach to an existing buffer (vCPU hosts). */
  constructor(maxDomid: number, hosts: number, buffer?: SharedArrayBuffer) {
    // A grantee's id shares a word with the grant's flags.
    if (!Number.isInteger(maxDomid) || maxDomid < 0 || maxDomid >= 1 << (31 - GRANTEE_SHIFT)) throw new InvalidArgumentError('maxDomid', `${maxDomid} does not fit a grant entry`);
    this.maxDomid = maxDomid;
    this.hosts = hosts;
    this.#wakeWords = Math.ceil((maxDomid + 1) / 32);
    this.#base = (maxDomid + 1) * SLOT_WORDS;
    const words = this.#base + GLOBAL_WORDS + hosts * (1 + this.#wakeWords);
    this.buffer = buffer ?? new SharedArrayBuffer(words * 4);
    this.words = new Int32Array(this.buffer);
  }

  /** First word of domain `domid`'s slot. */
  slot(domid: number): number {
    return domid * SLOT_WORDS;
  }

  /** True when `domid` names a domain that exists now. */
  live(domid: number): boolean {
    return Number.isInteger(domid) && domid >= 0 && domid <= this.maxDomid && Atomics.load(this.words, this.slot(domid) + H_LIVE) === 1;
  }

  generation(domid: number): number {
    return Atomics.load(this.words, this.slot(domid) + H_GEN);
  }

  /** Run `fn` holding the global lock (short critical sections only). */
  locked<T>(fn: () => T): T {
    const lock = this.#base;
    while (Atomics.compareExchange(this.words, lock, 0, 1) !== 0) {
      Atomics.wait(this.words, lock, 1, 1);
    }
    try {
      return fn();
    } finally {
      Atomics.store(this.words, lock, 0);
      Atomics.notify(this.words, lock, 1);
    }
  }

  /**
   * Reset and claim the slot of a new domain (main thread). Clears the
   * header, ports and the grant entries the last domain with this id used;
   * entries above its H_GRANT_HI were never written.
   */
  claim(domid: number, privileged: boolean, resumeGeneration?: number, frozen = false): void {
    this.locked(() => {
      const s = this.slot(domid);
      // A restored domain takes back its generation when no other domain has had this id since it was saved:
      // the grants and ports others still hold for it are then its own again.
      const gen = resumeGeneration !== undefined && resumeGeneration === this.words[s + H_GEN] && Atomics.load(this.words, s + H_LIVE) === 0
        ? resumeGeneration : this.words[s + H_GEN]! + 1;
      const hi = Math.min(this.words[s + H_GRANT_HI]! >>> 0, NR_GRANTS - 1);
      this.words.fill(0, s, s + GRANTS + (hi + 1) * GRANT_WORDS);
      this.words[s + H_GEN] = gen;
      this.words[s + H_PRIV] = privileged ? 1 : 0;
      // A restored domain is claimed frozen (no grant copies by others) until its grants are back.
      this.words[s + H_FROZEN] = frozen ? 1 : 0;
      Atomics.store(this.words, s + H_LIVE, 1);
    });
  }

  /** Record which vCPU host runs the domain (index), or -1 for none. */
  setHome(domid: number, host: number): void {
    Atomics.store(this.words, this.slot(domid) + H_HOME, host + 1);
  }

  home(domid: number): number {
    return Atomics.load(this.words, this.slot(domid) + H_HOME) - 1;
  }

  /** Word index of the host's doorbell: bumped and notified when one of domain 0's ports becomes pending. */
  get hostDoorbell(): number {
    return this.#base + 1;
  }

  /** Word index of vCPU host `host`'s doorbell; its wake bitmap follows. */
  doorbell(host: number): number {
    return this.#base + GLOBAL_WORDS + host * (1 + this.#wakeWords);
  }

  get wakeWords(): number {
    return this.#wakeWords;
  }
}
