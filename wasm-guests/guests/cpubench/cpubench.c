/* cpubench: runs one CPU-bound kernel (cmdline `kernel=fib|sieve|matmul`,
 * `repeat=N`, default 1), prints its checksum and the fastest run's time,
 * then powers off. */
#include "../../sdk/c/wasmvisor.h"
#include "kernels.h"

static char cmd[256];
static uint8_t scratch[SIEVE_N] __attribute__((aligned(16)));

static int has(const char *s, uint32_t n, const char *word) {
  uint32_t w = wv_strlen(word);
  for (uint32_t i = 0; i + w <= n; i++) {
    uint32_t k = 0;
    while (k < w && s[i + k] == word[k]) k++;
    if (k == w) return 1;
  }
  return 0;
}

__attribute__((export_name("start"))) void start(void) {
  int32_t n = wv_cmdline(cmd, sizeof cmd);
  if (n < 0) n = 0;
  if (n > (int32_t)sizeof cmd) n = sizeof cmd;
  uint32_t which = has(cmd, (uint32_t)n, "kernel=sieve") ? 1 : has(cmd, (uint32_t)n, "kernel=matmul") ? 2 : 0;
  uint32_t repeat = 1;
  for (int32_t i = 0; i + 7 < n; i++) {
    if (has(cmd + i, 7, "repeat=")) {
      repeat = 0;
      for (int32_t j = i + 7; j < n && cmd[j] >= '0' && cmd[j] <= '9'; j++) repeat = repeat * 10 + (uint32_t)(cmd[j] - '0');
      break;
    }
  }
  if (repeat == 0) repeat = 1;
  uint64_t best = ~0ull;
  uint32_t sum = 0;
  for (uint32_t r = 0; r < repeat; r++) {
    uint64_t t0 = wv_monotonic_now();
    sum = run_kernel(which, scratch);
    uint64_t t = wv_monotonic_now() - t0;
    if (t < best) best = t;
  }
  wv_puts("checksum ");
  wv_put_u64(sum);
  wv_puts(" ns ");
  wv_put_u64(best);
  wv_puts("\n");
  wv_shutdown(WV_POWEROFF);
}
