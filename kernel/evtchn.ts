/**
 * Event channels, as in Xen: per-domain ports that are unbound (offered to
 * one remote domain), interdomain (bound to a remote port) or bound to a
 * virtual interrupt; `send` makes the remote port pending and wakes its
 * domain unless the port is masked. All state is in the shared PvTable, so
 * every operation runs on the calling domain's own thread. Every operation
 * validates its (guest-supplied) arguments and returns a negative errno
 * instead of throwing.
 */
import { Errno } from './errno.ts';
import {
  H_LIVE, H_MASK, H_PENDING, H_PRIV, H_UPCALL, H_VIRQ, NR_PORTS, NR_VIRQS, PORTS, PORT_WORDS, PortState, PvTable, Virq,
} from './pv-table.ts';

/** A port's status as `evtchn.status` reports it. */
export interface PortStatus { state: number; remote: number; remotePort: number; virq: number }

/** A port as a save holds it (`remotePort` is the virq of a virq binding). */
export interface SavedPort { port: number; state: number; remote: number; remotePort: number; pending: boolean; masked: boolean; gen?: number }

export class EventChannels {
  readonly table: PvTable;
  /** Index of the vCPU host this instance runs on, or -1 for the main thread. */
  readonly self: number;
  readonly #wakeLocal: (domid: number) => void;
  readonly #w: Int32Array;

  readonly #attention: readonly Int32Array[];

  /**
   * `attention[h]` is vCPU host h's attention word (see
   * runtime/loader/instrument.ts): setting it makes the guest running there
   * reach a safepoint soon, so the scheduler can give the CPU to the domain
   * just woken.
   */
  constructor(table: PvTable, self: number, wakeLocal: (domid: number) => void, attention: readonly Int32Array[] = []) {
    this.table = table;
    this.self = self;
    this.#wakeLocal = wakeLocal;
    this.#w = table.words;
    this.#attention = attention;
  }

