// Seeded fuzz of the hypercall decoders: any integers a guest can pass must
// give either a range inside memory or a negative errno, never a throw.
import t from 'tap';
import { decodeConsoleWrite, decodeRange, decodeShutdown, decodeDeadline, MAX_CONSOLE_WRITE } from '../../kernel/hypercall.ts';
import { Errno } from '../../kernel/errno.ts';
import { prng, edgyI32 } from './prng.ts';

const SEED = Number(process.env.WV_FUZZ_SEED ?? 0x5eed);
const ERRNOS = new Set(Object.values(Errno).map((n) => -n));

t.test(`decodeRange / decodeConsoleWrite (seed ${SEED})`, async (t) => {
  const rand = prng(SEED);
  let bad = 0;
  for (let i = 0; i < 20_000; i++) {
    const mem = [65536, 131072, 1 << 20, 2 ** 32][Math.floor(rand() * 4)]!;
    const ptr = edgyI32(rand);
    const len = edgyI32(rand);
    for (const d of [decodeRange(mem, ptr, len), decodeConsoleWrite(mem, ptr, len)]) {
      if (d.ok) {
        if (!(d.value.ptr >= 0 && d.value.len >= 0 && d.value.ptr + d.value.len <= mem)) bad++;
      } else if (!ERRNOS.has(d.errno)) {
        bad++;
      }
    }
    const cw = decodeConsoleWrite(mem, ptr, len);
    if (cw.ok && cw.value.len > MAX_CONSOLE_WRITE) bad++;
  }
  t.equal(bad, 0, 'every result is in bounds or a known errno');
});

t.test(`decodeShutdown / decodeDeadline (seed ${SEED})`, async (t) => {
  const rand = prng(SEED + 1);
  let bad = 0;
  for (let i = 0; i < 5_000; i++) {
    const code = edgyI32(rand);
    const d = decodeShutdown(code);
    if (!d.ok && d.errno !== -Errno.EINVAL) bad++;
    if (d.ok && !(code >= 0 && code <= 3)) bad++;
    const dl = decodeDeadline(BigInt(edgyI32(rand)) * BigInt(edgyI32(rand)));
    if (!(dl.ok && dl.value >= 0n && dl.value < 2n ** 64n)) bad++;
  }
  t.equal(bad, 0, 'only codes 0-3 are accepted; deadlines are always u64');
  for (const c of [0, 1, 2, 3]) t.ok(decodeShutdown(c).ok);
  t.notOk(decodeShutdown(4).ok, 'watchdog is the kernel\'s reason, not the guest\'s');
});
