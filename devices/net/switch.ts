/**
 * The virtual switch: pure logic between ports, with no rings (NetBackend
 * connects a vif's rings to a port; the NAT gateway will be a port too).
 * Every port has a MAC and a set of IPv4 addresses, unique across the
 * switch, so the switch knows every address on the network and never has to
 * learn, flood or trust a guest's idea of who is where.
 *
 * Rules for a frame a port sends, in order (docs/net.md has the table):
 *  1. Malformed (counted `malformed`): shorter than an Ethernet header or
 *     longer than MAX_FRAME; an ARP packet that is short or not
 *     Ethernet/IPv4 or not a request or reply; an IPv4 header that is short,
 *     not version 4, with IHL < 5, a total length below the header or past
 *     the frame, or a bad header checksum.
 *  2. Spoofed (`spoofed`): an Ethernet source that is not the port's MAC; an
 *     ARP sender MAC or IP that is not the port's (IP 0.0.0.0 is allowed in
 *     a request: an RFC 5227 probe); an IPv4 source that is not one of the
 *     port's addresses. A gateway port may send from any address no other
 *     port owns (it speaks for the world outside).
 *  3. Rate limit: a port with a rate takes tokens for the frame's bytes; a
 *     frame that finds too few (or others already waiting) is held, in
 *     order, up to the switch's `holdFrames`, and sent when tokens allow;
 *     past that bound it is dropped (`rateLimited`). Only what a port sends
 *     is limited, as on the Demo CD. The limit sees only frames that passed
 *     1 and 2: a rejected frame costs the network nothing.
 *  4. Routing: an ARP request for an address some port owns is answered by
 *     the switch with that port's MAC (proxy ARP) and goes no further; one
 *     for an address nobody owns is `unroutable`. Nothing is ever flooded,
 *     so an ARP storm reaches no one but its sender, which gets at most one
 *     reply per request. An ARP reply goes to the port whose MAC it is sent
 *     to. An IPv4 frame goes to the port owning its destination address (its
 *     destination MAC rewritten to that port's), else to a gateway port it is
 *     addressed to by MAC, else it is `unroutable` (as is everything that is
 *     neither ARP nor IPv4, and broadcast and multicast IPv4).
 *  5. Delivery: the receiving port's `deliver` takes the frame or refuses it
 *     (no receive buffer): refused frames count as its `dropped`; the
 *     sender's counters do not change.
 * Every frame a port sends is counted exactly once: in `txPackets` (it was
 * forwarded or answered), or in one of malformed, spoofed, unroutable,
 * rateLimited (dropped); held frames are counted when they leave the queue.
 */
import { InvalidArgumentError, WvError } from '../../kernel/errors.ts';
import { systemClock, type NetClock } from './clock.ts';
import {
  ARP_SIZE, ArpOp, EtherType, formatIp, formatMac, inetChecksum, ipAt, isGroupMac, macAt, parseIp, parseMac, putMac, writeArp,
} from './frame.ts';
import { ETH_HEADER, MAX_FRAME } from './protocol.ts';

/** An address or MAC is already another port's. */
export class NetAddressInUseError extends WvError {
  constructor(what: string, holder: string) {
    super('WV_ERR_NET_ADDRESS_IN_USE', `${what} is already in use by ${holder}`);
  }
}

/** Per-port counters. tx is what the port (its domain) sent, rx what it received. */
export interface PortStats {
  /** Frames from the port the switch forwarded or answered, and their bytes. */
  txPackets: number;
  txBytes: number;
  /** Frames delivered to the port (the switch's ARP replies too), and their bytes. */
  rxPackets: number;
  rxBytes: number;
  /** Frames for the port that it could not take (no receive buffer posted, a stopped vif). */
  dropped: number;
  /** Frames from the port with a source MAC or IP that is not its own. */
  spoofed: number;
  /** Frames from the port that are not valid Ethernet, ARP or IPv4. */
  malformed: number;
  /** Frames from the port that no port is to receive. */
  unroutable: number;
  /** Frames from the port dropped because its rate limit's queue was full. */
  rateLimited: number;
  /** Frames from the port held back by its rate limit (and sent later). */
  delayed: number;
  /** ARP requests from the port that the switch answered. */
  arpReplies: number;
}

