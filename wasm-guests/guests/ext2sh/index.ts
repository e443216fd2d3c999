// ext2sh: mounts an ext2 filesystem from a virtual block device and answers
// commands typed on its console (`wv console`):
//   ls [PATH]     entries with type, size and name
//   cat PATH      a file's contents
//   sum PATH      a file's size and CRC-32 (for files too large to print)
//   stat PATH     inode, type, mode, size, links
//   df            the filesystem's label, block size and counts
//   disks         the devices the toolstack gave this domain
//   mount VDEV    mount another device (one attached while running)
//   umount        let go of the device
//   quit          power off
// It lets go of its device when the toolstack detaches it, and stops when
// asked to shut down. cmdline: disk=xvda, or root=/dev/xvda1 as on the Demo
// CD (the device mounted at start; default xvda).
import {
  println, print, writeAll, poweroff, shutdown, block, readBytes, cmdlineArg, evtchn_bind_virq, takePending,
  requestedShutdown, storeEventPort, storeNextEvent, VIRQ_CONSOLE, VIRQ_SHUTDOWN,
  BlkFront, blkError, SectorSource, Ext2, Ext2Type, Ext2Entry, ext2Error,
} from "../../sdk/index";

class BlkSource extends SectorSource {
  constructor(private blk: BlkFront) { super(); }
  read(sector: u64, dst: usize, bytes: u32): i32 {
    return this.blk.read(sector, dst, bytes);
  }
}

let disk: BlkFront | null = null;
let fs: Ext2 | null = null;
const CHUNK: u32 = 65536;
const chunk = heap.alloc(CHUNK);

const crcTable = new StaticArray<u32>(256);
function crcInit(): void {
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xedb88320 ^ (c >> 1) : c >> 1;
    crcTable[n] = c;
  }
}

function typeChar(t: Ext2Type): string {
  switch (t) {
    case Ext2Type.Directory: return "d";
    case Ext2Type.Symlink: return "l";
    case Ext2Type.Regular: return "-";
    default: return "?";
  }
}

function mount(vdev: string): void {
  if (disk !== null) { println("ext2sh: " + disk!.vdev + " is mounted; umount first"); return; }
  const d = BlkFront.open(vdev);
  if (d === null) { println("ext2sh: cannot open " + blkError()); return; }
  const f = Ext2.open(new BlkSource(changetype<BlkFront>(d)));
  if (f === null) {
    println("ext2sh: " + vdev + ": " + ext2Error());
    changetype<BlkFront>(d).close();
    return;
  }
  disk = d;
  fs = f;
  const ff = changetype<Ext2>(f);
  println("ext2sh: mounted " + vdev + " (\"" + ff.volumeName() + "\", " + ff.blocksCount.toString() + " blocks of " + ff.blockSize.toString() + " bytes)");
}

function umount(): void {
  if (disk === null) return;
  const d = changetype<BlkFront>(disk);
  d.close();
  println("ext2sh: " + d.vdev + " released");
  disk = null;
  fs = null;
}

function lookup(path: string): i32 {
  const f = changetype<Ext2>(fs);
  const ino = f.lookup(path, true);
  if (ino < 0) println("ext2sh: " + path + ": " + ext2Error());
  return ino;
}

