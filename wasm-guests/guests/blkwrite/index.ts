// blkwrite: writes a known pattern to a disk, 4 KiB block after block, with
// a flush every `flush` blocks, and says how far is durable. A test destroys
// it midway and checks that the host file holds every block it reported.
// Block i, byte j holds (i * 31 + j * 7 + seed) & 255.
//
// cmdline: disk=xvda blocks=N (0: to the end of the disk) flush=K seed=S
//          ignore-ro=1 (write even to a read-only device: the backend must refuse)
//          wait-at=N (after the flush at block N, wait for a line on the console)
import {
  cmdlineArg, println, poweroff, shutdown, block, BlkFront, blkError, evtchn_bind_virq, takePending,
  requestedShutdown, readBytes, VIRQ_SHUTDOWN, VIRQ_CONSOLE, SHUTDOWN_CRASH,
} from "../../sdk/index";

function fill(buf: usize, i: u64, seed: u32): void {
  const base = <u32>(i * 31) + seed;
  for (let j: u32 = 0; j < 4096; j++) store<u8>(buf + j, <u8>((base + j * 7) & 255));
}

export function start(): void {
  const shutdownPort = evtchn_bind_virq(VIRQ_SHUTDOWN);
  const name = cmdlineArg("disk", "xvda");
  const seed = <u32>I32.parseInt(cmdlineArg("seed", "0"));
  const every = <u64>I32.parseInt(cmdlineArg("flush", "16"));
  const waitAt = <u64>I64.parseInt(cmdlineArg("wait-at", "0"));
  evtchn_bind_virq(VIRQ_CONSOLE);
  const blk = BlkFront.open(name);
  if (blk === null) {
    println("blkwrite: " + blkError());
    shutdown(SHUTDOWN_CRASH);
    return;
  }
  const disk = changetype<BlkFront>(blk);
  println("blkwrite: " + name + " connected, " + disk.sectors.toString() + " sectors" + (disk.readonly ? ", read-only" : ""));
  if (cmdlineArg("ignore-ro", "0") == "1") disk.readonly = false;
  let blocks = <u64>I64.parseInt(cmdlineArg("blocks", "0"));
  if (blocks == 0 || blocks > disk.sectors / 8) blocks = disk.sectors / 8;
  const buf = heap.alloc(4096);
  let i: u64 = 0;
  for (; i < blocks; i++) {
    fill(buf, i, seed);
    const r = disk.write(i * 8, buf, 4096);
    if (r < 0) {
      println("blkwrite: write of block " + i.toString() + " failed: " + r.toString() + " " + disk.error);
      break;
    }
    if ((i + 1) % every == 0) {
      const f = disk.flush();
      if (f < 0) { println("blkwrite: flush failed: " + f.toString()); break; }
      println("blkwrite: durable " + (i + 1).toString());
      if (i + 1 == waitAt) {
        println("blkwrite: waiting for a line");
        const line = heap.alloc(64);
        while (readBytes(line, 64) <= 0) block(0);
      }
    }
  }
  const f = disk.flush();
  println("blkwrite: done " + i.toString() + " blocks" + (f < 0 ? ", final flush failed" : ", durable " + i.toString()));
  // Stay up: let go of the disk when the toolstack detaches it, stop when asked.
  while (true) {
    if (takePending(<u32>shutdownPort)) {
      const why = requestedShutdown();
      if (why >= 0) shutdown(<u32>why);
    }
    if (disk.closeRequested()) {
      disk.close();
      println("blkwrite: " + name + " released");
    }
    if (cmdlineArg("exit", "0") == "1") poweroff();
    block(0);
  }
}
