/**
 * The AssemblyScript ring (wasm-guests/sdk/ring.ts) and the host ring
 * (kernel/ring.ts) must be one protocol. This compiles a small AS module
 * (wasm-guests/test-modules/ring-check.ts) in memory and runs each SDK ring
 * in lock step with a TypeScript ring doing the same operations on a second
 * page: every result and every byte of the two pages must agree. The SDK
 * front ring uses a page of the module's own memory, served by a TS back ring;
 * the SDK back ring reaches a TS front ring's page through grant copies,
 * stubbed here by JS functions that copy between two shared memories (what
 * the kernel does).
 */
import t from 'tap';
import {
  BackRing, FrontRing, MemoryRingPage, RING_HEADER_SIZE, RING_PAGE_SIZE, RingField, RingProtocolError,
  bytesCodec, initSharedRing, ringLayout, ringSlotOffset,
} from '../kernel/ring.ts';
import { Errno } from '../kernel/errno.ts';
import { prng } from '../test/fuzz/prng.ts';
import { compileAs } from '../test/helpers/asc.ts';

const GRANT = 'wasmvisor:hypercall/grant@0.1.0';

/** Compile the test module with the guests' flags (test/helpers/asc.ts), into memory. */
async function compile(): Promise<WebAssembly.Module> {
  return new WebAssembly.Module(await compileAs('wasm-guests/test-modules/ring-check.ts'));
}

interface RingCheck {
  scratch(): number;
  layoutConstant(which: number): number;
  slotsFor(slotSize: number): number;
  slotOffset(index: number, slots: number, slotSize: number): number;
  frontInit(addr: number, slotSize: number, start: number): number;
  frontAttach(addr: number, slotSize: number, start: number): number;
  frontPut(): number;
  frontPush(): number;
  frontFree(): number;
  frontUnconsumed(): number;
  frontTake(): number;
  frontFinalCheck(): number;
  frontReqProdPvt(): number;
  frontRspCons(): number;
  backInit(granter: number, gref: number, slotSize: number, start: number): number;
  backUnconsumed(): number;
  backTake(): number;
  backPut(): number;
  backPush(): number;
  backPending(): number;
  backFinalCheck(): number;
  backReqCons(): number;
  backRspProdPvt(): number;
}

type GrantCopy = (granter: number, gref: number, offset: number, addr: number, len: number) => number;

/** One instance of the test module in its own shared memory (4 pages). */
function instantiate(module: WebAssembly.Module, grant: { from: GrantCopy; to: GrantCopy }) {
  const memory = new WebAssembly.Memory({ initial: 4, maximum: 4, shared: true });
  const console: string[] = [];
  const instance = new WebAssembly.Instance(module, {
    env: { memory },
    [GRANT]: { 'copy-from': grant.from, 'copy-to': grant.to },
    'wasmvisor:hypercall/console@0.1.0': {
      write: (ptr: number, len: number) => { console.push(Buffer.from(memory.buffer, ptr, len).toString()); return len; },
    },
    'wasmvisor:hypercall/sched@0.1.0': {
      yield: () => 0,
      shutdown: (reason: number) => { throw new Error(`the module shut down (${reason}): ${console.join('')}`); },
    },
  });
  (instance.exports._initialize as () => void)();
  const ex = instance.exports as unknown as RingCheck;
  const mem = new Uint8Array(memory.buffer);
  const scratch = ex.scratch();
  return {
    ex, mem,
    /** Put a message into the module's scratch buffer. */
    setScratch: (bytes: Uint8Array) => mem.set(bytes, scratch),
    /** The first `n` bytes of the scratch buffer. */
    getScratch: (n: number) => mem.slice(scratch, scratch + n),
  };
}

const noGrant = { from: () => -Errno.ENOSYS, to: () => -Errno.ENOSYS };
const module = await compile();

/** A fresh page of shared memory for the TypeScript twin of a world. */
function twinPage(): { mem: Uint8Array; page: MemoryRingPage } {
  const mem = new Uint8Array(new SharedArrayBuffer(RING_PAGE_SIZE));
  return { mem, page: new MemoryRingPage(mem, 0) };
}

