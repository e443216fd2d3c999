import { sched_block, sched_shutdown, sched_yield, time_monotonic_now, time_set_timer } from "./abi";

export const SHUTDOWN_POWEROFF: u32 = 0;
export const SHUTDOWN_REBOOT: u32 = 1;
export const SHUTDOWN_SUSPEND: u32 = 2;
export const SHUTDOWN_CRASH: u32 = 3;

/** Give up the rest of this time slice. */
export function yieldCpu(): void {
  sched_yield();
}

/** Sleep until an event or `deadline` (monotonic ns; 0 = none). Returns 0 for an event, 1 at the deadline. */
export function block(deadline: u64): i32 {
  return sched_block(deadline);
}

/** Monotonic time in ns since the hypervisor started. */
export function now(): u64 {
  return time_monotonic_now();
}

/** Arm the one-shot timer for monotonic time `deadline` (ns); 0 cancels. */
export function setTimer(deadline: u64): i32 {
  return time_set_timer(deadline);
}

/** Sleep until monotonic time `deadline` (ns), using the timer and block. */
export function sleepUntil(deadline: u64): void {
  setTimer(deadline);
  while (now() < deadline) block(deadline);
}

/** Stop the domain with `reason`; does not return unless the reason is invalid. */
export function shutdown(reason: u32): i32 {
  return sched_shutdown(reason);
}

export function poweroff(): void {
  sched_shutdown(SHUTDOWN_POWEROFF);
}
