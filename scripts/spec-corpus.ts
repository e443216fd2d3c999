/**
 * npm run spec-corpus [-- --json]: run the external test body (the
 * WebAssembly spec-test scripts, fetched by scripts/fetch-spec-corpus.sh)
 * as written and rewritten with safepoints, and report how they compare.
 * Exits non-zero if any command behaves differently after the rewrite.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCorpus } from '../test/external/spec-runner.ts';

const json = process.argv.includes('--json');
const dir = join(import.meta.dirname, '..', '.cache', 'spec-corpus');
if (!existsSync(join(dir, 'corpus.json'))) {
  process.stderr.write(`spec-corpus: no converted corpus in ${dir}; run scripts/fetch-spec-corpus.sh first\n`);
  process.exit(2);
}
const started = performance.now();
const r = await runCorpus(dir, (f) => {
  if (!json && process.stderr.isTTY) process.stderr.write(`\r${f.file.padEnd(40)}`);
});
const seconds = (performance.now() - started) / 1000;
if (!json && process.stderr.isTTY) process.stderr.write('\r'.padEnd(42) + '\r');
const summary = { ...r, files: undefined, seconds: Number(seconds.toFixed(2)) };
if (json) {
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
} else {
  const lines = [
    `corpus        ${r.source}`,
    `scripts       ${r.converted} of ${r.scripts} converted by wast2json`,
    `modules       ${r.rewritten} rewritten and run both ways (${r.modules - r.rewritten} the engine does not support)`,
    `commands      ${r.checked} compared`,
    `safepoints    ${r.safepointCalls} calls into the host from rewritten code`,
    `checks        ${r.checksKept} placed, ${r.checksDropped} of binaryen's found unneeded; ${r.unpruned.length} modules kept all`,
    `differences   ${r.differences.length}`,
    `unexpected    ${r.unexpected.length} (both ways agree, the script's spec revision differs)`,
    `time          ${seconds.toFixed(1)} s`,
  ];
  for (const [why, n] of Object.entries(r.skipped)) lines.push(`skipped       ${n} × ${why}`);
  for (const d of r.differences) lines.push(`DIFFERENCE    ${d.file}:${d.line} ${d.what}`);
  process.stdout.write(lines.join('\n') + '\n');
}
process.exit(r.differences.length === 0 ? 0 : 1);
