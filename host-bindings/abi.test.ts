/**
 * The hypercall ABI is stated four times: the WIT (signatures and docs), the
 * table in abi.ts (ids, errors, core types), kernel/errno.ts (error numbers)
 * and the generated files (host-bindings/generated/, docs/abi.md). These
 * tests keep them in step. Each check is a function returning the problems
 * it found, and each is also run on a broken copy of its input to show that
 * it can fail.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentEmbed } from '@bytecodealliance/jco';
import { ABI_PACKAGE, ABI_VERSION, HYPERCALLS, importModule } from './abi.ts';
import { skipBlockComment } from './wit-comments.ts';
import type { CoreType, HypercallSpec } from './abi.ts';
import { Errno } from '../kernel/errno.ts';
import type { HypercallImports } from './imports.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const witSource = readFileSync(join(root, 'host-bindings/wit/hypercall.wit'), 'utf8');
const genScript = join(root, 'scripts/gen-abi.ts');
const WORLD = 'guest';

// ---------------------------------------------------------------------------
// (a) The generated files match what the inputs generate.

const runGen = (...args: string[]) =>
  spawnSync(process.execPath, [genScript, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });

t.test('host-bindings/generated/ and docs/abi.md are up to date (npm run gen)', async (t) => {
  const r = runGen('--check');
  t.equal(r.status, 0, `gen-abi --check found drift:\n${r.stderr}${r.stdout}`);
});

t.test('the drift check fails on a changed, missing or stale file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-abi-drift-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(runGen('--out-dir', dir).status, 0, 'generated into a scratch directory');
  const clean = runGen('--check', '--out-dir', dir);
  t.equal(clean.status, 0, `a fresh generation passes:\n${clean.stderr}`);

  const doc = join(dir, 'docs/abi.md');
  writeFileSync(doc, readFileSync(doc, 'utf8').replace('| 1 |', '| 2 |'));
  rmSync(join(dir, 'host-bindings/generated/interfaces/wasmvisor-hypercall-time.d.ts'));
  writeFileSync(join(dir, 'host-bindings/generated/interfaces/old.d.ts'), 'export {};\n');
  const r = runGen('--check', '--out-dir', dir);
  t.equal(r.status, 1);
  t.match(r.stderr, /drift: \S*docs\/abi\.md differs/);
  t.match(r.stderr, /drift: \S*host-bindings\/generated\/interfaces\/wasmvisor-hypercall-time\.d\.ts is missing/);
  t.match(r.stderr, /drift: \S*host-bindings\/generated\/interfaces\/old\.d\.ts is not generated any more/);
});

// ---------------------------------------------------------------------------
// (b) The WIT and the table agree.

interface WitFacts {
  readonly pkg: { readonly name: string; readonly version: string };
  /** interface -> its function names, in order */
  readonly funcs: ReadonlyMap<string, readonly string[]>;
  /** the cases of `enum errno`, in order */
  readonly errno: readonly string[];
}

/** Remove `//` and (nesting) `/* *\/` comments, keeping line breaks. */
function stripComments(src: string): string {
  let out = '';
  let i = 0;
  while (i < src.length) {
    if (src.startsWith('//', i)) {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (src.startsWith('/*', i)) {
      const skipped = skipBlockComment(src, i);
      if (!skipped) throw new Error('WIT: unterminated block comment');
      out += '\n'.repeat(skipped.newlines);
      i = skipped.end;
    } else out += src[i++];
  }
  return out;
}

/** The text between the `{` at `open` and its matching `}`. */
function braceBody(src: string, open: number): string {
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    if (src[i] === '{') depth++;
    else if (src[i] === '}' && --depth === 0) return src.slice(open + 1, i);
  }
  throw new Error('WIT: unbalanced braces');
}

