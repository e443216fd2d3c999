/**
 * `npm run build`: bundle the `wv` command and the vCPU host worker into
 * dist/ with esbuild (single files, ESM, for the pinned Node).
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
mkdirSync(`${root}dist`, { recursive: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: { wv: 'cli/wv.ts', 'vcpu-worker': 'runtime/executor/vcpu-worker.ts', 'ticker-worker': 'runtime/executor/ticker-worker.ts' },
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  format: 'esm',
  // Heavy parts (the hypervisor, binaryen) are loaded on first use: separate chunks keep every command's start fast.
  splitting: true,
  chunkNames: 'chunk-[hash]',
  target: 'node26',
  sourcemap: 'linked',
  legalComments: 'none',
  banner: { js: "import { createRequire as __wvCreateRequire } from 'node:module'; const require = __wvCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  metafile: true,
});
copyFileSync(`${root}cli/demo.json`, `${root}dist/demo.json`);
for (const out of Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js'))) {
  process.stdout.write(`built ${out} (${(statSync(`${root}${out}`).size / 1024).toFixed(0)} KiB)\n`);
}
