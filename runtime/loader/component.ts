/**
 * Components built with `jco new` from a guest core module. Such a
 * component holds the guest's core module (which imports `env.memory` and
 * the ABI functions and exports `start`) plus a wit-component shim that
 * defines a memory for it. Because the ABI passes integers only, the
 * canonical ABI lowering of every import is the identity, so the kernel runs
 * the guest core module directly with its own kernel-created memory.
 *
 * jco checks the component (its WIT world must import only
 * wasmvisor:hypercall interfaces); the core module is then taken from the
 * component's top-level core-module sections.
 */
import { ImageInvalidError } from '../../kernel/errors.ts';
import { ABI_PACKAGE, ENTRY_EXPORT } from '../../host-bindings/abi.ts';
import { bufferSource, sections } from './sections.ts';

/** Top-level section id of an embedded core module in the component binary format. */
const CORE_MODULE_SECTION = 1;

export async function extractComponentCore(bytes: Uint8Array, label: string): Promise<Uint8Array> {
  const { componentWit } = await import('@bytecodealliance/jco');
  let wit: string;
  try {
    wit = await componentWit(bytes);
  } catch (err) {
    throw new ImageInvalidError(label, `not a valid component: ${err instanceof Error ? err.message : String(err)}`);
  }
  for (const m of wit.matchAll(/^\s*import\s+([^;]+);/gm)) {
    const name = m[1]!.trim();
    if (!name.startsWith(`${ABI_PACKAGE}/`)) {
      throw new ImageInvalidError(label, `the component imports ${name}, which is not part of the hypercall ABI`);
    }
  }
  const guests = coreModules(bytes).filter((core) => {
    try {
      const mod = new WebAssembly.Module(bufferSource(core));
      const exportsStart = WebAssembly.Module.exports(mod).some((e) => e.name === ENTRY_EXPORT && e.kind === 'function');
      return exportsStart;
    } catch {
      return false;
    }
  });
  if (guests.length !== 1) {
    throw new ImageInvalidError(label, `a guest component must hold exactly one core module exporting "${ENTRY_EXPORT}", this one holds ${guests.length}`);
  }
  return guests[0]!;
}

/** The core modules embedded at the top level of a component binary. */
function coreModules(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const s of sections(bytes)) if (s.id === CORE_MODULE_SECTION) out.push(s.body);
  return out;
}
