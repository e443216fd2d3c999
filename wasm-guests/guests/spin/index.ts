import { println } from "../../sdk/index";

export function start(): void {
  println("spinning");
  // A CPU loop with no hypercalls; the store keeps the compiler from removing it.
  let n: u32 = 0;
  while (true) {
    n++;
    store<u32>(8192, n);
  }
}
