import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WvError } from '../../kernel/errors.ts';
import { VERSION as WASMVISOR_VERSION } from '../toolstack/controller.ts';
import {
  NotASaveFileError, SAVE_CHUNK_BYTES, SAVE_FORMAT_VERSION, SAVE_MAGIC, SaveCorruptError, SaveIoError, SaveReader, SaveTruncatedError,
  SaveVersionError, SaveWriter, SECTION_KINDS, type SaveCodec, type SectionKind,
} from './format.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4096;

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'wv-save-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Deterministic bytes (xorshift), so failures reproduce. */
function pseudoRandom(n: number, seed: number): Buffer {
  const b = Buffer.alloc(Math.ceil(n / 4) * 4);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < b.length; i += 4) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    b.writeUInt32LE(s, i);
  }
  return b.subarray(0, n);
}

/**
 * A guest memory as save sees it: mostly zero pages, some random pages, some
 * text, one page that is zero except its last byte (a zero check must look at
 * every byte). Lives in a SharedArrayBuffer, as guest memories do.
 */
function guestMemory(bytes: number): Uint8Array {
  const mem = new Uint8Array(new SharedArrayBuffer(bytes));
  const pages = bytes / PAGE;
  for (let p = 0; p < pages; p++) {
    if (p % 16 === 1) mem.set(pseudoRandom(PAGE, p + 1), p * PAGE);
    else if (p % 16 === 5) mem.set(Buffer.from(`page ${p}: the ticker counted to ${p * 3}\n`.repeat(80).slice(0, PAGE)), p * PAGE);
  }
  mem[7 * PAGE + PAGE - 1] = 0x5a;
  return mem;
}

/** One section of each kind with distinctive content (binary, JSON, text with zero runs, odd lengths). */
function sampleSections(): Record<SectionKind, Buffer> {
  return {
    domain: Buffer.from(JSON.stringify({ name: 'ticker', config: { memory: 64, vcpus: 1 }, memoryBytes: 4 * MiB, sched: { weight: 256, warp: 0 } })),
    memory: Buffer.from(guestMemory(4 * MiB)),
    globals: Buffer.from([0x7f, 0, 0, 0, 1, 2, 3, 4, 0xff, 0xfe]),
    evtchn: Buffer.from(JSON.stringify([{ port: 1, state: 'interdomain', remote: { dom: 0, port: 5 }, pending: true, masked: false }])),
    grants: Buffer.concat([Buffer.alloc(PAGE * 2), pseudoRandom(PAGE + 13, 3)]),
    timers: Buffer.from(JSON.stringify([{ deadlineNs: '123456789012', periodic: false }])),
    devices: Buffer.from(JSON.stringify({ vbd: [{ dev: 'xvda', target: 'file:disk.img', mode: 'w' }], vif: [{ ip: '169.254.1.1' }] })),
    console: Buffer.concat([Buffer.from('wasmvisor ticker: 1\n'.repeat(300)), Buffer.alloc(5000), Buffer.from('tail\n')]),
    image: Buffer.concat([Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]), pseudoRandom(3000, 9)]),
    stack: Buffer.from([1, 0, 0, 0, 2, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]),
  };
}

async function writeSave(path: string, sections: Partial<Record<SectionKind, Uint8Array>>, opts: Parameters<typeof SaveWriter.create>[1] = {}) {
  const w = await SaveWriter.create(path, opts);
  for (const [k, v] of Object.entries(sections)) await w.addSection(k as SectionKind, v);
  return w.commit();
}

async function rejection(p: Promise<unknown>): Promise<WvError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof WvError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** Opens (fully validating) and closes; the error if any. */
async function openError(path: string): Promise<WvError | undefined> {
  try {
    const r = await SaveReader.open(path);
    await r.close();
    return undefined;
  } catch (err) {
    if (err instanceof WvError) return err;
    throw err;
  }
}

