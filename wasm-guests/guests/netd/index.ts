// netd: a small network server. It answers ping, serves a page over HTTP on
// port 80, echoes what it is sent on port 7 (TCP and UDP) and discards what it is sent on
// port 9 (for throughput tests), on its vif 0. Its address
// comes from the command line, as on the Demo CD
// (ip=169.254.1.1::169.254.1.254:255.255.0.0::eth0:off, LINKLOCAL=...),
// else from the addresses the toolstack routes to the vif (/16).
// It lets go of the vif when the toolstack detaches it and stops when asked.
import {
  println, shutdown, block, now, cmdline, cmdlineArg, evtchn_bind_virq, takePending, requestedShutdown, VIRQ_SHUTDOWN, SHUTDOWN_CRASH, SHUTDOWN_SUSPEND,
  NetFront, netfrontError, NetStack, TcpSocket, UdpSocket, UdpEndpoint, TcpState, parseIpv4, formatIpv4, storeRead, storeNextEvent, domainId,
} from "../../sdk/index";

const MAX_CONNS = 32;
const BUF: u32 = 4096;

const HTTP = 0;
const ECHO = 1;
const DISCARD = 2;

class Conn {
  sock: TcpSocket;
  kind: i32;
  /** HTTP: the request so far; when the blank line arrives the page goes out. */
  request: string = "";
  /** Bytes still to send (the page, or echo data the peer's window could not take yet). */
  out: Uint8Array | null = null;
  sent: i32 = 0;
  constructor(sock: TcpSocket, kind: i32) { this.sock = sock; this.kind = kind; }
}

const buf = heap.alloc(BUF);
const conns: Conn[] = [];
let page: Uint8Array = new Uint8Array(0);

function flush(c: Conn): bool {
  const out = c.out;
  if (out === null) return true;
  while (c.sent < out.length) {
    const n = c.sock.send(out.dataStart + <usize>c.sent, <u32>(out.length - c.sent));
    if (n <= 0) return false;
    c.sent += n;
  }
  c.out = null;
  c.sent = 0;
  return true;
}

/** Service one connection; false when it is finished. */
function serve(c: Conn): bool {
  if (!flush(c)) return c.sock.state != TcpState.Closed;
  while (true) {
    const n = c.sock.recv(buf, BUF);
    if (n == 0) { c.sock.close(); return false; }
    if (n < 0) {
      if (c.sock.state == TcpState.Closed) { c.sock.close(); return false; }
      return true;
    }
    if (c.kind == DISCARD) continue;
    if (c.kind == HTTP) {
      c.request += String.UTF8.decodeUnsafe(buf, <usize>n);
      if (c.request.includes("\r\n\r\n") || c.request.includes("\n\n")) {
        const ok = c.request.startsWith("GET / ") || c.request.startsWith("GET /index.html ");
        const body = ok ? page : Uint8Array.wrap(String.UTF8.encode("not found\n"));
        const head = (ok ? "HTTP/1.0 200 OK\r\n" : "HTTP/1.0 404 Not Found\r\n") + "Content-Type: text/html\r\nContent-Length: " + body.length.toString() + "\r\nConnection: close\r\n\r\n";
        const h = Uint8Array.wrap(String.UTF8.encode(head));
        const all = new Uint8Array(h.length + body.length);
        all.set(h, 0);
        all.set(body, h.length);
        c.out = all;
        flush(c);
        c.sock.shutdown();
      } else if (c.request.length > 8192) {
        c.sock.abort();
        return false;
      }
    } else {
      const data = new Uint8Array(n);
      memory.copy(data.dataStart, buf, n);
      c.out = data;
      if (!flush(c)) return true;
    }
  }
}

export function start(): void {
  const shutdownPort = evtchn_bind_virq(VIRQ_SHUTDOWN);
  const nic = NetFront.open(0);
  if (nic === null) { println("netd: " + netfrontError()); shutdown(SHUTDOWN_CRASH); return; }
  const dev = changetype<NetFront>(nic);
  const stack = new NetStack(dev, dev.mac);
  let configured = stack.configure(cmdline());
  if (configured <= 0) {
    const ips = dev.addresses().split(" ");
    for (let i = 0; i < ips.length; i++) {
      const ip = parseIpv4(ips[i]);
      if (ip < 0) continue;
      if (configured <= 0) { stack.setAddress(<u32>ip, 0xffff0000, 0); configured = 1; }
      else stack.addAddress(<u32>ip, 0xffff0000);
    }
  }
  if (configured <= 0) { println("netd: no address (give ip= on the command line or ip= in the vif)"); shutdown(SHUTDOWN_CRASH); return; }
  const name = storeRead("name");
  page = Uint8Array.wrap(String.UTF8.encode("<html><body><h1>wasmvisor</h1><p>Served by domain " + domainId().toString() + " (" + (name === null ? "?" : name) + ") at " + formatIpv4(stack.address) + " over its vif.</p></body></html>\n"));
  const http = changetype<TcpSocket>(stack.tcpSocket());
  const echo = changetype<TcpSocket>(stack.tcpSocket());
  const discard = changetype<TcpSocket>(stack.tcpSocket());
  if (http.listen(<u32>I32.parseInt(cmdlineArg("http", "80")), 16) < 0 || echo.listen(<u32>I32.parseInt(cmdlineArg("echo", "7")), 16) < 0
    || discard.listen(9, 4) < 0) {
    println("netd: cannot listen");
    shutdown(SHUTDOWN_CRASH);
    return;
  }
  const udpEcho = changetype<UdpSocket>(stack.udpSocket());
  if (udpEcho.bind(<u32>I32.parseInt(cmdlineArg("echo", "7"))) < 0) {
    println("netd: cannot bind the UDP echo port");
    shutdown(SHUTDOWN_CRASH);
    return;
  }
  const udpFrom = new UdpEndpoint();
  println("netd: " + formatIpv4(stack.address) + " up on vif 0 (" + dev.backendPath + "), http on 80, echo on 7 (tcp, udp), discard on 9");
  while (true) {
    if (takePending(<u32>shutdownPort)) {
      const why = requestedShutdown();
      // A suspend (a save) keeps the vif: the toolstack brings its connection back with the domain.
      if (why == <i32>SHUTDOWN_SUSPEND) shutdown(SHUTDOWN_SUSPEND);
      else if (why >= 0) { dev.close(); shutdown(<u32>why); }
    }
    while (storeNextEvent() !== null) {}
    if (dev.closeRequested()) { dev.close(); println("netd: vif 0 released"); }
    dev.receive(stack);
    for (let s = 0; s < 3; s++) {
      const l = s == HTTP ? http : s == ECHO ? echo : discard;
      let c = l.accept();
      while (c !== null) {
        if (conns.length < MAX_CONNS) conns.push(new Conn(changetype<TcpSocket>(c), s));
        else changetype<TcpSocket>(c).abort();
        c = l.accept();
      }
    }
    // UDP echo: each datagram back to where it came from (one frame at most, so BUF holds it).
    for (let n = udpEcho.recvFrom(buf, BUF, udpFrom); n >= 0; n = udpEcho.recvFrom(buf, BUF, udpFrom)) {
      udpEcho.sendTo(udpFrom.ip, udpFrom.port, buf, <u32>n);
    }
    for (let i = conns.length - 1; i >= 0; i--) {
      if (!serve(conns[i])) conns.splice(i, 1);
    }
    const next = stack.poll(now());
    // The stack may have queued frames (ACKs) and received nothing new: sleep until an event or its next timer.
    block(next);
  }
}
