// Test module for wasm-guests/ring.test.ts (not a guest: it exports helpers
// and no start). It drives the SDK rings so the test can check them against
// the host rings of kernel/ring.ts on the same page. Messages pass through
// `scratch()`, a buffer of 4096 bytes the test reads and writes directly.
import {
  BackRing, FrontRing, LocalRingPage, RING_HEADER_SIZE, RING_PAGE_SIZE, RING_REQ_EVENT, RING_REQ_PROD,
  RING_RSP_EVENT, RING_RSP_PROD, grantBackRing, initSharedRing, localFrontRing, ringSlotOffset, ringSlots,
} from "../sdk/index";

const SCRATCH_BUF = new ArrayBuffer(4096);
const SCRATCH = changetype<usize>(SCRATCH_BUF);
let front: FrontRing | null = null;
let back: BackRing | null = null;

/** Address of the message buffer. */
export function scratch(): usize {
  return SCRATCH;
}

/** The SDK's layout constants, in the order 0 page size, 1 header size, 2 req_prod, 3 req_event, 4 rsp_prod, 5 rsp_event. */
export function layoutConstant(which: i32): u32 {
  switch (which) {
    case 0: return RING_PAGE_SIZE;
    case 1: return RING_HEADER_SIZE;
    case 2: return RING_REQ_PROD;
    case 3: return RING_REQ_EVENT;
    case 4: return RING_RSP_PROD;
    case 5: return RING_RSP_EVENT;
    default: return 0xffffffff;
  }
}

export function slotsFor(slotSize: u32): i32 {
  return ringSlots(slotSize);
}

export function slotOffset(index: u32, slots: u32, slotSize: u32): u32 {
  return ringSlotOffset(index, slots, slotSize);
}

// Front ring over a page of this module's memory.

/** Initialise the page at `addr` and attach a front ring to it; returns the ring's error (0 when usable). */
export function frontInit(addr: usize, slotSize: u32, start: u32): i32 {
  const r = initSharedRing(new LocalRingPage(addr), start);
  front = localFrontRing(addr, slotSize, start);
  return r < 0 ? r : front!.error;
}

/** Attach a front ring without initialising the page. */
export function frontAttach(addr: usize, slotSize: u32, start: u32): i32 {
  front = localFrontRing(addr, slotSize, start);
  return front!.error;
}

export function frontPut(): i32 { return front!.putRequest(SCRATCH); }
export function frontPush(): i32 { return front!.pushRequests(); }
export function frontFree(): i32 { return front!.freeSlots(); }
export function frontUnconsumed(): i32 { return front!.unconsumedResponses(); }
export function frontTake(): i32 { return front!.takeResponse(SCRATCH); }
export function frontFinalCheck(): i32 { return front!.finalCheckForResponses(); }
export function frontReqProdPvt(): u32 { return front!.reqProdPvt; }
export function frontRspCons(): u32 { return front!.rspCons; }

// Back ring over a page another domain granted, through grant copies.

/** Attach a back ring to grant `gref` of `granter`; returns the ring's error. */
export function backInit(granter: u32, gref: u32, slotSize: u32, start: u32): i32 {
  back = grantBackRing(granter, gref, slotSize, start);
  return back!.error;
}

export function backUnconsumed(): i32 { return back!.unconsumedRequests(); }
export function backTake(): i32 { return back!.takeRequest(SCRATCH); }
export function backPut(): i32 { return back!.putResponse(SCRATCH); }
export function backPush(): i32 { return back!.pushResponses(); }
export function backPending(): i32 { return back!.pendingResponses(); }
export function backFinalCheck(): i32 { return back!.finalCheckForRequests(); }
export function backReqCons(): u32 { return back!.reqCons; }
export function backRspProdPvt(): u32 { return back!.rspProdPvt; }
