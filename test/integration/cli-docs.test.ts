import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const wv = fileURLToPath(new URL('../../cli/wv.ts', import.meta.url));

t.test('docs/cli.md is what the command tree generates', async (t) => {
  const r = spawnSync(process.execPath, ['scripts/gen-cli-docs.ts', '--check'], { cwd: root, encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
});

t.test('bash completion completes commands, subcommands and options', async (t) => {
  const complete = (...words: string[]) => {
    const script = `source <('${process.execPath}' '${wv}' completion bash); COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _wv; echo "\${COMPREPLY[@]}"`;
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    return r.stdout.trim().split(/\s+/);
  };
  t.same(complete('wv', 'unp'), ['unpause']);
  t.same(complete('wv', 'compat', 'xc_dom_cr'), ['xc_dom_create.py']);
  t.ok(complete('wv', 'create', '--').includes('--dry-run'), 'options of create');
  t.ok(complete('wv', 'list', '-').includes('--long'));
});

const hasZsh = spawnSync('zsh', ['--version']).status === 0;
if (!hasZsh && process.env.WV_TERMINAL_TESTS === 'required') t.fail('zsh is not installed, and the completion tests are required here');

t.test('zsh completion is a script zsh accepts and loads under compinit', { skip: hasZsh ? false : 'zsh is not installed' }, async (t) => {
  const script = spawnSync(process.execPath, [wv, 'completion', 'zsh'], { encoding: 'utf8' }).stdout;
  const r = spawnSync('zsh', ['-n', '-c', script], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const loaded = spawnSync('zsh', ['-c', `autoload -U compinit; compinit -u; source <('${process.execPath}' '${wv}' completion zsh); whence -w _wv; _wv_complete_words "compat"`], { encoding: 'utf8' });
  t.match(loaded.stdout, /_wv: function/);
  t.match(loaded.stdout, /xc_dom_create\.py/, 'the subcommands of compat');
});
