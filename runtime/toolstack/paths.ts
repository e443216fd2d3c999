/**
 * Where the toolstack daemon keeps its socket, pid file and log, and the
 * checks that the state directory is the caller's. Small on purpose: the
 * CLI loads it on every command, without the hypervisor.
 */
import os from 'node:os';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { WvError } from '../../kernel/errors.ts';

/** The state directory or socket belongs to someone else, or cannot be used. */
export class StateDirError extends WvError {
  constructor(dir: string, detail: string) {
    super('WV_ERR_STATE_DIR', `state directory ${dir}: ${detail}`);
  }
}

/** A daemon is already serving this state directory. */
export class DaemonRunningError extends WvError {
  constructor(socket: string, pid: string) {
    super('WV_ERR_DAEMON_RUNNING', `a wasmvisor daemon is already running on ${socket}${pid ? ` (pid ${pid})` : ''}`);
  }
}

/** Where the daemon keeps its socket, pid file and log: $WV_STATE_DIR, else per user under $XDG_RUNTIME_DIR or the temp dir. */
export function defaultStateDir(): string {
  if (process.env.WV_STATE_DIR) return process.env.WV_STATE_DIR;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return join(process.env.XDG_RUNTIME_DIR ?? os.tmpdir(), `wasmvisor-${uid}`);
}

export function socketPath(stateDir: string): string { return join(stateDir, 'wv.sock'); }

export function pidPath(stateDir: string): string { return join(stateDir, 'wv.pid'); }

/** Where the virtual disks (`wv vd`) and their database live. */
export function vdPath(stateDir: string): string { return join(stateDir, 'vd'); }

/** The pid the daemon wrote, or '' when there is none. */
export function readPid(stateDir: string): string {
  try { return readFileSync(pidPath(stateDir), 'utf8').trim(); } catch { return ''; }
}

/** Check the state directory is ours (creating it, mode 0700, if missing). */
export function prepareStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StateDirError(dir, `cannot create it: ${(err as NodeJS.ErrnoException).code}`);
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new StateDirError(dir, 'it is not a directory');
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new StateDirError(dir, `it belongs to uid ${st.uid}, not to you (uid ${process.getuid()})`);
  }
}

