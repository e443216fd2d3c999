/**
 * The connection of one split device between domain 0 (the backend, in the
 * host) and a guest (the frontend), over the store, after Xen's xenbus. Block
 * devices (blk/vbd.ts) and network interfaces (net/vif.ts) differ in what
 * they publish and how many rings they have; the handshake is this one.
 *
 * For domain D's device DEVID of kind K (vbd, vif):
 *
 *   backend  /local/domain/0/backend/K/D/DEVID/   owned by 0, readable by D
 *     frontend, frontend-id, state, [error], and the device's own keys
 *   frontend /local/domain/D/device/K/DEVID/      owned by D
 *     backend, backend-id, state, the device's own keys, and from the
 *     guest: its ring grant references and event-channel
 *
 * 1. install writes both directories, backend state InitWait (2), and
 *    watches the frontend's state.
 * 2. The guest grants its ring pages, offers an event channel to domain 0,
 *    publishes them, then state Initialised (3).
 * 3. The backend maps the rings, binds the channel, starts serving: state
 *    Connected (4). The guest reads what it needs and goes Connected.
 * 4. Detach sets the backend Closing (5); the guest finishes what it has in
 *    flight and goes Closed (6); the backend stops (a block device completes
 *    its requests in flight first) and both directories are removed.
 *
 * A frontend that publishes nonsense (a bad grant reference, a port it did
 * not offer) gets an `error` node in the backend directory and stays
 * unconnected; one that breaks a ring stops only its own device.
 */
import type { Store } from '../kernel/store.ts';
import type { EventChannels } from '../kernel/evtchn.ts';
import type { GrantTables, GrantMapping } from '../kernel/grant.ts';
import { MemoryRingPage, type RingPage } from '../kernel/ring.ts';
import { WvError } from '../kernel/errors.ts';

/** xenbus states. */
export const XenbusState = {
  UNKNOWN: 0, INITIALISING: 1, INIT_WAIT: 2, INITIALISED: 3, CONNECTED: 4, CLOSING: 5, CLOSED: 6,
} as const;
const STATE_NAMES = ['unknown', 'initialising', 'init-wait', 'initialised', 'connected', 'closing', 'closed'];
export function stateName(s: number): string { return STATE_NAMES[s] ?? `state ${s}`; }

/** The domain has no such device, or a detach did not complete. */
export class DeviceError extends WvError {
  constructor(code: 'WV_ERR_BLOCK_DEVICE' | 'WV_ERR_NET_DEVICE', detail: string) { super(code, detail); }
}

/** What split devices need from the hypervisor. */
export interface XenbusPlatform {
  readonly store: Store;
  readonly evtchn: EventChannels;
  readonly grants: GrantTables;
  /** Call `fn` when domain 0's port `port` is notified; returns a remover. */
  onPort(port: number, fn: () => void): () => void;
  /** Call `fn` (with the changed path) when `path` or anything under it changes, and once at once; returns a remover. */
  watch(path: string, fn: (changed: string) => void): () => void;
  /** The domain's name, for messages. */
  domainName(domid: number): string;
  log(level: 'info' | 'warn' | 'error', line: string): void;
}

/** A running backend, as the handshake sees it. */
export interface XenbusBackend {
  /** The frontend notified. */
  kick(): void;
}

/**
 * A connection as a save keeps it: the frontend's ring grant references
 * (in the order of `rings`) and its event-channel port. A restored domain's
 * backend takes it up again with `takeOver`, without a handshake.
 */
export interface SavedConnection {
  grefs: number[];
  port: number;
}

export interface XenbusDeviceOptions<B extends XenbusBackend> {
  kind: 'vbd' | 'vif';
  domid: number;
  devid: number;
  /** For messages: "block: domain 3 xvda", "net: domain 3 vif3.0". */
  label: string;
  /** The device's own backend and frontend keys. */
  backend: Record<string, string | number>;
  frontend: Record<string, string | number>;
  /** Frontend keys holding the grant references of its ring pages, in the order `start` takes them. */
  rings: readonly string[];
  /**
   * Make the backend once the rings are mapped. Throwing refuses the
   * connection (the message goes in `error`). `resumed`: the rings are in
   * use already (a restored domain's): the backend starts from the
   * responses published in them (RSP_PROD) instead of from 0, so requests
   * published but not answered are taken (again).
   */
  start(o: { pages: RingPage[]; notify: () => void; broken: (err: Error) => void; resumed: boolean }): B;
  /** Stop a backend (a block device finishes its requests in flight). */
  stop(backend: B): Promise<void> | void;
  /** Error code for this kind of device. */
  code: 'WV_ERR_BLOCK_DEVICE' | 'WV_ERR_NET_DEVICE';
}

