import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import * as errors from '../kernel/errors.ts';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
/** kernel/errors.ts, and every other source that defines an error code (devices, runtime, cli). */
const roots = ['kernel', 'devices', 'runtime', 'cli'].map((d) => fileURLToPath(new URL(`../${d}`, import.meta.url)));
const files = roots.flatMap((r) => (readdirSync(r, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')).map((f) => join(r, f)));
const source = files.map((f) => readFileSync(f, 'utf8')).join('\n');

t.test('every error code is documented in docs/errors.md', async (t) => {
  const codes = [...source.matchAll(/'(WV_ERR_[A-Z_]+)'/g)].map((m) => m[1]!);
  t.ok(codes.length >= 20, 'the codes were found');
  for (const code of codes) t.match(doc, `\`${code}\``, code);
});

t.test('every error class is a WvError subclass and documented', async (t) => {
  for (const [name, value] of Object.entries(errors)) {
    if (typeof value !== 'function' || name === 'WvError') continue;
    t.ok(value.prototype instanceof errors.WvError, `${name} extends WvError`);
    t.match(doc, `\`${name}\``, `${name} is in the doc`);
  }
});
