/**
 * The store: a small tree of named values through which a frontend and its
 * backend find each other and agree on a connection, as Xen's xenstore.
 * Pure book-keeping, no I/O (the hypercalls and the toolstack call it).
 *
 * - Paths are absolute (`/local/domain/3/device/vbd/51712/state`) or
 *   relative to the caller's home, `/local/domain/<caller>`. Components are
 *   letters, digits and `_-.@`; a path is at most 1024 bytes; a value at
 *   most 4096.
 * - Each node has an owner and a list of other domains that may read it,
 *   or read and write it. A new node inherits its parent's list and is owned
 *   by its creator (or, when domain 0 creates it, by the parent's owner);
 *   creating one needs write access to its nearest existing ancestor.
 *   Domain 0 (the host) may do anything.
 * - A domain owns at most `quota` nodes (-ENOSPC past it).
 * - Watches: a domain watching a path gets an event, the changed path,
 *   whenever a node at or under it is written or removed and it may read
 *   that node (removals always). A new watch fires once at once, so a
 *   watcher never misses the state it started from. Events wait in a
 *   bounded queue per domain; when it overflows the oldest is dropped.
 */
import { Errno } from './errno.ts';

export const MAX_PATH = 1024;
export const MAX_VALUE = 4096;
export const MAX_EVENTS = 256;
const COMPONENT = /^[A-Za-z0-9_.@-]+$/;
const utf8 = new TextEncoder();
const bytes = (s: string): number => utf8.encode(s).length;

export interface StorePerms {
  owner: number;
  /** Other domains and what they may do. */
  others: Array<{ domid: number; write: boolean }>;
}

interface Node {
  value: string;
  perms: StorePerms;
  children: Map<string, Node>;
}

export interface StoreOptions {
  /** Nodes one domain may own. Default 1000. */
  quota?: number;
  /** A domain has a new watch event queued (raise its store virq). */
  onEvent?: (domid: number) => void;
}

export class Store {
  readonly #root: Node = { value: '', perms: { owner: 0, others: [] }, children: new Map() };
  readonly #owned = new Map<number, number>();
  readonly #watches = new Map<number, Set<string>>();
  readonly #events = new Map<number, string[]>();
  readonly #quota: number;
  readonly #onEvent: (domid: number) => void;

  constructor(opts: StoreOptions = {}) {
    this.#quota = opts.quota ?? 1000;
    this.#onEvent = opts.onEvent ?? (() => {});
  }

  /** The absolute form of `path` for `caller`, or -EINVAL. */
  resolve(caller: number, path: string): string | number {
    if (path.length === 0 || bytes(path) > MAX_PATH) return -Errno.EINVAL;
    const abs = path.startsWith('/') ? path : `/local/domain/${caller}/${path}`;
    if (abs === '/') return abs;
    const parts = abs.slice(1).split('/');
    if (!parts.every((p) => COMPONENT.test(p) && p !== '.' && p !== '..')) return -Errno.EINVAL;
    return abs;
  }

  #walk(abs: string): { node?: Node; chain: Node[] } {
    const chain: Node[] = [this.#root];
    if (abs === '/') return { node: this.#root, chain };
    let n: Node | undefined = this.#root;
    for (const p of abs.slice(1).split('/')) {
      n = n.children.get(p);
      if (!n) return { chain };
      chain.push(n);
    }
    return { node: n, chain };
  }

  #canRead(dom: number, n: Node): boolean {
    return dom === 0 || n.perms.owner === dom || n.perms.others.some((o) => o.domid === dom);
  }