/** What became of a frame given to `send`. */
export const Verdict = { SENT: 0, HELD: 1, MALFORMED: 2, SPOOFED: 3, UNROUTABLE: 4, RATE_LIMITED: 5 } as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** A rate limit: `bytes` per `usecs` (the CD's vif_setsched); `bytes` 0 or `usecs` 0 is unlimited. */
export interface Rate { bytes: number; usecs: number }

export interface PortOptions {
  /** For messages and listings (e.g. `vif1.0`). */
  name: string;
  /** Unicast, unique on the switch. */
  mac: string;
  /** IPv4 addresses routed to the port, unique on the switch. */
  ips?: readonly string[];
  /** A gateway (the NAT port) also receives IPv4 frames sent to its MAC for any address, and may send from any address no port owns. */
  gateway?: boolean;
  rate?: Rate;
  /**
   * Take a frame (true) or refuse it (false: counted as dropped). The bytes
   * are the switch's or a sender's buffer, valid only during the call: copy
   * them before doing anything that could send on this switch.
   */
  deliver(frame: Uint8Array): boolean;
  /** The frames held back by the port's rate limit have all been sent: a sender that stopped may go on. */
  onDrain?(): void;
}

/** A port as its owner sees it; change it through the switch. */
export interface SwitchPort {
  readonly name: string;
  readonly mac: string;
  readonly gateway: boolean;
  readonly stats: Readonly<PortStats>;
  /** Its IPv4 addresses, in the order they were added. */
  readonly addresses: readonly string[];
  readonly rate: Rate;
  /** Frames held back by the rate limit now. A sender with its own queue (a TX ring) should wait while this is not 0. */
  readonly held: number;
  readonly removed: boolean;
}

export interface SwitchOptions {
  /** Default: the host's clock. */
  clock?: NetClock;
  /** Frames a rate-limited port may have waiting before it drops; default DEFAULT_HOLD_FRAMES. */
  holdFrames?: number;
}

/** The fewest microseconds of traffic a bucket holds, so that millisecond timers cannot cut the rate. */
export const MIN_BURST_US = 5000;
export const DEFAULT_HOLD_FRAMES = 64;

function zeroStats(): PortStats {
  return { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, dropped: 0, spoofed: 0, malformed: 0, unroutable: 0, rateLimited: 0, delayed: 0, arpReplies: 0 };
}

class Port implements SwitchPort {
  readonly stats = zeroStats();
  readonly ips = new Set<number>();
  removed = false;
  // The token bucket: `bytes` per `usecs`, holding at most `capacity`; `tokens` as of `last` (µs).
  bytes = 0;
  usecs = 0;
  capacity = 0;
  tokens = 0;
  last = 0;
  readonly queue: Uint8Array[] = [];
  cancelTimer: (() => void) | undefined;

  readonly sw: VirtualSwitch;
  readonly name: string;
  readonly macKey: number;
  readonly gateway: boolean;
  readonly deliver: (frame: Uint8Array) => boolean;
  readonly onDrain: (() => void) | undefined;

  constructor(sw: VirtualSwitch, name: string, macKey: number, gateway: boolean, deliver: (frame: Uint8Array) => boolean, onDrain: (() => void) | undefined) {
    this.sw = sw;
    this.name = name;
    this.macKey = macKey;
    this.gateway = gateway;
    this.deliver = deliver;
    this.onDrain = onDrain;
  }

  get mac(): string { return formatMac(this.macKey); }
  get addresses(): string[] { return [...this.ips].map(formatIp); }
  get rate(): Rate { return { bytes: this.bytes, usecs: this.usecs }; }
  get held(): number { return this.queue.length; }
}

/** A host address a port may own: not 0/8, loopback, multicast, reserved or broadcast. */
function checkAddress(text: string): number {
  const ip = parseIp(text);
  const first = ip >>> 24;
  if (first === 0 || first === 127 || first >= 224) throw new InvalidArgumentError('IPv4 address', `${text} cannot belong to a vif (0/8, 127/8 and 224/3 are not host addresses)`);
  return ip;
}

function checkRate(r: Rate): void {
  for (const [k, v] of [['bytes', r.bytes], ['usecs', r.usecs]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new InvalidArgumentError(`rate ${k}`, `${v} is not a whole number >= 0`);
  }
}

export class VirtualSwitch {
  readonly #clock: NetClock;
  readonly #holdFrames: number;
  readonly #ports = new Set<Port>();
  readonly #byIp = new Map<number, Port>();
  readonly #byMac = new Map<number, Port>();
  /** Where ARP replies are built (delivered, and so copied, before the next one). */
  readonly #reply = new Uint8Array(ETH_HEADER + ARP_SIZE);

  constructor(o: SwitchOptions = {}) {
    this.#clock = o.clock ?? systemClock();
    const hold = o.holdFrames ?? DEFAULT_HOLD_FRAMES;
    if (!Number.isSafeInteger(hold) || hold < 0) throw new InvalidArgumentError('holdFrames', `${hold}`);
    this.#holdFrames = hold;
  }

  get ports(): SwitchPort[] { return [...this.#ports]; }

  /** The port that owns `ip`, if any. */
  owner(ip: string): SwitchPort | undefined {
    return this.#byIp.get(parseIp(ip));
  }

  /** Attach a port; throws InvalidArgumentError (bad MAC, address, rate) or NetAddressInUseError, adding nothing. */
  addPort(o: PortOptions): SwitchPort {
    const mac = parseMac(o.mac);
    if (mac === 0 || isGroupMac(mac)) throw new InvalidArgumentError('MAC address', `${o.mac} is not a unicast address`);
    const taken = this.#byMac.get(mac);
    if (taken) throw new NetAddressInUseError(`MAC ${formatMac(mac)}`, taken.name);
    const ips = (o.ips ?? []).map(checkAddress);
    for (const [i, ip] of ips.entries()) {
      const holder = this.#byIp.get(ip);
      if (holder) throw new NetAddressInUseError(`address ${o.ips![i]}`, holder.name);
    }
    if (o.rate) checkRate(o.rate);
    const port = new Port(this, o.name, mac, o.gateway ?? false, o.deliver, o.onDrain);
    this.#ports.add(port);
    this.#byMac.set(mac, port);
    for (const ip of ips) { port.ips.add(ip); this.#byIp.set(ip, port); }
    if (o.rate) this.setRate(port, o.rate);
    return port;
  }

  /** Detach a port: its addresses and MAC are free again; frames it had held back are discarded. */
  removePort(p: SwitchPort): void {
    const port = this.#own(p);
    port.removed = true;
    port.cancelTimer?.();
    port.cancelTimer = undefined;
    port.queue.length = 0;
    for (const ip of port.ips) this.#byIp.delete(ip);
    this.#byMac.delete(port.macKey);
    this.#ports.delete(port);
  }

  /** Route `ip` to the port too (vif-addip); adding an address the port has is a no-op. */
  addAddress(p: SwitchPort, ip: string): void {
    const port = this.#own(p);
    const a = checkAddress(ip);
    const holder = this.#byIp.get(a);
    if (holder === port) return;
    if (holder) throw new NetAddressInUseError(`address ${ip}`, holder.name);
    port.ips.add(a);
    this.#byIp.set(a, port);
  }

  /** Stop routing `ip` to the port; false if it was not the port's. */
  removeAddress(p: SwitchPort, ip: string): boolean {
    const port = this.#own(p);
    const a = parseIp(ip);
    if (!port.ips.delete(a)) return false;
    this.#byIp.delete(a);
    return true;
  }

  /**
   * Limit what the port sends to `bytes` per `usecs` (0: unlimited). The
   * bucket holds max(bytes, MAX_FRAME, MIN_BURST_US of traffic), starts full
   * when a limit is set on an unlimited port, and keeps its level (capped)
   * when one limit replaces another. Lifting the limit sends what was held.
   */
  setRate(p: SwitchPort, rate: Rate): void {
    const port = this.#own(p);
    checkRate(rate);
    const now = this.#clock.now();
    if (rate.bytes === 0 || rate.usecs === 0) {
      port.bytes = port.usecs = port.capacity = port.tokens = 0;
      port.cancelTimer?.();
      port.cancelTimer = undefined;
      this.#release(port);
      return;
    }
    const wasLimited = port.bytes > 0;
    if (wasLimited) this.#refill(port, now);
    port.bytes = rate.bytes;
    port.usecs = rate.usecs;
    port.capacity = Math.max(rate.bytes, MAX_FRAME, Math.ceil((rate.bytes * MIN_BURST_US) / rate.usecs));
    port.tokens = wasLimited ? Math.min(port.tokens, port.capacity) : port.capacity;
    port.last = now;
    if (port.queue.length > 0) {
      port.cancelTimer?.();
      port.cancelTimer = undefined;
      this.#arm(port);
    }
  }

  /**
   * A port sends `frame` (its bytes are read during the call, and the
   * destination MAC may be rewritten in place; a held frame is copied).
   */
  send(p: SwitchPort, frame: Uint8Array): Verdict {
    const port = this.#own(p);
    const v = this.#check(port, frame);
    if (v !== Verdict.SENT) return v;
    if (port.bytes > 0 && (port.queue.length > 0 || !this.#take(port, frame.length))) {
      if (port.queue.length >= this.#holdFrames) {
        port.stats.rateLimited++;
        return Verdict.RATE_LIMITED;
      }
      port.queue.push(frame.slice());
      port.stats.delayed++;
      this.#arm(port);
      return Verdict.HELD;
    }
    return this.#forward(port, frame);
  }

  #own(p: SwitchPort): Port {
    if (!(p instanceof Port) || p.sw !== this || p.removed) throw new InvalidArgumentError('switch port', `${p.name} is not a port of this switch`);
    return p;
  }

  /** Rules 1 and 2: Verdict.SENT when the frame may go on. */
  #check(port: Port, f: Uint8Array): Verdict {
    const len = f.length;
    if (len < ETH_HEADER || len > MAX_FRAME) return this.#malformed(port);
    if (macAt(f, 6) !== port.macKey) return this.#spoofed(port);
    const type = (f[12]! << 8) | f[13]!;
    if (type === EtherType.ARP) {
      const a = ETH_HEADER;
      if (len < a + ARP_SIZE) return this.#malformed(port);
      // Ethernet (1), IPv4 (0x0800), 6-byte and 4-byte addresses.
      if (f[a] !== 0 || f[a + 1] !== 1 || f[a + 2] !== 0x08 || f[a + 3] !== 0 || f[a + 4] !== 6 || f[a + 5] !== 4) return this.#malformed(port);
      const op = (f[a + 6]! << 8) | f[a + 7]!;
      if (op !== ArpOp.REQUEST && op !== ArpOp.REPLY) return this.#malformed(port);
      if (macAt(f, a + 8) !== port.macKey) return this.#spoofed(port);
      const spa = ipAt(f, a + 14);
      if (!port.ips.has(spa) && !(op === ArpOp.REQUEST && spa === 0)) return this.#spoofed(port);
    } else if (type === EtherType.IPV4) {
      const h = ETH_HEADER;
      if (len < h + 20) return this.#malformed(port);
      const vihl = f[h]!;
      const ihl = (vihl & 15) * 4;
      const total = (f[h + 2]! << 8) | f[h + 3]!;
      // Bytes after `total` are Ethernet padding, allowed.
      if (vihl >> 4 !== 4 || ihl < 20 || total < ihl || total > len - h) return this.#malformed(port);
      if (inetChecksum(f, h, ihl) !== 0) return this.#malformed(port);
      const src = ipAt(f, h + 12);
      if (port.gateway) {
        const holder = this.#byIp.get(src);
        if (holder !== undefined && holder !== port) return this.#spoofed(port);
      } else if (!port.ips.has(src)) return this.#spoofed(port);
    }
    return Verdict.SENT;
  }

  #malformed(port: Port): Verdict {
    port.stats.malformed++;
    return Verdict.MALFORMED;
  }

  #spoofed(port: Port): Verdict {
    port.stats.spoofed++;
    return Verdict.SPOOFED;
  }

  /** Rule 4, for a checked frame that the rate limit let through. */
  #forward(port: Port, f: Uint8Array): Verdict {
    const type = (f[12]! << 8) | f[13]!;
    let to: Port | undefined;
    if (type === EtherType.ARP) {
      const a = ETH_HEADER;
      if (((f[a + 6]! << 8) | f[a + 7]!) === ArpOp.REQUEST) {
        const tpa = ipAt(f, a + 24);
        const owner = this.#byIp.get(tpa);
        if (owner === undefined) return this.#unroutable(port);
        this.#sent(port, f);
        // Asking for one's own address (a probe or an announcement) gets no answer: nobody else has it.
        if (owner !== port) {
          writeArp(this.#reply, ArpOp.REPLY, port.macKey, owner.macKey, owner.macKey, tpa, macAt(f, a + 8), ipAt(f, a + 14));
          port.stats.arpReplies++;
          this.#deliver(port, this.#reply);
        }
        return Verdict.SENT;
      }
      to = this.#byMac.get(macAt(f, 0));
      if (to === port) to = undefined;
    } else if (type === EtherType.IPV4) {
      to = this.#byIp.get(ipAt(f, ETH_HEADER + 16));
      if (to !== undefined) putMac(f, 0, to.macKey);
      else {
        const byMac = this.#byMac.get(macAt(f, 0));
        if (byMac?.gateway && byMac !== port) to = byMac;
      }
    }
    if (to === undefined) return this.#unroutable(port);
    this.#sent(port, f);
    this.#deliver(to, f);
    return Verdict.SENT;
  }

  #sent(port: Port, f: Uint8Array): void {
    port.stats.txPackets++;
    port.stats.txBytes += f.length;
  }

  #unroutable(port: Port): Verdict {
    port.stats.unroutable++;
    return Verdict.UNROUTABLE;
  }

  #deliver(to: Port, f: Uint8Array): void {
    if (to.deliver(f)) {
      to.stats.rxPackets++;
      to.stats.rxBytes += f.length;
    } else to.stats.dropped++;
  }

  #refill(port: Port, now: number): void {
    if (now > port.last) {
      port.tokens = Math.min(port.capacity, port.tokens + ((now - port.last) * port.bytes) / port.usecs);
      port.last = now;
    }
  }

  /** Take tokens for a frame of `size` bytes when the bucket has that many (the capacity is at least MAX_FRAME, so every frame fits). */
  #take(port: Port, size: number): boolean {
    this.#refill(port, this.#clock.now());
    if (port.tokens < size - 1e-6) return false; // a timer set for exactly enough tokens may see a rounding error less
    port.tokens -= size;
    return true;
  }

  /** Set a timer for when the first held frame can go. */
  #arm(port: Port): void {
    if (port.cancelTimer !== undefined || port.queue.length === 0 || port.bytes === 0) return;
    this.#refill(port, this.#clock.now());
    const need = port.queue[0]!.length - port.tokens;
    const delay = Math.max(0, Math.ceil((need * port.usecs) / port.bytes));
    port.cancelTimer = this.#clock.after(delay, () => {
      port.cancelTimer = undefined;
      if (!port.removed) this.#release(port);
    });
  }

  /** Send held frames while the bucket allows (all of them when the port is unlimited); tell the owner when none is left. */
  #release(port: Port): void {
    while (port.queue.length > 0 && !port.removed) {
      const f = port.queue[0]!;
      if (port.bytes > 0 && !this.#take(port, f.length)) break;
      port.queue.shift();
      this.#forward(port, f);
    }
    if (port.removed) return;
    if (port.queue.length > 0) this.#arm(port);
    else port.onDrain?.();
  }
}
