/**
 * Boot an ISO in QEMU with its serial line on a pipe: what the ISO test and
 * the bench use. KVM when it runs a Linux kernel here (kvmRunsLinux), plain
 * emulation (TCG) otherwise. The serial output is collected (escape sequences removed for
 * matching); `send` types on the serial line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ISO_PATHS } from './build.ts';
import { checkPrereqs, QEMU_PREREQS, run } from './tools.ts';

/** Debian's UEFI firmware for QEMU (package ovmf), code and variables in one image for -bios. */
export const OVMF_CODE = '/usr/share/ovmf/OVMF.fd';

/** Whether /dev/kvm exists and this user may open it. */
export function kvmDeviceUsable(): boolean {
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
    return true;
  } catch {
    return false;
  }
}

/** The QEMU arguments that select KVM (true) or plain emulation (false). */
export function accelArgs(kvm: boolean): string[] {
  // Under nested KVM, QEMU can abort setting IA32_ARCH_CAPABILITIES (MSR 0x10a) for -cpu host; the guest does not need it.
  // Without KVM, -cpu max: the features any real machine has (SSE4, AVX2), which V8 picks its code paths by.
  return kvm ? ['-enable-kvm', '-cpu', 'host,-arch-capabilities'] : ['-accel', 'tcg', '-cpu', 'max'];
}

/**
 * Whether KVM runs a Linux kernel here: /dev/kvm opens, and the ISO's kernel
 * booted under KVM prints its banner within `timeoutMs`. Some hosts offer a /dev/kvm
 * that cannot (a PVM host runs only guests built for it: the firmware and
 * Grub run, an ordinary kernel does not). Set WV_ISO_KVM=0 or 1 to decide
 * without probing.
 */
export async function kvmRunsLinux(iso: string, timeoutMs = 8000): Promise<{ ok: boolean; why: string }> {
  const env = process.env.WV_ISO_KVM;
  if (env === '0' || env === '1') return Promise.resolve({ ok: env === '1', why: `WV_ISO_KVM=${env}` });
  if (!kvmDeviceUsable()) return Promise.resolve({ ok: false, why: '/dev/kvm cannot be opened' });
  const dir = mkdtempSync(join(tmpdir(), 'wv-kvm-probe-'));
  const vmlinuz = join(dir, 'vmlinuz');
  try {
    run('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', ISO_PATHS.kernel, vmlinuz], { stdio: ['ignore', 'pipe', 'pipe'] });
    return await new Promise((resolve) => {
      const child = spawn('qemu-system-x86_64', [...accelArgs(true), '-m', '256', '-kernel', vmlinuz,
        '-append', 'console=ttyS0 earlyprintk=serial,ttyS0 panic=-1', '-display', 'none', '-monitor', 'none',
        '-serial', 'stdio', '-no-reboot', '-nic', 'none'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      const finish = (ok: boolean, why: string): void => { clearTimeout(timer); child.kill('SIGKILL'); resolve({ ok, why }); };
      const timer = setTimeout(() => finish(false, `a Linux kernel printed nothing under KVM within ${timeoutMs} ms${out.includes('Probing EDD') ? ' (its real-mode setup ran, long mode did not)' : ''}`), timeoutMs);
      const onData = (b: Buffer): void => {
        out += b.toString('latin1');
        if (/Linux version/.test(out)) finish(true, 'a Linux kernel boots under KVM');
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', () => finish(false, `QEMU with KVM exited: ${out.trim().split('\n').slice(-2).join(' ')}`));
      child.once('error', (e) => finish(false, e.message));
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface QemuOptions {
  iso: string;
  /** Use KVM (see kvmRunsLinux) or plain emulation. */
  kvm: boolean;
  memoryMiB?: number;
  cpus?: number;
  /** Boot with a network card on QEMU's user network (default true). */
  nic?: boolean;
  /** Boot with UEFI firmware (OVMF, Debian package ovmf) instead of the BIOS. */
  uefi?: boolean;
  /** Extra QEMU arguments. */
  args?: readonly string[];
  /** Called with every chunk of serial output (e.g. to log it). */
  onOutput?: (chunk: string) => void;
}

/** Remove terminal escape sequences and carriage returns (grub draws its menu with them). */
export function plain(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>78]|\r/g, '');
}

export class QemuMachine {
  readonly child: ChildProcess;
  /** performance.now() when QEMU was started (power-on). */
  readonly startedAt: number;
  readonly kvm: boolean;
  #raw = '';
  #plain = '';
  #waiters = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(opts: QemuOptions) {
    checkPrereqs(opts.uefi ? [...QEMU_PREREQS, { tool: 'OVMF firmware', pkg: 'ovmf', path: OVMF_CODE }] : QEMU_PREREQS);
    this.kvm = opts.kvm;
    const args = [
      ...accelArgs(this.kvm),
      // q35: the CD drive is on AHCI, which the firmware reads faster than the old IDE one.
      '-M', 'q35',
      '-m', String(opts.memoryMiB ?? 1024),
      '-smp', String(opts.cpus ?? 2),
      '-cdrom', opts.iso, '-boot', 'd',
      '-display', 'none', '-monitor', 'none', '-serial', 'stdio',
      '-no-reboot',
      ...((opts.nic ?? true) ? ['-nic', 'user,model=e1000'] : ['-nic', 'none']),
      ...(opts.uefi ? ['-bios', OVMF_CODE] : []),
      ...(opts.args ?? []),
    ];
    this.startedAt = performance.now();
    this.child = spawn('qemu-system-x86_64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const onData = (b: Buffer): void => {
      const s = b.toString('latin1');
      this.#raw += s;
      this.#plain += plain(s);
      opts.onOutput?.(s);
      for (const w of [...this.#waiters]) w();
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => {
      for (const w of [...this.#waiters]) w();
      resolve({ code, signal });
    }));
  }

  static start(opts: QemuOptions): QemuMachine {
    return new QemuMachine(opts);
  }

  /** The serial output so far, escape sequences removed. */
  get output(): string { return this.#plain; }
  /** The serial output so far, as sent. */
  get rawOutput(): string { return this.#raw; }

  /**
   * Wait until the output after offset `from` matches `pattern`. Resolves
   * with the match, its end offset and the ms since power-on; rejects with
   * the output's tail on timeout or if QEMU exits first.
   */
  waitFor(pattern: RegExp | string, timeoutMs: number, from = 0): Promise<{ match: RegExpExecArray; end: number; ms: number }> {
    const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = (): void => {
        const rest = this.#plain.slice(from);
        const m = re.exec(rest);
        if (m) {
          done();
          resolve({ match: m, end: from + m.index + m[0].length, ms: performance.now() - this.startedAt });
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          done();
          reject(new Error(`QEMU exited (${this.child.exitCode ?? this.child.signalCode}) before ${re} appeared; output ends:\n${this.#plain.slice(-3000)}`));
        }
      };
      const done = (): void => { this.#waiters.delete(check); if (timer) clearTimeout(timer); };
      timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}; output ends:\n${this.#plain.slice(-3000)}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  /** Type on the serial line. */
  send(text: string): void {
    this.child.stdin!.write(text);
  }

  /** Stop QEMU at once (SIGKILL), if it is still running. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
