/**
 * The safepoint rewrite keeps behaviour on an external body of test programs:
 * the WebAssembly spec-test scripts (fetched and converted by
 * scripts/fetch-spec-corpus.sh). Every module runs as written and rewritten,
 * command by command, and the two must agree everywhere.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { runCorpus, runScript } from './spec-runner.ts';
import { addSafepoints } from '../../runtime/loader/instrument.ts';
import { loadBinaryen, v8Features } from '../../runtime/loader/binaryen.ts';

const dir = join(import.meta.dirname, '..', '..', '.cache', 'spec-corpus');
const have = existsSync(join(dir, 'corpus.json'));
const required = process.env.WV_SPEC_CORPUS === 'required';

/**
 * Where the engine follows a later spec revision than these scripts, both
 * worlds agree with each other and disagree with the script. These are
 * the known ones (file:line); anything new here is a finding to look at.
 */
const KNOWN_UNEXPECTED = [
  'imports.wast:260', 'imports.wast:316',
  'linking.wast:236', 'linking.wast:248', 'linking.wast:342', 'linking.wast:354',
  'old_import.wast:49', 'old_import.wast:90', 'old_import.wast:91',
  'ref_func.wast:4',
];

if (!have) {
  const missing = `no converted spec corpus in ${dir}: run scripts/fetch-spec-corpus.sh`;
  if (required) t.fail(missing);
  else t.test('the spec corpus', { skip: missing }, () => {});
} else {
  t.test('the rewritten modules behave as the originals on the whole spec corpus', async (t) => {
    const r = await runCorpus(dir);
    t.same(r.differences, [], 'no command behaves differently after the rewrite');
    t.ok(r.converted >= 90, `${r.converted} scripts converted`);
    t.ok(r.rewritten >= 900, `${r.rewritten} modules rewritten`);
    t.ok(r.checked >= 10_000, `${r.checked} commands compared`);
    t.ok(r.safepointCalls >= 100_000, `${r.safepointCalls} safepoint calls made by the rewritten modules`);
    const unexpected = [...new Set(r.unexpected.map((m) => `${m.file}:${m.line}`))].sort();
    t.same(unexpected, [...KNOWN_UNEXPECTED].sort(), 'only the known spec-revision differences disagree with the scripts');
  });

  t.test('the comparison catches a rewrite that changes behaviour', async (t) => {
    // The same rewrite plus binaryen's denan pass, which turns NaN results
    // into zeros: the float comparison script must show differences.
    const broken = async (bytes: Uint8Array) => {
      const binaryen = await loadBinaryen();
      const mod = binaryen.readBinary(bytes);
      try {
        mod.setFeatures(v8Features(binaryen));
        await addSafepoints(mod);
        mod.runPasses(['denan']);
        return mod.emitBinary();
      } finally {
        mod.dispose();
      }
    };
    const r = await runScript(join(dir, 'json', 'f32_cmp.json'), join(dir, 'json'), broken);
    t.ok(r.differences.length > 100, `${r.differences.length} differences found in f32_cmp.wast`);
    const good = await runScript(join(dir, 'json', 'f32_cmp.json'), join(dir, 'json'));
    t.same(good.differences, [], 'the real rewrite has none there');
  });
}
