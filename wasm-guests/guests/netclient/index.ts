// netclient: pings another domain and fetches a page from it over HTTP, on
// its vif 0, then powers off. cmdline: target=169.254.1.1 count=3 path=/
// port=80, and its own address as on the Demo CD (ip=..., LINKLOCAL=...) or
// from the vif's addresses. bulk=N (MiB) instead sends N MiB to the
// target's discard port (9, or port=) and reports the throughput. udp=N
// instead sends N datagrams to the target's port (port=, default 7), waits
// up to wait= ms (default 2000) for each reply, prints each and a summary.
// flood=MS instead is a hostile guest: for MS milliseconds it sends frames
// as fast as its ring takes them (an ARP storm for addresses nobody has,
// UDP to the target's echo port, spoofed and malformed frames) and never
// reads its receive ring, then prints what it sent and powers off.
import { put16, put32, putMac, csumAdd, csumStore } from "../../sdk/net/bytes";
import {
  EAGAIN, println, print, poweroff, shutdown, block, now, cmdline, cmdlineArg, SHUTDOWN_CRASH,
  NetFront, netfrontError, NetStack, TcpSocket, TcpState, UdpSocket, UdpEndpoint, PingReply, parseIpv4, formatIpv4,
} from "../../sdk/index";

/** Nanoseconds as milliseconds with three decimals. */
function ms3(ns: u64): string {
  const us = ns / 1000;
  const frac = (us % 1000).toString();
  return (us / 1000).toString() + "." + "000".substring(frac.length) + frac;
}

function fail(why: string): void {
  println("netclient: " + why);
  shutdown(SHUTDOWN_CRASH);
}

let dev: NetFront | null = null;
let stack: NetStack | null = null;

/**
 * Take what arrived and run the stack's timers; if nothing arrived, sleep
 * until an event, the stack's next timer or `deadline`. Callers check their
 * condition between calls, so a frame that arrives is looked at before the
 * next sleep.
 */
function spin(deadline: u64): void {
  const s = changetype<NetStack>(stack);
  s.poll(now()); // input stamps what it takes with the stack's clock
  const got = changetype<NetFront>(dev).receive(s);
  const next = s.poll(now());
  if (got > 0) return;
  block(next == 0 || next > deadline ? deadline : next);
}

/** Send `mib` MiB to the target's discard port (port=, default 9); report when the last byte is acknowledged. */
function sendBulk(target: u32, mib: u32): void {
  const s = changetype<NetStack>(stack);
  const sock = changetype<TcpSocket>(s.tcpSocket());
  if (sock.connect(target, <u32>I32.parseInt(cmdlineArg("port", "9"))) < 0) return fail("connect failed");
  const until = now() + 60000000000;
  while (sock.state != TcpState.Established && sock.state != TcpState.Closed && now() < until) spin(until);
  if (sock.state != TcpState.Established) return fail("cannot connect to the discard port (" + sock.error.toString() + ")");
  const chunk: u32 = 65536;
  const buf = heap.alloc(chunk);
  for (let i: u32 = 0; i < chunk; i++) store<u8>(buf + i, <u8>(i * 7));
  const total = <u64>mib << 20;
  let sent: u64 = 0;
  const t0 = now();
  while (sent < total && now() < until) {
    const want = <u32>min<u64>(<u64>chunk, total - sent);
    const n = sock.send(buf, want);
    if (n > 0) { sent += <u64>n; continue; }
    if (sock.state == TcpState.Closed) return fail("the connection closed after " + sent.toString() + " bytes");
    spin(until);
  }
  while (sock.unacknowledged() > 0 && sock.state != TcpState.Closed && now() < until) spin(until);
  const us = (now() - t0) / 1000;
  sock.close();
  println("netclient: sent " + sent.toString() + " bytes in " + us.toString() + " us");
  const end = now() + 200000000;
  while (now() < end) spin(end);
  poweroff();
}

