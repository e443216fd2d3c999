/**
 * The reference guests that ship with wasmvisor (built by `npm ci` into
 * wasm-guests/build/). Resolved relative to this module, which works both
 * from the source tree (runtime/) and from the bundle (dist/).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../kernel/errors.ts';

export const REFERENCE_GUESTS = ['hello', 'ticker', 'spin', 'crash', 'ping', 'pong', 'echo', 'blkwrite', 'ext2sh', 'netd', 'netclient', 'hello-wat', 'hello-c', 'cpubench'] as const;
export type ReferenceGuest = (typeof REFERENCE_GUESTS)[number];

/** Path of a built reference guest; throws naming the build step when it is missing. */
export function guestPath(name: string): string {
  const path = fileURLToPath(new URL(`../wasm-guests/build/${name}.wasm`, import.meta.url));
  if (!existsSync(path)) {
    throw new InvalidArgumentError('guest', `reference guest "${name}" is not built (${path} is missing); run \`npm run build\``);
  }
  return path;
}
