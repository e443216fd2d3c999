import { println } from "../../sdk/index";

function divideTheWorld(depth: i32): void {
  if (depth == 0) unreachable();
  divideTheWorld(depth - 1);
}

function crashDeep(): void {
  divideTheWorld(2);
}

export function start(): void {
  println("about to crash");
  crashDeep();
}
