// pong: the back end of the pingpong pair. It reaches ping's ring page only
// through grant copies (gref from the command line, default 1) and answers
// each request on the ring; after `count` answers it powers off. While ping
// is away (saved, being restored: its grant copies fail with -ESRCH) pong
// waits for its next event and goes on.
import {
  cmdlineArg, println, poweroff, shutdown, peerOf, evtchn_send, waitFor,
  grantBackRing, SHUTDOWN_CRASH, ESRCH,
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
  let held = false;
  while (answered < count) {
    let did = false;
    let away = false;
    // A request taken whose answer could not be written (ping went away) is answered first.
    let r: i32 = held ? 1 : back.takeRequest(msg);
    while (r > 0) {
      store<u32>(msg, PONG, 4);
      const w = back.putResponse(msg);
      if (w == -ESRCH) { held = true; away = true; break; }
      if (w < 0) return fail("cannot respond: " + w.toString());
      held = false;
      answered++;
      did = true;
      r = back.takeRequest(msg);
    }
    if (r == -ESRCH) away = true;
    else if (r < 0) return fail("ring protocol error " + r.toString());
    const pushed = did ? back.pushResponses() : 0;
    if (pushed == -ESRCH) away = true;
    if (away) {
      waitFor(PORT); // ping is away; its return brings an event
      continue;
    }
    if (pushed > 0) evtchn_send(PORT);
    if (answered < count && back.finalCheckForRequests() == 0) waitFor(PORT);
  }
  println("pong: answered " + answered.toString() + " requests from domain " + peer.toString());
  poweroff();
}
