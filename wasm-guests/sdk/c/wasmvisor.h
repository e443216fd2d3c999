/* The wasmvisor hypercall ABI for C guests (clang --target=wasm32).
 * Every call takes and returns integers; a negative int32 result is a
 * negated errno (see docs/abi.md). */
#ifndef WASMVISOR_H
#define WASMVISOR_H

#include <stdint.h>

#define WV_IMPORT(iface, name) \
  __attribute__((import_module("wasmvisor:hypercall/" iface "@0.1.0"), import_name(name)))

WV_IMPORT("console", "write") int32_t wv_console_write(const void *ptr, uint32_t len);
WV_IMPORT("console", "read") int32_t wv_console_read(void *ptr, uint32_t cap);
WV_IMPORT("start-info", "domain-id") uint32_t wv_domain_id(void);
WV_IMPORT("start-info", "memory-size") uint64_t wv_memory_size(void);
WV_IMPORT("start-info", "cmdline") int32_t wv_cmdline(void *ptr, uint32_t cap);
WV_IMPORT("start-info", "page") uint32_t wv_start_info_page(void);
WV_IMPORT("sched", "yield") int32_t wv_yield(void);
WV_IMPORT("sched", "block") int32_t wv_block(uint64_t deadline_ns);
WV_IMPORT("sched", "shutdown") int32_t wv_shutdown(uint32_t reason);
WV_IMPORT("sched", "watchdog") int32_t wv_watchdog(uint32_t timeout_ms);
WV_IMPORT("time", "monotonic-now") uint64_t wv_monotonic_now(void);
WV_IMPORT("time", "set-timer") int32_t wv_set_timer(uint64_t deadline_ns);

enum wv_shutdown_reason { WV_POWEROFF = 0, WV_REBOOT = 1, WV_SUSPEND = 2, WV_CRASH = 3 };

enum wv_errno {
  WV_EPERM = 1, WV_ENOENT = 2, WV_ESRCH = 3, WV_E2BIG = 7, WV_EAGAIN = 11, WV_ENOMEM = 12,
  WV_EACCES = 13, WV_EFAULT = 14, WV_EBUSY = 16, WV_EINVAL = 22, WV_ENOSPC = 28, WV_ENOSYS = 38,
};

/* Console helpers: a C string, and an unsigned number in decimal. */
static inline uint32_t wv_strlen(const char *s) {
  uint32_t n = 0;
  while (s[n]) n++;
  return n;
}

static inline void wv_puts(const char *s) { wv_console_write(s, wv_strlen(s)); }

static inline void wv_put_u64(uint64_t v) {
  char buf[24];
  int p = sizeof buf;
  do { buf[--p] = (char)('0' + v % 10); v /= 10; } while (v);
  wv_console_write(buf + p, (uint32_t)(sizeof buf - p));
}

#endif
