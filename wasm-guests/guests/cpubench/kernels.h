/* CPU-bound kernels shared by the cpubench guest and its native twin
 * (bench/native-cpubench.c), so the same C code runs both ways. No libc. */
#ifndef CPUBENCH_KERNELS_H
#define CPUBENCH_KERNELS_H
#include <stdint.h>

/* Recursive Fibonacci: calls dominate (function-entry safepoints). */
static uint32_t fib(uint32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

/* Sieve of Eratosthenes over `n` bytes of `buf`: tight loops over memory. */
static uint32_t sieve(uint8_t *buf, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) buf[i] = 1;
  buf[0] = buf[1] = 0;
  for (uint32_t i = 2; i * i < n; i++)
    if (buf[i])
      for (uint32_t j = i * i; j < n; j += i) buf[j] = 0;
  uint32_t count = 0;
  for (uint32_t i = 0; i < n; i++) count += buf[i];
  return count;
}

/* Integer matrix multiply of two n x n matrices: nested loops. */
static uint32_t matmul(uint32_t *a, uint32_t *b, uint32_t *c, uint32_t n) {
  for (uint32_t i = 0; i < n * n; i++) { a[i] = i * 7 + 1; b[i] = i * 13 + 3; }
  for (uint32_t i = 0; i < n; i++)
    for (uint32_t j = 0; j < n; j++) {
      uint32_t s = 0;
      for (uint32_t k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
      c[i * n + j] = s;
    }
  uint32_t h = 0;
  for (uint32_t i = 0; i < n * n; i++) h = h * 31 + c[i];
  return h;
}

#define SIEVE_N (8u << 20)
#define MATMUL_N 256u
#define FIB_N 32u

/* Run kernel `which` (0 fib, 1 sieve, 2 matmul) with `mem` as scratch; returns its checksum. */
static uint32_t run_kernel(uint32_t which, uint8_t *mem) {
  switch (which) {
    case 0: return fib(FIB_N);
    case 1: return sieve(mem, SIEVE_N);
    default: {
      uint32_t *a = (uint32_t *)mem;
      return matmul(a, a + MATMUL_N * MATMUL_N, a + 2 * MATMUL_N * MATMUL_N, MATMUL_N);
    }
  }
}
#endif