const IDENT = /^[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*$/;

/**
 * A small reader for just what these checks need: the package line, the
 * function names per interface (`name: func(` or `name: async func(`, in any
 * layout) and the cases of `enum errno`. It refuses what it does not know
 * (resources, whose methods would be functions too) instead of missing them.
 */
function readWitFacts(source: string): WitFacts {
  const src = stripComments(source);
  const pkg = /^\s*package\s+([a-z][a-z0-9-]*:[a-z][a-z0-9-]*)@([0-9A-Za-z.+-]+)\s*;/m.exec(src);
  if (!pkg) throw new Error('WIT: no package line');
  if (/\bresource\b/.test(src)) throw new Error('WIT: resources are not read by this test; extend readWitFacts');
  const funcs = new Map<string, string[]>();
  for (const m of src.matchAll(/\binterface\s+(%?[a-z][a-z0-9-]*)\s*\{/g)) {
    const name = m[1]!.replace(/^%/, '');
    if (funcs.has(name)) throw new Error(`WIT: interface ${name} twice`);
    const body = braceBody(src, m.index + m[0].length - 1);
    funcs.set(name, [...body.matchAll(/(?:^|[;{}\s])(%?[a-z][a-z0-9-]*)\s*:\s*(?:async\s+)?func\s*\(/g)].map((f) => f[1]!.replace(/^%/, '')));
    // A `func` the pattern did not catch would go unchecked: count them too.
    const written = body.match(/\bfunc\s*\(/g)?.length ?? 0;
    if (written !== funcs.get(name)!.length) throw new Error(`WIT: interface ${name}: could not read every func`);
  }
  const enums = [...src.matchAll(/\benum\s+errno\s*\{/g)];
  if (enums.length !== 1) throw new Error(`WIT: expected one enum errno, found ${enums.length}`);
  const errno = braceBody(src, enums[0]!.index + enums[0]![0].length - 1)
    .split(',')
    .map((s) => s.trim().replace(/^%/, ''))
    .filter((s) => s !== '');
  for (const c of errno) if (!IDENT.test(c)) throw new Error(`WIT: enum errno: cannot read case ${JSON.stringify(c)}`);
  return { pkg: { name: pkg[1]!, version: pkg[2]! }, funcs, errno };
}

/** Every WIT function has exactly one row in the table, and every row a WIT function. */
function checkFunctionsHaveRows(wit: WitFacts, table: readonly HypercallSpec[]): string[] {
  const problems: string[] = [];
  for (const [iface, names] of wit.funcs) {
    for (const name of names) {
      const n = table.filter((h) => h.iface === iface && h.name === name).length;
      if (n !== 1) problems.push(`WIT function ${iface}.${name} has ${n} rows in HYPERCALLS (needs exactly 1)`);
    }
  }
  for (const h of table) {
    if (!wit.funcs.get(h.iface)?.includes(h.name)) problems.push(`HYPERCALLS row ${h.id} (${h.iface}.${h.name}) has no WIT function`);
  }
  return problems;
}

/** Ids are positive integers, each used once. */
function checkIds(table: readonly HypercallSpec[]): string[] {
  const problems: string[] = [];
  const seen = new Map<number, HypercallSpec>();
  for (const h of table) {
    if (!Number.isInteger(h.id) || h.id <= 0) problems.push(`${h.iface}.${h.name}: id ${h.id} is not a positive integer`);
    const other = seen.get(h.id);
    if (other) problems.push(`id ${h.id} is used by both ${other.iface}.${other.name} and ${h.iface}.${h.name}`);
    seen.set(h.id, h);
  }
  return problems;
}

/** The WIT errno cases are the Errno keys, lowercased: the same set, no duplicates. */
function checkErrnoNames(witCases: readonly string[], errno: Readonly<Record<string, number>>): string[] {
  const problems: string[] = [];
  const keys = Object.keys(errno).map((k) => k.toLowerCase());
  for (const c of new Set(witCases.filter((c, i) => witCases.indexOf(c) !== i))) problems.push(`WIT errno case ${c} is listed twice`);
  for (const c of witCases) if (!keys.includes(c)) problems.push(`WIT errno case ${c} is not in kernel/errno.ts`);
  for (const k of keys) if (!witCases.includes(k)) problems.push(`Errno.${k.toUpperCase()} is not a case of the WIT enum errno`);
  return problems;
}

/** The WIT package is the one abi.ts names. */
function checkPackage(wit: WitFacts, pkg: string, version: string): string[] {
  const problems: string[] = [];
  if (wit.pkg.name !== pkg) problems.push(`WIT package ${wit.pkg.name}, abi.ts says ${pkg}`);
  if (wit.pkg.version !== version) problems.push(`WIT version ${wit.pkg.version}, abi.ts says ${version}`);
  return problems;
}

interface CoreImport {
  readonly module: string;
  readonly name: string;
  readonly params: readonly string[];
  readonly results: readonly string[];
}

/** The function imports of a core Wasm module, with their types (reads the type and import sections). */
function coreFuncImports(bytes: Uint8Array): CoreImport[] {
  if (String.fromCharCode(...bytes.subarray(0, 4)) !== '\0asm' || bytes[4] !== 1) throw new Error('wasm: not a core module');
  let p = 8;
  const u32 = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[p++];
      if (b === undefined) throw new Error('wasm: truncated');
      result += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return result;
      shift += 7;
    }
  };
  const name = (): string => {
    const n = u32();
    const s = new TextDecoder().decode(bytes.subarray(p, p + n));
    p += n;
    return s;
  };
  const VALTYPE: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' };
  const valtypes = (): string[] =>
    Array.from({ length: u32() }, () => {
      const b = bytes[p++]!;
      const v = VALTYPE[b];
      if (!v) throw new Error(`wasm: value type 0x${b.toString(16)} not read by this test`);
      return v;
    });
  const types: { params: string[]; results: string[] }[] = [];
  const imports: CoreImport[] = [];
  while (p < bytes.length) {
    const id = bytes[p++]!;
    const size = u32();
    const end = p + size;
    if (id === 1) {
      for (let n = u32(); n > 0; n--) {
        if (bytes[p++] !== 0x60) throw new Error('wasm: only plain function types are read by this test');
        const params = valtypes();
        types.push({ params, results: valtypes() });
      }
    } else if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        const module = name();
        const field = name();
        if (bytes[p++] !== 0x00) throw new Error(`wasm: import ${module} ${field} is not a function`);
        const type = types[u32()];
        if (!type) throw new Error('wasm: bad type index');
        imports.push({ module, name: field, ...type });
      }
    }
    p = end;
  }
  return imports;
}

/**
 * The canonical-ABI lowering of world `guest`, done by jco (wit-component):
 * `componentEmbed` with `dummy: true` builds a core module importing every
 * function of the world exactly as a guest compiled against the WIT would.
 */
async function loweredImports(source: string): Promise<CoreImport[]> {
  return coreFuncImports(await componentEmbed({ dummy: true, witSource: source, world: WORLD }));
}

/** The lowered imports are the table's rows, with the table's core types. */
function checkLowering(lowered: readonly CoreImport[], table: readonly HypercallSpec[]): string[] {
  const problems: string[] = [];
  const key = (iface: string, name: string): string => `${iface}.${name}`;
  const rows = new Map(table.map((h) => [key(h.iface, h.name), h]));
  const seen = new Set<string>();
  for (const imp of lowered) {
    // Module names are `wasmvisor:hypercall/console@0.1.0`, or in wit-component's
    // newer mangling `cm32p2|wasmvisor:hypercall/console@0.1`.
    const m = /^(?:cm32p2\|)?([^/|]+)\/([^@]+)(?:@.*)?$/.exec(imp.module);
    if (!m || m[1] !== ABI_PACKAGE) {
      problems.push(`lowered import "${imp.module}" "${imp.name}" is not from ${ABI_PACKAGE}`);
      continue;
    }
    const k = key(m[2]!, imp.name);
    seen.add(k);
    const h = rows.get(k);
    if (!h) problems.push(`WIT world ${WORLD} imports ${k}, which has no HYPERCALLS row`);
    else if (String(h.params) !== String(imp.params) || String(h.results) !== String(imp.results)) {
      problems.push(`${k}: HYPERCALLS says (${h.params}) -> (${h.results}), the WIT lowers to (${imp.params}) -> (${imp.results})`);
    }
  }
  for (const k of rows.keys()) if (!seen.has(k)) problems.push(`HYPERCALLS row ${k} is not imported by WIT world ${WORLD}`);
  return problems;
}

const wit = readWitFacts(witSource);

/** The WIT with `from` replaced by `to`; throws if `from` is not there (the WIT changed under the test). */
function edited(from: string | RegExp, to: string): string {
  const out = witSource.replace(from, to);
  if (out === witSource) throw new Error(`test setup: ${from} is not in the WIT any more; update this test`);
  return out;
}

type Asserts = Pick<typeof t, 'ok'>;

/** Assert that a check run on broken input reports a problem matching `re`. */
function reports(t: Asserts, problems: readonly string[], re: RegExp): void {
  t.ok(problems.some((x) => re.test(x)), `reports ${re}`, { found: problems });
}

t.test('the WIT package is the one abi.ts names', async (t) => {
  t.same(checkPackage(wit, ABI_PACKAGE, ABI_VERSION), []);
  reports(t, checkPackage(readWitFacts(edited('@0.1.0;', '@0.2.0;')), ABI_PACKAGE, ABI_VERSION), /version 0\.2\.0/);
});

t.test('every WIT function has exactly one row in HYPERCALLS, and every row a function', async (t) => {
  t.ok([...wit.funcs.values()].flat().length >= HYPERCALLS.length, 'the reader found the functions');
  t.same(checkFunctionsHaveRows(wit, HYPERCALLS), []);

  t.test('and the check can fail', async (t) => {
    const renamed = readWitFacts(edited('write: func', 'put: func'));
    reports(t, checkFunctionsHaveRows(renamed, HYPERCALLS), /console\.put has 0 rows/);
    reports(t, checkFunctionsHaveRows(renamed, HYPERCALLS), /row 1 \(console\.write\) has no WIT function/);
    const added = readWitFacts(edited('page: func() -> u32;', 'page: func() -> u32;\n  /// new\n  cpus:\n    func() -> u32;'));
    reports(t, checkFunctionsHaveRows(added, HYPERCALLS), /start-info\.cpus has 0 rows/);
    const twice = [...HYPERCALLS, { ...HYPERCALLS[0]!, id: 99 }];
    reports(t, checkFunctionsHaveRows(wit, twice), /console\.write has 2 rows/);
    const withResource = edited('interface time {', 'interface time {\n  resource clock { now: func() -> u64; }');
    t.throws(() => readWitFacts(withResource), /resources are not read/);
  });
});

t.test('hypercall ids are unique', async (t) => {
  t.same(checkIds(HYPERCALLS), []);
  const dup = HYPERCALLS.map((h) => (h.name === 'set-timer' ? { ...h, id: 48 } : h));
  reports(t, checkIds(dup), /id 48 is used by both time\.monotonic-now and time\.set-timer/);
  reports(t, checkIds([{ ...HYPERCALLS[0]!, id: 0 }]), /id 0 is not a positive integer/);
});

t.test('the WIT enum errno names are the Errno keys, lowercased', async (t) => {
  t.ok(wit.errno.length >= 5, 'the reader found the cases');
  t.same(checkErrnoNames(wit.errno, Errno), []);

  t.test('and the check can fail', async (t) => {
    const dropped = readWitFacts(edited(/^\s*ebusy,$/m, ''));
    reports(t, checkErrnoNames(dropped.errno, Errno), /Errno\.EBUSY is not a case/);
    const extra = readWitFacts(edited('enosys,', 'enosys,\n    /// out of range\n    erange'));
    reports(t, checkErrnoNames(extra.errno, Errno), /case erange is not in kernel\/errno\.ts/);
    reports(t, checkErrnoNames([...wit.errno, 'eperm'], Errno), /eperm is listed twice/);
    const garbled = edited('eperm,', 'eperm;');
    t.throws(() => readWitFacts(garbled), /cannot read case/);
  });
});

t.test("the table's core types are the WIT's canonical-ABI lowering (by jco)", async (t) => {
  const lowered = await loweredImports(witSource);
  t.equal(lowered.length, HYPERCALLS.length, 'jco lowered one import per hypercall');
  t.same(checkLowering(lowered, HYPERCALLS), []);

  t.test('and the check can fail', async (t) => {
    const widened = await loweredImports(edited('shutdown: func(reason: u32)', 'shutdown: func(reason: u64)'));
    reports(t, checkLowering(widened, HYPERCALLS), /sched\.shutdown: HYPERCALLS says \(i32\) -> \(i32\), the WIT lowers to \(i64\) -> \(i32\)/);
    const fewer = await loweredImports(edited('  import time;\n', ''));
    reports(t, checkLowering(fewer, HYPERCALLS), /time\.monotonic-now is not imported/);
    reports(t, checkLowering(fewer, HYPERCALLS), /time\.set-timer is not imported/);
  });
});

t.test('every error a hypercall lists is an Errno', async (t) => {
  for (const h of HYPERCALLS) for (const e of h.errors) t.ok(e in Errno, `${h.iface}.${h.name}: ${e}`);
});

// ---------------------------------------------------------------------------
// (c) Error numbers are positive and distinct.

function checkErrnoNumbers(errno: Readonly<Record<string, number>>): string[] {
  const problems: string[] = [];
  const byNumber = new Map<number, string>();
  for (const [name, n] of Object.entries(errno)) {
    if (!Number.isInteger(n) || n <= 0) problems.push(`${name} = ${n} is not a positive integer`);
    const other = byNumber.get(n);
    if (other !== undefined) problems.push(`${other} and ${name} are both ${n}`);
    byNumber.set(n, name);
  }
  return problems;
}

t.test('every error number is positive and distinct', async (t) => {
  t.same(checkErrnoNumbers(Errno), []);
  reports(t, checkErrnoNumbers({ ...Errno, EBUSY: 13 }), /EACCES and EBUSY are both 13/);
  reports(t, checkErrnoNumbers({ ...Errno, EPERM: 0 }), /EPERM = 0 is not a positive integer/);
  reports(t, checkErrnoNumbers({ ...Errno, EPERM: -1 }), /EPERM = -1 is not a positive integer/);
  reports(t, checkErrnoNumbers({ ...Errno, EPERM: 1.5 }), /EPERM = 1.5 is not a positive integer/);
});

// ---------------------------------------------------------------------------
// HypercallImports (derived by tsc from the jco declarations) against the table.

/**
 * The core signatures, written out by hand. `tsc` checks them against
 * HypercallImports, i.e. against the WIT through host-bindings/generated/
 * (CheckSignatures below fails to compile when they differ); the test below
 * checks them against HYPERCALLS. A WIT change therefore breaks the type-check
 * once `npm run gen` has been run, and the drift test until it has.
 */
const CORE_SIGNATURES = {
  'wasmvisor:hypercall/console@0.1.0': {
    write: [['i32', 'i32'], ['i32']],
    read: [['i32', 'i32'], ['i32']],
  },
  'wasmvisor:hypercall/start-info@0.1.0': {
    'domain-id': [[], ['i32']],
    'memory-size': [[], ['i64']],
    cmdline: [['i32', 'i32'], ['i32']],
    page: [[], ['i32']],
  },
  'wasmvisor:hypercall/sched@0.1.0': {
    yield: [[], ['i32']],
    block: [['i64'], ['i32']],
    shutdown: [['i32'], ['i32']],
    watchdog: [['i32'], ['i32']],
  },
  'wasmvisor:hypercall/evtchn@0.1.0': {
    'alloc-unbound': [['i32'], ['i32']],
    'bind-interdomain': [['i32', 'i32'], ['i32']],
    'bind-virq': [['i32'], ['i32']],
    send: [['i32'], ['i32']],
    close: [['i32'], ['i32']],
    status: [['i32', 'i32'], ['i32']],
    mask: [['i32'], ['i32']],
    unmask: [['i32'], ['i32']],
    pending: [['i32', 'i32'], ['i32']],
  },
  'wasmvisor:hypercall/grant@0.1.0': {
    'grant-access': [['i32', 'i32', 'i32'], ['i32']],
    'end-access': [['i32'], ['i32']],
    'copy-from': [['i32', 'i32', 'i32', 'i32', 'i32'], ['i32']],
    'copy-to': [['i32', 'i32', 'i32', 'i32', 'i32'], ['i32']],
  },
  'wasmvisor:hypercall/time@0.1.0': {
    'monotonic-now': [[], ['i64']],
    'set-timer': [['i64'], ['i32']],
  },
  'wasmvisor:hypercall/store@0.1.0': {
    read: [['i32', 'i32', 'i32', 'i32'], ['i32']],
    write: [['i32', 'i32', 'i32', 'i32'], ['i32']],
    directory: [['i32', 'i32', 'i32', 'i32'], ['i32']],
    remove: [['i32', 'i32'], ['i32']],
    watch: [['i32', 'i32'], ['i32']],
    unwatch: [['i32', 'i32'], ['i32']],
    'next-event': [['i32', 'i32'], ['i32']],
  },
} as const satisfies Record<string, Record<string, readonly [readonly CoreType[], readonly CoreType[]]>>;

type JsValue<T> = T extends 'i32' ? number : T extends 'i64' ? bigint : never;
type JsValues<L> = { -readonly [K in keyof L]: JsValue<L[K]> };
type JsResult<L> = L extends readonly [] ? void : L extends readonly [infer R] ? JsValue<R> : never;
type FromSignatures<S> = {
  readonly [M in keyof S]: {
    readonly [F in keyof S[M]]: S[M][F] extends readonly [infer P extends readonly unknown[], infer R]
      ? (...args: JsValues<P>) => JsResult<R>
      : never;
  };
};
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
type CheckSignatures = Assert<Same<HypercallImports, FromSignatures<typeof CORE_SIGNATURES>>>;

t.test('the signatures tsc checks HypercallImports against are those of HYPERCALLS', async (t) => {
  const fromTable: Record<string, Record<string, [CoreType[], CoreType[]]>> = {};
  for (const h of HYPERCALLS) (fromTable[importModule(h.iface)] ??= {})[h.name] = [[...h.params], [...h.results]];
  t.same(CORE_SIGNATURES, fromTable);
});