t.test('every section kind round-trips with exact bytes; header fields come back', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'ticker.save');
  const data = sampleSections();
  const created = new Date('2026-11-25T12:34:56.789Z');
  const summary = await writeSave(path, data, { createdAt: created, checkpoint: true });
  t.equal(summary.path, path);
  t.equal(summary.bytes, statSync(path).size, 'the summary gives the file size');
  t.equal(summary.rawBytes, Object.values(data).reduce((n, b) => n + b.length, 0));
  t.equal(statSync(path).mode & 0o777, 0o600, 'the save is readable by its owner only');
  t.same(readdirSync(dir), ['ticker.save'], 'no temporary file remains');
  t.same([...readFileSync(path).subarray(0, 8)], [...SAVE_MAGIC]);

  const r = await SaveReader.open(path);
  t.teardown(() => r.close());
  t.same(r.header, { formatVersion: SAVE_FORMAT_VERSION, wasmvisorVersion: WASMVISOR_VERSION, createdAt: created, checkpoint: true, flags: 1 });
  t.equal(r.sha256, summary.sha256);
  t.equal(r.fileLength, summary.bytes);
  t.same(r.sections.map((s) => s.kind), Object.keys(SECTION_KINDS), 'sections in the order written');
  t.same(r.sections.map((s) => s.id), Object.values(SECTION_KINDS));
  t.same(r.skipped, []);
  for (const [k, v] of Object.entries(data)) {
    const back = await r.read(k as SectionKind);
    t.ok(back.equals(v), `${k}: ${v.length} bytes identical`);
    t.equal(r.section(k as SectionKind)!.rawLength, v.length);
  }
  t.same(await r.readJson('domain'), JSON.parse(data.domain.toString()), 'JSON sections parse');
  const pieces: number[] = [];
  for await (const p of r.stream('memory')) pieces.push(p.length);
  t.same(pieces, [MiB, MiB, MiB, MiB], 'memory streams in 1 MiB pieces');
  t.equal(r.section('memory')!.chunkCount, 4);
});

t.test('a 64 MiB memory of zero and random pages: exact bytes, file much smaller than the memory', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'big.save');
  const mem = guestMemory(64 * MiB);
  // Random pages are 1/16 of the memory and do not compress; text pages are another 1/16 and do.
  const w = await SaveWriter.create(path);
  await w.addJson('domain', { name: 'big', memoryBytes: mem.byteLength });
  // Pieces of an odd size, so chunks straddle them.
  async function* pieces(): AsyncGenerator<Uint8Array> {
    for (let o = 0; o < mem.byteLength; o += 300 * KiB + 8) yield mem.subarray(o, Math.min(o + 300 * KiB + 8, mem.byteLength));
  }
  await w.addSection('memory', pieces(), { length: mem.byteLength });
  const s = await w.commit();
  t.ok(s.bytes < mem.byteLength / 10, `file ${s.bytes} bytes for a ${mem.byteLength}-byte memory`);
  t.ok(s.bytes > mem.byteLength / 16, 'the random pages are all there (they do not compress)');

  const r = await SaveReader.open(path);
  t.teardown(() => r.close());
  const back = await r.read('memory');
  t.equal(back.length, mem.byteLength);
  t.ok(back.equals(mem), 'every byte identical, the lone byte in a zero page included');
  t.equal(back[7 * PAGE + PAGE - 1], 0x5a);

  // An all-zero 64 MiB memory costs almost nothing.
  const zpath = join(dir, 'zero.save');
  const z = await writeSave(zpath, { memory: new Uint8Array(64 * MiB) });
  t.ok(z.bytes < 8 * KiB, `all-zero 64 MiB memory: ${z.bytes} bytes`);
  const zr = await SaveReader.open(zpath);
  t.teardown(() => zr.close());
  const zb = await zr.read('memory');
  t.equal(zb.length, 64 * MiB);
  t.ok(zb.equals(Buffer.alloc(64 * MiB)));
});

