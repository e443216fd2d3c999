// netfront: the guest's half of a virtual network interface
// (devices/net/vif.ts is the other). It finds its vifs in the store under
// device/vif, connects with the xenbus handshake (two ring pages, one event
// channel), and moves Ethernet frames through its own buffer pages, granted
// to the backend once: TX pages read-only, RX pages writable and posted to
// the backend, which fills one per frame.
//
// NetFront is the NetLink under the SDK's network stack:
//   const nic = NetFront.open(0);
//   const stack = new NetStack(nic, nic.mac);
//   stack.configure(cmdline());               // ip=<addr>::<gw>:<mask>::eth0:off
//   loop: nic.receive(stack); const next = stack.poll(now()); block(next);
import { EAGAIN, EINVAL, ENOSPC, sched_block, time_monotonic_now } from "./abi";
import { grant_access } from "./grant";
import { evtchn_alloc_unbound, evtchn_send } from "./evtchn";
import { storeRead, storeWrite, storeDirectory, storeWatch, storeUnwatch, storeEventPort } from "./store";
import { initSharedRing, localFrontRing, LocalRingPage, FrontRing } from "./ring";
import { NetLink } from "./net/link";
import { NetStack } from "./net/stack";
import { parseMacAddress } from "./net/addr";
import {
  XENBUS_INIT_WAIT, XENBUS_INITIALISED, XENBUS_CONNECTED, XENBUS_CLOSING, XENBUS_CLOSED, XENBUS_ETIMEDOUT,
  allocPages, parseU64, backendState, waitBackendState,
} from "./xenbus";

export const NETFRONT_ETIMEDOUT: i32 = XENBUS_ETIMEDOUT;

const TX_SLOT: u32 = 16;
const RX_SLOT: u32 = 8;
const PAGE: u32 = 4096;
/** Buffers each way (each one page and one grant). */
const TX_BUFFERS: u32 = 64;
const RX_BUFFERS: u32 = 64;
const MAX_FRAME: u32 = 1514;

export class NetFront extends NetLink {
  readonly index: u32;
  readonly path: string;
  /** The MAC the toolstack gave this vif (the switch drops frames from any other). */
  mac: u64 = 0;
  backendPath: string = "";
  backendId: u32 = 0;
  /** 0 until connected, then 4 (Connected); 6 after close(). */
  state: i32 = 0;
  error: string = "";
  /** Frames handed to the stack, frames sent, sends refused for want of a buffer, RX answers that were errors. */
  framesIn: u64 = 0;
  framesOut: u64 = 0;
  txFull: u64 = 0;
  rxErrors: u64 = 0;

  private tx: FrontRing | null = null;
  private rx: FrontRing | null = null;
  private txRing: usize = 0;
  private rxRing: usize = 0;
  private txPages: usize = 0;
  private rxPages: usize = 0;
  private txGrefs: StaticArray<i32> = new StaticArray<i32>(TX_BUFFERS);
  private rxGrefs: StaticArray<i32> = new StaticArray<i32>(RX_BUFFERS);
  private txBusy: StaticArray<bool> = new StaticArray<bool>(TX_BUFFERS);
  private port: u32 = 0;
  private msg: usize = heap.alloc(16);

  constructor(index: u32) {
    super();
    this.index = index;
    const path = "device/vif/" + index.toString();
    this.path = path;
  }

  /** The vifs the toolstack gave this domain (not yet connected). */
  static discover(): NetFront[] {
    const names = storeDirectory("device/vif");
    const out: NetFront[] = [];
    for (let i = 0; i < names.length; i++) out.push(new NetFront(<u32>parseU64(names[i])));
    return out;
  }

  /** Vif `index`, connected; null (reason in `netfrontError()`) when it is missing or fails. */
  static open(index: u32 = 0, timeoutMs: u32 = 10000): NetFront | null {
    if (storeRead("device/vif/" + index.toString() + "/backend") === null) {
      lastError = "vif " + index.toString() + ": no such device";
      return null;
    }
    const nic = new NetFront(index);
    const r = nic.connect(timeoutMs);
    if (r < 0) { lastError = "vif " + index.toString() + ": " + nic.error; return null; }
    return nic;
  }

