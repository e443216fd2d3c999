/** Test helper: compile WAT text to a Wasm binary with wabt (threads enabled for shared memory). */
import wabtInit from 'wabt';

const wabt = await wabtInit();

/** `features`: wabt feature flags to enable besides threads (e.g. `{ tail_call: true }`). */
export function wat(src: string, features: Record<string, boolean> = {}): Uint8Array<ArrayBuffer> {
  const m = wabt.parseWat('test.wat', src, { threads: true, ...features });
  try {
    m.resolveNames();
    return new Uint8Array(m.toBinary({ write_debug_names: true }).buffer);
  } finally {
    m.destroy();
  }
}

export const MEM = '(import "env" "memory" (memory 1 256 shared))';
export const CONSOLE = '(import "wasmvisor:hypercall/console@0.1.0" "write" (func $write (param i32 i32) (result i32)))';
export const SHUTDOWN = '(import "wasmvisor:hypercall/sched@0.1.0" "shutdown" (func $shutdown (param i32) (result i32)))';
export const YIELD = '(import "wasmvisor:hypercall/sched@0.1.0" "yield" (func $yield (result i32)))';

/** A guest that prints `text` and shuts down with `reason` (0 poweroff, 1 reboot, 2 suspend, 3 crash). */
export function printer(text: string, reason = 0): Uint8Array<ArrayBuffer> {
  const escaped = [...new TextEncoder().encode(text)].map((b) => `\\${b.toString(16).padStart(2, '0')}`).join('');
  return wat(`(module ${MEM} ${CONSOLE} ${SHUTDOWN}
    (data (i32.const 8192) "${escaped}")
    (func (export "start")
      (drop (call $write (i32.const 8192) (i32.const ${new TextEncoder().encode(text).length})))
      (drop (call $shutdown (i32.const ${reason})))))`);
}

/** A guest that writes "idle\n" once and blocks forever. */
export function idler(): Uint8Array<ArrayBuffer> {
  return wat(`(module ${MEM} ${CONSOLE}
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (data (i32.const 8192) "idle\\n")
    (func (export "start")
      (drop (call $write (i32.const 8192) (i32.const 5)))
      (loop $l (drop (call $block (i64.const 0))) (br $l))))`);
}

/** A guest that spins forever without hypercalls. */
export function spinner(): Uint8Array<ArrayBuffer> {
  return wat(`(module ${MEM}
    (func (export "start") (local i32)
      (loop $l (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br $l))))`);
}

/** Poll `cond` every 5 ms until it holds or `ms` pass; returns whether it held. */
export async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

const EVTCHN = (name: string, params: string) => `(import "wasmvisor:hypercall/evtchn@0.1.0" "${name}" (func $${name} ${params} (result i32)))`;
const BLOCK = '(import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))';

/**
 * The active side of an event channel round trip: sends on port 1, waits for
 * the answer, `rounds` times, then powers off. The toolstack connects port 1.
 */
export function pinger(rounds: number): Uint8Array<ArrayBuffer> {
  return wat(`(module ${MEM} ${SHUTDOWN} ${BLOCK} ${EVTCHN('send', '(param i32)')} ${EVTCHN('pending', '(param i32 i32)')}
    (func (export "start") (local $i i32)
      (loop $round
        (drop (call $send (i32.const 1)))
        (loop $wait
          (drop (call $block (i64.const 0)))
          (br_if $wait (i32.eqz (call $pending (i32.const 8192) (i32.const 8)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $round (i32.lt_u (local.get $i) (i32.const ${rounds}))))
      (drop (call $shutdown (i32.const 0)))))`);
}

/** The passive side: answers every event on port 1 with one on port 1, forever. */
export function ponger(): Uint8Array<ArrayBuffer> {
  return wat(`(module ${MEM} ${BLOCK} ${EVTCHN('send', '(param i32)')} ${EVTCHN('pending', '(param i32 i32)')}
    (func (export "start")
      (loop $serve
        (drop (call $block (i64.const 0)))
        (if (call $pending (i32.const 8192) (i32.const 8)) (then (drop (call $send (i32.const 1)))))
        (br $serve))))`);
}