t.test('readInto decodes straight into a memory: fresh or dirty, with progress', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'm.save');
  const mem = guestMemory(3 * MiB + 5 * PAGE);
  await writeSave(path, { memory: mem });
  const r = await SaveReader.open(path);
  t.teardown(() => r.close());
  const fresh = new Uint8Array(new SharedArrayBuffer(mem.byteLength));
  const seen: number[] = [];
  t.equal(await r.readInto('memory', fresh, { zeroed: true, onProgress: (d, tot) => { t.equal(tot, mem.byteLength); seen.push(d); } }), mem.byteLength);
  t.ok(Buffer.from(fresh).equals(mem), 'a fresh memory gets every byte');
  t.same(seen, [MiB, 2 * MiB, 3 * MiB, mem.byteLength], 'progress per chunk, reaching the total');
  const dirty = new Uint8Array(mem.byteLength + PAGE).fill(0xee);
  await r.readInto('memory', dirty);
  t.ok(Buffer.from(dirty.subarray(0, mem.byteLength)).equals(mem), 'a dirty memory has its zero pages cleared');
  t.ok(dirty.subarray(mem.byteLength).every((b) => b === 0xee), 'bytes past the section are left alone');
  await t.rejects(r.readInto('memory', new Uint8Array(mem.byteLength - 1)), { code: 'WV_ERR_INVALID_ARGUMENT', message: /holds 3166208 bytes, the target has room for 3166207/ });
  await t.rejects(r.read('timers'), { code: 'WV_ERR_INVALID_ARGUMENT', message: /has no timers section/ });
});

t.test('every codec round-trips', async (t) => {
  const dir = tmp(t);
  const data = { memory: Buffer.from(guestMemory(2 * MiB)), console: Buffer.from('hello\n'.repeat(1000)) };
  for (const codec of ['zstd', 'deflate', 'brotli', 'none'] as SaveCodec[]) {
    const path = join(dir, `${codec}.save`);
    const s = await writeSave(path, data, { codec });
    const r = await SaveReader.open(path);
    t.ok((await r.read('memory')).equals(data.memory), `${codec}: memory`);
    t.ok((await r.read('console')).equals(data.console), `${codec}: console`);
    await r.close();
    if (codec === 'none') t.ok(s.bytes > 2 * MiB / 8, 'none stores non-zero pages as they are');
    else t.ok(s.bytes < 2 * MiB / 8, `${codec} compresses (${s.bytes} bytes)`);
  }
  await t.rejects(SaveWriter.create(join(dir, 'x.save'), { codec: 'lz4' as SaveCodec }), { code: 'WV_ERR_INVALID_ARGUMENT' });
});

t.test('empty sections and a file with no sections', async (t) => {
  const dir = tmp(t);
  const p1 = join(dir, 'none.save');
  await writeSave(p1, {});
  const r1 = await SaveReader.open(p1);
  t.same(r1.sections, []);
  await r1.close();
  const p2 = join(dir, 'empty.save');
  const seen: [number, number | undefined][] = [];
  const w = await SaveWriter.create(p2);
  await w.addSection('console', new Uint8Array(0), { onProgress: (d, tot) => seen.push([d, tot]) });
  await w.commit();
  t.same(seen, [[0, 0]], 'an empty section still reports progress once');
  const r2 = await SaveReader.open(p2);
  t.equal((await r2.read('console')).length, 0);
  t.equal(r2.section('console')!.chunkCount, 0);
  await r2.close();
});

