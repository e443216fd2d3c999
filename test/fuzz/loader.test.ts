// Seeded fuzz of the loader: mutated guest images must be refused with a
// WvError (never another exception) or accepted and still run safely.
import t from 'tap';
import { buildImage } from '../../runtime/loader/image.ts';
import { WvError } from '../../kernel/errors.ts';
import { printer } from '../helpers/wat.ts';
import { prng } from './prng.ts';

const SEED = Number(process.env.WV_FUZZ_SEED ?? 0x10ad);

t.test(`mutated images are refused cleanly (seed ${SEED})`, async (t) => {
  const rand = prng(SEED);
  const base = printer('fuzz\n');
  let accepted = 0;
  let refused = 0;
  const other: string[] = [];
  for (let i = 0; i < 300; i++) {
    const bytes = base.slice();
    const flips = 1 + Math.floor(rand() * 4);
    for (let f = 0; f < flips; f++) {
      const at = 8 + Math.floor(rand() * (bytes.length - 8));
      bytes[at] = Math.floor(rand() * 256);
    }
    const cut = rand() < 0.2 ? bytes.subarray(0, Math.floor(rand() * bytes.length)) : bytes;
    try {
      await buildImage(cut, `mutant-${i}`);
      accepted++;
    } catch (err) {
      if (err instanceof WvError) refused++;
      else other.push(`mutant ${i}: ${String(err)}`);
    }
  }
  t.same(other, [], 'no mutant escapes as a non-WvError');
  t.equal(accepted + refused, 300);
  t.ok(refused > 0, `${refused} refused, ${accepted} accepted`);
  // The loader still works after all that.
  const img = await buildImage(printer('still fine\n'), 'after');
  t.equal(img.format, 'core');
});