  private fail(why: string, code: i32): i32 {
    this.error = why;
    return code;
  }

  /** The addresses the toolstack routes to this vif (the backend's `ip`), space-separated. */
  addresses(): string {
    const ips = storeRead(this.backendPath + "/ip");
    return ips === null ? "" : ips;
  }

  /** The handshake (see devices/xenbus.ts). 0 or a negative errno. */
  connect(timeoutMs: u32 = 10000): i32 {
    if (this.state == XENBUS_CONNECTED) return 0;
    const be = storeRead(this.path + "/backend");
    const beId = storeRead(this.path + "/backend-id");
    if (be === null || beId === null) return this.fail("the store has no backend for this vif", -EINVAL);
    this.backendPath = be;
    this.backendId = <u32>parseU64(beId);
    const mac = storeRead(this.path + "/mac");
    const parsed = mac === null ? -1 : parseMacAddress(mac);
    if (parsed <= 0) return this.fail("the store has no valid mac for this vif", -EINVAL);
    this.mac = <u64>parsed;
    if (storeEventPort() < 0) return this.fail("cannot bind the store's virq", -ENOSPC);
    const deadline = time_monotonic_now() + <u64>timeoutMs * 1000000;
    storeWatch(this.backendPath + "/state");
    let st = waitBackendState(this.backendPath, XENBUS_INIT_WAIT, deadline);
    if (st == XENBUS_ETIMEDOUT) return this.fail("the backend never got ready", NETFRONT_ETIMEDOUT);
    if (st >= XENBUS_CLOSING) return this.fail("the backend is closing", -EINVAL);

    if (this.txRing == 0) {
      this.txRing = allocPages(1);
      this.rxRing = allocPages(1);
      this.txPages = allocPages(TX_BUFFERS);
      this.rxPages = allocPages(RX_BUFFERS);
      for (let i: u32 = 0; i < TX_BUFFERS; i++) {
        const g = grant_access(this.backendId, <u32>((this.txPages + <usize>i * PAGE) >> 12), 1);
        if (g < 0) return this.fail("cannot grant a transmit page (" + g.toString() + ")", g);
        this.txGrefs[i] = g;
      }
      for (let i: u32 = 0; i < RX_BUFFERS; i++) {
        const g = grant_access(this.backendId, <u32>((this.rxPages + <usize>i * PAGE) >> 12), 0);
        if (g < 0) return this.fail("cannot grant a receive page (" + g.toString() + ")", g);
        this.rxGrefs[i] = g;
      }
    }
    memory.fill(this.txRing, 0, PAGE);
    memory.fill(this.rxRing, 0, PAGE);
    initSharedRing(new LocalRingPage(this.txRing), 0);
    initSharedRing(new LocalRingPage(this.rxRing), 0);
    this.tx = localFrontRing(this.txRing, TX_SLOT);
    this.rx = localFrontRing(this.rxRing, RX_SLOT);
    for (let i: u32 = 0; i < TX_BUFFERS; i++) this.txBusy[i] = false;
    // Every receive buffer is posted before the backend connects.
    for (let i: u32 = 0; i < RX_BUFFERS; i++) this.postRx(i);
    this.rx!.pushRequests();
    const txRef = grant_access(this.backendId, <u32>(this.txRing >> 12), 0);
    const rxRef = grant_access(this.backendId, <u32>(this.rxRing >> 12), 0);
    if (txRef < 0 || rxRef < 0) return this.fail("cannot grant the ring pages", txRef < 0 ? txRef : rxRef);
    const port = evtchn_alloc_unbound(this.backendId);
    if (port < 0) return this.fail("cannot offer an event channel (" + port.toString() + ")", port);
    this.port = <u32>port;
    storeWrite(this.path + "/tx-ring-ref", txRef.toString());
    storeWrite(this.path + "/rx-ring-ref", rxRef.toString());
    storeWrite(this.path + "/event-channel", port.toString());
    storeWrite(this.path + "/state", XENBUS_INITIALISED.toString());
    st = waitBackendState(this.backendPath, XENBUS_CONNECTED, deadline);
    if (st != XENBUS_CONNECTED) {
      const why = storeRead(this.backendPath + "/error");
      if (st == XENBUS_ETIMEDOUT) return this.fail("the backend did not connect" + (why === null ? "" : ": " + why), NETFRONT_ETIMEDOUT);
      return this.fail("the backend refused the connection: " + (why === null ? "closing" : why), -EINVAL);
    }
    storeWrite(this.path + "/state", XENBUS_CONNECTED.toString());
    this.state = XENBUS_CONNECTED;
    return 0;
  }

