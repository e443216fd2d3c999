/**
 * Runs the external test body (WebAssembly spec-test scripts converted by
 * wast2json, see scripts/fetch-spec-corpus.sh) twice in lockstep: once with
 * each module as written and once with the same module rewritten by the
 * loader's safepoint pass. Every command that executes code is checked three
 * ways: the original against the script's expectation, the rewritten module
 * against the script's expectation, and the two against each other (same
 * values, same trap, same link error).
 *
 * The rewritten modules run with the attention word set, so every safepoint
 * they pass calls into the host; the number of such calls is reported, which
 * shows the checks were on the executed paths.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FLAGS_NAME, SAFEPOINT_MODULE, SAFEPOINT_NAME, rewriteWithSafepoints } from '../../runtime/loader/instrument.ts';

interface SpecValue { type: string; value?: string | string[]; lane_type?: string }
interface SpecAction { type: 'invoke' | 'get'; module?: string; field: string; args?: SpecValue[] }
interface SpecCommand {
  type: string; line: number; filename?: string; name?: string; as?: string;
  action?: SpecAction; expected?: SpecValue[]; text?: string; module_type?: string;
}

export interface Mismatch { file: string; line: number; what: string }

/**
 * What a run counts, for one script and summed over the corpus.
 * `differences`: the rewritten module behaved unlike the original (a bug in
 * the rewrite; there must be none). `unexpected`: both behaved alike but not
 * as the script says, which happens where the engine follows a later
 * revision of the spec than this copy of the scripts.
 */
export interface Tally {
  modules: number;
  /** Commands run and checked (both ways). */
  checked: number;
  /** Commands not runnable through the JS API (v128 values), by reason. */
  skipped: Record<string, number>;
  differences: Mismatch[];
  unexpected: Mismatch[];
  safepointCalls: number;
  /** Checks the rewrite left in, and those it found unneeded (default rewrite only). */
  checksKept: number;
  checksDropped: number;
  /** Modules whose checks could not be pruned, and why. */
  unpruned: string[];
}

export interface FileResult extends Tally {
  file: string;
}

export interface CorpusResult extends Tally {
  source: string;
  scripts: number;
  converted: number;
  notConverted: number;
  /** Modules rewritten (those the engine supports). */
  rewritten: number;
  files: FileResult[];
}

type World = 'original' | 'rewritten';
type Outcome = { ok: true; values: unknown[] } | { ok: false; error: string };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);

/** Host references stand for `(ref.extern N)` in scripts: one object per N, shared by both worlds. */
const hostRefs = new Map<string, object>();
function hostRef(n: string): object {
  let r = hostRefs.get(n);
  if (!r) hostRefs.set(n, (r = { ref: n }));
  return r;
}

function hasV128(values: SpecValue[] | undefined): boolean {
  return (values ?? []).some((v) => v.type === 'v128');
}

function toJs(v: SpecValue): unknown {
  const s = v.value as string;
  switch (v.type) {
    case 'i32': return Number(BigInt.asIntN(32, BigInt(s)));
    case 'i64': return BigInt.asIntN(64, BigInt(s));
    case 'f32': u32[0] = Number(s); return f32[0];
    case 'f64': u64[0] = BigInt(s); return f64[0];
    case 'externref': return s === 'null' ? null : hostRef(s);
    case 'funcref': return null;
    default: throw new Error(`argument of type ${v.type}`);
  }
}

