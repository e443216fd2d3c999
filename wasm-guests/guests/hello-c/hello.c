/* hello, in C with no libc: proves the ABI is language-neutral. */
#include "../../sdk/c/wasmvisor.h"

static char cmdline[1024];

__attribute__((export_name("start"))) void start(void) {
  wv_puts("hello from domain ");
  wv_put_u64(wv_domain_id());
  wv_puts("\ncmdline: ");
  int32_t n = wv_cmdline(cmdline, sizeof cmdline);
  if (n > (int32_t)sizeof cmdline) n = sizeof cmdline;
  if (n > 0) wv_console_write(cmdline, (uint32_t)n);
  wv_puts("\nmemory: ");
  wv_put_u64(wv_memory_size());
  wv_puts(" bytes\n");
  wv_shutdown(WV_POWEROFF);
}
