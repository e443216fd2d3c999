/**
 * Errors of the save file format (runtime/save/format.ts). One class per
 * failure, each with a stable code listed in docs/errors.md. Every message
 * names the file; the format ones also say where in the file it went wrong.
 */
import { WvError } from '../../kernel/errors.ts';

/** The host failed to read or write a save file (ENOSPC on a full disk, EACCES, ENOENT, EIO...). */
export class SaveIoError extends WvError {
  readonly path: string;
  /** The errno name (`ENOSPC`), from the failing system call. */
  readonly errno: string;
  /** What was being done: `create`, `write`, `fsync`, `rename`, `open`, `read`. */
  readonly operation: string;
  constructor(path: string, operation: string, errno: string, writing: boolean) {
    const full = errno === 'ENOSPC' ? ' (the host filesystem is full)' : '';
    const left = writing ? `; nothing was written under ${path}` : '';
    super('WV_ERR_SAVE_IO', `save file ${path}: ${operation} failed: ${errno}${full}${left}`);
    this.path = path;
    this.errno = errno;
    this.operation = operation;
  }
}

/** The file is not a wasmvisor save file at all (empty, another format, random bytes). */
export class NotASaveFileError extends WvError {
  readonly path: string;
  constructor(path: string, detail: string) {
    super('WV_ERR_SAVE_NOT_A_SAVE', `${path} is not a wasmvisor save file: ${detail}`);
    this.path = path;
  }
}

/** The save file's format version (or a feature it requires) is one this wasmvisor cannot read. */
export class SaveVersionError extends WvError {
  readonly path: string;
  constructor(path: string, detail: string) {
    super('WV_ERR_SAVE_VERSION', `save file ${path} cannot be read by this wasmvisor: ${detail}`);
    this.path = path;
  }
}

/** The file ends early: a save that was cut short (copied partially, written by a crashed tool). */
export class SaveTruncatedError extends WvError {
  readonly path: string;
  /** The file's length in bytes: where it ends. */
  readonly fileLength: number;
  constructor(path: string, fileLength: number, where: string) {
    super('WV_ERR_SAVE_TRUNCATED', `save file ${path} is truncated: it ends at byte ${fileLength}, ${where}`);
    this.path = path;
    this.fileLength = fileLength;
  }
}

/** A checksum or a structural check failed: the bytes were changed after they were written. */
export class SaveCorruptError extends WvError {
  readonly path: string;
  /** The section that failed (`memory`, `kind 42`), or `header` / `trailer`. */
  readonly section: string;
  /** The file offset of the record that failed. */
  readonly offset: number;
  constructor(path: string, section: string, offset: number, detail: string) {
    super('WV_ERR_SAVE_CORRUPT', `save file ${path} is corrupt in ${section} at byte ${offset}: ${detail}`);
    this.path = path;
    this.section = section;
    this.offset = offset;
  }
}

/** A domain that cannot be saved: its image has no capture points, or it uses what a save cannot hold yet. */
export class SaveUnsupportedError extends WvError {
  constructor(domid: number, detail: string) {
    super('WV_ERR_SAVE_UNSUPPORTED', `domain ${domid} cannot be saved: ${detail}`);
  }
}

/** The guest did not reach a point where it can be captured in time; it keeps running. */
export class SaveTimeoutError extends WvError {
  constructor(domid: number, detail: string) {
    super('WV_ERR_SAVE_TIMEOUT', `domain ${domid} was not saved: ${detail}; it keeps running`);
  }
}

/** A save file that is well formed but whose domain cannot be restored here (its image, its state, or memory). */
export class RestoreError extends WvError {
  constructor(path: string, detail: string) {
    super('WV_ERR_RESTORE', `cannot restore ${path}: ${detail}`);
  }
}

/** A live migration failed: the target refused, failed or went away. The domain keeps running on the source. */
export class MigrationError extends WvError {
  /** HOST:PORT of the other wasmvisor. */
  readonly target: string;
  constructor(domid: number, target: string, detail: string) {
    super('WV_ERR_MIGRATE', `domain ${domid} was not migrated to ${target}: ${detail}; it keeps running here`);
    this.target = target;
  }
}
