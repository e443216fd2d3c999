/**
 * Domain config files in the syntax of Xen's `xl.cfg`:
 *
 *     # a comment
 *     name    = "web-${vmid}"
 *     kernel  = "hello.wasm"          # the guest image, relative to this file
 *     memory  = 64                    # MiB
 *     disk    = [ 'file:/srv/root-${vmid}.img,xvda,w' ]
 *     require = [ "vmid" ]            # -D vmid=... must be given
 *
 * Values are strings (single or double quotes; `\\`, `\"`, `\'`, `\n`,
 * `\t` escapes), numbers (decimal or 0x hex) and lists of those in square
 * brackets (which may span lines and end with a comma). `KEY += [ ... ]`
 * appends to a list. A statement ends at the end of its line or at `;`.
 * `${var}` in a string is replaced by the value given with
 * `-D var=value`; `${var:-default}` falls back to a default; a variable that
 * is neither given nor defaulted is an error naming it. Every error names
 * the file, line and column.
 */
import { WvError } from '../../kernel/errors.ts';

export type CfgValue = string | number | CfgValue[];

/** A config file could not be read, parsed or understood. */
export class ConfigError extends WvError {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  constructor(file: string, line: number, column: number, detail: string) {
    super('WV_ERR_CONFIG', `${file}:${line}:${column}: ${detail}`);
    this.file = file;
    this.line = line;
    this.column = column;
  }
}

export interface CfgEntry { value: CfgValue; line: number; column: number }

/** A parsed file: each key's value, where it was set, with variables substituted. */
export interface ParsedConfig {
  file: string;
  entries: Map<string, CfgEntry>;
}

interface Tok { kind: 'id' | 'str' | 'num' | 'punct' | 'nl' | 'eof'; text: string; value?: string | number; line: number; column: number }

function lex(src: string, file: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  let line = 1;
  let col = 1;
  const err = (msg: string): never => { throw new ConfigError(file, line, col, msg); };
  const adv = (n = 1): void => {
    for (let k = 0; k < n; k++) {
      if (src[i] === '\n') { line++; col = 1; } else col++;
      i++;
    }
  };
  while (i < src.length) {
    const c = src[i]!;
    if (c === '#') { while (i < src.length && src[i] !== '\n') adv(); continue; }
    if (c === '\n' || c === ';') { toks.push({ kind: 'nl', text: c, line, column: col }); adv(); continue; }
    if (c === ' ' || c === '\t' || c === '\r') { adv(); continue; }
    const at = { line, column: col };
    if (/[A-Za-z_]/.test(c)) {
      let j = i;
      while (j < src.length && /[A-Za-z0-9_]/.test(src[j]!)) j++;
      toks.push({ kind: 'id', text: src.slice(i, j), ...at });
      adv(j - i);
      continue;
    }
    if (/[0-9]/.test(c) || (c === '-' && /[0-9]/.test(src[i + 1] ?? ''))) {
      let j = i + 1;
      while (j < src.length && /[0-9A-Za-z_.]/.test(src[j]!)) j++;
      const text = src.slice(i, j);
      const n = /^-?0x[0-9a-fA-F]+$/.test(text) ? Number.parseInt(text, 16) : /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
      if (Number.isNaN(n)) err(`"${text}" is not a number`);
      toks.push({ kind: 'num', text, value: n, ...at });
      adv(j - i);
      continue;
    }
    if (c === '"' || c === "'") {
      let out = '';
      adv();
      for (;;) {
        if (i >= src.length || src[i] === '\n') throw new ConfigError(file, at.line, at.column, 'a string is not closed on its line');
        const d = src[i]!;
        if (d === c) { adv(); break; }
        if (d === '\\') {
          const e = src[i + 1];
          const map: Record<string, string> = { n: '\n', t: '\t', '\\': '\\', '"': '"', "'": "'" };
          if (e === undefined || map[e] === undefined) err(`unknown escape "\\${e ?? ''}" in a string`);
          out += map[e!];
          adv(2);
          continue;
        }
        out += d;
        adv();
      }
      toks.push({ kind: 'str', text: out, value: out, ...at });
      continue;
    }
    if (c === '+' && src[i + 1] === '=') { toks.push({ kind: 'punct', text: '+=', ...at }); adv(2); continue; }
    if ('=[],'.includes(c)) { toks.push({ kind: 'punct', text: c, ...at }); adv(); continue; }
    err(`unexpected character "${c}"`);
  }
  toks.push({ kind: 'eof', text: '', line, column: col });
  return toks;
}

