// echo: a console you can type into (`wv console`). Each line typed comes
// back as "echo: <line>"; "quit" powers the domain off. It sleeps between
// lines, woken by the console virq, and obeys the toolstack's shutdown.
import {
  println, poweroff, shutdown, block, readBytes, evtchn_bind_virq, takePending,
  requestedShutdown, VIRQ_CONSOLE, VIRQ_SHUTDOWN,
} from "../../sdk/index";

export function start(): void {
  evtchn_bind_virq(VIRQ_CONSOLE);
  const shutdownPort = evtchn_bind_virq(VIRQ_SHUTDOWN);
  println("echo: ready; type a line, 'quit' to stop");
  const buf = new Uint8Array(256);
  let line = "";
  while (true) {
    // Take the pending events first: input arriving after the read below
    // leaves its virq pending, so block returns at once instead of sleeping.
    if (takePending(<u32>shutdownPort) && shutdownPort > 0) shutdown(<u32>requestedShutdown());
    const n = readBytes(buf.dataStart, 256);
    if (n > 0) {
      for (let i = 0; i < n; i++) {
        const c = buf[i];
        if (c == 10 || c == 13) {
          if (line == "quit") {
            println("echo: bye");
            poweroff();
          }
          if (line.length > 0) println("echo: " + line);
          line = "";
        } else {
          line += String.fromCharCode(c);
        }
      }
      continue;
    }
    block(0);
  }
}
