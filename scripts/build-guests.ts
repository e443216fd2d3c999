/**
 * Builds every reference guest into wasm-guests/build/<name>.wasm.
 * Runs as npm's postinstall (so `npm ci` builds them) and in `npm run build`.
 * AssemblyScript and WAT (wabt) come from npm; the C guest needs clang and
 * wasm-ld from Debian and is skipped, with a note, when they are missing.
 * A guest is rebuilt only when a source is newer than its output.
 */
import asc from 'assemblyscript/asc';
import wabtInit from 'wabt';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, relative } from 'node:path';

const root = fileURLToPath(new URL('..', import.meta.url));
const guests = join(root, 'wasm-guests', 'guests');
const sdk = join(root, 'wasm-guests', 'sdk');
const out = join(root, 'wasm-guests', 'build');
mkdirSync(out, { recursive: true });
const force = process.argv.includes('--force');

/** Newest modification time of the files under `dirs`. */
function newest(dirs: string[]): number {
  let t = statSync(fileURLToPath(import.meta.url)).mtimeMs;
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const s = statSync(p);
      if (s.isDirectory()) walk(p);
      else t = Math.max(t, s.mtimeMs);
    }
  };
  for (const d of dirs) walk(d);
  return t;
}

function upToDate(name: string, sources: string[]): boolean {
  const target = join(out, `${name}.wasm`);
  return !force && existsSync(target) && statSync(target).mtimeMs >= newest(sources);
}

/** Flags every AssemblyScript guest is built with, to meet the ABI contract (wasm-guests/README.md). */
const AS_FLAGS = [
  '--importMemory', '--sharedMemory', '--enable', 'threads',
  '--initialMemory', '1', '--maximumMemory', '16384',
  '--memoryBase', '4096',                 // keep data out of the start-info page
  '--runtime', 'stub',
  '--exportStart', '_initialize',         // no start section: the kernel calls _initialize, then start
  '--use', 'abort=wasm-guests/sdk/index/abort',
  '--debug',                              // keep the name section for backtraces
];

/** Compile `dir/index.ts` with AssemblyScript into wasm-guests/build/<name>.wasm. */
async function ascBuild(name: string, dir: string, flags: string[]): Promise<void> {
  const stderr: string[] = [];
  const { error } = await asc.main([
    relative(root, join(dir, 'index.ts')), '--outFile', relative(root, join(out, `${name}.wasm`)), ...flags,
  ], {
    stdout: { write: () => true } as never,
    stderr: { write: (s: string | Uint8Array) => { stderr.push(String(s)); return true; } } as never,
    readFile: (f: string, base: string) => { const p = join(root, base, f); return existsSync(p) ? readFileSync(p, 'utf8') : null; },
    writeFile: (f: string, data: Uint8Array | string, base: string) => { writeFileSync(join(root, base, f), data); },
    listFiles: (d: string, base: string) => { const p = join(root, base, d); return existsSync(p) ? readdirSync(p).filter((x) => x.endsWith('.ts')) : null; },
  } as never);
  if (error) throw new Error(`${error.message}\n${stderr.join('')}`);
}

async function buildAs(name: string, optimize: string[]): Promise<void> {
  const dir = join(guests, name);
  if (upToDate(name, [dir, sdk])) return;
  await ascBuild(name, dir, [...AS_FLAGS, ...optimize]);
  built(name);
}

/**
 * The NAT gateway's stack (wasm-guests/nat): not a guest but a module the
 * host runs in its main thread, so it owns its memory and imports only
 * `nat.*` (devices/net/nat/gateway.ts).
 */
async function buildNat(): Promise<void> {
  const name = 'nat';
  const dir = join(root, 'wasm-guests', 'nat');
  if (upToDate(name, [dir, join(sdk, 'net')])) return;
  await ascBuild(name, dir, [
    '--runtime', 'stub', '--exportStart', '_initialize', '--initialMemory', '2',
    '--use', 'abort=wasm-guests/nat/index/abort', '--debug', '-O2',
  ]);
  built(name);
}

async function buildWat(name: string, file: string): Promise<void> {
  if (upToDate(name, [join(guests, name)])) return;
  const wabt = await wabtInit();
  const mod = wabt.parseWat(file, readFileSync(join(guests, name, file), 'utf8'), { threads: true });
  try {
    mod.resolveNames();
    writeFileSync(join(out, `${name}.wasm`), mod.toBinary({ write_debug_names: true }).buffer);
  } finally {
    mod.destroy();
  }
  built(name);
}

function buildC(name: string, file: string, maxMemory = 1073741824): void {
  const clang = spawnSync('clang', ['--version'], { encoding: 'utf8' });
  const lld = spawnSync('wasm-ld', ['--version'], { encoding: 'utf8' });
  if (clang.status !== 0 || lld.status !== 0) {
    process.stderr.write(`guests: skipping ${name}: clang and wasm-ld are needed (apt-get install clang lld)\n`);
    return;
  }
  if (upToDate(name, [join(guests, name), join(sdk, 'c')])) return;
  const r = spawnSync('clang', [
    '--target=wasm32', '-nostdlib', '-O2', '-g0', '-matomics', '-mbulk-memory',
    '-Wl,--no-entry', '-Wl,--import-memory', '-Wl,--shared-memory', `-Wl,--max-memory=${maxMemory}`,
    '-Wl,--global-base=4096', '-Wl,--export=start', '-Wl,--allow-undefined-file=/dev/null',
    '-o', join(out, `${name}.wasm`), join(guests, name, file),
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`clang failed:\n${r.stderr}`);
  built(name);
}

function built(name: string): void {
  process.stdout.write(`guests: built ${name}.wasm (${statSync(join(out, `${name}.wasm`)).size} bytes)\n`);
}

const steps: [string, () => Promise<void> | void][] = [
  ['hello', () => buildAs('hello', ['-O2'])],
  ['ticker', () => buildAs('ticker', ['-O2'])],
  ['spin', () => buildAs('spin', ['-O2'])],
  ['crash', () => buildAs('crash', ['-O0'])],
  ['ping', () => buildAs('ping', ['-O2'])],
  ['pong', () => buildAs('pong', ['-O2'])],
  ['echo', () => buildAs('echo', ['-O2'])],
  ['blkwrite', () => buildAs('blkwrite', ['-O2'])],
  ['ext2sh', () => buildAs('ext2sh', ['-O2'])],
  ['netd', () => buildAs('netd', ['-O2'])],
  ['netclient', () => buildAs('netclient', ['-O2'])],
  ['nat', () => buildNat()],
  ['hello-wat', () => buildWat('hello-wat', 'hello.wat')],
  ['hello-c', () => buildC('hello-c', 'hello.c')],
  ['cpubench', () => buildC('cpubench', 'cpubench.c')],
];
let failed = 0;
for (const [name, step] of steps) {
  try {
    await step();
  } catch (err) {
    failed++;
    process.stderr.write(`guests: building ${name} failed: ${(err as Error).message}\n`);
  }
}
if (failed > 0) process.exit(1);
