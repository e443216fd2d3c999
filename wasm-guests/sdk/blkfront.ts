// blkfront: the guest's half of a virtual block device (devices/blk/vbd.ts
// is the other). It finds its disks in the store under device/vbd, connects
// with the xenbus handshake (grant a ring page, offer an event channel,
// state Initialised, wait for the backend's Connected), then moves data
// through its own bounce pages, granted to the backend once.
//
// Reads and writes of any length (whole sectors) are split into requests of
// up to 11 pages that run concurrently, as many as there are request slots.
// Results: 0 (or a count) when fine, a negative errno otherwise: the
// hypercall errnos of ./abi, plus BLK_EIO (the backend failed the request)
// and BLK_ETIMEDOUT (the backend did not answer the handshake).
import { EINVAL, EAGAIN, ENOSPC, sched_block, time_monotonic_now } from "./abi";
import { grant_access } from "./grant";
import { evtchn_alloc_unbound, evtchn_send } from "./evtchn";
import { storeRead, storeWrite, storeDirectory, storeWatch, storeUnwatch, storeEventPort } from "./store";
import { initSharedRing, localFrontRing, LocalRingPage, FrontRing } from "./ring";
import {
  XENBUS_INIT_WAIT, XENBUS_INITIALISED, XENBUS_CONNECTED, XENBUS_CLOSING, XENBUS_CLOSED, XENBUS_ETIMEDOUT,
  allocPages, parseU64, backendState, waitBackendState,
} from "./xenbus";

export const BLK_EIO: i32 = -5;
export const BLK_ETIMEDOUT: i32 = XENBUS_ETIMEDOUT;

export const BLKIF_OP_READ: u8 = 0;
export const BLKIF_OP_WRITE: u8 = 1;
export const BLKIF_OP_FLUSH: u8 = 3;
export const BLKIF_OP_DISCARD: u8 = 5;

const SLOT: u32 = 112;
const MAX_SEGMENTS: u32 = 11;
const PAGE: u32 = 4096;
/** Requests a device keeps in flight (each owns MAX_SEGMENTS bounce pages and grants). */
const FRONT_SLOTS: u32 = 8;
const CHUNK: u32 = MAX_SEGMENTS * PAGE;

export class BlkFront {
  /** The device number (the store key) and the name the toolstack gave it (xvda...). */
  readonly devid: u32;
  readonly vdev: string;
  readonly path: string;
  backendPath: string = "";
  backendId: u32 = 0;
  sectors: u64 = 0;
  sectorSize: u32 = 512;
  readonly: bool = false;
  /** 0 until connect() has succeeded, then XENBUS_CONNECTED; XENBUS_CLOSED after close(). */
  state: i32 = 0;
  /** What went wrong last, for messages. */
  error: string = "";
  /** Requests answered with an error status. */
  errors: u32 = 0;

  private ring: FrontRing | null = null;
  private ringAddr: usize = 0;
  private port: u32 = 0;
  private bounce: usize = 0;
  private grefs: StaticArray<i32> = new StaticArray<i32>(FRONT_SLOTS * MAX_SEGMENTS);
  private busy: StaticArray<bool> = new StaticArray<bool>(FRONT_SLOTS);
  private status: StaticArray<i32> = new StaticArray<i32>(FRONT_SLOTS);
  private done: StaticArray<bool> = new StaticArray<bool>(FRONT_SLOTS);
  private msg: usize = heap.alloc(SLOT);
  private inflight: u32 = 0;

  constructor(devid: u32) {
    this.devid = devid;
    const path = "device/vbd/" + devid.toString();
    this.path = path;
    const dev = storeRead(path + "/dev");
    this.vdev = dev === null ? devid.toString() : dev;
  }

  /** The devices the toolstack gave this domain (not yet connected). */
  static discover(): BlkFront[] {
    const names = storeDirectory("device/vbd");
    const out: BlkFront[] = [];
    for (let i = 0; i < names.length; i++) out.push(new BlkFront(<u32>parseU64(names[i])));
    return out;
  }

