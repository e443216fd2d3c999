/**
 * Virtual network interfaces as the toolstack and the guest see them: the
 * `vif` config specs, attach (each vif gets a port on the switch, with its
 * MAC and addresses, from the start), the connection over the store
 * (devices/xenbus.ts), detach, addresses and rate limits at run time, and
 * counters.
 *
 * Besides the handshake's own keys, the backend directory
 * (/local/domain/0/backend/vif/D/N) holds handle, mac, ip (the addresses,
 * space-separated) and rate (`bytes,usecs`; 0 is unlimited); the frontend
 * directory (/local/domain/D/device/vif/N) handle and mac, and from the guest
 * tx-ring-ref, rx-ring-ref and event-channel.
 */
import { InvalidArgumentError } from '../../kernel/errors.ts';
import { DeviceError, XenbusDevice, XenbusState, stateName, type DetachOptions, type SavedConnection, type XenbusPlatform } from '../xenbus.ts';
import { NetBackend, type NetBackendStats } from './backend.ts';
import { VirtualSwitch, type PortStats, type Rate, type SwitchPort } from './switch.ts';
import { defaultMac, formatIp, formatMac, parseIp, parseMac } from './frame.ts';
import { NatGateway, parseAllow, type NatForward, type NatOptions, type NatStats } from './nat/gateway.ts';

export type { DetachOptions } from '../xenbus.ts';

/** The domain has no such vif, or a detach did not complete. */
export class NetDeviceError extends DeviceError {
  constructor(detail: string) { super('WV_ERR_NET_DEVICE', detail); }
}

/** A vif as a config asks for it. */
export interface VifSpec {
  /** IPv4 addresses routed to it. */
  ips: string[];
  /** Default: Xen's 00:16:3e:... made from the domain and the vif's number. */
  mac?: string;
  /** What it may send: `bytes` per `usecs`. Default unlimited. */
  rate?: Rate;
  /** The text it was parsed from. */
  spec: string;
}

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, b: 1 / 8, Kb: 1e3 / 8, Mb: 1e6 / 8, Gb: 1e9 / 8 };
const INTERVALS: Record<string, number> = { us: 1, ms: 1e3, s: 1e6 };

/**
 * xl's rate, `RATE/s[@INTERVAL]`: `10Mb/s` (bits), `1MB/s@20ms` (bytes,
 * credited every 20 ms; default 50 ms). Returns bytes per interval.
 */
export function parseRate(text: string): Rate {
  const m = /^([0-9]+(?:\.[0-9]+)?)(B|KB|MB|GB|b|Kb|Mb|Gb)\/s(?:@([0-9]+)(us|ms|s))?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`rate "${text}"`, 'expected RATE/s[@INTERVAL], e.g. 10Mb/s or 1MB/s@20ms (units B, KB, MB, GB, b, Kb, Mb, Gb; interval us, ms or s)');
  const perSecond = Number(m[1]) * UNITS[m[2]!]!;
  const usecs = m[3] === undefined ? 50_000 : Number(m[3]) * INTERVALS[m[4]!]!;
  if (!(usecs >= 100 && usecs <= 10_000_000)) throw new InvalidArgumentError(`rate "${text}"`, 'the interval must be between 100 us and 10 s');
  const bytes = Math.round((perSecond * usecs) / 1e6);
  if (!(bytes >= 1 && Number.isSafeInteger(bytes))) throw new InvalidArgumentError(`rate "${text}"`, 'it comes to less than one byte per interval, or too many');
  return { bytes, usecs };
}

