/**
 * The import-boundary rule: layers point one way.
 *   kernel/ <- devices/ <- host-bindings/ <- runtime/ <- isogen/ <- cli/
 * (isogen/ is a library the `wv iso` commands wire up; it never imports cli/.)
 * kernel/ is pure logic: no node:* and no packages. Test files (*.test.ts)
 * may also import test helpers and tap.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';

const ORDER = ['kernel', 'devices', 'host-bindings', 'runtime', 'cli', 'isogen'] as const;
type Layer = (typeof ORDER)[number];

/** Which top-level folders each layer may import from. */
const ALLOWED: Record<Layer, readonly string[]> = {
  kernel: ['kernel'],
  devices: ['kernel', 'devices'],
  'host-bindings': ['kernel', 'devices', 'host-bindings'],
  runtime: ['kernel', 'devices', 'host-bindings', 'runtime'],
  cli: ['kernel', 'devices', 'host-bindings', 'runtime', 'isogen', 'cli'],
  isogen: ['kernel', 'devices', 'host-bindings', 'runtime', 'isogen'],
};

export interface Violation { file: string; specifier: string; why: string }

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;(=])import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

export function importsOf(source: string): string[] {
  const out: string[] = [];
  const stripped = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  for (const m of stripped.matchAll(IMPORT)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

/** Check one file's imports; `file` is relative to `root`. */
export function checkFile(root: string, file: string, source: string): Violation[] {
  const layer = file.split(/[\\/]/)[0] as Layer;
  if (!ORDER.includes(layer)) return [];
  const isTest = file.endsWith('.test.ts');
  const out: Violation[] = [];
  for (const spec of importsOf(source)) {
    if (spec.startsWith('node:') || !spec.startsWith('.')) {
      if (layer === 'kernel' && !(isTest && spec === 'tap')) {
        out.push({ file, specifier: spec, why: 'kernel/ is pure logic: no node:* modules or packages' });
      }
      continue;
    }
    const target = relative(root, resolve(root, dirname(file), spec)).split(sep)[0]!;
    if (isTest && target === 'test') continue;
    if (!ALLOWED[layer].includes(target)) {
      out.push({ file, specifier: spec, why: `${layer}/ may not import from ${target}/ (layers point one way: ${ORDER.join(' <- ')})` });
    }
  }
  return out;
}

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* walk(p);
    else if (p.endsWith('.ts')) yield p;
  }
}

export function checkTree(root: string): Violation[] {
  const out: Violation[] = [];
  for (const layer of ORDER) {
    let files: string[];
    try { files = [...walk(join(root, layer))]; } catch { continue; }
    for (const f of files) out.push(...checkFile(root, relative(root, f), readFileSync(f, 'utf8')));
  }
  return out;
}