/** Send `count` datagrams to `target`:port= (default 7); print each reply and how many matched what was sent. */
function sendUdp(target: u32, count: u32): void {
  const s = changetype<NetStack>(stack);
  const port = <u32>I32.parseInt(cmdlineArg("port", "7"));
  const wait = <u64>I64.parseInt(cmdlineArg("wait", "2000")) * 1000000;
  const sock = changetype<UdpSocket>(s.udpSocket());
  const from = new UdpEndpoint();
  const buf = heap.alloc(2048);
  let replies: u32 = 0;
  let matched: u32 = 0;
  println("netclient: " + formatIpv4(s.address) + " sending " + count.toString() + " udp datagrams to " + formatIpv4(target) + ":" + port.toString());
  for (let i: u32 = 1; i <= count; i++) {
    const text = "netclient udp datagram " + i.toString();
    const out = String.UTF8.encode(text);
    s.poll(now());
    const r = sock.sendTo(target, port, changetype<usize>(out), <u32>out.byteLength);
    if (r < 0) { println("netclient: udp send " + i.toString() + " failed (" + r.toString() + ")"); continue; }
    const until = now() + wait;
    let answered = false;
    while (!answered && now() < until) {
      spin(until);
      for (let n = sock.recvFrom(buf, 2048, from); n >= 0; n = sock.recvFrom(buf, 2048, from)) {
        const got = String.UTF8.decodeUnsafe(buf, <usize>n);
        println("netclient: udp reply " + n.toString() + " bytes from " + formatIpv4(from.ip) + ":" + from.port.toString() + ": " + got);
        replies++;
        if (got == text) { matched++; answered = true; }
      }
    }
    if (!answered) println("netclient: no udp reply to datagram " + i.toString());
  }
  sock.close();
  println("netclient: udp " + count.toString() + " sent, " + replies.toString() + " replies, " + matched.toString() + " matched");
  poweroff();
}

/** Write an Ethernet header at `p`: broadcast or `to`, from `mac`, `type`. */
function ether(p: usize, to: u64, mac: u64, type: u32): void {
  putMac(p, to);
  putMac(p + 6, mac);
  put16(p + 12, type);
}

/** A UDP datagram from `src` to `dst`:`port` with `payload` bytes, IPv4 header checksummed, UDP checksum 0 (none). Returns the frame length. */
function udpFrame(p: usize, mac: u64, src: u32, dst: u32, port: u32, payload: u32): u32 {
  ether(p, 0x00163e000000, mac, 0x0800);
  const ip = p + 14;
  memory.fill(ip, 0, 20);
  store<u8>(ip, 0x45);
  put16(ip + 2, 20 + 8 + payload);
  store<u8>(ip + 8, 64);
  store<u8>(ip + 9, 17);
  put32(ip + 12, src);
  put32(ip + 16, dst);
  csumStore(ip + 10, csumAdd(0, ip, 20));
  const udp = ip + 20;
  put16(udp, 40000);
  put16(udp + 2, port);
  put16(udp + 4, 8 + payload);
  put16(udp + 6, 0);
  memory.fill(udp + 8, 0x5a, payload);
  return 14 + 20 + 8 + payload;
}

/**
 * Hostile: for `ms` milliseconds send, in turn, an ARP request for an
 * address nobody has, a UDP datagram to the target's echo port (whose
 * answers this guest never reads), the same from an address that is not its
 * own, and a frame too short to be IPv4. Never takes a received frame.
 */
function flood(target: u32, ms: u64): void {
  const d = changetype<NetFront>(dev);
  const s = changetype<NetStack>(stack);
  const mac = d.mac;
  const me = s.address;
  const f = heap.alloc(128);
  const port = <u32>I32.parseInt(cmdlineArg("port", "7"));
  let sent: u64 = 0;
  let busy: u64 = 0;
  let refused: u64 = 0;
  println("netclient: " + formatIpv4(me) + " flooding " + formatIpv4(target) + " for " + ms.toString() + " ms");
  const until = now() + ms * 1000000;
  let i: u32 = 0;
  while (now() < until) {
    let len: u32 = 0;
    const kind = i & 3;
    if (kind == 0) {
      ether(f, 0xffffffffffff, mac, 0x0806);
      const a = f + 14;
      put16(a, 1); put16(a + 2, 0x0800); store<u8>(a + 4, 6); store<u8>(a + 5, 4); put16(a + 6, 1);
      putMac(a + 8, mac); put32(a + 14, me);
      putMac(a + 18, 0); put32(a + 24, 0xa9fec800 | ((i >> 2) & 0x3ff)); // 169.254.200.0 upwards: nobody's
      len = 42;
    } else if (kind == 1) {
      len = udpFrame(f, mac, me, target, port, 32);
    } else if (kind == 2) {
      len = udpFrame(f, mac, 0xa9fe0909, target, port, 32); // from 169.254.9.9
    } else {
      ether(f, 0x00163e000000, mac, 0x0800);
      memory.fill(f + 14, 0x45, 6);
      len = 20;
    }
    const r = d.send(f, len);
    if (r == 0) { sent++; i++; continue; }
    if (r == -EAGAIN) { busy++; block(now() + 1000000); continue; } // EAGAIN: every buffer in flight
    refused++;
    i++;
  }
  println("netclient: flooded " + sent.toString() + " frames (" + busy.toString() + " waits for a full ring, " + refused.toString() + " refused)");
  poweroff();
}

