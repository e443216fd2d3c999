/* The native twin of the cpubench guest: the same kernels, compiled for the
 * host, timed the same way, for the "guest code speed vs native" figure. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "../wasm-guests/guests/cpubench/kernels.h"

static uint8_t scratch[SIEVE_N] __attribute__((aligned(16)));

int main(int argc, char **argv) {
  uint32_t which = argc > 1 ? (uint32_t)atoi(argv[1]) : 0;
  int repeat = argc > 2 ? atoi(argv[2]) : 1;
  long long best = -1;
  uint32_t sum = 0;
  for (int r = 0; r < repeat; r++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    sum = run_kernel(which, scratch);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long ns = (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    if (best < 0 || ns < best) best = ns;
  }
  printf("checksum %u ns %lld\n", sum, best);
  return 0;
}
