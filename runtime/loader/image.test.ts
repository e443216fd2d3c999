import t from 'tap';
import { buildImage } from './image.ts';
import { Hypervisor } from '../hypervisor.ts';
import { wat, MEM, CONSOLE, printer } from '../../test/helpers/wat.ts';

const START = '(func (export "start"))';

const refusal = async (bytes: Uint8Array, code: string, message: RegExp) => {
  await t.rejects(buildImage(bytes, 'img.wasm'), { code, message }, code);
};

t.test('each refusal has its own error', async () => {
  await refusal(new TextEncoder().encode('#!/bin/sh\necho hi\n'), 'WV_ERR_IMAGE_NOT_WASM', /img\.wasm is not WebAssembly: .*magic/);
  await refusal(new Uint8Array([0, 0x61, 0x73]), 'WV_ERR_IMAGE_NOT_WASM', /only 3 bytes/);
  await refusal(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0xff, 0xff]), 'WV_ERR_IMAGE_INVALID', /not a valid module/);
  await refusal(wat(`(module (memory 1) ${START})`), 'WV_ERR_IMAGE_OWN_MEMORY', /defines its own memory/);
  await refusal(wat(`(module (import "env" "memory" (memory 1 10)) ${START})`), 'WV_ERR_IMAGE_MEMORY_SHAPE', /not shared/);
  await refusal(wat(`(module ${START})`), 'WV_ERR_IMAGE_MEMORY_SHAPE', /imports no memory/);
  await refusal(wat(`(module ${MEM} (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) ${START})`),
    'WV_ERR_IMAGE_FORBIDDEN_IMPORT', /imports function "wasi_snapshot_preview1"\."fd_write"/);
  await refusal(wat(`(module ${MEM} (import "env" "tbl" (table 1 funcref)) ${START})`), 'WV_ERR_IMAGE_FORBIDDEN_IMPORT', /imports table/);
  await refusal(wat(`(module (import "host" "mem" (memory 1 10 shared)) ${START})`), 'WV_ERR_IMAGE_FORBIDDEN_IMPORT', /memory "host"\."mem"/);
  await refusal(wat(`(module ${MEM} (func (export "main")))`), 'WV_ERR_IMAGE_MISSING_EXPORT', /must export function "start": it is missing/);
  await refusal(wat(`(module ${MEM} (global (export "start") i32 (i32.const 0)))`), 'WV_ERR_IMAGE_MISSING_EXPORT', /it is a global/);
  await refusal(wat(`(module ${MEM} (func (export "start") (param i32)))`), 'WV_ERR_IMAGE_MISSING_EXPORT', /no parameters/);
  await refusal(wat(`(module ${MEM} (func $s) (start $s) (func (export "wv$start")) ${START})`), 'WV_ERR_IMAGE_INVALID', /exports "wv\$start", a name the loader reserves/);
  await refusal(wat(`(module ${MEM} (data (i32.const 100) "x") ${START})`), 'WV_ERR_IMAGE_START_PAGE_OVERLAP', /1 bytes of data at address 100/);
  await refusal(wat(`(module ${MEM} (import "wasmvisor:hypercall/console@0.1.0" "write" (func (param i32) (result i32))) ${START})`),
    'WV_ERR_IMAGE_INVALID', /has type \(i32\) -> \(i32\), the ABI says \(i32, i32\) -> \(i32\)/);
  await refusal(wat(`(module ${MEM} (func $log_execution) ${START})`), 'WV_ERR_IMAGE_INVALID', /reserves for safepoints/);
});

t.test('a memory larger than the allocation is refused at create', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const big = wat(`(module (import "env" "memory" (memory 32 256 shared)) ${CONSOLE} ${START})`);
  await t.rejects(hv.createDomain({ image: big, memory: 1 }), {
    code: 'WV_ERR_IMAGE_MEMORY_TOO_LARGE',
    message: /needs 2097152 bytes of memory at start, more than the domain's allocation of 1048576 bytes/,
  });
  t.equal(hv.kernel.budget.usedBytes, 0, 'nothing stays charged');
});

t.test('a valid image is accepted, instrumented and cached', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const bytes = printer('hi\n');
  const a = await hv.loadImage(bytes);
  const b = await hv.loadImage(bytes);
  t.equal(a, b, 'the same bytes give the same compiled image');
  t.equal(a.format, 'core');
  t.equal(a.minPages, 1);
  t.equal(a.maxPages, 256);
  const imports = WebAssembly.Module.imports(a.module).map((i) => `${i.module}.${i.name}`);
  t.ok(imports.includes('wasmvisor:kernel.safepoint'), 'the safepoint import was added');
});

t.test('a missing image file names the path', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  await t.rejects(hv.createDomain({ image: '/nonexistent/guest.wasm' }), { code: 'WV_ERR_INVALID_ARGUMENT', message: /cannot read \/nonexistent\/guest\.wasm: no such file/ });
});

t.test('a component built with jco new runs like its core module', async (t) => {
  const { componentEmbed, componentNew } = await import('@bytecodealliance/jco');
  const { readFileSync } = await import('node:fs');
  const core = printer('from a component\n');
  const witSource = readFileSync(new URL('../../host-bindings/wit/hypercall.wit', import.meta.url), 'utf8');
  const embedded = await componentEmbed({ binary: core, witSource, world: 'guest' } as never);
  const component = await componentNew(embedded, []);
  t.same([...component.subarray(4, 8)], [0x0d, 0, 1, 0], 'it really is a component');
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const img = await hv.loadImage(component);
  t.equal(img.format, 'component');
  const dom = await hv.createDomain({ image: img, memory: 1 });
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  t.equal(dom.consoleText(), 'from a component\n');
});

t.test('a component that imports outside the ABI is refused', async (t) => {
  const { componentEmbed, componentNew } = await import('@bytecodealliance/jco');
  const witSource = `package other:thing@1.0.0;\ninterface fs { read: func(fd: u32) -> s32; }\nworld w { import fs; export start: func(); }`;
  const core = wat(`(module ${MEM} (import "other:thing/fs@1.0.0" "read" (func (param i32) (result i32))) ${START})`);
  const component = await componentNew(await componentEmbed({ binary: core, witSource, world: 'w' } as never), []);
  await t.rejects(buildImage(component, 'c.wasm'), { code: 'WV_ERR_IMAGE_INVALID', message: /imports other:thing\/fs@1\.0\.0, which is not part of the hypercall ABI/ });
});

t.test('a start section runs under the scheduler, before _initialize and start', async (t) => {
  const hv = new Hypervisor({ cpus: 1 });
  t.teardown(() => hv.close());
  const img = wat(`(module ${MEM} ${CONSOLE}
    (data (i32.const 8192) "S") (data (i32.const 8193) "I") (data (i32.const 8194) "M")
    (func $s (drop (call $write (i32.const 8192) (i32.const 1))))
    (start $s)
    (func (export "_initialize") (drop (call $write (i32.const 8193) (i32.const 1))))
    (func (export "start") (drop (call $write (i32.const 8194) (i32.const 1)))))`);
  const image = await hv.loadImage(img);
  t.same(image.entries, ['wv$start', '_initialize', 'start']);
  const dom = await hv.createDomain({ image, memory: 1 });
  t.same(await dom.waitForExit(), { reason: 'poweroff' });
  t.equal(dom.consoleText(), 'SIM');
});