function message(rand: () => number, size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

t.test('the module imports the grant calls by their WIT names and types', async (t) => {
  const imports = WebAssembly.Module.imports(module).filter((i) => i.module === GRANT).map((i) => i.name).sort();
  t.same(imports, ['copy-from', 'copy-to'], 'only the copies are used by the rings');
});

t.test('both sides compute the same layout', async (t) => {
  const { ex } = instantiate(module, noGrant);
  t.same([0, 1, 2, 3, 4, 5].map((i) => ex.layoutConstant(i) >>> 0),
    [RING_PAGE_SIZE, RING_HEADER_SIZE, RingField.REQ_PROD, RingField.REQ_EVENT, RingField.RSP_PROD, RingField.RSP_EVENT]);
  const mismatches: string[] = [];
  for (let size = 0; size <= 4104; size += 4) {
    let ts: number;
    try { ts = ringLayout(size).slots; } catch { ts = -Errno.EINVAL; }
    const as = ex.slotsFor(size);
    if (as !== ts) mismatches.push(`slot size ${size}: AS ${as}, TS ${ts}`);
    if (ts > 0) {
      for (const index of [0, 1, ts - 1, ts, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]) {
        const a = ex.slotOffset(index, ts, size) >>> 0;
        const b = ringSlotOffset({ slotSize: size, slots: ts }, index);
        if (a !== b) mismatches.push(`slot size ${size}, index ${index}: AS offset ${a}, TS ${b}`);
      }
    }
  }
  t.same(mismatches, [], 'slot counts and slot offsets agree for every slot size 0..4104');
  t.equal(ex.slotsFor(0xfffffff8), -Errno.EINVAL, 'a huge slot size is refused');
});

t.test('SDK front ring (own memory) against a host back ring, in lock step with a host front ring', async (t) => {
  const ADDR = 3 * 65536;
  for (const [slotSize, start, seed] of [[16, 0, 1], [112, 0xfffffff0, 2], [8, 0xffffff00, 3], [1008, 0xfffffffe, 4], [4032, 7, 5]] as const) {
    const g = instantiate(module, noGrant);
    const asPage = new MemoryRingPage(g.mem, ADDR);
    g.mem.fill(0x5a, ADDR - 4096, ADDR);
    g.mem.fill(0x5a, ADDR + 4096, ADDR + 8192);
    t.equal(g.ex.frontInit(ADDR, slotSize, start), 0);
    const twin = twinPage();
    initSharedRing(twin.page, start);
    t.equal(hex(g.mem.subarray(ADDR, ADDR + RING_HEADER_SIZE)), hex(twin.mem.subarray(0, RING_HEADER_SIZE)), 'the SDK initialises the header as the host does');

    const codec = bytesCodec(slotSize);
    const opts = { request: codec, response: codec, start };
    const tsFront = new FrontRing(twin.page, opts);
    const backs = [new BackRing(asPage, opts), new BackRing(twin.page, opts)] as const;
    const rand = prng(seed);
    const problems: string[] = [];
    const same = (what: string, a: unknown, b: unknown) => { if (JSON.stringify(a) !== JSON.stringify(b)) problems.push(`${what}: SDK ${JSON.stringify(a)}, host ${JSON.stringify(b)}`); };
    let requests = 0;
    let responses = 0;
    for (let step = 0; step < 600; step++) {
      const op = Math.floor(rand() * 8);
      if (op <= 1) {
        const msg = message(rand, slotSize);
        g.setScratch(msg);
        const a = g.ex.frontPut();
        same('put', a === 0 ? true : a === -Errno.EAGAIN ? false : a, tsFront.putRequest(msg));
      } else if (op === 2) {
        same('push requests', g.ex.frontPush(), tsFront.pushRequests() ? 1 : 0);
      } else if (op === 3) {
        // Both back ends answer some requests: the response is the request, reversed.
        const n = Math.floor(rand() * 4);
        const got = backs.map((b) => {
          const out: string[] = [];
          for (let i = 0; i < n; i++) {
            const r = b.takeRequest();
            if (!r) break;
            out.push(hex(r));
            b.putResponse(r.reverse());
          }
          return out;
        });
        same('requests the back end took', got[0], got[1]);
        requests += got[0]!.length;
      } else if (op === 4) {
        same('push responses', backs[0].pushResponses(), backs[1].pushResponses());
      } else if (op === 5) {
        const a = g.ex.frontTake();
        const b = tsFront.takeResponse();
        same('take response', a === 1 ? hex(g.getScratch(slotSize)) : a, b === undefined ? 0 : hex(b));
        if (b) responses++;
      } else if (op === 6) {
        same('final check for responses', g.ex.frontFinalCheck(), tsFront.finalCheckForResponses() ? 1 : 0);
      } else {
        same('final check for requests', backs[0].finalCheckForRequests(), backs[1].finalCheckForRequests());
      }
      same('free slots', g.ex.frontFree(), tsFront.freeSlots());
      same('unconsumed responses', g.ex.frontUnconsumed(), tsFront.unconsumedResponses());
      same('private indexes', [g.ex.frontReqProdPvt() >>> 0, g.ex.frontRspCons() >>> 0], [tsFront.reqProdPvt, tsFront.rspCons]);
      same(`page after step ${step}`, hex(g.mem.subarray(ADDR, ADDR + RING_PAGE_SIZE)), hex(twin.mem));
      if (problems.length > 0) break;
    }
    t.same(problems, [], `slot size ${slotSize}, start ${start.toString(16)}: same results and same page bytes`);
    t.ok(requests >= 10 && responses >= 10, `${requests} requests, ${responses} responses went round`);
    t.ok(g.mem.subarray(ADDR - 4096, ADDR).every((b) => b === 0x5a) && g.mem.subarray(ADDR + 4096, ADDR + 8192).every((b) => b === 0x5a),
      'nothing around the page was written');

    // A back end that publishes a response to a request never made: the SDK says -EINVAL, for good.
    const bad = (tsFront.reqProdPvt + 1) >>> 0;
    asPage.store32(RingField.RSP_PROD, bad);
    twin.page.store32(RingField.RSP_PROD, bad);
    t.equal(g.ex.frontTake(), -Errno.EINVAL, 'protocol error');
    t.throws(() => tsFront.takeResponse(), RingProtocolError, 'the host side agrees');
    asPage.store32(RingField.RSP_PROD, g.ex.frontRspCons());
    t.equal(g.ex.frontPut(), -Errno.EINVAL, 'the ring stays broken');
    t.equal(g.ex.frontUnconsumed(), -Errno.EINVAL);
  }
});

t.test('SDK front ring rejects bad parameters', async (t) => {
  const g = instantiate(module, noGrant);
  t.equal(g.ex.frontAttach(3 * 65536, 12, 0), -Errno.EINVAL, 'slot size not a multiple of 8');
  t.equal(g.ex.frontPut(), -Errno.EINVAL);
  t.equal(g.ex.frontAttach(3 * 65536 + 2, 16, 0), -Errno.EINVAL, 'an unaligned page');
  t.equal(g.ex.frontFree(), -Errno.EINVAL);
  t.equal(g.ex.frontAttach(3 * 65536, 4096, 0), -Errno.EINVAL, 'a slot larger than the page allows');
});

t.test('SDK back ring (grant copies) against a host front ring, in lock step with a host back ring', async (t) => {
  const GRANTER = 5;
  const GREF = 9;
  const PAGE = 4096; // the page's offset in the front end's memory
  for (const [slotSize, start, seed] of [[16, 0, 11], [64, 0xfffffff3, 12], [8, 0xffffff80, 13], [2016, 0xffffffff, 14]] as const) {
    const frontMem = new Uint8Array(new SharedArrayBuffer(3 * 4096));
    frontMem.fill(0x5a);
    let g: ReturnType<typeof instantiate> | undefined;
    const copiesTo: [number, number][] = [];
    let refuse = 0; // when set, every copy returns this errno (the grant went away)
    const check = (granter: number, gref: number, offset: number, addr: number, len: number): number => {
      if (refuse) return -refuse;
      if (granter !== GRANTER || gref !== GREF) return -Errno.EINVAL;
      if (offset + len > 4096) return -Errno.EINVAL;
      if (addr + len > g!.mem.length) return -Errno.EFAULT;
      return 0;
    };
    g = instantiate(module, {
      from: (granter, gref, offset, dst, len) => {
        const e = check(granter, gref, offset >>> 0, dst >>> 0, len >>> 0);
        if (e < 0) return e;
        g!.mem.set(frontMem.subarray(PAGE + offset, PAGE + offset + len), dst);
        return len;
      },
      to: (granter, gref, offset, src, len) => {
        const e = check(granter, gref, offset >>> 0, src >>> 0, len >>> 0);
        if (e < 0) return e;
        copiesTo.push([offset, len]);
        frontMem.set(g!.mem.subarray(src, src + len), PAGE + offset);
        return len;
      },
    });
    const page = new MemoryRingPage(frontMem, PAGE);
    initSharedRing(page, start);
    page.writeBytes(RING_HEADER_SIZE, new Uint8Array(RING_PAGE_SIZE - RING_HEADER_SIZE));
    const twin = twinPage();
    initSharedRing(twin.page, start);
    const codec = bytesCodec(slotSize);
    const opts = { request: codec, response: codec, start };
    const fronts = [new FrontRing(page, opts), new FrontRing(twin.page, opts)] as const;
    const tsBack = new BackRing(twin.page, opts);
    t.equal(g.ex.backInit(GRANTER, GREF, slotSize, start), 0);

    const rand = prng(seed);
    const problems: string[] = [];
    const same = (what: string, a: unknown, b: unknown) => { if (JSON.stringify(a) !== JSON.stringify(b)) problems.push(`${what}: SDK ${JSON.stringify(a)}, host ${JSON.stringify(b)}`); };
    let answered = 0;
    for (let step = 0; step < 600; step++) {
      const op = Math.floor(rand() * 8);
      if (op <= 1) {
        const msg = message(rand, slotSize);
        same('front put', fronts[0].putRequest(msg), fronts[1].putRequest(msg));
      } else if (op === 2) {
        same('front push', fronts[0].pushRequests(), fronts[1].pushRequests());
      } else if (op === 3) {
        const a = g.ex.backTake();
        const b = tsBack.takeRequest();
        same('take request', a === 1 ? hex(g.getScratch(slotSize)) : a, b === undefined ? 0 : hex(b));
      } else if (op === 4) {
        const rsp = message(rand, slotSize);
        g.setScratch(rsp);
        const a = g.ex.backPut();
        same('put response', a === 0 ? true : a === -Errno.EINVAL ? false : a, tsBack.putResponse(rsp));
        if (a === 0) answered++;
      } else if (op === 5) {
        same('push responses', g.ex.backPush(), tsBack.pushResponses() ? 1 : 0);
      } else if (op === 6) {
        same('final check for requests', g.ex.backFinalCheck(), tsBack.finalCheckForRequests() ? 1 : 0);
      } else {
        const got = fronts.map((f) => {
          const out: string[] = [];
          for (let r = f.takeResponse(); r !== undefined; r = f.takeResponse()) out.push(hex(r));
          return out;
        });
        same('responses the front end took', got[0], got[1]);
        same('front final check', fronts[0].finalCheckForResponses(), fronts[1].finalCheckForResponses());
      }
      same('unconsumed requests', g.ex.backUnconsumed(), tsBack.unconsumedRequests());
      same('pending responses', g.ex.backPending(), tsBack.pendingResponses());
      same('private indexes', [g.ex.backReqCons() >>> 0, g.ex.backRspProdPvt() >>> 0], [tsBack.reqCons, tsBack.rspProdPvt]);
      same(`page after step ${step}`, hex(frontMem.subarray(PAGE, PAGE + RING_PAGE_SIZE)), hex(twin.mem));
      if (problems.length > 0) break;
    }
    t.same(problems, [], `slot size ${slotSize}, start ${start.toString(16)}: same results and same page bytes`);
    t.ok(answered > 20, `${answered} responses went back through copy-to`);

    const slots = ringLayout(slotSize).slots;
    const stray = copiesTo.filter(([off, len]) => !(
      (len === 4 && (off === RingField.REQ_EVENT || off === RingField.RSP_PROD))
      || (len === slotSize && off >= RING_HEADER_SIZE && (off - RING_HEADER_SIZE) % slotSize === 0 && (off - RING_HEADER_SIZE) / slotSize < slots)));
    t.same(stray, [], 'the back end writes only req_event, rsp_prod and whole slots: never req_prod or rsp_event');
    t.ok(copiesTo.some(([off]) => off === RingField.REQ_EVENT) && copiesTo.some(([off]) => off === RingField.RSP_PROD), 'it did write both');
    t.ok(frontMem.subarray(0, PAGE).every((b) => b === 0x5a) && frontMem.subarray(PAGE + 4096).every((b) => b === 0x5a), 'nothing around the page was written');

    // A failing grant copy is passed through and does not break the ring.
    refuse = Errno.ESRCH;
    t.equal(g.ex.backUnconsumed(), -Errno.ESRCH, 'the hypercall\'s error comes back');
    t.equal(g.ex.backTake(), -Errno.ESRCH);
    refuse = 0;
    t.ok(g.ex.backUnconsumed() >= 0, 'and the ring works again once the copy does');

    // A front end that claims more requests than slots: -EINVAL, for good.
    const bad = (tsBack.rspProdPvt + slots + 1) >>> 0;
    page.store32(RingField.REQ_PROD, bad);
    twin.page.store32(RingField.REQ_PROD, bad);
    t.equal(g.ex.backTake(), -Errno.EINVAL, 'protocol error');
    t.throws(() => tsBack.takeRequest(), RingProtocolError, 'the host side agrees');
    page.store32(RingField.REQ_PROD, g.ex.backReqCons());
    t.equal(g.ex.backUnconsumed(), -Errno.EINVAL, 'the ring stays broken');
    t.equal(g.ex.backPush(), -Errno.EINVAL);
  }
});

t.test('SDK back ring with the wrong grant gets the kernel\'s error', async (t) => {
  const g = instantiate(module, { from: () => -Errno.EINVAL, to: () => -Errno.EACCES });
  t.equal(g.ex.backInit(1, 2, 24, 0), 0, 'attaching touches nothing');
  t.equal(g.ex.backUnconsumed(), -Errno.EINVAL, 'copy-from refused');
  t.equal(g.ex.backFinalCheck(), -Errno.EINVAL);
  t.equal(g.ex.backPush(), -Errno.EACCES, 'copy-to refused (a read-only grant)');
  t.equal(g.ex.backInit(1, 2, 20, 0), -Errno.EINVAL, 'slot size 20 is not a multiple of 8');
});

t.test('SDK rings refuse the same impossible indexes as the host rings', async (t) => {
  const ADDR = 3 * 65536;
  const start = 0xfffffffe;
  const slots = ringLayout(32).slots;
  // Front end (own memory): 3 requests published, a 4th written, 1 answered and consumed.
  const frontCases: [string, (published: number, rspCons: number) => number, boolean][] = [
    ['every published request answered', (p) => p, true],
    ['a response to the unpublished request', (p) => p + 1, false],
    ['far ahead', (p) => p + 1000, false],
    ['gone back before rsp_cons', (_p, c) => c - 1, false],
    ['2^31 ahead', (_p, c) => c + 0x80000000, false],
  ];
  for (const [name, value, legal] of frontCases) {
    const g = instantiate(module, noGrant);
    const page = new MemoryRingPage(g.mem, ADDR);
    t.equal(g.ex.frontInit(ADDR, 32, start), 0);
    for (let i = 0; i < 3; i++) t.equal(g.ex.frontPut(), 0);
    g.ex.frontPush();
    t.equal(g.ex.frontPut(), 0);
    const back = new BackRing(page, { request: bytesCodec(32), response: bytesCodec(32), start });
    back.putResponse(back.takeRequest()!);
    back.pushResponses();
    t.equal(g.ex.frontTake(), 1);
    const published = page.load32(RingField.REQ_PROD);
    page.store32(RingField.RSP_PROD, value(published, g.ex.frontRspCons() >>> 0));
    t.equal(g.ex.frontUnconsumed(), legal ? 2 : -Errno.EINVAL, name);
  }
  // Back end (grant copies): 3 requests published, 2 taken, 1 answered.
  const backCases: [string, (reqCons: number, rspProdPvt: number) => number, boolean][] = [
    ['as many unanswered requests as slots', (_c, r) => r + slots, true],
    ['one more than slots', (_c, r) => r + slots + 1, false],
    ['gone back before req_cons', (c) => c - 1, false],
    ['gone back a long way', (c) => c - 1000, false],
    ['2^31 ahead', (c) => c + 0x80000000, false],
  ];
  for (const [name, value, legal] of backCases) {
    const frontMem = new Uint8Array(new SharedArrayBuffer(4096));
    const page = new MemoryRingPage(frontMem, 0);
    let g: ReturnType<typeof instantiate> | undefined;
    g = instantiate(module, {
      from: (_granter, _gref, offset, dst, len) => { g!.mem.set(frontMem.subarray(offset, offset + len), dst); return len; },
      to: (_granter, _gref, offset, src, len) => { frontMem.set(g!.mem.subarray(src, src + len), offset); return len; },
    });
    initSharedRing(page, start);
    const front = new FrontRing(page, { request: bytesCodec(32), response: bytesCodec(32), start });
    for (let i = 0; i < 3; i++) front.putRequest(new Uint8Array(32).fill(i));
    front.pushRequests();
    t.equal(g.ex.backInit(1, 1, 32, start), 0);
    t.equal(g.ex.backTake(), 1);
    t.equal(g.ex.backTake(), 1);
    t.equal(g.ex.backPut(), 0);
    page.store32(RingField.REQ_PROD, value(g.ex.backReqCons() >>> 0, g.ex.backRspProdPvt() >>> 0));
    t.equal(g.ex.backUnconsumed(), legal ? slots - 1 : -Errno.EINVAL, name);
  }
});
