/** One kernel log line. */
export interface LogEntry {
  /** Monotonic ns since the hypervisor started. */
  readonly timeNs: bigint;
  readonly level: 'info' | 'warn' | 'error';
  readonly text: string;
}

/** The kernel log (`wv dmesg`): a bounded list of recent lines. */
export class KernelLog {
  readonly #entries: LogEntry[] = [];
  readonly #limit: number;
  readonly #clock: () => bigint;
  onEntry: (entry: LogEntry) => void = () => {};

  constructor(clock: () => bigint, limit = 4096) {
    this.#clock = clock;
    this.#limit = limit;
  }

  info(text: string): void { this.#add('info', text); }
  warn(text: string): void { this.#add('warn', text); }
  error(text: string): void { this.#add('error', text); }

  entries(): readonly LogEntry[] { return this.#entries; }

  /** Lines formatted like dmesg: `[    1.234567] text`. */
  lines(): string[] {
    return this.#entries.map(formatLogEntry);
  }

  #add(level: LogEntry['level'], text: string): void {
    const entry = { timeNs: this.#clock(), level, text };
    this.#entries.push(entry);
    if (this.#entries.length > this.#limit) this.#entries.splice(0, this.#entries.length - this.#limit);
    this.onEntry(entry);
  }
}

export function formatLogEntry(e: LogEntry): string {
  const us = e.timeNs / 1000n;
  const secs = (us / 1_000_000n).toString().padStart(5, ' ');
  const frac = (us % 1_000_000n).toString().padStart(6, '0');
  const tag = e.level === 'info' ? '' : `${e.level}: `;
  return `[${secs}.${frac}] ${tag}${e.text}`;
}