/** Does `got` (a JS value returned by the engine) match the script's expected value? */
function matches(expected: SpecValue, got: unknown): boolean {
  const s = expected.value as string;
  switch (expected.type) {
    case 'i32': return typeof got === 'number' && (got >>> 0) === Number(s);
    case 'i64': return typeof got === 'bigint' && BigInt.asUintN(64, got) === BigInt(s);
    case 'f32':
      if (typeof got !== 'number') return false;
      f32[0] = got;
      if (s.startsWith('nan:')) return Number.isNaN(got);
      // A NaN's payload does not survive the trip through a JS number.
      if (((Number(s) >>> 23) & 0xff) === 0xff && (Number(s) & 0x7fffff) !== 0) return Number.isNaN(got);
      return u32[0] === Number(s);
    case 'f64':
      if (typeof got !== 'number') return false;
      if (s.startsWith('nan:')) return Number.isNaN(got);
      f64[0] = got;
      if (((BigInt(s) >> 52n) & 0x7ffn) === 0x7ffn && (BigInt(s) & 0xfffffffffffffn) !== 0n) return Number.isNaN(got);
      return u64[0] === BigInt(s);
    case 'externref': return s === 'null' ? got === null : got === hostRef(s);
    case 'funcref': return s === 'null' ? got === null : typeof got === 'function';
    default: return false;
  }
}

/** Two worlds agree when values are identical (NaN equal to NaN; functions compared by presence). */
function sameOutcome(a: Outcome, b: Outcome): boolean {
  if (a.ok !== b.ok) return false;
  if (!a.ok || !b.ok) return (a as { error: string }).error === (b as { error: string }).error;
  if (a.values.length !== b.values.length) return false;
  return a.values.every((v, i) => {
    const w = b.values[i];
    if (typeof v === 'function') return typeof w === 'function';
    if (typeof v === 'number' && typeof w === 'number' && !Number.isNaN(v)) {
      f64[0] = v; const x = u64[0]; f64[0] = w; return x === u64[0];
    }
    return Object.is(v, w);
  });
}

function describe(err: unknown): string {
  // The rewrite adds two imports, which renumbers the module's own imports in
  // link errors; the import is still named, so the number is left out.
  if (err instanceof Error) return `${err.constructor.name}: ${err.message.replace(/\b([Ii]mport) #?\d+/g, '$1')}`;
  return `non-error throw: ${String(err)}`;
}

function spectest(): Record<string, unknown> {
  const nop = () => {};
  return {
    print: nop, print_i32: nop, print_i64: nop, print_f32: nop, print_f64: nop, print_i32_f32: nop, print_f64_f64: nop,
    global_i32: new WebAssembly.Global({ value: 'i32' }, 666),
    global_i64: new WebAssembly.Global({ value: 'i64' }, 666n),
    global_f32: new WebAssembly.Global({ value: 'f32' }, 666.6),
    global_f64: new WebAssembly.Global({ value: 'f64' }, 666.6),
    table: new WebAssembly.Table({ initial: 10, maximum: 20, element: 'anyfunc' }),
    memory: new WebAssembly.Memory({ initial: 1, maximum: 2 }),
  };
}

class Realm {
  readonly registry = new Map<string, Record<string, unknown>>();
  readonly named = new Map<string, WebAssembly.Instance>();
  current: WebAssembly.Instance | undefined;
  safepointCalls = 0;
  readonly kernel: Record<string, unknown>;
  readonly world: World;

  constructor(world: World) {
    this.world = world;
    const flags = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    // The attention word stays set: every safepoint the code passes calls the host.
    new Int32Array(flags.buffer)[0] = 1;
    this.kernel = { [FLAGS_NAME]: flags, [SAFEPOINT_NAME]: () => { this.safepointCalls++; } };
    this.registry.set('spectest', spectest());
  }

  imports(module: WebAssembly.Module): WebAssembly.Imports {
    const out: Record<string, Record<string, unknown>> = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      const from = imp.module === SAFEPOINT_MODULE && this.world === 'rewritten' ? this.kernel : this.registry.get(imp.module);
      if (from && imp.name in from) (out[imp.module] ??= {})[imp.name] = from[imp.name];
    }
    return out as WebAssembly.Imports;
  }

  instantiate(bytes: Uint8Array): Outcome & { instance?: WebAssembly.Instance } {
    try {
      const module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
      const instance = new WebAssembly.Instance(module, this.imports(module));
      return { ok: true, values: [], instance };
    } catch (err) {
      return { ok: false, error: describe(err) };
    }
  }

  run(action: SpecAction): Outcome {
    const inst = action.module ? this.named.get(action.module) : this.current;
    if (!inst) return { ok: false, error: `no module ${action.module ?? '(current)'}` };
    const exp = inst.exports[action.field];
    try {
      if (action.type === 'get') return { ok: true, values: [(exp as WebAssembly.Global).value] };
      const r = (exp as (...a: unknown[]) => unknown)(...(action.args ?? []).map(toJs));
      return { ok: true, values: r === undefined ? [] : Array.isArray(r) ? r : [r] };
    } catch (err) {
      return { ok: false, error: describe(err) };
    }
  }
}

