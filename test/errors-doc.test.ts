import t from 'tap';
import { readFileSync } from 'node:fs';
import * as errors from '../kernel/errors.ts';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const source = readFileSync(new URL('../kernel/errors.ts', import.meta.url), 'utf8');

t.test('every error code is documented in docs/errors.md', async (t) => {
  const codes = [...source.matchAll(/'(WV_ERR_[A-Z_]+)'/g)].map((m) => m[1]!);
  t.ok(codes.length >= 15, 'the codes were found');
  for (const code of codes) t.match(doc, `\`${code}\``, code);
});

t.test('every error class is a WvError subclass and documented', async (t) => {
  for (const [name, value] of Object.entries(errors)) {
    if (typeof value !== 'function' || name === 'WvError') continue;
    t.ok(value.prototype instanceof errors.WvError, `${name} extends WvError`);
    t.match(doc, `\`${name}\``, `${name} is in the doc`);
  }
});
