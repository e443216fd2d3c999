import { cmdlineArg, now, poweroff, println, sleepUntil } from "../../sdk/index";

export function start(): void {
  const count = I32.parseInt(cmdlineArg("count", "5"));
  const period = <u64>I32.parseInt(cmdlineArg("period", "100")) * 1000000;
  // Ticks are scheduled from the first one, so lateness does not accumulate.
  const t0 = now();
  for (let i = 0; i < count; i++) {
    if (i > 0) sleepUntil(t0 + <u64>i * period);
    println("tick " + i.toString());
  }
  poweroff();
}