t.test('truncated at every offset of a small save, and many of a large one: each rejected saying where it ends', async (t) => {
  const dir = tmp(t);
  const good = join(dir, 'good.save');
  await writeSave(good, { domain: Buffer.from('{"name":"t"}'), globals: Buffer.from([1, 2, 3]), console: Buffer.from('hi\n'.repeat(2000)) });
  const bytes = readFileSync(good);
  const cut = join(dir, 'cut.save');
  const seen = new Map<string, number>();
  for (let n = 0; n < bytes.length; n++) {
    writeFileSync(cut, bytes.subarray(0, n));
    const err = await openError(cut);
    if (n === 0) {
      t.ok(err instanceof NotASaveFileError, 'an empty file is not a save file');
      t.match(err?.message, 'the file is empty');
      continue;
    }
    if (!(err instanceof SaveTruncatedError) || err.fileLength !== n || !err.message.includes(`it ends at byte ${n},`)) {
      t.fail(`cut at ${n}: ${err?.code} ${err?.message}`);
      continue;
    }
    const where = err.message.replace(/^.*ends at byte \d+, /, '').replace(/\d+/g, 'N');
    seen.set(where, (seen.get(where) ?? 0) + 1);
  }
  t.pass(`${bytes.length - 1} cuts rejected as truncated`);
  const places = [...seen.keys()].join('\n');
  t.match(places, 'inside the N-byte file header');
  t.match(places, 'inside the header of section N');
  t.match(places, 'inside section domain (section N, from byte N), at chunk N');
  t.match(places, 'inside the end record of section console');
  t.match(places, 'after section console, where a section or the trailer should start (the trailer is missing)');
  t.match(places, 'inside the trailer');

  // A large save: the cuts land in compressed and stored memory chunks.
  const big = join(dir, 'big.save');
  await writeSave(big, { domain: Buffer.from('{}'), memory: guestMemory(8 * MiB) });
  const size = statSync(big).size;
  const whole = readFileSync(big);
  for (let i = 1; i <= 40; i++) {
    const n = Math.floor((size * i) / 41) + i;
    writeFileSync(cut, whole.subarray(0, n));
    const err = await openError(cut);
    t.ok(err instanceof SaveTruncatedError && err.fileLength === n, `cut at ${n} of ${size}: ${err?.message}`);
  }
});

t.test('a byte flipped anywhere in a small save is rejected; in each section, the error names it', async (t) => {
  const dir = tmp(t);
  const good = join(dir, 'good.save');
  await writeSave(good, { domain: Buffer.from('{"name":"t"}'), globals: Buffer.from([1, 2, 3]), console: Buffer.from('hi\n'.repeat(100)) });
  const bytes = readFileSync(good);
  const bad = join(dir, 'bad.save');
  const codes = new Map<string, number>();
  for (let i = 0; i < bytes.length; i++) {
    const b = Buffer.from(bytes);
    b[i]! ^= 0x10;
    writeFileSync(bad, b);
    const err = await openError(bad);
    const want = i < 8 ? 'WV_ERR_SAVE_NOT_A_SAVE' : i < 10 ? 'WV_ERR_SAVE_VERSION' : 'WV_ERR_SAVE_CORRUPT';
    if (err?.code !== want) t.fail(`flip at ${i}: ${err?.code} ${err?.message}`);
    codes.set(want, (codes.get(want) ?? 0) + 1);
  }
  t.same(Object.fromEntries(codes), { WV_ERR_SAVE_NOT_A_SAVE: 8, WV_ERR_SAVE_VERSION: 2, WV_ERR_SAVE_CORRUPT: bytes.length - 10 }, 'all flips rejected');

  // One flip in the middle of each section of a full save.
  const full = join(dir, 'full.save');
  const data = sampleSections();
  await writeSave(full, data);
  const r = await SaveReader.open(full);
  const infos = r.sections;
  await r.close();
  const fbytes = readFileSync(full);
  for (const s of infos) {
    const b = Buffer.from(fbytes);
    const at = s.offset + Math.floor(s.storedLength / 2);
    b[at]! ^= 0x01;
    writeFileSync(bad, b);
    const err = await openError(bad);
    t.ok(err instanceof SaveCorruptError, `${s.kind}: rejected as corrupt`);
    t.equal((err as SaveCorruptError).section, `section ${s.kind}`, `${s.kind}: named (${err?.message})`);
    t.match(err?.message, `save file ${bad} is corrupt in section ${s.kind} at byte`);
  }
  // The trailer's whole-file hash: change a byte the section checks cannot see? There is none; change the stored hash instead.
  const b = Buffer.from(fbytes);
  b[b.length - 40]! ^= 0x01;
  writeFileSync(bad, b);
  t.match(await openError(bad), { code: 'WV_ERR_SAVE_CORRUPT', section: 'trailer' });
  // Bytes appended after the trailer.
  writeFileSync(bad, Buffer.concat([fbytes, Buffer.from('junk')]));
  t.match(await openError(bad), { code: 'WV_ERR_SAVE_CORRUPT', section: 'trailer', message: /4 stray bytes follow the trailer/ });
});

