import {
  cmdlineArg, now, poweroff, println, setTimer, block, shutdown,
  evtchn_bind_virq, takePending, requestedShutdown, VIRQ_SHUTDOWN,
} from "../../sdk/index";

export function start(): void {
  const count = I32.parseInt(cmdlineArg("count", "5"));
  const period = <u64>I32.parseInt(cmdlineArg("period", "100")) * 1000000;
  // Listen for the toolstack's shutdown request (xl shutdown).
  const shutdownPort = evtchn_bind_virq(VIRQ_SHUTDOWN);
  // Ticks are scheduled from the first one, so lateness does not accumulate.
  const t0 = now();
  for (let i = 0; i < count; i++) {
    if (i > 0) {
      const deadline = t0 + <u64>i * period;
      setTimer(deadline);
      while (now() < deadline) {
        block(deadline);
        if (shutdownPort > 0 && takePending(<u32>shutdownPort)) {
          println("ticker: shutdown requested after " + i.toString() + " ticks");
          shutdown(<u32>requestedShutdown());
        }
      }
    }
    println("tick " + i.toString());
  }
  poweroff();
}