export interface DetachOptions {
  /** How long to wait for the guest to let go, ms (default 10 s). */
  timeoutMs?: number;
  /** Detach even if the guest does not answer (requests in flight still complete first). */
  force?: boolean;
}

export class XenbusDevice<B extends XenbusBackend> {
  readonly domid: number;
  readonly devid: number;
  readonly be: string;
  readonly fe: string;
  /** The backend's xenbus state. */
  state: number = XenbusState.INITIALISING;
  /** The last connection error, if any. */
  error: string | undefined;
  /** Serving, between connect and disconnect. */
  backend: B | undefined;
  readonly #p: XenbusPlatform;
  readonly #o: XenbusDeviceOptions<B>;
  #rings: GrantMapping[] = [];
  #port: number | undefined;
  /** What the frontend connected with (kept for a save). */
  #connection: SavedConnection | undefined;
  #offPort: (() => void) | undefined;
  #unwatch: () => void = () => {};
  #teardown: Promise<void> | undefined;
  #onFrontendClosed: (() => void) | undefined;

  constructor(p: XenbusPlatform, o: XenbusDeviceOptions<B>) {
    this.#p = p;
    this.#o = o;
    this.domid = o.domid;
    this.devid = o.devid;
    this.be = `/local/domain/0/backend/${o.kind}/${o.domid}/${o.devid}`;
    this.fe = `/local/domain/${o.domid}/device/${o.kind}/${o.devid}`;
  }