  /** The device named `vdev` (xvda...), connected; null (with the reason in `blkError`) when it is missing or fails. */
  static open(vdev: string, timeoutMs: u32 = 10000): BlkFront | null {
    const all = BlkFront.discover();
    for (let i = 0; i < all.length; i++) {
      if (all[i].vdev != vdev) continue;
      const r = all[i].connect(timeoutMs);
      if (r < 0) { lastError = vdev + ": " + all[i].error; return null; }
      return all[i];
    }
    lastError = vdev + ": no such device";
    return null;
  }

  private fail(why: string, code: i32): i32 {
    this.error = why;
    return code;
  }

  /**
   * The handshake: set up the ring and bounce pages, publish them, and wait
   * (up to `timeoutMs`) for the backend to connect. 0 or a negative errno.
   */
  connect(timeoutMs: u32 = 10000): i32 {
    if (this.state == XENBUS_CONNECTED) return 0;
    const be = storeRead(this.path + "/backend");
    const beId = storeRead(this.path + "/backend-id");
    if (be === null || beId === null) return this.fail("the store has no backend for this device", -EINVAL);
    this.backendPath = be;
    this.backendId = <u32>parseU64(beId);
    if (storeEventPort() < 0) return this.fail("cannot bind the store's virq", -ENOSPC);
    const deadline = time_monotonic_now() + <u64>timeoutMs * 1000000;
    storeWatch(this.backendPath + "/state");
    // The backend publishes the disk's size and features, then waits for us.
    let st = waitBackendState(this.backendPath, XENBUS_INIT_WAIT, deadline);
    if (st == XENBUS_ETIMEDOUT) return this.fail("the backend never got ready", BLK_ETIMEDOUT);
    if (st >= XENBUS_CLOSING) return this.fail("the backend is closing", -EINVAL);

    if (this.ringAddr == 0) {
      this.ringAddr = allocPages(1);
      this.bounce = allocPages(FRONT_SLOTS * MAX_SEGMENTS);
      for (let i: u32 = 0; i < FRONT_SLOTS * MAX_SEGMENTS; i++) {
        const g = grant_access(this.backendId, <u32>((this.bounce + <usize>i * PAGE) >> 12), 0);
        if (g < 0) return this.fail("cannot grant a data page (" + g.toString() + ")", g);
        this.grefs[i] = g;
      }
    }
    memory.fill(this.ringAddr, 0, PAGE);
    initSharedRing(new LocalRingPage(this.ringAddr), 0);
    this.ring = localFrontRing(this.ringAddr, SLOT);
    const ringRef = grant_access(this.backendId, <u32>(this.ringAddr >> 12), 0);
    if (ringRef < 0) return this.fail("cannot grant the ring page (" + ringRef.toString() + ")", ringRef);
    const port = evtchn_alloc_unbound(this.backendId);
    if (port < 0) return this.fail("cannot offer an event channel (" + port.toString() + ")", port);
    this.port = <u32>port;
    storeWrite(this.path + "/ring-ref", ringRef.toString());
    storeWrite(this.path + "/event-channel", port.toString());
    storeWrite(this.path + "/state", XENBUS_INITIALISED.toString());

    st = waitBackendState(this.backendPath, XENBUS_CONNECTED, deadline);
    if (st != XENBUS_CONNECTED) {
      const why = storeRead(this.backendPath + "/error");
      if (st == XENBUS_ETIMEDOUT) return this.fail("the backend did not connect" + (why === null ? "" : ": " + why), BLK_ETIMEDOUT);
      return this.fail("the backend refused the connection: " + (why === null ? "closing" : why), -EINVAL);
    }
    this.sectors = parseU64(storeRead(this.backendPath + "/sectors"));
    this.sectorSize = <u32>parseU64(storeRead(this.backendPath + "/sector-size"));
    if (this.sectorSize == 0) this.sectorSize = 512;
    this.readonly = (parseU64(storeRead(this.backendPath + "/info")) & 4) != 0;
    storeWrite(this.path + "/state", XENBUS_CONNECTED.toString());
    this.state = XENBUS_CONNECTED;
    return 0;
  }