/** Run one converted script (its .json and the .wasm files beside it) both ways. */
export type Rewrite = (bytes: Uint8Array) => Promise<Uint8Array>;

export async function runScript(jsonPath: string, dir: string, custom?: Rewrite): Promise<FileResult> {
  const script = JSON.parse(readFileSync(jsonPath, 'utf8')) as { source_filename: string; commands: SpecCommand[] };
  const file = script.source_filename.replace(/^.*\//, '');
  const res: FileResult = {
    file, modules: 0, checked: 0, skipped: {}, differences: [], unexpected: [], safepointCalls: 0,
    checksKept: 0, checksDropped: 0, unpruned: [],
  };
  const rewrite: Rewrite = custom ?? ((bytes) => rewriteWithSafepoints(bytes, (done) => {
    res.checksKept += done.checks;
    res.checksDropped += done.dropped;
    if (done.fallback !== undefined) res.unpruned.push(`${file}: ${done.fallback}`);
  }));
  const skip = (why: string) => { res.skipped[why] = (res.skipped[why] ?? 0) + 1; };
  const differ = (line: number, what: string) => res.differences.push({ file, line, what });
  const bad = (line: number, what: string) => res.unexpected.push({ file, line, what });
  const realms = { original: new Realm('original'), rewritten: new Realm('rewritten') };
  // After a module the worlds could not both load, its commands are not comparable.
  let usable = true;

  for (const cmd of script.commands) {
    switch (cmd.type) {
      case 'module': {
        res.modules++;
        const bytes = new Uint8Array(readFileSync(join(dir, cmd.filename!)));
        let rewritten: Uint8Array;
        try {
          rewritten = await rewrite(bytes);
        } catch (err) {
          // A module V8 itself refuses is not a case for the rewriter.
          if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) { skip('module the engine does not support'); usable = false; break; }
          differ(cmd.line, `the rewriter failed: ${describe(err)}`);
          usable = false;
          break;
        }
        const a = realms.original.instantiate(bytes);
        const b = realms.rewritten.instantiate(rewritten);
        if (!a.ok && /CompileError/.test(a.error)) { skip('module the engine does not support'); usable = false; break; }
        if (!sameOutcome(a, b)) differ(cmd.line, `instantiation differs: original ${a.ok ? 'ok' : a.error}, rewritten ${b.ok ? 'ok' : b.error}`);
        else if (!a.ok) bad(cmd.line, `module failed to instantiate both ways: ${a.error}`);
        usable = a.ok && b.ok;
        realms.original.current = a.instance;
        realms.rewritten.current = b.instance;
        if (cmd.name && a.instance && b.instance) {
          realms.original.named.set(cmd.name, a.instance);
          realms.rewritten.named.set(cmd.name, b.instance);
        }
        if (usable) res.checked++;
        break;
      }
      case 'register': {
        for (const r of [realms.original, realms.rewritten]) {
          const inst = cmd.name ? r.named.get(cmd.name) : r.current;
          if (inst) r.registry.set(cmd.as!, inst.exports as Record<string, unknown>);
        }
        break;
      }
      case 'assert_return':
      case 'action':
      case 'assert_trap':
      case 'assert_exhaustion': {
        if (!usable) { skip('command of a module that did not load'); break; }
        const action = cmd.action!;
        if (hasV128(action.args) || hasV128(cmd.expected)) { skip('v128 value (not passable through the JS API)'); break; }
        const a = realms.original.run(action);
        const b = realms.rewritten.run(action);
        res.checked++;
        if (!sameOutcome(a, b)) {
          differ(cmd.line, `${action.field}: original ${JSON.stringify(a, big)} vs rewritten ${JSON.stringify(b, big)}`);
          break;
        }
        if (cmd.type === 'assert_return') {
          const exp = cmd.expected ?? [];
          if (!a.ok) bad(cmd.line, `${action.field}: expected a return, both ${a.error}`);
          else if (a.values.length !== exp.length || !exp.every((e, i) => matches(e, a.values[i]))) {
            bad(cmd.line, `${action.field}: both returned ${JSON.stringify(a.values, big)}, expected ${JSON.stringify(exp)}`);
          }
        } else if (cmd.type === 'assert_trap') {
          if (a.ok || !/RuntimeError/.test(a.error)) bad(cmd.line, `${action.field}: expected trap "${cmd.text}", both gave ${a.ok ? 'a value' : a.error}`);
        } else if (cmd.type === 'assert_exhaustion') {
          if (a.ok || !/RangeError|RuntimeError/.test(a.error)) bad(cmd.line, `${action.field}: expected stack exhaustion, both gave ${a.ok ? 'a value' : a.error}`);
        }
        break;
      }
      case 'assert_uninstantiable':
      case 'assert_unlinkable': {
        const bytes = new Uint8Array(readFileSync(join(dir, cmd.filename!)));
        if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) { skip('module the engine does not support'); break; }
        let rewritten: Uint8Array;
        try {
          rewritten = await rewrite(bytes);
        } catch (err) {
          differ(cmd.line, `the rewriter failed: ${describe(err)}`);
          break;
        }
        res.modules++;
        const a = realms.original.instantiate(bytes);
        const b = realms.rewritten.instantiate(rewritten);
        res.checked++;
        if (!sameOutcome(a, b)) differ(cmd.line, `${cmd.type}: original ${a.ok ? 'instantiated' : a.error}, rewritten ${b.ok ? 'instantiated' : b.error}`);
        else if (a.ok) bad(cmd.line, `${cmd.type}: both instantiated`);
        break;
      }
      case 'assert_invalid':
      case 'assert_malformed':
        // Validation-only commands: no code runs, so nothing to compare.
        skip('validation-only command (assert_invalid/assert_malformed)');
        break;
      default:
        skip(`command ${cmd.type}`);
    }
  }
  res.safepointCalls = realms.rewritten.safepointCalls;
  return res;
}

