/* hello, in C with no libc: proves the ABI is language-neutral. */
#include "../../sdk/c/wasmvisor.h"

static uint32_t len(const char *s) {
  uint32_t n = 0;
  while (s[n]) n++;
  return n;
}

static void puts_raw(const char *s) { wv_console_write(s, len(s)); }

static void put_u64(uint64_t v) {
  char buf[24];
  int p = sizeof buf;
  do { buf[--p] = (char)('0' + v % 10); v /= 10; } while (v);
  wv_console_write(buf + p, (uint32_t)(sizeof buf - p));
}

static char cmdline[1024];

__attribute__((export_name("start"))) void start(void) {
  puts_raw("hello from domain ");
  put_u64(wv_domain_id());
  puts_raw("\ncmdline: ");
  int32_t n = wv_cmdline(cmdline, sizeof cmdline);
  if (n > (int32_t)sizeof cmdline) n = sizeof cmdline;
  if (n > 0) wv_console_write(cmdline, (uint32_t)n);
  puts_raw("\nmemory: ");
  put_u64(wv_memory_size());
  puts_raw(" bytes\n");
  wv_shutdown(WV_POWEROFF);
}
