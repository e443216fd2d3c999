// A hostile block frontend for the tests: it does the handshake by hand and
// then breaks the rules, as cmdline `mode=` says:
//   badref   ring-ref names a grant it never made
//   garbage  ring-ref is not a number
//   badport  event-channel is a port it never offered
//   requests connects, then sends bad requests (an ungranted segment, a
//            read into a read-only grant, a range past the end, a bad
//            segment count) and one good read, printing each status
//   corrupt  connects, then pushes a req_prod far past the ring's size
import {
  cmdlineArg, println, block, grant_access, evtchn_alloc_unbound, evtchn_send, storeRead, storeWrite,
  storeEventPort, storeWatch, initSharedRing, localFrontRing, LocalRingPage, RING_REQ_PROD,
} from "../sdk/index";

const ring = memory.data(4096, 4096);
const data = memory.data(8192, 4096);
const msg = memory.data(112, 8);

function num(s: string | null): i32 { return s === null ? -1 : I32.parseInt(s); }

export function start(): void {
  const mode = cmdlineArg("mode", "badref");
  const fe = "device/vbd/51712";
  const be = storeRead(fe + "/backend")!;
  storeEventPort();
  storeWatch(be + "/state");
  initSharedRing(new LocalRingPage(ring), 0);
  const front = localFrontRing(ring, 112);
  const ringRef = grant_access(0, <u32>(ring >> 12), 0);
  const port = evtchn_alloc_unbound(0);
  const rw = grant_access(0, <u32>(data >> 12), 0);
  const ro = grant_access(0, <u32>((data + 4096) >> 12), 1);
  storeWrite(fe + "/ring-ref", mode == "badref" ? "250" : mode == "garbage" ? "12abc" : ringRef.toString());
  storeWrite(fe + "/event-channel", mode == "badport" ? "200" : port.toString());
  storeWrite(fe + "/state", "3");
  // Wait for the backend to connect or to say what is wrong.
  for (let i = 0; i < 200; i++) {
    if (num(storeRead(be + "/state")) == 4) break;
    const err = storeRead(be + "/error");
    if (err !== null) {
      println("hostile: backend says: " + err);
      while (true) block(0);
    }
    block(0);
  }
  println("hostile: connected");
  if (mode == "corrupt") {
    store<u32>(ring + RING_REQ_PROD, 1000);
    evtchn_send(<u32>port);
    println("hostile: ring corrupted");
    while (true) block(0);
  }
  // mode == "requests": each request alone, its status printed.
  const sectors = I64.parseInt(storeRead(be + "/sectors")!);
  const cases: string[] = ["ungranted", "read-only", "past-end", "zero-segments", "twelve-segments", "bad-sectors", "good"];
  for (let c = 0; c < cases.length; c++) {
    memory.fill(msg, 0, 112);
    store<u8>(msg, 0); // read
    store<u8>(msg, 1, 1);
    store<u64>(msg, <u64>c, 8);
    store<u64>(msg, 0, 16);
    store<u32>(msg, <u32>rw, 24);
    store<u8>(msg, 0, 28);
    store<u8>(msg, 7, 29);
    const name = cases[c];
    if (name == "ungranted") store<u32>(msg, 240, 24);
    else if (name == "read-only") store<u32>(msg, <u32>ro, 24);
    else if (name == "past-end") store<u64>(msg, <u64>(sectors - 4), 16);
    else if (name == "zero-segments") store<u8>(msg, 0, 1);
    else if (name == "twelve-segments") store<u8>(msg, 12, 1);
    else if (name == "bad-sectors") { store<u8>(msg, 5, 28); store<u8>(msg, 9, 29); }
    front.putRequest(msg);
    if (front.pushRequests() > 0) evtchn_send(<u32>port);
    while (front.takeResponse(msg) == 0) {
      if (front.finalCheckForResponses() == 0) block(0);
    }
    println("hostile: " + name + " status " + load<i16>(msg, 10).toString());
  }
  println("hostile: first byte " + load<u8>(data).toString());
  while (true) block(0);
}