t.test('seeded random damage (several bytes changed, inserted or removed) is always rejected with a save error', async (t) => {
  const dir = tmp(t);
  const good = join(dir, 'good.save');
  const data = sampleSections();
  await writeSave(good, { ...data, memory: data.memory.subarray(0, 256 * KiB) });
  const bytes = readFileSync(good);
  const bad = join(dir, 'bad.save');
  const rnd = pseudoRandom(4 * 400 * 8, 42);
  let k = 0;
  const next = (n: number): number => rnd.readUInt32LE((k++ % (rnd.length / 4)) * 4) % n;
  const codes = new Set<string>();
  for (let i = 0; i < 400; i++) {
    let b = Buffer.from(bytes);
    const at = next(b.length);
    switch (i % 3) {
      case 0: for (let j = 0; j < 1 + next(4); j++) b[(at + j * 977) % b.length]! ^= 1 + next(255); break;
      case 1: b = Buffer.concat([b.subarray(0, at), Buffer.from([next(256)]), b.subarray(at)]); break;
      case 2: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + next(8))]); break;
    }
    writeFileSync(bad, b);
    const err = await openError(bad);
    if (!err || !/^WV_ERR_SAVE_(CORRUPT|TRUNCATED|VERSION|NOT_A_SAVE)$/.test(err.code)) t.fail(`damage ${i} at ${at}: ${err?.code ?? 'accepted'} ${err?.message ?? ''}`);
    else codes.add(err.code);
  }
  t.ok(codes.has('WV_ERR_SAVE_CORRUPT'), `400 damaged files rejected (${[...codes].sort().join(', ')})`);
});

t.test('a file that changes after it was opened fails while streaming, naming the section', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'x.save');
  await writeSave(path, { memory: pseudoRandom(3 * MiB, 9) });
  const r = await SaveReader.open(path);
  t.teardown(() => r.close());
  const b = readFileSync(path);
  b[r.section('memory')!.offset + 2 * MiB]! ^= 1;
  writeFileSync(path, b);
  await t.rejects(r.read('memory'), { code: 'WV_ERR_SAVE_CORRUPT', section: 'section memory', message: /fails its checksum \(the file changed after it was opened\)/ });
});

t.test('foreign files are not save files, and say so', async (t) => {
  const dir = tmp(t);
  const png = join(dir, 'image.png');
  writeFileSync(png, Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('\0\0\0\rIHDR'), Buffer.alloc(100)]));
  const e1 = await openError(png);
  t.ok(e1 instanceof NotASaveFileError);
  t.equal(e1?.message, `${png} is not a wasmvisor save file: it starts with 89 50 4e 47 0d 0a 1a 0a, not the save file magic 89 57 56 53 41 56 45 0a ("\\x89WVSAVE\\n")`);
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  t.match(await openError(empty), { code: 'WV_ERR_SAVE_NOT_A_SAVE', message: `${empty} is not a wasmvisor save file: the file is empty` });
  const noise = join(dir, 'noise');
  for (let seed = 1; seed <= 20; seed++) {
    writeFileSync(noise, pseudoRandom(4096, seed));
    t.match(await openError(noise), { code: 'WV_ERR_SAVE_NOT_A_SAVE' }, `random bytes, seed ${seed}`);
  }
  const text = join(dir, 'domain.cfg');
  writeFileSync(text, 'name = "web"\nmemory = 64\n');
  t.match(await openError(text), { code: 'WV_ERR_SAVE_NOT_A_SAVE', message: /starts with 6e 61 6d 65/ });
  const missing = join(dir, 'missing.save');
  const e2 = await openError(missing);
  t.ok(e2 instanceof SaveIoError);
  t.match(e2, { code: 'WV_ERR_SAVE_IO', errno: 'ENOENT', operation: 'open', message: `save file ${missing}: open failed: ENOENT` });
  t.match(await openError(dir), { code: 'WV_ERR_SAVE_IO', errno: 'EISDIR' }, 'a directory');
});