  #canWrite(dom: number, n: Node): boolean {
    return dom === 0 || n.perms.owner === dom || n.perms.others.some((o) => o.domid === dom && o.write);
  }

  /** The node at `path` if `caller` may read it, else -EINVAL, -ENOENT or -EACCES. */
  #readable(caller: number, path: string): Node | number {
    const abs = this.resolve(caller, path);
    if (typeof abs === 'number') return abs;
    const { node } = this.#walk(abs);
    if (!node) return -Errno.ENOENT;
    if (!this.#canRead(caller, node)) return -Errno.EACCES;
    return node;
  }

  read(caller: number, path: string): string | number {
    const node = this.#readable(caller, path);
    return typeof node === 'number' ? node : node.value;
  }

  list(caller: number, path: string): string[] | number {
    const node = this.#readable(caller, path);
    return typeof node === 'number' ? node : [...node.children.keys()].sort();
  }

  /** Write (creating the node and missing parents). 0 or a negative errno. */
  write(caller: number, path: string, value: string): number {
    const abs = this.resolve(caller, path);
    if (typeof abs === 'number') return abs;
    if (abs === '/') return -Errno.EINVAL;
    if (bytes(value) > MAX_VALUE) return -Errno.E2BIG;
    const parts = abs.slice(1).split('/');
    let n = this.#root;
    let i = 0;
    for (; i < parts.length; i++) {
      const c = n.children.get(parts[i]!);
      if (!c) break;
      n = c;
    }
    if (i === parts.length) {
      if (!this.#canWrite(caller, n)) return -Errno.EACCES;
      n.value = value;
    } else {
      if (!this.#canWrite(caller, n)) return -Errno.EACCES;
      const creating = parts.length - i;
      if (caller !== 0 && (this.#owned.get(caller) ?? 0) + creating > this.#quota) return -Errno.ENOSPC;
      for (; i < parts.length; i++) {
        // As in xenstored: a new node inherits its parent's permissions; a
        // domain other than 0 becomes its owner (domain 0's nodes keep the
        // parent's owner, so what the toolstack writes in a guest's home
        // stays the guest's).
        const owner = caller === 0 ? n.perms.owner : caller;
        const child: Node = { value: '', perms: { owner, others: n.perms.others.map((o) => ({ ...o })) }, children: new Map() };
        n.children.set(parts[i]!, child);
        this.#owned.set(owner, (this.#owned.get(owner) ?? 0) + 1);
        n = child;
      }
      n.value = value;
    }
    this.#fire(abs, false);
    return 0;
  }

  /** Remove a node and everything under it. */
  remove(caller: number, path: string): number {
    const abs = this.resolve(caller, path);
    if (typeof abs === 'number') return abs;
    if (abs === '/') return -Errno.EINVAL;
    const { node, chain } = this.#walk(abs);
    if (!node) return -Errno.ENOENT;
    const parent = chain[chain.length - 2]!;
    if (!this.#canWrite(caller, parent) && !this.#canWrite(caller, node)) return -Errno.EACCES;
    const count = (x: Node): void => {
      this.#owned.set(x.perms.owner, (this.#owned.get(x.perms.owner) ?? 1) - 1);
      for (const c of x.children.values()) count(c);
    };
    count(node);
    parent.children.delete(abs.slice(abs.lastIndexOf('/') + 1));
    this.#fire(abs, true);
    return 0;
  }

  getPerms(caller: number, path: string): StorePerms | number {
    const node = this.#readable(caller, path);
    return typeof node === 'number' ? node : { owner: node.perms.owner, others: node.perms.others.map((o) => ({ ...o })) };
  }

  /** Set a node's permissions: its owner or domain 0 only. */
  setPerms(caller: number, path: string, perms: StorePerms): number {
    const abs = this.resolve(caller, path);
    if (typeof abs === 'number') return abs;
    const { node } = this.#walk(abs);
    if (!node) return -Errno.ENOENT;
    if (caller !== 0 && node.perms.owner !== caller) return -Errno.EACCES;
    if (perms.owner !== node.perms.owner) {
      this.#owned.set(node.perms.owner, (this.#owned.get(node.perms.owner) ?? 1) - 1);
      this.#owned.set(perms.owner, (this.#owned.get(perms.owner) ?? 0) + 1);
    }
    node.perms = { owner: perms.owner, others: perms.others.map((o) => ({ ...o })) };
    this.#fire(abs, false);
    return 0;
  }

  /** Watch `path` and everything under it; fires once now. */
  watch(caller: number, path: string): number {
    const abs = this.resolve(caller, path);
    if (typeof abs === 'number') return abs;
    let set = this.#watches.get(caller);
    if (!set) this.#watches.set(caller, (set = new Set()));
    if (caller !== 0 && set.size >= 128 && !set.has(abs)) return -Errno.ENOSPC;
    set.add(abs);
    this.#queue(caller, abs);
    return 0;
  }

  unwatch(caller: number, path: string): number {
    const abs = this.resolve(caller, path);
    if (typeof abs === 'number') return abs;
    return this.#watches.get(caller)?.delete(abs) ? 0 : -Errno.ENOENT;
  }

  /** The oldest pending watch event of `domid` (a path), or undefined. */
  nextEvent(domid: number): string | undefined {
    return this.#events.get(domid)?.shift();
  }

  /** A domain is gone: its home, watches and events go; watchers of its home hear of it. */
  releaseDomain(domid: number): void {
    this.#watches.delete(domid);
    this.#events.delete(domid);
    const home = `/local/domain/${domid}`;
    if (this.#walk(home).node) this.remove(0, home);
    this.#owned.delete(domid);
  }

  /** Nodes `domid` owns (for the quota and listings). */
  owned(domid: number): number { return this.#owned.get(domid) ?? 0; }

  #fire(abs: string, removed: boolean): void {
    for (const [dom, paths] of this.#watches) {
      for (const w of paths) {
        if (!(abs === w || abs.startsWith(w === '/' ? '/' : `${w}/`))) continue;
        if (!removed) {
          const { node } = this.#walk(abs);
          if (node && !this.#canRead(dom, node)) continue;
        }
        this.#queue(dom, abs);
        break;
      }
    }
  }

  #queue(dom: number, abs: string): void {
    let q = this.#events.get(dom);
    if (!q) this.#events.set(dom, (q = []));
    q.push(abs);
    if (q.length > MAX_EVENTS) q.shift();
    this.#onEvent(dom);
  }
}