export function start(): void {
  const nic = NetFront.open(0);
  if (nic === null) return fail(netfrontError());
  dev = nic;
  const d = changetype<NetFront>(nic);
  const s = new NetStack(d, d.mac);
  stack = s;
  if (s.configure(cmdline()) <= 0) {
    const ip = parseIpv4(d.addresses().split(" ")[0]);
    if (ip < 0) return fail("no address (give ip= on the command line or ip= in the vif)");
    s.setAddress(<u32>ip, 0xffff0000, 0);
  }
  const t = parseIpv4(cmdlineArg("target", "169.254.1.1"));
  if (t < 0) return fail("target= is not an IPv4 address");
  const target = <u32>t;
  const count = <u32>I32.parseInt(cmdlineArg("count", "3"));
  const floodMs = <u64>I64.parseInt(cmdlineArg("flood", "0"));
  if (floodMs > 0) return flood(target, floodMs);
  const bulk = <u32>I32.parseInt(cmdlineArg("bulk", "0"));
  if (bulk > 0) return sendBulk(target, bulk);
  const udp = <u32>I32.parseInt(cmdlineArg("udp", "0"));
  if (udp > 0) return sendUdp(target, udp);
  println("netclient: " + formatIpv4(s.address) + " pinging " + formatIpv4(target));
  const reply = new PingReply();
  let got: u32 = 0;
  for (let seq: u32 = 1; seq <= count; seq++) {
    s.poll(now());
    s.ping(target, seq);
    const until = now() + <u64>I64.parseInt(cmdlineArg("wait", "2000")) * 1000000;
    let answered = false;
    while (now() < until && !answered) {
      spin(until);
      while (s.nextPingReply(reply)) {
        if (reply.seq != seq) continue;
        println("64 bytes from " + formatIpv4(reply.from) + ": icmp_seq=" + reply.seq.toString() + " ttl=" + reply.ttl.toString() + " time=" + ms3(reply.rttNs) + " ms");
        answered = true;
        got++;
      }
    }
    if (!answered) println("netclient: no answer to icmp_seq=" + seq.toString());
  }
  println("netclient: " + count.toString() + " packets transmitted, " + got.toString() + " received");

  const path = cmdlineArg("path", "/");
  const port = <u32>I32.parseInt(cmdlineArg("port", "80"));
  const sock = changetype<TcpSocket>(s.tcpSocket());
  if (sock.connect(target, port) < 0) return fail("connect failed");
  const until = now() + 10000000000;
  while (sock.state != TcpState.Established && sock.state != TcpState.Closed && now() < until) spin(until);
  if (sock.state != TcpState.Established) return fail("cannot connect to " + formatIpv4(target) + ":" + port.toString() + " (" + sock.error.toString() + ")");
  const req = String.UTF8.encode("GET " + path + " HTTP/1.0\r\nHost: " + formatIpv4(target) + "\r\n\r\n");
  sock.send(changetype<usize>(req), <u32>req.byteLength);
  const buf = heap.alloc(4096);
  let total = 0;
  while (now() < until) {
    const n = sock.recv(buf, 4096);
    if (n > 0) { print(String.UTF8.decodeUnsafe(buf, <usize>n)); total += n; continue; }
    if (n == 0 || sock.state == TcpState.Closed) break;
    spin(until);
  }
  sock.close();
  println("\nnetclient: fetched " + total.toString() + " bytes from http://" + formatIpv4(target) + ":" + port.toString() + path);
  // Let the close finish, then stop.
  const end = now() + 200000000;
  while (now() < end) spin(end);
  poweroff();
}
