// The raw hypercall imports (host-bindings/wit/hypercall.wit). Every call
// takes and returns integers; a negative i32 result is a negated errno.

@external("wasmvisor:hypercall/console@0.1.0", "write")
export declare function console_write(ptr: usize, len: u32): i32;

@external("wasmvisor:hypercall/console@0.1.0", "read")
export declare function console_read(ptr: usize, cap: u32): i32;

@external("wasmvisor:hypercall/start-info@0.1.0", "domain-id")
export declare function start_info_domain_id(): u32;

@external("wasmvisor:hypercall/start-info@0.1.0", "memory-size")
export declare function start_info_memory_size(): u64;

@external("wasmvisor:hypercall/start-info@0.1.0", "cmdline")
export declare function start_info_cmdline(ptr: usize, cap: u32): i32;

@external("wasmvisor:hypercall/start-info@0.1.0", "page")
export declare function start_info_page(): u32;

@external("wasmvisor:hypercall/sched@0.1.0", "yield")
export declare function sched_yield(): i32;

@external("wasmvisor:hypercall/sched@0.1.0", "block")
export declare function sched_block(deadline: u64): i32;

@external("wasmvisor:hypercall/sched@0.1.0", "shutdown")
export declare function sched_shutdown(reason: u32): i32;

@external("wasmvisor:hypercall/sched@0.1.0", "watchdog")
export declare function sched_watchdog(timeoutMs: u32): i32;

@external("wasmvisor:hypercall/time@0.1.0", "monotonic-now")
export declare function time_monotonic_now(): u64;

@external("wasmvisor:hypercall/time@0.1.0", "set-timer")
export declare function time_set_timer(deadline: u64): i32;

/** Errors, as returned (negated) by hypercalls: the numbers of kernel/errno.ts. */
export const EPERM: i32 = 1;
export const ENOENT: i32 = 2;
export const ESRCH: i32 = 3;
export const E2BIG: i32 = 7;
export const EAGAIN: i32 = 11;
export const ENOMEM: i32 = 12;
export const EACCES: i32 = 13;
export const EFAULT: i32 = 14;
export const EBUSY: i32 = 16;
export const EINVAL: i32 = 22;
export const ENOSPC: i32 = 28;
export const ENOSYS: i32 = 38;

@external("wasmvisor:hypercall/store@0.1.0", "read")
export declare function store_read(path: usize, pathLen: u32, buf: usize, cap: u32): i32;

@external("wasmvisor:hypercall/store@0.1.0", "write")
export declare function store_write(path: usize, pathLen: u32, value: usize, valueLen: u32): i32;

@external("wasmvisor:hypercall/store@0.1.0", "directory")
export declare function store_directory(path: usize, pathLen: u32, buf: usize, cap: u32): i32;

@external("wasmvisor:hypercall/store@0.1.0", "remove")
export declare function store_remove(path: usize, pathLen: u32): i32;

@external("wasmvisor:hypercall/store@0.1.0", "watch")
export declare function store_watch(path: usize, pathLen: u32): i32;

@external("wasmvisor:hypercall/store@0.1.0", "unwatch")
export declare function store_unwatch(path: usize, pathLen: u32): i32;

@external("wasmvisor:hypercall/store@0.1.0", "next-event")
export declare function store_next_event(buf: usize, cap: u32): i32;
