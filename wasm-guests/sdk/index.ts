// The wasmvisor guest SDK for AssemblyScript.
export * from "./abi";
export * from "./console";
export * from "./start-info";
export * from "./sched";
export * from "./evtchn";
export * from "./ring";
export * from "./grant";
export * from "./store";
export * from "./xenbus";
export * from "./blkfront";
export * from "./ext2";
export * from "./net/index";
export * from "./netfront";

import { print } from "./console";
import { sched_shutdown } from "./abi";

/** AssemblyScript's abort handler (wired with `--use abort=...`): report on the console and crash the domain. */
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const what = message === null ? "(no message)" : message;
  const where = fileName === null ? "?" : fileName;
  print("abort: " + what + " at " + where + ":" + line.toString() + ":" + column.toString() + "\n");
  sched_shutdown(3);
  unreachable();
}
