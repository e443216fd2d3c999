/**
 * Writes docs/cli.md from the `wv` command tree. `--check` compares instead
 * and exits 1 if the file is out of date (the drift test runs that).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../cli/program.ts';
import { renderCliDoc } from '../cli/docs.ts';

delete process.env.WV_DEFAULT_CONFIG; // the doc shows the built-in default
const path = fileURLToPath(new URL('../docs/cli.md', import.meta.url));
const text = renderCliDoc(buildProgram());
if (process.argv.includes('--check')) {
  let old = '';
  try { old = readFileSync(path, 'utf8'); } catch { /* missing */ }
  if (old !== text) {
    process.stderr.write('gen-cli-docs: docs/cli.md is out of date: run node scripts/gen-cli-docs.ts\n');
    process.exit(1);
  }
} else {
  writeFileSync(path, text);
  process.stdout.write('gen-cli-docs: wrote docs/cli.md\n');
}
