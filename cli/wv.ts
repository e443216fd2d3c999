#!/usr/bin/env node
/**
 * `wv`: the wasmvisor command. The command tree is in program.ts; each
 * command is a thin caller of the embedding API or the toolstack daemon.
 */
import { basename } from 'node:path';
import { WvError } from '../kernel/errors.ts';
import { buildProgram } from './program.ts';
import { CD_TOOLS } from './compat.ts';

const program = buildProgram();

// Installed under one of the CD's tool names, `wv` is that tool.
const invokedAs = basename(process.argv[1] ?? '');
const argv = (CD_TOOLS as readonly string[]).includes(invokedAs)
  ? [...process.argv.slice(0, 2), 'compat', invokedAs, ...process.argv.slice(2)]
  : process.argv;

try {
  await program.parseAsync(argv);
} catch (err) {
  if (err instanceof WvError) {
    process.stderr.write(`wv: ${err.message} [${err.code}]\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`wv: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 70;
  }
}