/** Parse an xl vif spec: `ip=10.0.0.2 10.0.0.3,mac=00:16:3e:00:00:01,rate=10Mb/s` (bridge, vifname, model and script are accepted and ignored). */
export function parseVifSpec(spec: string): VifSpec {
  const bad = (why: string): never => { throw new InvalidArgumentError(`vif "${spec}"`, why); };
  const out: VifSpec = { ips: [], spec };
  if (spec.trim() === '') return out;
  for (const part of spec.split(',').map((p) => p.trim())) {
    const eq = part.indexOf('=');
    if (eq < 0) bad(`"${part}" is not key=value`);
    const k = part.slice(0, eq);
    const v = part.slice(eq + 1).trim();
    switch (k) {
      case 'ip':
        for (const ip of v.split(/\s+/).filter(Boolean)) {
          if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip) || ip.split('.').some((o) => Number(o) > 255)) bad(`"${ip}" is not an IPv4 address`);
          out.ips.push(ip);
        }
        break;
      case 'mac':
        if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v)) bad(`"${v}" is not a MAC address (xx:xx:xx:xx:xx:xx)`);
        if ((parseInt(v.slice(0, 2), 16) & 1) !== 0) bad(`"${v}" is a multicast MAC; a vif needs a unicast one`);
        out.mac = v.toLowerCase();
        break;
      case 'rate':
        out.rate = parseRate(v);
        break;
      case 'bridge': case 'vifname': case 'model': case 'script': case 'type':
        break;
      default:
        bad(`"${k}" is not a vif setting (ip, mac, rate)`);
    }
  }
  return out;
}

/** A vif as a save holds it (docs/save-format.md, "Devices"): its settings as they are now, and its connection. */
export interface SavedVif {
  index: number;
  mac: string;
  ips: string[];
  rate: Rate;
  /** The spec text it was attached with. */
  spec: string;
  /** The frontend directory as the guest left it. */
  frontend: Record<string, string>;
  /** The rings (TX, RX) and event channel the backend served, or null when it was not connected. */
  connection: SavedConnection | null;
}

/** One vif as `network-list` shows it. */
export interface VifInfo {
  domid: number;
  domain: string;
  /** Its number in the domain (the store's DEVID). */
  index: number;
  /** `vif<domid>.<index>`, as in Xen. */
  name: string;
  mac: string;
  ips: string[];
  rate: Rate;
  state: string;
  frontendState: string;
  /** Frames held back by the rate limit now. */
  held: number;
  stats: PortStats & NetBackendStats;
  error?: string;
}

interface Vif {
  domid: number;
  index: number;
  spec: string;
  name: string;
  port: SwitchPort;
  dev: XenbusDevice<NetBackend>;
  /** Request errors of the backends that served before the current one. */
  errors: NetBackendStats;
  teardown?: Promise<void>;
}

/** The NAT gateway as listings show it (`wv nat list`). */
export interface NatInfo {
  enabled: boolean;
  address?: string;
  netmask?: string;
  outbound?: NatStats;
  /** Outbound UDP: flows (guest source address and port) and refused datagrams. */
  udpOutbound?: NatStats;
  forwards: Array<{ protocol: 'tcp' | 'udp'; host: string; port: number; target: string; stats: NatStats }>;
  /** Host addresses (and ports) guests may reach through the gateway; kept while it is off. */
  allow: string[];
}

/** Options of NetDevices. */
export interface NetDevicesOptions {
  /** The NAT allow-list the gateway starts with (default ['127.0.0.0/8']). */
  natAllow?: readonly string[];
}

export class NetDevices {
  readonly switch: VirtualSwitch;
  readonly #p: XenbusPlatform;
  readonly #vifs = new Map<number, Map<number, Vif>>();
  #nat: NatGateway | undefined;
  #natDefaults = false;
  #natAllow: string[];

  constructor(platform: XenbusPlatform, sw: VirtualSwitch = new VirtualSwitch(), o: NetDevicesOptions = {}) {
    this.#p = platform;
    this.switch = sw;
    const allow = [...(o.natAllow ?? ['127.0.0.0/8'])];
    allow.forEach(parseAllow);
    this.#natAllow = allow;
  }

