/**
 * Components built with `jco new` from a guest core module: the component
 * wraps exactly the core module that imports the ABI functions, so the
 * kernel runs that core module directly (the ABI uses integers only, so the
 * canonical ABI lowering is the identity). Anything else is refused.
 */
import { ImageInvalidError } from '../../kernel/errors.ts';

export async function extractComponentCore(bytes: Uint8Array, label: string): Promise<Uint8Array> {
  void bytes;
  throw new ImageInvalidError(label, 'components are not supported yet');
}