  /** The toolstack asked to detach (the backend is Closing). */
  closeRequested(): bool {
    return this.state == XENBUS_CONNECTED && backendState(this.backendPath) == XENBUS_CLOSING;
  }

  /** Let go of the device: wait for requests in flight, then tell the backend we are closed. */
  close(): void {
    if (this.state != XENBUS_CONNECTED) return;
    this.drain();
    storeWrite(this.path + "/state", XENBUS_CLOSING.toString());
    storeWrite(this.path + "/state", XENBUS_CLOSED.toString());
    storeUnwatch(this.backendPath + "/state");
    this.state = XENBUS_CLOSED;
  }

  private freeSlot(): i32 {
    for (let i: u32 = 0; i < FRONT_SLOTS; i++) if (!this.busy[i]) return <i32>i;
    return -1;
  }

  /** Take every response there is; returns how many or a negative errno. */
  private collect(): i32 {
    const ring = this.ring!;
    let n = 0;
    while (true) {
      let r = ring.takeResponse(this.msg);
      while (r > 0) {
        const id = load<u64>(this.msg);
        const status = load<i16>(this.msg, 10);
        if (id < <u64>FRONT_SLOTS && this.busy[<i32>id] && !this.done[<i32>id]) {
          this.done[<i32>id] = true;
          this.status[<i32>id] = status == 0 ? 0 : BLK_EIO;
          if (status != 0) this.errors++;
          this.inflight--;
          n++;
        }
        r = ring.takeResponse(this.msg);
      }
      if (r < 0) return this.fail("the backend broke the ring (" + r.toString() + ")", r);
      const more = ring.finalCheckForResponses();
      if (more < 0) return more;
      if (more == 0) break;
    }
    return n;
  }

  /** Wait until slot `s` is answered. */
  private waitSlot(s: i32): i32 {
    while (!this.done[s]) {
      const r = this.collect();
      if (r < 0) return r;
      if (!this.done[s]) sched_block(0);
    }
    return this.status[s];
  }

  /** Wait for every request in flight; the first error, or 0. */
  private drain(): i32 {
    let result = 0;
    for (let s: i32 = 0; s < <i32>FRONT_SLOTS; s++) {
      if (!this.busy[s]) continue;
      const r = this.waitSlot(s);
      if (r < 0 && result == 0) result = r;
      this.busy[s] = false;
    }
    return result;
  }

  private submit(s: i32, op: u8, sector: u64, bytes: u32): i32 {
    const m = this.msg;
    memory.fill(m, 0, SLOT);
    store<u8>(m, op);
    let nseg: u32 = 0;
    if (op == BLKIF_OP_READ || op == BLKIF_OP_WRITE) {
      const sectors = bytes / 512;
      for (let done: u32 = 0; done < sectors; nseg++) {
        const n = min<u32>(8, sectors - done);
        store<u32>(m + 24 + nseg * 8, <u32>this.grefs[<i32>(<u32>s * MAX_SEGMENTS + nseg)]);
        store<u8>(m + 28 + nseg * 8, 0);
        store<u8>(m + 29 + nseg * 8, <u8>(n - 1));
        done += n;
      }
    } else if (op == BLKIF_OP_DISCARD) {
      store<u64>(m, <u64>bytes / 512, 24);
    }
    store<u8>(m, <u8>nseg, 1);
    store<u16>(m, <u16>this.devid, 2);
    store<u64>(m, <u64>s, 8);
    store<u64>(m, sector, 16);
    const r = this.ring!.putRequest(m);
    if (r < 0) return r;
    this.busy[s] = true;
    this.done[s] = false;
    this.inflight++;
    const notify = this.ring!.pushRequests();
    if (notify < 0) return notify;
    if (notify > 0) evtchn_send(this.port);
    return 0;
  }