t.test('versions: a newer major is rejected naming both versions; a newer minor is read; unknown sections and flags', async (t) => {
  const dir = tmp(t);
  const newer = join(dir, 'newer.save');
  await writeSave(newer, { domain: Buffer.from('{}') }, { formatVersion: { major: 2, minor: 3 }, wasmvisorVersion: '7.1.0' });
  const e = await openError(newer);
  t.ok(e instanceof SaveVersionError);
  t.equal(e?.message, `save file ${newer} cannot be read by this wasmvisor: it is save format 2.3 (written by wasmvisor 7.1.0); this wasmvisor ${WASMVISOR_VERSION} reads save format 1.x (it writes 1.0)`);

  const minor = join(dir, 'minor.save');
  await writeSave(minor, { domain: Buffer.from('{"a":1}') }, { formatVersion: { major: 1, minor: 9 }, wasmvisorVersion: '0.9.0' });
  const r = await SaveReader.open(minor);
  t.same(r.header.formatVersion, { major: 1, minor: 9 });
  t.equal(r.header.wasmvisorVersion, '0.9.0');
  t.same(await r.readJson('domain'), { a: 1 });
  await r.close();

  // A kind from the future: skipped when optional, rejected when required.
  const opt = join(dir, 'optional.save');
  const w = await SaveWriter.create(opt);
  await w.addSection('domain', Buffer.from('{}'));
  await w.addSection(901, Buffer.from('future stuff'), { optional: true });
  await w.addSection('console', Buffer.from('after'));
  await w.commit();
  const r2 = await SaveReader.open(opt);
  t.same(r2.sections.map((s) => s.kind), ['domain', 'console']);
  t.match(r2.skipped, [{ kind: 'kind 901', id: 901, optional: true, index: 1, rawLength: 12 }]);
  t.equal((await r2.read('console')).toString(), 'after', 'sections after a skipped one are read');
  await r2.close();

  const req = join(dir, 'required.save');
  const w2 = await SaveWriter.create(req);
  await w2.addSection(902, Buffer.from('needed'));
  await w2.commit();
  t.match(await openError(req), { code: 'WV_ERR_SAVE_VERSION', message: /section 0 is of kind 902, unknown to this wasmvisor .* and required \(not marked optional\)/ });

  // A header flag in the must-understand half (bits 16-31): patch one in and fix the header checksum.
  const flags = join(dir, 'flags.save');
  await writeSave(flags, {});
  const b = readFileSync(flags);
  b.writeUInt32LE(1 << 20, 12);
  const zlib = await import('node:zlib');
  b.writeUInt32LE(zlib.crc32(b.subarray(0, 60)), 60);
  writeFileSync(flags, b);
  t.match(await openError(flags), { code: 'WV_ERR_SAVE_VERSION', message: /requires features \(header flags 0x100000\)/ });
});