  #port(dom: number, port: number): number {
    return this.table.slot(dom) + PORTS + port * PORT_WORDS;
  }

  #valid(port: number): boolean {
    return Number.isInteger(port) && port > 0 && port < NR_PORTS;
  }

  /** A free port of `dom`, or 0. Caller holds the lock. */
  #freePort(dom: number): number {
    for (let p = 1; p < NR_PORTS; p++) if (this.#w[this.#port(dom, p)] === PortState.FREE) return p;
    return 0;
  }

  #set(dom: number, port: number, state: number, a: number, b: number, c: number): void {
    const i = this.#port(dom, port);
    this.#w[i + 1] = a;
    this.#w[i + 2] = b;
    this.#w[i + 3] = c;
    Atomics.store(this.#w, i, state);
  }

  allocUnbound(dom: number, remote: number): number {
    remote >>>= 0;
    return this.table.locked(() => {
      if (!this.table.live(remote)) return -Errno.ESRCH;
      const p = this.#freePort(dom);
      if (p === 0) return -Errno.ENOSPC;
      this.#set(dom, p, PortState.UNBOUND, remote, 0, this.table.generation(remote));
      return p;
    });
  }

  bindInterdomain(dom: number, remote: number, remotePort: number): number {
    remote >>>= 0;
    remotePort >>>= 0;
    return this.table.locked(() => {
      if (!this.table.live(remote)) return -Errno.ESRCH;
      if (!this.#valid(remotePort)) return -Errno.EINVAL;
      const r = this.#port(remote, remotePort);
      const offered = this.#w[r] === PortState.UNBOUND && this.#w[r + 1] === dom
        && this.#w[r + 3] === this.table.generation(dom);
      if (!offered) return -Errno.EINVAL;
      const p = this.#freePort(dom);
      if (p === 0) return -Errno.ENOSPC;
      this.#set(dom, p, PortState.INTERDOMAIN, remote, remotePort, this.table.generation(remote));
      this.#set(remote, remotePort, PortState.INTERDOMAIN, dom, p, this.table.generation(dom));
      return p;
    });
  }

  bindVirq(dom: number, virq: number): number {
    virq >>>= 0;
    if (virq >= NR_VIRQS) return -Errno.EINVAL;
    const s = this.table.slot(dom);
    if (virq === Virq.DOM_EXC && this.#w[s + H_PRIV] !== 1) return -Errno.EPERM;
    return this.table.locked(() => {
      if (this.#w[s + H_VIRQ + virq] !== 0) return -Errno.EINVAL;
      const p = this.#freePort(dom);
      if (p === 0) return -Errno.ENOSPC;
      this.#set(dom, p, PortState.VIRQ, 0, virq, 0);
      Atomics.store(this.#w, s + H_VIRQ + virq, p);
      return p;
    });
  }

  /** Notify the other end of `port`. Lock-free: it reads one binding and sets one bit. */
  send(dom: number, port: number): number {
    port >>>= 0;
    if (!this.#valid(port)) return -Errno.EINVAL;
    const i = this.#port(dom, port);
    if (Atomics.load(this.#w, i) !== PortState.INTERDOMAIN) return -Errno.EINVAL;
    const remote = this.#w[i + 1]!;
    const remotePort = this.#w[i + 2]!;
    // A peer that died (or whose id was reused) is not notified.
    if (!this.table.live(remote) || this.table.generation(remote) !== this.#w[i + 3]) return 0;
    this.setPending(remote, remotePort);
    return 0;
  }

  close(dom: number, port: number): number {
    port >>>= 0;
    if (!this.#valid(port)) return -Errno.EINVAL;
    return this.table.locked(() => this.#closeLocked(dom, port));
  }

  #closeLocked(dom: number, port: number): number {
    const i = this.#port(dom, port);
    const state = this.#w[i]!;
    if (state === PortState.FREE) return -Errno.EINVAL;
    if (state === PortState.INTERDOMAIN) {
      const remote = this.#w[i + 1]!;
      const remotePort = this.#w[i + 2]!;
      const r = this.#port(remote, remotePort);
      if (this.table.live(remote) && this.table.generation(remote) === this.#w[i + 3]
        && this.#w[r] === PortState.INTERDOMAIN && this.#w[r + 1] === dom && this.#w[r + 2] === port) {
        // The peer's port goes back to unbound, offered to us again (as in Xen).
        this.#set(remote, remotePort, PortState.UNBOUND, dom, 0, this.table.generation(dom));
      }
    } else if (state === PortState.VIRQ) {
      Atomics.store(this.#w, this.table.slot(dom) + H_VIRQ + this.#w[i + 2]!, 0);
    }
    this.#set(dom, port, PortState.FREE, 0, 0, 0);
    const s = this.table.slot(dom);
    Atomics.and(this.#w, s + H_PENDING + (port >> 5), ~(1 << (port & 31)));
    Atomics.and(this.#w, s + H_MASK + (port >> 5), ~(1 << (port & 31)));
    return 0;
  }

  /** The ports `dom` uses, with their pending and mask bits: what a save holds (main thread). */
  exportPorts(dom: number): SavedPort[] {
    const s = this.table.slot(dom);
    const out: SavedPort[] = [];
    for (let p = 1; p < NR_PORTS; p++) {
      const i = this.#port(dom, p);
      const state = Atomics.load(this.#w, i);
      if (state === PortState.FREE) continue;
      const bit = 1 << (p & 31);
      out.push({
        port: p, state, remote: this.#w[i + 1]!, remotePort: this.#w[i + 2]!, gen: this.#w[i + 3]!,
        pending: (Atomics.load(this.#w, s + H_PENDING + (p >> 5)) & bit) !== 0,
        masked: (Atomics.load(this.#w, s + H_MASK + (p >> 5)) & bit) !== 0,
      });
    }
    return out;
  }

  /**
   * Put a saved domain's ports back, at the same numbers, on `dom` (a fresh
   * domain, before it runs). Virq bindings come back as they were. A
   * connection to another domain comes back when that domain is still the
   * one it was (same generation) and its end of the channel is still there:
   * offered to `dom` again, as Xen leaves a peer's port when its domain goes
   * away (so the restored domain must have kept its id and generation, see
   * PvTable.claim). An offer to another domain comes back while that domain
   * lives. Returns the ports it could not bring back, with why (those stay
   * free), and the peers' ends of the channels it brought back: notifications
   * sent while the domain was away were lost, so the caller notifies those
   * once the peers can see the restored domain's memory. The restored
   * domain's own ends are made pending here.
   */
  restorePorts(dom: number, ports: readonly SavedPort[]): { lost: string[]; peers: Array<{ domid: number; port: number }> } {
    const s = this.table.slot(dom);
    const lost: string[] = [];
    const reconnected: Array<[number, number]> = [];
    this.table.locked(() => {
      for (const sp of ports) {
        if (typeof sp !== 'object' || sp === null || !this.#valid(sp.port) || this.#w[this.#port(dom, sp.port)] !== PortState.FREE) {
          lost.push(`port ${sp?.port}: not a free port number`);
          continue;
        }
        const bit = 1 << (sp.port & 31);
        const flags = (): void => {
          if (sp.masked) Atomics.or(this.#w, s + H_MASK + (sp.port >> 5), bit);
          if (sp.pending) Atomics.or(this.#w, s + H_PENDING + (sp.port >> 5), bit);
        };
        if (sp.state === PortState.INTERDOMAIN || sp.state === PortState.UNBOUND) {
          const remote = sp.remote >>> 0;
          const what = sp.state === PortState.INTERDOMAIN ? `connected to domain ${remote} port ${sp.remotePort}` : `offered to domain ${remote}`;
          if (remote === dom || !this.table.live(remote) || (sp.gen !== undefined && this.table.generation(remote) !== sp.gen)) {
            lost.push(`port ${sp.port}: ${what}, which is gone`);
            continue;
          }
          if (sp.state === PortState.UNBOUND) {
            this.#set(dom, sp.port, PortState.UNBOUND, remote, 0, this.table.generation(remote));
            flags();
            continue;
          }
          if (!this.#valid(sp.remotePort)) {
            lost.push(`port ${sp.port}: remote port ${sp.remotePort} is not valid`);
            continue;
          }
          const r = this.#port(remote, sp.remotePort);
          const waiting = this.#w[r] === PortState.UNBOUND && this.#w[r + 1] === dom && this.#w[r + 3] === this.table.generation(dom);
          if (!waiting) {
            lost.push(`port ${sp.port}: ${what}, whose end is no longer offered to this domain`);
            continue;
          }
          this.#set(dom, sp.port, PortState.INTERDOMAIN, remote, sp.remotePort, this.table.generation(remote));
          this.#set(remote, sp.remotePort, PortState.INTERDOMAIN, dom, sp.port, this.table.generation(dom));
          flags();
          reconnected.push([remote, sp.remotePort]);
          continue;
        }
        if (sp.state !== PortState.VIRQ) {
          lost.push(`port ${sp.port}: state ${sp.state} is not a port state`);
          continue;
        }
        const virq = sp.remotePort;
        if (!(Number.isInteger(virq) && virq >= 0 && virq < NR_VIRQS) || this.#w[s + H_VIRQ + virq] !== 0) {
          lost.push(`port ${sp.port}: virq ${virq} is not valid or bound twice`);
          continue;
        }
        this.#set(dom, sp.port, PortState.VIRQ, 0, virq, 0);
        Atomics.store(this.#w, s + H_VIRQ + virq, sp.port);
        flags();
      }
    });
    // Both ends of every channel brought back get an event, so each looks at its rings again (a spurious event is harmless).
    for (const [remote, remotePort] of reconnected) {
      const p = ports.find((x) => x.remote === remote && x.remotePort === remotePort)!.port;
      Atomics.or(this.#w, s + H_PENDING + (p >> 5), 1 << (p & 31));
    }
    return { lost, peers: reconnected.map(([domid, port]) => ({ domid, port })) };
  }

  /**
   * Connect port `port` of `dom` (free) with port `remotePort` of `remote`
   * (free, or offered to `dom`): how a backend in domain 0 takes up a
   * restored domain's device channel again without a new handshake (main
   * thread). 0 or a negative errno.
   */
  connectPorts(dom: number, port: number, remote: number, remotePort: number): number {
    if (!this.#valid(port) || !this.#valid(remotePort) || dom === remote) return -Errno.EINVAL;
    return this.table.locked(() => {
      if (!this.table.live(dom) || !this.table.live(remote)) return -Errno.ESRCH;
      const l = this.#port(dom, port);
      const r = this.#port(remote, remotePort);
      if (this.#w[l] !== PortState.FREE) return -Errno.EBUSY;
      const rs = this.#w[r];
      if (rs !== PortState.FREE && !(rs === PortState.UNBOUND && this.#w[r + 1] === dom)) return -Errno.EBUSY;
      this.#set(dom, port, PortState.INTERDOMAIN, remote, remotePort, this.table.generation(remote));
      this.#set(remote, remotePort, PortState.INTERDOMAIN, dom, port, this.table.generation(dom));
      return 0;
    });
  }

  /** Close every port of a domain being destroyed (main thread). */
  closeAll(dom: number): void {
    this.table.locked(() => {
      for (let p = 1; p < NR_PORTS; p++) if (this.#w[this.#port(dom, p)] !== PortState.FREE) this.#closeLocked(dom, p);
      Atomics.store(this.#w, this.table.slot(dom) + H_LIVE, 0);
    });
  }

  status(dom: number, port: number): PortStatus | number {
    port >>>= 0;
    if (!this.#valid(port)) return -Errno.EINVAL;
    const i = this.#port(dom, port);
    const state = Atomics.load(this.#w, i);
    if (state === PortState.FREE) return { state, remote: 0, remotePort: 0, virq: 0 };
    if (state === PortState.VIRQ) return { state, remote: 0, remotePort: 0, virq: this.#w[i + 2]! };
    return { state, remote: this.#w[i + 1]!, remotePort: this.#w[i + 2]!, virq: 0 };
  }

  mask(dom: number, port: number): number {
    port >>>= 0;
    if (!this.#valid(port)) return -Errno.EINVAL;
    Atomics.or(this.#w, this.table.slot(dom) + H_MASK + (port >> 5), 1 << (port & 31));
    return 0;
  }

  unmask(dom: number, port: number): number {
    port >>>= 0;
    if (!this.#valid(port)) return -Errno.EINVAL;
    const s = this.table.slot(dom);
    const bit = 1 << (port & 31);
    Atomics.and(this.#w, s + H_MASK + (port >> 5), ~bit);
    if ((Atomics.load(this.#w, s + H_PENDING + (port >> 5)) & bit) !== 0) this.#kick(dom);
    return 0;
  }

  /** Make `port` of `dom` pending and wake `dom` unless the port is masked. */
  setPending(dom: number, port: number): void {
    const s = this.table.slot(dom);
    const bit = 1 << (port & 31);
    Atomics.or(this.#w, s + H_PENDING + (port >> 5), bit);
    if ((Atomics.load(this.#w, s + H_MASK + (port >> 5)) & bit) !== 0) return;
    this.#kick(dom);
  }

  /** Raise virtual interrupt `virq` of `dom`, if it has bound a port to it. */
  raiseVirq(dom: number, virq: number): boolean {
    const port = Atomics.load(this.#w, this.table.slot(dom) + H_VIRQ + virq);
    if (port === 0) return false;
    this.setPending(dom, port);
    return true;
  }

  /**
   * Take (read and clear) the pending bits of unmasked ports, at most
   * `words` words (the table has NR_PORTS / 32), calling `put(wordIndex,
   * bits)` for each; returns how many ports were pending.
   */
  takePending(dom: number, words: number, put: (index: number, bits: number) => void): number {
    const s = this.table.slot(dom);
    let count = 0;
    const n = Math.min(words, NR_PORTS / 32);
    for (let k = 0; k < n; k++) {
      const mask = Atomics.load(this.#w, s + H_MASK + k);
      // Clear only the unmasked bits we report; masked ones stay pending.
      let bits = 0;
      for (;;) {
        const cur = Atomics.load(this.#w, s + H_PENDING + k);
        bits = cur & ~mask;
        if (bits === 0 || Atomics.compareExchange(this.#w, s + H_PENDING + k, cur, cur & mask) === cur) break;
      }
      put(k, bits);
      count += popcount(bits);
    }
    return count;
  }

  /** Consume the domain's "an event is pending" flag (block checks it). */
  takeUpcall(dom: number): boolean {
    return Atomics.exchange(this.#w, this.table.slot(dom) + H_UPCALL, 0) === 1;
  }

  /** Set the upcall flag and wake the domain wherever it runs. */
  #kick(dom: number): void {
    Atomics.store(this.#w, this.table.slot(dom) + H_UPCALL, 1);
    const home = this.table.home(dom);
    if (home < 0) {
      if (dom === 0) {
        // Domain 0 is the host: its backends wait on the host doorbell.
        Atomics.add(this.#w, this.table.hostDoorbell, 1);
        Atomics.notify(this.#w, this.table.hostDoorbell);
      }
      return;
    }
    const attention = this.#attention[home];
    if (home === this.self) {
      this.#wakeLocal(dom);
      if (attention) Atomics.or(attention, 0, 1);
      return;
    }
    const bell = this.table.doorbell(home);
    Atomics.or(this.#w, bell + 1 + (dom >> 5), 1 << (dom & 31));
    Atomics.add(this.#w, bell, 1);
    Atomics.notify(this.#w, bell);
    if (attention) Atomics.or(attention, 0, 1);
  }
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