  private postRx(id: u32): void {
    const m = this.msg;
    store<u16>(m, <u16>id);
    store<u16>(m, 0, 2);
    store<u32>(m, <u32>this.rxGrefs[id], 4);
    this.rx!.putRequest(m);
  }

  /** Free the transmit buffers the backend is done with. */
  private reapTx(): void {
    const tx = this.tx!;
    while (true) {
      while (tx.takeResponse(this.msg) > 0) {
        const id = <u32>load<u16>(this.msg);
        if (id < TX_BUFFERS) this.txBusy[id] = false;
      }
      if (tx.finalCheckForResponses() <= 0) break;
    }
  }

  /** Send one frame (copied at once). 0, -EAGAIN when every transmit buffer is in flight, -EINVAL for a bad length. */
  send(ptr: usize, len: u32): i32 {
    if (this.state != XENBUS_CONNECTED) return -EINVAL;
    if (len < 14 || len > MAX_FRAME) return -EINVAL;
    let id: i32 = -1;
    for (let pass = 0; pass < 2 && id < 0; pass++) {
      if (pass == 1) this.reapTx();
      for (let i: u32 = 0; i < TX_BUFFERS; i++) if (!this.txBusy[i]) { id = <i32>i; break; }
    }
    if (id < 0) { this.txFull++; return -EAGAIN; }
    memory.copy(this.txPages + <usize>id * PAGE, ptr, len);
    const m = this.msg;
    store<u32>(m, <u32>this.txGrefs[id]);
    store<u16>(m, 0, 4);
    store<u16>(m, 0, 6);
    store<u16>(m, <u16>id, 8);
    store<u16>(m, <u16>len, 10);
    store<u32>(m, 0, 12);
    const r = this.tx!.putRequest(m);
    if (r < 0) return r;
    this.txBusy[id] = true;
    this.framesOut++;
    if (this.tx!.pushRequests() > 0) evtchn_send(this.port);
    return 0;
  }

  /** Hand every received frame to `stack` and repost its buffer. Returns how many frames came, or a negative errno. */
  receive(stack: NetStack): i32 {
    if (this.state != XENBUS_CONNECTED) return 0;
    this.reapTx();
    const rx = this.rx!;
    let n = 0;
    let reposted = false;
    while (true) {
      let r = rx.takeResponse(this.msg);
      while (r > 0) {
        const id = <u32>load<u16>(this.msg);
        const offset = <u32>load<u16>(this.msg, 2);
        const size = load<i16>(this.msg, 6);
        if (id < RX_BUFFERS) {
          if (size > 0 && offset + <u32>size <= PAGE) {
            this.framesIn++;
            n++;
            stack.input(this.rxPages + <usize>id * PAGE + offset, <u32>size);
          } else {
            this.rxErrors++;
          }
          this.postRx(id);
          reposted = true;
        }
        r = rx.takeResponse(this.msg);
      }
      if (r < 0) return this.fail("the backend broke the receive ring", r);
      if (rx.finalCheckForResponses() <= 0) break;
    }
    if (reposted && rx.pushRequests() > 0) evtchn_send(this.port);
    return n;
  }

  /** The toolstack asked to detach (the backend is Closing). */
  closeRequested(): bool {
    return this.state == XENBUS_CONNECTED && backendState(this.backendPath) == XENBUS_CLOSING;
  }

  /** Let go of the vif. */
  close(): void {
    if (this.state != XENBUS_CONNECTED) return;
    storeWrite(this.path + "/state", XENBUS_CLOSING.toString());
    storeWrite(this.path + "/state", XENBUS_CLOSED.toString());
    storeUnwatch(this.backendPath + "/state");
    this.state = XENBUS_CLOSED;
  }
}

let lastError: string = "";
/** Why the last NetFront.open failed. */
export function netfrontError(): string { return lastError; }