t.test('progress: monotone, one call per chunk, reaching the total', async (t) => {
  const dir = tmp(t);
  const mem = guestMemory(5 * MiB + 3 * PAGE);
  const calls: [number, number | undefined][] = [];
  const w = await SaveWriter.create(join(dir, 'p.save'), { parallelism: 3 });
  await w.addSection('memory', mem, { onProgress: (d, tot) => calls.push([d, tot]) });
  const it: [number, number | undefined][] = [];
  async function* gen(): AsyncGenerator<Uint8Array> { yield mem.subarray(0, 100); yield mem.subarray(100); }
  await w.addSection('grants', gen(), { length: mem.byteLength, onProgress: (d, tot) => it.push([d, tot]) });
  const noLen: [number, number | undefined][] = [];
  await w.addSection('console', gen(), { onProgress: (d, tot) => noLen.push([d, tot]) });
  await w.commit();
  t.equal(calls.length, Math.ceil(mem.byteLength / SAVE_CHUNK_BYTES), 'one call per chunk');
  for (const seq of [calls, it, noLen]) {
    for (let i = 1; i < seq.length; i++) t.ok(seq[i]![0] > seq[i - 1]![0], 'done grows');
  }
  t.same(calls.at(-1), [mem.byteLength, mem.byteLength], 'the last call reaches the total');
  t.same(calls.map((c) => c[1]), calls.map(() => mem.byteLength), 'the total never changes');
  t.same(it.at(-1), [mem.byteLength, mem.byteLength]);
  t.same(noLen.at(-1), [mem.byteLength, undefined], 'without a length, the total is unknown');
  t.same(calls.map((c) => c[0]), [1, 2, 3, 4, 5].map((n) => n * MiB).concat([mem.byteLength]));
});

t.test('writer misuse and abort leave nothing behind', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'x.save');
  const w = await SaveWriter.create(path);
  await w.addSection('domain', Buffer.from('{}'));
  t.equal(readdirSync(dir).length, 1, 'one temporary file while writing');
  t.match(readdirSync(dir)[0], /^\.x\.save\.tmp-[0-9a-f]{12}$/, 'beside the target, hidden');
  t.notOk(existsSync(path), 'the final name does not exist before commit');
  await t.rejects(w.addSection('domain', Buffer.from('{}')), { code: 'WV_ERR_INVALID_ARGUMENT', message: /save section domain: it was already added/ });
  await t.rejects(w.addSection('bogus' as SectionKind, Buffer.from('')), { code: 'WV_ERR_INVALID_ARGUMENT' });
  await w.abort();
  t.same(readdirSync(dir), [], 'abort removes the temporary file');
  await t.rejects(w.commit(), { code: 'WV_ERR_INVALID_ARGUMENT', message: /closed after an error or abort/ });

  // A length that does not match: the save fails and is cleaned up.
  const w2 = await SaveWriter.create(path);
  await t.rejects(w2.addSection('memory', [Buffer.alloc(10)], { length: 20 }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /the data had 10 bytes, not the 20 announced/ });
  t.same(readdirSync(dir), []);
  const w2b = await SaveWriter.create(path);
  const over: number[] = [];
  await t.rejects(w2b.addSection('memory', [Buffer.alloc(MiB), Buffer.alloc(MiB)], { length: MiB + 1, onProgress: (d) => over.push(d) }), { message: /the data has more than the 1048577 bytes announced/ });
  t.ok(over.every((d) => d <= MiB + 1), 'progress never passed the total');
  t.same(readdirSync(dir), []);

  // The caller's iterable fails mid-way: its error comes through, nothing is left.
  const w3 = await SaveWriter.create(path);
  async function* failing(): AsyncGenerator<Uint8Array> { yield pseudoRandom(3 * MiB, 1); throw new Error('guest vanished'); }
  await t.rejects(w3.addSection('memory', failing()), { message: 'guest vanished' });
  t.same(readdirSync(dir), []);

  // `await using` without commit aborts.
  {
    await using w4 = await SaveWriter.create(path);
    await w4.addSection('domain', Buffer.from('{}'));
  }
  t.same(readdirSync(dir), []);

  // Commit replaces an existing file atomically; the old one is intact until then.
  await writeSave(path, { console: Buffer.from('old') });
  const w5 = await SaveWriter.create(path);
  await w5.addSection('console', Buffer.from('new'));
  const r0 = await SaveReader.open(path);
  t.equal((await r0.read('console')).toString(), 'old', 'the old save is still there mid-write');
  await r0.close();
  await w5.commit();
  const r1 = await SaveReader.open(path);
  t.equal((await r1.read('console')).toString(), 'new');
  await r1.close();
  t.same(readdirSync(dir), ['x.save']);
  await t.rejects(w5.commit(), { code: 'WV_ERR_INVALID_ARGUMENT', message: /the writer is committed/ });

  // A directory that does not exist.
  const nowhere = join(dir, 'no', 'such', 'dir.save');
  const e = await rejection(SaveWriter.create(nowhere));
  t.match(e, { code: 'WV_ERR_SAVE_IO', errno: 'ENOENT', operation: 'create', message: `save file ${nowhere}: create failed: ENOENT; nothing was written under ${nowhere}` });
});

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

