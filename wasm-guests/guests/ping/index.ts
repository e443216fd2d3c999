// ping: the front end of the pingpong pair. The toolstack connects its
// event channel port 1 to pong; ping grants pong a ring page, sends `count`
// 64-byte requests over the ring and checks every response. With period=MS
// it keeps one request in flight and sends the next MS after each answer (a
// slow conversation, for saving either end while it goes on).
import {
  cmdlineArg, println, poweroff, shutdown, now, peerOf, evtchn_send, waitFor, setTimer, block,
  grant_access, initSharedRing, localFrontRing, LocalRingPage, SHUTDOWN_CRASH,
} from "../../sdk/index";

const PORT: u32 = 1;
const SLOT: u32 = 64;
const ring = memory.data(4096, 4096);
const msg = memory.data(64, 8);
const PING: u32 = 0x676e6970; // "ping"
const PONG: u32 = 0x676e6f70; // "pong"

function fail(why: string): void {
  println("ping: " + why);
  shutdown(SHUTDOWN_CRASH);
}

export function start(): void {
  const count = <u32>I32.parseInt(cmdlineArg("count", "1000"));
  const period = <u64>I32.parseInt(cmdlineArg("period", "0")) * 1000000;
  const peer = peerOf(PORT);
  if (peer < 0) return fail("port 1 is not connected to a peer (" + peer.toString() + ")");
  const gref = grant_access(<u32>peer, <u32>(ring >> 12), 0);
  if (gref < 0) return fail("cannot grant the ring page (" + gref.toString() + ")");
  initSharedRing(new LocalRingPage(ring), 0);
  const front = localFrontRing(ring, SLOT);
  println("ping: ring at page " + (ring >> 12).toString() + " granted to domain " + peer.toString() + " as gref " + gref.toString());
  evtchn_send(PORT); // the ring is ready

  let sent: u32 = 0;
  let got: u32 = 0;
  const t0 = now();
  while (got < count) {
    let queued = false;
    while (sent < count && front.freeSlots() > 0 && (period == 0 || sent == got)) {
      store<u32>(msg, sent);
      store<u32>(msg, PING, 4);
      front.putRequest(msg);
      sent++;
      queued = true;
    }
    if (queued && front.pushRequests() > 0) evtchn_send(PORT);
    let r = front.takeResponse(msg);
    while (r > 0) {
      if (load<u32>(msg) != got || load<u32>(msg, 4) != PONG) return fail("response " + got.toString() + " is wrong");
      got++;
      r = front.takeResponse(msg);
    }
    if (r < 0) return fail("ring protocol error " + r.toString() + " (sent " + sent.toString() + ", answered " + got.toString() + ", req_prod " + load<u32>(ring).toString() + ", rsp_prod " + load<u32>(ring + 8).toString() + ")");
    if (period > 0 && got < count) {
      if (got < sent) {
        if (front.finalCheckForResponses() == 0) waitFor(PORT);
      } else {
        const deadline = now() + period;
        setTimer(deadline);
        while (now() < deadline) block(deadline);
      }
    } else if (got < count && sent == count && front.finalCheckForResponses() == 0) waitFor(PORT);
    else if (got < count && front.freeSlots() == 0 && front.finalCheckForResponses() == 0) waitFor(PORT);
  }
  const us = (now() - t0) / 1000;
  println("ping: " + count.toString() + " messages answered in " + us.toString() + " us");
  poweroff();
}
