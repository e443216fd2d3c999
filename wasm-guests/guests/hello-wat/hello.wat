;; hello, written by hand in WAT: proves the ABI needs no SDK.
;; Prints "hello from domain <id>" and "cmdline: <cmdline>", then powers off.
(module
  (import "env" "memory" (memory 1 16384 shared))
  (import "wasmvisor:hypercall/console@0.1.0" "write" (func $write (param i32 i32) (result i32)))
  (import "wasmvisor:hypercall/start-info@0.1.0" "domain-id" (func $domain_id (result i32)))
  (import "wasmvisor:hypercall/start-info@0.1.0" "cmdline" (func $cmdline (param i32 i32) (result i32)))
  (import "wasmvisor:hypercall/sched@0.1.0" "shutdown" (func $shutdown (param i32) (result i32)))

  ;; Data lives above the start-info page [0, 4096).
  (data (i32.const 4096) "hello from domain ")   ;; 18 bytes
  (data (i32.const 4128) "cmdline: ")            ;; 9 bytes
  (data (i32.const 4144) "\n")

  ;; Write the decimal digits of $n at 4160 and print them; digits are built backwards from 4200.
  (func $print_u32 (param $n i32) (local $p i32)
    (local.set $p (i32.const 4200))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $n)))
    (drop (call $write (local.get $p) (i32.sub (i32.const 4200) (local.get $p)))))

  (func (export "start") (local $len i32)
    (drop (call $write (i32.const 4096) (i32.const 18)))
    (call $print_u32 (call $domain_id))
    (drop (call $write (i32.const 4144) (i32.const 1)))
    (drop (call $write (i32.const 4128) (i32.const 9)))
    ;; The command line goes to 8192 (at most 1024 bytes).
    (local.set $len (call $cmdline (i32.const 8192) (i32.const 1024)))
    (if (i32.gt_u (local.get $len) (i32.const 1024)) (then (local.set $len (i32.const 1024))))
    (if (i32.gt_s (local.get $len) (i32.const 0))
      (then (drop (call $write (i32.const 8192) (local.get $len)))))
    (drop (call $write (i32.const 4144) (i32.const 1)))
    (drop (call $shutdown (i32.const 0)))))