t.test('disk full during a save: ENOSPC names the path, no temporary file remains, the old save is untouched', { skip: isRoot ? false : 'needs root to mount a 1 MiB tmpfs' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wv-save-full-'));
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1M,mode=0700', 'wv-save-test', dir], { encoding: 'utf8' });
  if (m.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    t.plan(0, `skipped: mount -t tmpfs failed here: ${(m.stderr || m.error?.message || '').trim()}`);
    return;
  }
  t.teardown(() => {
    if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const fresh = join(dir, 'fresh.save');
  const w = await SaveWriter.create(fresh);
  await w.addJson('domain', { name: 'big' });
  const err = await rejection(w.addSection('memory', pseudoRandom(4 * MiB, 5)));
  t.ok(err instanceof SaveIoError);
  t.match(err, { code: 'WV_ERR_SAVE_IO', errno: 'ENOSPC', path: fresh, operation: 'write' });
  t.equal(err.message, `save file ${fresh}: write failed: ENOSPC (the host filesystem is full); nothing was written under ${fresh}`);
  t.same(readdirSync(dir), [], 'neither the final name nor a temporary file exists');

  // Over an existing save: it stays as it was.
  const old = join(dir, 'old.save');
  await writeSave(old, { console: Buffer.from('the old save') });
  const before = readFileSync(old);
  const w2 = await SaveWriter.create(old);
  await t.rejects(w2.addSection('memory', pseudoRandom(4 * MiB, 6)), { code: 'WV_ERR_SAVE_IO', errno: 'ENOSPC' });
  t.same(readdirSync(dir), ['old.save'], 'only the old save');
  t.ok(readFileSync(old).equals(before), 'byte for byte unchanged');
  const r = await SaveReader.open(old);
  t.equal((await r.read('console')).toString(), 'the old save');
  await r.close();
  await t.rejects(w2.commit(), { code: 'WV_ERR_INVALID_ARGUMENT' }, 'a failed writer cannot commit');
});

t.test('every save error code is in docs/errors.md, with its class', async (t) => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const source = readFileSync(new URL('./errors.ts', import.meta.url), 'utf8');
  const codes = [...source.matchAll(/'(WV_ERR_[A-Z_]+)'/g)].map((m) => m[1]!);
  t.same(codes, ['WV_ERR_SAVE_IO', 'WV_ERR_SAVE_NOT_A_SAVE', 'WV_ERR_SAVE_VERSION', 'WV_ERR_SAVE_TRUNCATED', 'WV_ERR_SAVE_CORRUPT', 'WV_ERR_SAVE_UNSUPPORTED', 'WV_ERR_SAVE_TIMEOUT', 'WV_ERR_RESTORE', 'WV_ERR_MIGRATE']);
  for (const c of codes) t.match(doc, `\`${c}\``, c);
  for (const cls of ['SaveIoError', 'NotASaveFileError', 'SaveVersionError', 'SaveTruncatedError', 'SaveCorruptError', 'SaveUnsupportedError', 'SaveTimeoutError', 'RestoreError', 'MigrationError']) t.match(doc, `\`${cls}\``, cls);
});
