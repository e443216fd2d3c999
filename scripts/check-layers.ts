/** `npm test` runs this first: fails when an import crosses a layer boundary (see scripts/layers.ts). */
import { fileURLToPath } from 'node:url';
import { checkTree } from './layers.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const violations = checkTree(root);
for (const v of violations) process.stderr.write(`${v.file}: imports "${v.specifier}": ${v.why}\n`);
if (violations.length > 0) {
  process.stderr.write(`import-boundary check: ${violations.length} violation(s)\n`);
  process.exit(1);
}
process.stdout.write('import-boundary check: ok\n');