/**
 * A pinger that times each round trip itself (monotonic clock before the
 * send and after the answer, about 0.4 µs per reading) and stores the
 * durations in ns as u32 at 65536 + 4 * round.
 */
export function timedPinger(rounds: number): Uint8Array<ArrayBuffer> {
  return wat(`(module (import "env" "memory" (memory 16 256 shared)) (import "wasmvisor:hypercall/time@0.1.0" "monotonic-now" (func $now (result i64))) ${SHUTDOWN} ${BLOCK}
    (import "wasmvisor:hypercall/evtchn@0.1.0" "send" (func $send (param i32) (result i32)))
    (import "wasmvisor:hypercall/evtchn@0.1.0" "pending" (func $pending (param i32 i32) (result i32)))
    (func (export "start") (local $i i32) (local $t i64)
      (loop $round
        (local.set $t (call $now))
        (drop (call $send (i32.const 1)))
        (loop $wait
          (drop (call $block (i64.const 0)))
          (br_if $wait (i32.eqz (call $pending (i32.const 8192) (i32.const 8)))))
        (i32.store (i32.add (i32.const 65536) (i32.shl (local.get $i) (i32.const 2)))
          (i32.wrap_i64 (i64.sub (call $now) (local.get $t))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $round (i32.lt_u (local.get $i) (i32.const ${rounds}))))
      (drop (call $shutdown (i32.const 0)))))`);
}

/**
 * A guest that fills its memory (every `stride`th page, with pseudo-random
 * words), prints "filled" and then blocks for good, or with `tickMs` wakes
 * every that many ms and bumps a counter at 8256 (a ticking domain).
 */
export function filler(stride = 1, tickMs = 0): Uint8Array<ArrayBuffer> {
  const idle = tickMs > 0
    ? `(loop $tick
        (local.set $deadline (i64.add (call $now) (i64.const ${tickMs * 1_000_000})))
        (drop (call $timer (local.get $deadline)))
        (drop (call $block (local.get $deadline)))
        (i64.store (i32.const 8256) (i64.add (i64.load (i32.const 8256)) (i64.const 1)))
        (br $tick))`
    : '(loop $idle (drop (call $block (i64.const 0))) (br $idle))';
  return wat(`(module
    (import "env" "memory" (memory 1 16384 shared))
    (import "wasmvisor:hypercall/console@0.1.0" "write" (func $write (param i32 i32) (result i32)))
    (import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))
    (import "wasmvisor:hypercall/time@0.1.0" "monotonic-now" (func $now (result i64)))
    (import "wasmvisor:hypercall/time@0.1.0" "set-timer" (func $timer (param i64) (result i32)))
    (data (i32.const 8192) "filled\\n")
    (func $fill (local $page i32) (local $p i32) (local $stop i32) (local $end i32) (local $x i64)
      (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
      (local.set $end (i32.shl (memory.size) (i32.const 16)))
      (local.set $x (i64.const 0x2545f4914f6cdd1d))
      (local.set $page (i32.const 65536))
      (loop $pages
        (local.set $p (local.get $page))
        (local.set $stop (i32.add (local.get $page) (i32.const 4096)))
        (loop $words
          (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
          (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
          (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
          (i64.store (local.get $p) (local.get $x))
          (local.set $p (i32.add (local.get $p) (i32.const 8)))
          (br_if $words (i32.lt_u (local.get $p) (local.get $stop))))
        (local.set $page (i32.add (local.get $page) (i32.const ${4096 * stride})))
        (br_if $pages (i32.lt_u (local.get $page) (local.get $end)))))
    (func (export "start") (local $deadline i64)
      (call $fill)
      (drop (call $write (i32.const 8192) (i32.const 7)))
      ${idle}))`);
}
