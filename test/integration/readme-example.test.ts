// The README's embedding example must run as written (it imports 'wasmvisor',
// which resolves to this package by self-reference).
import t from 'tap';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const root = fileURLToPath(new URL('../..', import.meta.url));

t.test('the README embedding example runs', async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## The embedding API'));
  const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
  t.ok(code, 'the example was found');
  // Run it from inside the package so that 'wasmvisor' and the relative image path resolve.
  const dir = mkdtempSync(join(root, 'test', '.readme-'));
  t.teardown(() => spawnSync('rm', ['-rf', dir]));
  const file = join(dir, 'example.ts');
  writeFileSync(file, code!);
  const r = spawnSync(process.execPath, [file], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /hello from domain 1/);
  t.match(r.stdout, /Domain-0/, 'the list table was printed');
  t.match(r.stderr, /hello: running -> shutdown/);
});
