// pong: the back end of the pingpong pair. It reaches ping's ring page only
// through grant copies (gref from the command line, default 1) and answers
// each request on the ring; after `count` answers it powers off.
import {
  cmdlineArg, println, poweroff, shutdown, peerOf, evtchn_send, waitFor,
  grantBackRing, SHUTDOWN_CRASH,
} from "../../sdk/index";

const PORT: u32 = 1;
const SLOT: u32 = 64;
const msg = memory.data(64, 8);
const PONG: u32 = 0x676e6f70; // "pong"

function fail(why: string): void {
  println("pong: " + why);
  shutdown(SHUTDOWN_CRASH);
}

export function start(): void {
  const count = <u32>I32.parseInt(cmdlineArg("count", "1000"));
  const gref = <u32>I32.parseInt(cmdlineArg("gref", "1"));
  const peer = peerOf(PORT);
  if (peer < 0) return fail("port 1 is not connected to a peer (" + peer.toString() + ")");
  waitFor(PORT); // ping says the ring is ready
  const back = grantBackRing(<u32>peer, gref, SLOT);
  let answered: u32 = 0;
  while (answered < count) {
    let did = false;
    let r = back.takeRequest(msg);
    while (r > 0) {
      store<u32>(msg, PONG, 4);
      const w = back.putResponse(msg);
      if (w < 0) return fail("cannot respond: " + w.toString());
      answered++;
      did = true;
      r = back.takeRequest(msg);
    }
    if (r < 0) return fail("ring protocol error " + r.toString());
    if (did && back.pushResponses() > 0) evtchn_send(PORT);
    if (answered < count && back.finalCheckForRequests() == 0) waitFor(PORT);
  }
  println("pong: answered " + answered.toString() + " requests from domain " + peer.toString());
  poweroff();
}