  private checkIo(sector: u64, bytes: u32, write: bool): i32 {
    if (this.state != XENBUS_CONNECTED) return this.fail("not connected", -EINVAL);
    if ((bytes & 511) != 0) return this.fail("length is not whole sectors", -EINVAL);
    if (write && this.readonly) return this.fail("the device is read-only", -EINVAL);
    return 0;
  }

  /** Read `bytes` (whole sectors) at `sector` into `dst`, many requests at once. 0 or a negative errno. */
  read(sector: u64, dst: usize, bytes: u32): i32 {
    return this.transfer(false, sector, dst, bytes);
  }

  /** Write `bytes` from `src` at `sector`; 0 once the backend has acknowledged every request. */
  write(sector: u64, src: usize, bytes: u32): i32 {
    return this.transfer(true, sector, src, bytes);
  }

  private transfer(write: bool, sector: u64, buf: usize, bytes: u32): i32 {
    const c = this.checkIo(sector, bytes, write);
    if (c < 0) return c;
    // Which request carried which part: slot -> offset in the caller's buffer.
    const offsets = new StaticArray<u32>(FRONT_SLOTS);
    const lengths = new StaticArray<u32>(FRONT_SLOTS);
    let result: i32 = 0;
    let off: u32 = 0;
    while (off < bytes || this.inflight > 0) {
      // Start as many chunks as there are free slots.
      while (off < bytes) {
        const s = this.freeSlot();
        if (s < 0) break;
        const n = min<u32>(CHUNK, bytes - off);
        const page = this.bounce + <usize>(<u32>s * MAX_SEGMENTS) * PAGE;
        if (write) memory.copy(page, buf + off, n);
        const r = this.submit(s, write ? BLKIF_OP_WRITE : BLKIF_OP_READ, sector + <u64>(off / 512), n);
        if (r < 0) { result = r; off = bytes; break; }
        offsets[s] = off;
        lengths[s] = n;
        off += n;
      }
      // Wait for at least one answer, and finish the answered ones.
      const before = this.inflight;
      const got = this.collect();
      if (got < 0) return got;
      if (this.inflight == before && this.inflight > 0) { sched_block(0); continue; }
      for (let s: i32 = 0; s < <i32>FRONT_SLOTS; s++) {
        if (!this.busy[s] || !this.done[s]) continue;
        if (this.status[s] < 0 && result == 0) result = this.status[s];
        if (!write && this.status[s] == 0) memory.copy(buf + offsets[s], this.bounce + <usize>(<u32>s * MAX_SEGMENTS) * PAGE, lengths[s]);
        this.busy[s] = false;
      }
    }
    if (result == BLK_EIO) this.error = "the backend failed a request";
    return result;
  }

  /** A barrier: 0 once everything acknowledged before it is durable on the host. */
  flush(): i32 {
    if (this.state != XENBUS_CONNECTED) return this.fail("not connected", -EINVAL);
    const d = this.drain();
    const s = this.freeSlot();
    if (s < 0) return -EAGAIN;
    const r = this.submit(s, BLKIF_OP_FLUSH, 0, 0);
    if (r < 0) return r;
    const st = this.waitSlot(s);
    this.busy[s] = false;
    return d < 0 ? d : st;
  }

  /** Tell the host `count` sectors at `sector` are unused. */
  discard(sector: u64, count: u32): i32 {
    const c = this.checkIo(sector, count * 512, true);
    if (c < 0) return c;
    this.drain();
    const s = this.freeSlot();
    const r = this.submit(s, BLKIF_OP_DISCARD, sector, count * 512);
    if (r < 0) return r;
    const st = this.waitSlot(s);
    this.busy[s] = false;
    return st;
  }
}

let lastError: string = "";
/** Why the last BlkFront.open failed. */
export function blkError(): string { return lastError; }