function big(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : typeof v === 'number' && Number.isNaN(v) ? 'NaN' : v;
}

/** Run the whole converted corpus in `dir` (made by scripts/fetch-spec-corpus.sh). */
export async function runCorpus(dir: string, onFile?: (r: FileResult) => void): Promise<CorpusResult> {
  const meta = JSON.parse(readFileSync(join(dir, 'corpus.json'), 'utf8')) as { source: string; files: number; converted: number };
  const jsonDir = join(dir, 'json');
  const out: CorpusResult = {
    source: meta.source, scripts: meta.files, converted: meta.converted, notConverted: meta.files - meta.converted,
    modules: 0, rewritten: 0, checked: 0, skipped: {}, differences: [], unexpected: [], safepointCalls: 0,
    checksKept: 0, checksDropped: 0, unpruned: [], files: [],
  };
  for (const name of readdirSync(jsonDir).filter((f) => f.endsWith('.json')).sort()) {
    const r = await runScript(join(jsonDir, name), jsonDir);
    out.files.push(r);
    out.modules += r.modules;
    out.checked += r.checked;
    out.safepointCalls += r.safepointCalls;
    out.checksKept += r.checksKept;
    out.checksDropped += r.checksDropped;
    out.unpruned.push(...r.unpruned);
    out.differences.push(...r.differences);
    out.unexpected.push(...r.unexpected);
    for (const [k, n] of Object.entries(r.skipped)) out.skipped[k] = (out.skipped[k] ?? 0) + n;
    onFile?.(r);
  }
  out.rewritten = out.modules - (out.skipped['module the engine does not support'] ?? 0);
  return out;
}