  get removing(): boolean { return this.#teardown !== undefined; }

  /** Write both directories and wait for the frontend. Throws (leaving nothing behind) if the store refuses. */
  install(): void {
    const st = this.#p.store;
    const { be, fe, domid } = this;
    const w = (path: string, value: string | number): void => {
      const r = st.write(0, path, String(value));
      if (r < 0) throw new DeviceError(this.#o.code, `cannot write ${path} in the store (${r})`);
    };
    try {
      w(be, '');
      st.setPerms(0, be, { owner: 0, others: [{ domid, write: false }] });
      w(`${be}/frontend`, fe);
      w(`${be}/frontend-id`, domid);
      for (const [k, v] of Object.entries(this.#o.backend)) w(`${be}/${k}`, v);
      // The guest owns its frontend directory (domain 0's writes under a
      // guest's home belong to the guest), so it can write its half.
      w(fe, '');
      w(`${fe}/backend`, be);
      w(`${fe}/backend-id`, 0);
      for (const [k, v] of Object.entries(this.#o.frontend)) w(`${fe}/${k}`, v);
      w(`${fe}/state`, XenbusState.INITIALISING);
      this.state = XenbusState.INIT_WAIT;
      w(`${be}/state`, this.state);
    } catch (err) {
      st.remove(0, be);
      st.remove(0, fe);
      throw err;
    }
    this.#unwatch = this.#p.watch(`${fe}/state`, () => this.#frontendChanged());
  }

  frontendState(): number {
    const v = this.#p.store.read(0, `${this.fe}/state`);
    return typeof v === 'string' && /^[0-6]$/.test(v) ? Number(v) : XenbusState.UNKNOWN;
  }

  #setState(state: number): void {
    this.state = state;
    this.#p.store.write(0, `${this.be}/state`, String(state));
  }

  /** Record a connection problem where the guest and `list` can see it. */
  fail(why: string): void {
    this.error = why;
    this.#p.store.write(0, `${this.be}/error`, why);
    this.#p.log('warn', `${this.#o.label}: ${why}`);
  }

  #frontendChanged(): void {
    if (this.#teardown) return;
    const fs = this.frontendState();
    if (fs === XenbusState.INITIALISED || (fs === XenbusState.CONNECTED && !this.backend)) {
      if (!this.backend && this.state !== XenbusState.CLOSING) this.#connect();
    } else if (fs === XenbusState.CLOSING || fs === XenbusState.CLOSED) {
      if (this.#onFrontendClosed && fs === XenbusState.CLOSED) this.#onFrontendClosed();
      else if (this.backend && this.state !== XenbusState.CLOSING) void this.#disconnect().then(() => this.#setState(XenbusState.CLOSED));
    } else if (fs === XenbusState.INITIALISING && this.state === XenbusState.CLOSED) {
      // The guest's driver starts again (a reboot of its driver): offer the device again.
      this.#setState(XenbusState.INIT_WAIT);
    }
  }

  #num(key: string, max: number): number | undefined {
    const v = this.#p.store.read(0, `${this.fe}/${key}`);
    if (typeof v !== 'string' || !/^[0-9]{1,10}$/.test(v) || Number(v) > max) {
      this.fail(`frontend ${key} is ${typeof v === 'string' ? `"${v.slice(0, 40)}"` : 'missing'}, not a number up to ${max}`);
      return undefined;
    }
    return Number(v);
  }

  #connect(): void {
    const grefs: number[] = [];
    for (const key of this.#o.rings) {
      const g = this.#num(key, 0xffffffff);
      if (g === undefined) return;
      grefs.push(g);
    }
    const remotePort = this.#num('event-channel', 0xffff);
    if (remotePort === undefined) return;
    const rings: GrantMapping[] = [];
    const unmap = (): void => { for (const r of rings) r.release(); };
    for (const [i, gref] of grefs.entries()) {
      const m = this.#p.grants.map(0, this.domid, gref, true);
      if (typeof m === 'number') {
        unmap();
        return this.fail(`cannot map the ${this.#o.rings.length > 1 ? `${this.#o.rings[i]} ` : ''}ring (grant ${gref}): error ${m}`);
      }
      rings.push(m);
    }
    const port = this.#p.evtchn.bindInterdomain(0, this.domid, remotePort);
    if (port < 0) {
      unmap();
      return this.fail(`cannot bind event channel ${remotePort}: error ${port}`);
    }
    let backend: B;
    try {
      backend = this.#start(rings, port, false);
    } catch (err) {
      unmap();
      this.#p.evtchn.close(0, port);
      return this.fail(`cannot use the rings: ${(err as Error).message}`);
    }
    this.#serve(backend, rings, port, { grefs, port: remotePort });
    backend.kick();
    this.#p.log('info', `${this.#o.label}: connected (ring grant${grefs.length > 1 ? 's' : ''} ${grefs.join(', ')}, port ${port})`);
  }

  #start(rings: GrantMapping[], port: number, resumed: boolean): B {
    return this.#o.start({
      pages: rings.map((r) => new MemoryRingPage(r.bytes, 0)),
      notify: () => { this.#p.evtchn.send(0, port); },
      broken: (err) => {
        this.fail(`the frontend broke the ring protocol: ${err.message}; the device is stopped`);
        this.#setState(XenbusState.CLOSING);
      },
      resumed,
    });
  }

  #serve(backend: B, rings: GrantMapping[], port: number, connection: SavedConnection): void {
    this.#rings = rings;
    this.#port = port;
    this.#connection = connection;
    this.backend = backend;
    this.error = undefined;
    this.#p.store.remove(0, `${this.be}/error`);
    this.#offPort = this.#p.onPort(port, () => backend.kick());
    this.#setState(XenbusState.CONNECTED);
  }

  /** The frontend directory's keys and values (one level), as the guest left them: what a save keeps. */
  frontendKeys(): Record<string, string> {
    const st = this.#p.store;
    const out: Record<string, string> = {};
    const names = st.list(0, this.fe);
    if (typeof names === 'number') return out;
    for (const k of names) {
      const v = st.read(0, `${this.fe}/${k}`);
      if (typeof v === 'string' && v !== '') out[k] = v;
    }
    return out;
  }

  /**
   * Bring back a restored domain's device: the keys its frontend had
   * written, then, if it was connected, its saved connection (takeOver).
   * Returns what did not come back, with why.
   */
  restore(frontend: Record<string, string>, connection: SavedConnection | null): string[] {
    const problems = this.restoreFrontendKeys(frontend);
    if (connection) {
      try {
        this.takeOver(connection);
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
    return problems;
  }

  /**
   * Put back the keys a saved frontend had written (not `backend` and
   * `backend-id`, which install wrote for this domain). A frontend that was
   * in the middle of the handshake goes on with it from there. Returns the
   * keys the store refused, with why.
   */
  restoreFrontendKeys(keys: Record<string, string>): string[] {
    const bad: string[] = [];
    for (const [k, v] of Object.entries(keys)) {
      if (k === 'backend' || k === 'backend-id') continue;
      const r = typeof v === 'string' && !k.includes('/') ? this.#p.store.write(0, `${this.fe}/${k}`, v) : -22;
      if (r < 0) bad.push(`frontend key ${JSON.stringify(k).slice(0, 40)}: not written (${r})`);
    }
    return bad;
  }

  /** The connection being served (for a save), or undefined. */
  get connection(): SavedConnection | undefined {
    return this.backend ? { grefs: [...this.#connection!.grefs], port: this.#connection!.port } : undefined;
  }

  /**
   * Take up a restored domain's saved connection without a handshake (the
   * guest believes it is connected; docs/save-format.md, "Devices"): map its
   * ring grants again (they came back with the domain), join a new domain-0
   * port to its saved port (free: the caller kept it out of the ports it
   * restored), put both states to Connected, give the guest back its watch
   * on the backend's state, start the backend from the responses published
   * in the rings, and notify the guest so it looks at them. Throws a
   * DeviceError saying why when it cannot; then nothing is left connected.
   */
  takeOver(saved: SavedConnection): void {
    const { domid } = this;
    if (this.backend || this.#teardown) throw new DeviceError(this.#o.code, `${this.#o.label} is ${this.backend ? 'connected already' : 'going away'}`);
    if (!Array.isArray(saved.grefs) || saved.grefs.length !== this.#o.rings.length) {
      throw new DeviceError(this.#o.code, `${this.#o.label}: the saved connection has ${Array.isArray(saved.grefs) ? saved.grefs.length : 'no'} ring grants, not ${this.#o.rings.length}`);
    }
    const rings: GrantMapping[] = [];
    const unmap = (): void => { for (const r of rings) r.release(); };
    for (const [i, gref] of saved.grefs.entries()) {
      const m = this.#p.grants.map(0, domid, gref, true);
      if (typeof m === 'number') {
        unmap();
        throw new DeviceError(this.#o.code, `${this.#o.label}: cannot map the ${this.#o.rings[i]} ring again (grant ${gref}): error ${m}`);
      }
      rings.push(m);
    }
    const ev = this.#p.evtchn;
    const port = ev.allocUnbound(0, domid);
    const joined = port < 0 ? port : ev.connectPorts(domid, saved.port, 0, port);
    if (joined < 0) {
      if (port > 0) ev.close(0, port);
      unmap();
      throw new DeviceError(this.#o.code, `${this.#o.label}: cannot join the guest's event channel ${saved.port} again: error ${joined}`);
    }
    let backend: B;
    try {
      backend = this.#start(rings, port, true);
    } catch (err) {
      ev.close(0, port);
      // The guest's end goes back to free, as it was before.
      ev.close(domid, saved.port);
      unmap();
      throw new DeviceError(this.#o.code, `${this.#o.label}: cannot use the saved rings: ${(err as Error).message}`);
    }
    const st = this.#p.store;
    for (const [i, key] of this.#o.rings.entries()) st.write(0, `${this.fe}/${key}`, String(saved.grefs[i]));
    st.write(0, `${this.fe}/event-channel`, String(saved.port));
    st.write(0, `${this.fe}/state`, String(XenbusState.CONNECTED));
    this.#serve(backend, rings, port, { grefs: [...saved.grefs], port: saved.port });
    // The frontend watched our state before it was saved; watches live in the store, which did not travel.
    st.watch(domid, `${this.be}/state`);
    backend.kick();
    ev.send(0, port);
    this.#p.log('info', `${this.#o.label}: connection taken up again (ring grant${saved.grefs.length > 1 ? 's' : ''} ${saved.grefs.join(', ')}, port ${port} to the guest's ${saved.port})`);
  }

  async #disconnect(): Promise<void> {
    const backend = this.backend;
    if (!backend) return;
    await this.#o.stop(backend);
    this.backend = undefined;
    this.#offPort?.();
    this.#offPort = undefined;
    if (this.#port !== undefined) this.#p.evtchn.close(0, this.#port);
    this.#port = undefined;
    this.#connection = undefined;
    for (const r of this.#rings) r.release();
    this.#rings = [];
  }

  /**
   * Ask the guest to let go, wait for it (up to the timeout), then remove the
   * device. Without `force` a guest that does not answer keeps its device and
   * the call fails, saying so.
   */
  async detach(name: string, opts: DetachOptions = {}): Promise<void> {
    if (this.#teardown) return this.#teardown;
    const fs = this.frontendState();
    const engaged = fs === XenbusState.INITIALISED || fs === XenbusState.CONNECTED || this.backend !== undefined;
    if (engaged) {
      const timeoutMs = opts.timeoutMs ?? 10_000;
      const closed = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        this.#onFrontendClosed = () => { clearTimeout(timer); resolve(true); };
      });
      this.#setState(XenbusState.CLOSING);
      if (this.frontendState() === XenbusState.CLOSED) this.#onFrontendClosed?.();
      const answered = await closed;
      this.#onFrontendClosed = undefined;
      if (!answered && !opts.force) {
        if (!this.#teardown) this.#setState(this.backend ? XenbusState.CONNECTED : XenbusState.INIT_WAIT);
        throw new DeviceError(this.#o.code, `domain ${this.domid} did not release ${name} within ${timeoutMs} ms (its frontend is ${stateName(this.frontendState())}); use --force to detach it anyway`);
      }
    }
    await this.remove();
  }

  /** Stop serving and remove both directories (the domain is gone, or a detach was agreed). */
  remove(): Promise<void> {
    this.#teardown ??= (async () => {
      this.#unwatch();
      await this.#disconnect();
      this.#p.store.remove(0, this.be);
      this.#p.store.remove(0, this.fe);
    })();
    return this.#teardown;
  }
}