function command(line: string): void {
  const sp = line.indexOf(" ");
  const cmd = sp < 0 ? line : line.substring(0, sp);
  const arg = sp < 0 ? "" : line.substring(sp + 1).trim();
  if (cmd == "quit") { println("ext2sh: bye"); poweroff(); return; }
  if (cmd == "disks") {
    const all = BlkFront.discover();
    for (let i = 0; i < all.length; i++) println(all[i].vdev + " " + all[i].devid.toString());
    println("ext2sh: " + all.length.toString() + " disk(s)");
    return;
  }
  if (cmd == "mount") { mount(arg.length > 0 ? arg : "xvda"); return; }
  if (cmd == "umount") { umount(); return; }
  if (cmd == "help") { println("ext2sh: ls [PATH] | cat PATH | sum PATH | stat PATH | df | disks | mount VDEV | umount | quit"); return; }
  if (fs === null) { println("ext2sh: nothing mounted"); return; }
  const f = changetype<Ext2>(fs);
  if (cmd == "df") {
    println("ext2sh: label \"" + f.volumeName() + "\" block size " + f.blockSize.toString() + " blocks " + f.blocksCount.toString() + " inodes " + f.inodesCount.toString());
    return;
  }
  if (cmd == "ls") {
    const ino = lookup(arg.length > 0 ? arg : "/");
    if (ino < 0) return;
    const st = f.stat(<u32>ino);
    if (st === null) { println("ext2sh: " + ext2Error()); return; }
    if (st.type != Ext2Type.Directory) { println(typeChar(st.type) + " " + st.size.toString() + " " + arg); return; }
    const entries = f.list(<u32>ino);
    if (entries === null) { println("ext2sh: " + ext2Error()); return; }
    const list = changetype<Ext2Entry[]>(entries);
    for (let i = 0; i < list.length; i++) {
      const e = list[i];
      if (e.name == "." || e.name == "..") continue;
      const s = f.stat(e.ino);
      const size = s === null ? "?" : s.size.toString();
      const target = e.type == Ext2Type.Symlink ? f.readlink(e.ino) : null;
      println(typeChar(e.type) + " " + size + " " + e.name + (target !== null ? " -> " + target : ""));
    }
    println("ext2sh: end of listing");
    return;
  }
  if (cmd == "stat") {
    const ino = lookup(arg);
    if (ino < 0) return;
    const s = f.stat(<u32>ino);
    if (s === null) { println("ext2sh: " + ext2Error()); return; }
    println("ext2sh: inode " + s.ino.toString() + " type " + typeChar(s.type) + " mode " + (s.mode & 0xfff).toString(8) + " size " + s.size.toString() + " links " + s.links.toString());
    return;
  }
  if (cmd == "cat" || cmd == "sum") {
    const ino = lookup(arg);
    if (ino < 0) return;
    let off: u64 = 0;
    let crc: u32 = 0xffffffff;
    while (true) {
      const n = f.readFile(<u32>ino, off, chunk, CHUNK);
      if (n < 0) { println("ext2sh: " + arg + ": " + ext2Error()); return; }
      if (n == 0) break;
      if (cmd == "cat") writeAll(chunk, <u32>n);
      else for (let i: i32 = 0; i < n; i++) crc = crcTable[(crc ^ load<u8>(chunk + i)) & 255] ^ (crc >> 8);
      off += <u64>n;
    }
    if (cmd == "sum") println("ext2sh: " + arg + " size " + off.toString() + " crc32 " + (crc ^ 0xffffffff).toString(16));
    else println("\next2sh: end of " + arg);
    return;
  }
  println("ext2sh: unknown command \"" + cmd + "\" (help lists them)");
}

export function start(): void {
  crcInit();
  evtchn_bind_virq(VIRQ_CONSOLE);
  const shutdownPort = evtchn_bind_virq(VIRQ_SHUTDOWN);
  storeEventPort();
  // The device to mount: disk=, else the root= of a Linux command line (root=/dev/xvda1 ro), else xvda.
  let first = cmdlineArg("root", "");
  if (first.startsWith("/dev/")) first = first.substring(5);
  mount(cmdlineArg("disk", first.length > 0 ? first : "xvda"));
  print("ext2sh> ");
  const buf = new Uint8Array(256);
  let line = "";
  while (true) {
    if (takePending(<u32>shutdownPort)) {
      const why = requestedShutdown();
      if (why >= 0) { umount(); shutdown(<u32>why); }
    }
    // Store events: a detach asks the device to close.
    while (storeNextEvent() !== null) {}
    if (disk !== null && changetype<BlkFront>(disk).closeRequested()) umount();
    const n = readBytes(buf.dataStart, 256);
    if (n > 0) {
      for (let i = 0; i < n; i++) {
        const c = buf[i];
        if (c == 10 || c == 13) {
          const cmd = line.trim();
          line = "";
          if (cmd.length > 0) command(cmd);
          print("ext2sh> ");
        } else {
          line += String.fromCharCode(c);
        }
      }
      continue;
    }
    block(0);
  }
}