  /**
   * Give a domain a vif: a switch port (its MAC and addresses are claimed
   * now, so a clash fails here, naming the holder), the store entries, and a
   * wait for the guest's netfront. Works before the guest starts and while
   * it runs (hotplug: network-attach).
   */
  attach(domid: number, spec: VifSpec | string, index?: number): VifInfo {
    const s = typeof spec === 'string' ? parseVifSpec(spec) : spec;
    const mine = this.#vifs.get(domid) ?? new Map<number, Vif>();
    let n = index ?? 0;
    if (index === undefined) while (mine.has(n)) n++;
    if (!(Number.isInteger(n) && n >= 0 && n < 64)) throw new InvalidArgumentError('vif number', `${n} is not between 0 and 63`);
    if (mine.has(n)) throw new NetDeviceError(`domain ${domid} already has vif ${n}`);
    const name = `vif${domid}.${n}`;
    const mac = s.mac ?? defaultMac(domid, n);
    const holder: { vif?: Vif } = {};
    const port = this.switch.addPort({
      name, mac, ips: s.ips, ...(s.rate ? { rate: s.rate } : {}),
      deliver: (frame) => holder.vif?.dev.backend?.receive(frame) ?? false,
      onDrain: () => holder.vif?.dev.backend?.kick(),
    });
    const errors: NetBackendStats = { txErrors: 0, rxErrors: 0 };
    const dev = new XenbusDevice<NetBackend>(this.#p, {
      kind: 'vif', domid, devid: n, label: `net: domain ${domid} ${name}`, code: 'WV_ERR_NET_DEVICE',
      backend: { handle: n, mac, ip: s.ips.join(' '), rate: `${s.rate?.bytes ?? 0},${s.rate?.usecs ?? 0}` },
      frontend: { handle: n, mac },
      rings: ['tx-ring-ref', 'rx-ring-ref'],
      start: ({ pages, notify, broken, resumed }) => new NetBackend({
        grants: this.#p.grants, self: 0, domid, txPage: pages[0]!, rxPage: pages[1]!, switch: this.switch, port, notify, onBroken: broken, resumed,
      }),
      stop: (backend) => {
        backend.close();
        errors.txErrors += backend.stats.txErrors;
        errors.rxErrors += backend.stats.rxErrors;
      },
    });
    try {
      dev.install();
    } catch (err) {
      this.switch.removePort(port);
      throw err;
    }
    const vif: Vif = { domid, index: n, spec: s.spec, name, port, dev, errors };
    holder.vif = vif;
    mine.set(n, vif);
    this.#vifs.set(domid, mine);
    if (this.#natDefaults && n === 0) void this.natDomain(domid);
    this.#p.log('info', `net: ${name} attached: ${mac}${s.ips.length ? ` ${s.ips.join(' ')}` : ''}${s.rate ? `, ${s.rate.bytes} bytes per ${s.rate.usecs} us` : ''}`);
    return this.#info(vif);
  }