/** Replace `${var}` and `${var:-default}` in `s` (a string that started at line:column). */
function substitute(s: string, vars: ReadonlyMap<string, string>, file: string, line: number, column: number): string {
  return s.replace(/\$\{([^}]*)\}/g, (_m, body: string) => {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s.exec(body);
    if (!m) throw new ConfigError(file, line, column, `"\${${body}}" is not a variable reference (use \${name} or \${name:-default})`);
    const v = vars.get(m[1]!);
    if (v !== undefined) return v;
    if (m[2] !== undefined) return m[2];
    throw new ConfigError(file, line, column, `variable "${m[1]}" is not set: give it with -D ${m[1]}=VALUE`);
  });
}

/** Parse config text. `vars` are the `-D` variables. */
export function parseConfig(src: string, file: string, vars: ReadonlyMap<string, string> = new Map()): ParsedConfig {
  const toks = lex(src, file);
  let p = 0;
  const peek = (): Tok => toks[p]!;
  const next = (): Tok => toks[p++]!;
  const fail = (t: Tok, msg: string): never => { throw new ConfigError(file, t.line, t.column, msg); };
  const skipNl = (): void => { while (peek().kind === 'nl') p++; };
  const entries = new Map<string, CfgEntry>();
  // Variables are substituted after parsing so that `require` can be checked first.
  const raw: Array<{ key: string; op: string; value: CfgValue; tok: Tok; strings: Array<{ tok: Tok; path: number[] }> }> = [];

  function value(strings: Array<{ tok: Tok; path: number[] }>, path: number[]): CfgValue {
    const t = next();
    if (t.kind === 'str') { strings.push({ tok: t, path }); return t.value as string; }
    if (t.kind === 'num') return t.value as number;
    if (t.kind === 'punct' && t.text === '[') {
      const list: CfgValue[] = [];
      for (;;) {
        skipNl();
        if (peek().kind === 'punct' && peek().text === ']') { next(); return list; }
        list.push(value(strings, [...path, list.length]));
        skipNl();
        const sep = next();
        if (sep.kind === 'punct' && sep.text === ']') return list;
        if (!(sep.kind === 'punct' && sep.text === ',')) fail(sep, `expected "," or "]" in a list, found ${describe(sep)}`);
      }
    }
    return fail(t, `expected a value (a "string", a number or a [list]), found ${describe(t)}`);
  }

  for (;;) {
    skipNl();
    const key = next();
    if (key.kind === 'eof') break;
    if (key.kind !== 'id') fail(key, `expected a setting name, found ${describe(key)}`);
    const op = next();
    if (!(op.kind === 'punct' && (op.text === '=' || op.text === '+='))) fail(op, `expected "=" after "${key.text}", found ${describe(op)}`);
    const strings: Array<{ tok: Tok; path: number[] }> = [];
    const v = value(strings, []);
    const end = peek();
    if (end.kind !== 'nl' && end.kind !== 'eof') fail(end, `expected the end of the line after the value of "${key.text}", found ${describe(end)}`);
    raw.push({ key: key.text, op: op.text, value: v, tok: key, strings });
  }

  // Declared required variables.
  const req = raw.find((r) => r.key === 'require');
  if (req) {
    const names = Array.isArray(req.value) ? req.value : [req.value];
    for (const n of names) {
      if (typeof n !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(n)) fail(req.tok, '"require" must be a list of variable names');
      if (!vars.has(n as string)) fail(req.tok, `this config requires variable "${n}": give it with -D ${n}=VALUE`);
    }
  }

  for (const r of raw) {
    let v = r.value;
    const sub = (s: string, tok: Tok): string => substitute(s, vars, file, tok.line, tok.column);
    if (typeof v === 'string') v = sub(v, r.strings[0]!.tok);
    else if (Array.isArray(v)) {
      const walk = (x: CfgValue, path: number[]): CfgValue => {
        if (typeof x === 'string') return sub(x, r.strings.find((s) => s.path.join() === path.join())?.tok ?? r.tok);
        if (Array.isArray(x)) return x.map((y, k) => walk(y, [...path, k]));
        return x;
      };
      v = walk(v, []);
    }
    const prev = entries.get(r.key);
    if (r.op === '+=') {
      if (prev && !Array.isArray(prev.value)) fail(r.tok, `"${r.key}" is not a list; "+=" appends to lists`);
      const add = Array.isArray(v) ? v : [v];
      entries.set(r.key, { value: [...((prev?.value as CfgValue[] | undefined) ?? []), ...add], line: r.tok.line, column: r.tok.column });
    } else {
      entries.set(r.key, { value: v, line: r.tok.line, column: r.tok.column });
    }
  }
  return { file, entries };
}

function describe(t: Tok): string {
  if (t.kind === 'eof') return 'the end of the file';
  if (t.kind === 'nl') return t.text === ';' ? '";"' : 'the end of the line';
  if (t.kind === 'str') return `the string "${t.text}"`;
  return `"${t.text}"`;
}