  /** A vif by number, name (vif3.0) or MAC. */
  #find(domid: number, ref: number | string): Vif {
    const mine = this.#vifs.get(domid);
    const all = [...(mine?.values() ?? [])];
    const r = typeof ref === 'string' && /^\d+$/.test(ref) ? Number(ref) : ref;
    const vif = typeof r === 'number' ? mine?.get(r) : all.find((v) => v.name === r || v.port.mac === r.toLowerCase());
    if (!vif) {
      throw new NetDeviceError(`domain ${domid} has no vif ${ref}${all.length ? ` (it has ${all.map((v) => v.name).join(', ')})` : ' (it has none)'}`);
    }
    return vif;
  }

  /** Detach a vif: the guest lets go (or `force`), then its port leaves the switch. */
  async detach(domid: number, ref: number | string, opts: DetachOptions = {}): Promise<void> {
    const vif = this.#find(domid, ref);
    if (vif.teardown) return vif.teardown;
    await vif.dev.detach(vif.name, opts);
    await this.#remove(vif);
  }

  #remove(vif: Vif): Promise<void> {
    vif.teardown ??= (async () => {
      await vif.dev.remove();
      if (!vif.port.removed) this.switch.removePort(vif.port);
      const mine = this.#vifs.get(vif.domid);
      mine?.delete(vif.index);
      if (mine && mine.size === 0) {
        this.#vifs.delete(vif.domid);
        this.#p.store.remove(0, `/local/domain/0/backend/vif/${vif.domid}`);
      }
      this.#p.log('info', `net: ${vif.name} detached`);
    })();
    return vif.teardown;
  }

  /** The NAT gateway, once enableNat has been called. */
  get nat(): NatGateway | undefined { return this.#nat; }

  /**
   * Put the NAT gateway on the switch (docs/net.md, "NAT and port forwards").
   * With `defaultForwards`, every domain that gets a vif 0 from now on gets
   * the Demo CD's forwards (natDomain). Enabling it twice returns the same gateway.
   */
  enableNat(o: Omit<NatOptions, 'switch' | 'log'> & { defaultForwards?: boolean } = {}): NatGateway {
    if (this.#nat) return this.#nat;
    const { defaultForwards, ...rest } = o;
    this.#nat = new NatGateway({ allow: this.#natAllow, ...rest, switch: this.switch, log: (level, msg) => this.#p.log(level, msg) });
    this.#natAllow = this.#nat.allow;
    this.#natDefaults = defaultForwards ?? false;
    this.#p.log('info', `net: NAT gateway at ${this.#nat.address}/${this.#nat.netmask}`);
    if (this.#natDefaults) for (const d of this.#vifs.keys()) void this.natDomain(d);
    return this.#nat;
  }

  /**
   * Forward host 127.0.0.1:`hostPort` to domain `domid`'s `port`, at the
   * address its vif 0 has when each connection arrives (a domain that is
   * gone: connections are refused and counted). `protocol` 'udp' relays
   * datagrams instead (NatGateway.forward).
   */
  forward(hostPort: number, domid: number, port: number, host = '127.0.0.1', protocol: 'tcp' | 'udp' = 'tcp'): Promise<NatForward> {
    const nat = this.#nat;
    if (!nat) throw new NetDeviceError('NAT is not enabled (enableNat first)');
    return nat.forward({ host, port: hostPort, protocol }, {
      port, name: `domain ${domid} ${protocol === 'udp' ? 'udp ' : ''}port ${port}`,
      resolve: () => this.#vifs.get(domid)?.get(0)?.port.addresses[0],
    });
  }

  /**
   * Remove the forward from `host`:`hostPort` (`protocol`, default tcp): the
   * host port is closed and connections it relays now are reset. Throws
   * NetDeviceError, listing the forwards there are, when there is none.
   */
  async unforward(hostPort: number, host = '127.0.0.1', protocol: 'tcp' | 'udp' = 'tcp'): Promise<NatForward> {
    const all = this.#nat?.forwards ?? [];
    const f = all.find((x) => x.port === hostPort && x.host === host && x.protocol === protocol);
    if (!f) {
      const there = all.map((x) => `${x.protocol} ${x.host}:${x.port}`).join(', ') || 'none';
      throw new NetDeviceError(`there is no ${protocol} forward from ${host}:${hostPort} (forwards: ${there})`);
    }
    await f.close();
    this.#p.log('info', `net: NAT forward ${protocol} ${host}:${hostPort} to ${f.target} removed`);
    return f;
  }

  /** The NAT allow-list: host addresses (and ports) guests may reach. */
  get natAllow(): string[] { return [...this.#natAllow]; }

  /**
   * Replace the NAT allow-list (`a.b.c.d[/bits][:port]` each; [] allows
   * nothing). Checked whole first: a bad entry throws and changes nothing.
   * Applies to the running gateway at once and to one enabled later.
   */
  setNatAllow(list: readonly string[]): string[] {
    list.forEach(parseAllow);
    this.#natAllow = list.map((x) => x.trim());
    if (this.#nat) this.#nat.setAllow(this.#natAllow);
    else this.#p.log('info', `net: NAT allow-list set to ${this.#natAllow.join(', ') || 'nothing'}`);
    return this.natAllow;
  }

  /**
   * The Demo CD's xen_nat_enable for one domain: its port 22 at
   * 127.0.0.1:2200+N and port 80 at 127.0.0.1:8000+N. A host port that is
   * taken is reported (logged, and in `failed`), not fatal.
   */
  async natDomain(domid: number): Promise<{ forwards: NatForward[]; failed: string[] }> {
    const forwards: NatForward[] = [];
    const failed: string[] = [];
    for (const [base, port] of [[2200, 22], [8000, 80]] as const) {
      try {
        forwards.push(await this.forward(base + domid, domid, port));
      } catch (err) {
        failed.push((err as Error).message);
        this.#p.log('warn', `net: ${(err as Error).message}`);
      }
    }
    return { forwards, failed };
  }

  /** The gateway, its outbound counters and every forward with its counters. */
  natInfo(): NatInfo {
    const nat = this.#nat;
    if (!nat) return { enabled: false, forwards: [], allow: this.natAllow };
    return {
      enabled: true, address: nat.address, netmask: nat.netmask, outbound: { ...nat.outbound }, udpOutbound: { ...nat.udpOutbound },
      forwards: nat.forwards.map((f) => ({ protocol: f.protocol, host: f.host, port: f.port, target: f.target, stats: { ...f.stats } })),
      allow: this.natAllow,
    };
  }

  /** Close the NAT gateway (its forwards and connections). */
  async close(): Promise<void> {
    await this.#nat?.close();
  }

  /** A domain is gone: its vifs leave the switch. */
  async releaseDomain(domid: number): Promise<void> {
    const mine = this.#vifs.get(domid);
    if (!mine) return;
    await Promise.allSettled([...mine.values()].map((v) => this.#remove(v)));
  }

  #publish(vif: Vif): void {
    this.#p.store.write(0, `${vif.dev.be}/ip`, vif.port.addresses.join(' '));
    this.#p.store.write(0, `${vif.dev.be}/rate`, `${vif.port.rate.bytes},${vif.port.rate.usecs}`);
  }

  /** Route one more address to the vif (vif-addip); a clash names the holder. */
  addAddress(domid: number, ref: number | string, ip: string): VifInfo {
    const vif = this.#find(domid, ref);
    parseIp(ip);
    this.switch.addAddress(vif.port, ip);
    this.#publish(vif);
    this.#p.log('info', `net: ${vif.name}: address ${ip} added`);
    return this.#info(vif);
  }

  removeAddress(domid: number, ref: number | string, ip: string): VifInfo {
    const vif = this.#find(domid, ref);
    if (!this.switch.removeAddress(vif.port, ip)) throw new NetDeviceError(`${vif.name} does not have address ${ip} (it has ${vif.port.addresses.join(', ') || 'none'})`);
    this.#publish(vif);
    return this.#info(vif);
  }

  /** Limit what the vif sends to `bytes` per `usecs` (0: unlimited); the CD's vif_setsched. */
  setRate(domid: number, ref: number | string, rate: Rate): VifInfo {
    const vif = this.#find(domid, ref);
    this.switch.setRate(vif.port, rate);
    this.#publish(vif);
    this.#p.log('info', `net: ${vif.name}: rate ${rate.bytes === 0 || rate.usecs === 0 ? 'unlimited' : `${rate.bytes} bytes per ${rate.usecs} us`}`);
    return this.#info(vif);
  }

  /** Why a domain's vifs keep it from being saved now, or undefined. */
  saveProblem(domid: number): string | undefined {
    const mine = [...(this.#vifs.get(domid)?.values() ?? [])].sort((a, b) => a.index - b.index);
    for (const v of mine) {
      if (v.teardown || v.dev.removing || v.dev.state === XenbusState.CLOSING) return `its ${v.name} is being detached`;
    }
    // A restore attaches a domain's vifs as 0..n-1 (DomainConfig.vifs).
    if (mine.some((v, i) => v.index !== i)) return `its vifs are numbered ${mine.map((v) => v.index).join(', ')}; a restore needs them numbered from 0 without gaps`;
    return undefined;
  }

  /** A domain's vifs as a save holds them (its backends quiesced: see `quiesce`). */
  exportDomain(domid: number): SavedVif[] {
    return [...(this.#vifs.get(domid)?.values() ?? [])].sort((a, b) => a.index - b.index).map((v) => ({
      index: v.index, mac: v.port.mac, ips: [...v.port.addresses], rate: { ...v.port.rate }, spec: v.spec,
      frontend: v.dev.frontendKeys(), connection: v.dev.connection ?? null,
    }));
  }

  /**
   * Keep a domain's network backends off its memory until `resume`: TX
   * requests wait in their rings, frames for it are dropped (TCP sends them
   * again). Nothing is in flight: a backend's work is synchronous.
   */
  quiesce(domid: number): { resume: () => void } {
    const backends = [...(this.#vifs.get(domid)?.values() ?? [])].map((v) => v.dev.backend).filter((b) => b !== undefined);
    for (const b of backends) b.pause();
    return { resume: () => { for (const b of backends) b.resume(); } };
  }

  /** The switch port holding `mac` or `ip` now, by name (a restore checks before it attaches). */
  holderOf(o: { mac?: string; ip?: string }): string | undefined {
    if (o.mac !== undefined) {
      const key = formatMac(parseMac(o.mac));
      const p = this.switch.ports.find((x) => x.mac === key);
      if (p) return p.name;
    }
    if (o.ip !== undefined) return this.switch.owner(o.ip)?.name;
    return undefined;
  }

  /**
   * Bring back a restored domain's vif `index` (attached, not connected):
   * the keys its frontend had written, then, if it was connected, its saved
   * rings and event channel (XenbusDevice.takeOver). Returns what did not
   * come back, with why.
   */
  restoreConnection(domid: number, index: number, frontend: Record<string, string>, connection: SavedConnection | null): string[] {
    const v = this.#find(domid, index);
    return v.dev.restore(frontend, connection);
  }

  /** Every vif, or one domain's, or one. */
  list(domid?: number, ref?: number | string): VifInfo[] {
    if (domid !== undefined && ref !== undefined) return [this.#info(this.#find(domid, ref))];
    const out: VifInfo[] = [];
    for (const [d, mine] of [...this.#vifs].sort((a, b) => a[0] - b[0])) {
      if (domid !== undefined && d !== domid) continue;
      for (const v of [...mine.values()].sort((a, b) => a.index - b.index)) out.push(this.#info(v));
    }
    return out;
  }

  #info(vif: Vif): VifInfo {
    const b = vif.dev.backend;
    return {
      domid: vif.domid,
      domain: this.#p.domainName(vif.domid),
      index: vif.index,
      name: vif.name,
      mac: formatMac(parseMac(vif.port.mac)),
      ips: vif.port.addresses.map((a) => formatIp(parseIp(a))),
      rate: vif.port.rate,
      state: stateName(vif.dev.state),
      frontendState: stateName(vif.dev.frontendState()),
      held: vif.port.held,
      stats: { ...vif.port.stats, txErrors: vif.errors.txErrors + (b?.stats.txErrors ?? 0), rxErrors: vif.errors.rxErrors + (b?.stats.rxErrors ?? 0) },
      ...(vif.dev.error !== undefined ? { error: vif.dev.error } : {}),
    };
  }
}
