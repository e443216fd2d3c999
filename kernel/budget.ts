import { OutOfMemoryBudgetError } from './errors.ts';

/**
 * Host memory accounting. The host has `totalBytes`; `reservedBytes`
 * (dom0_mem) is kept for the host itself; domains are charged their whole
 * allocation up front, so there is no overcommit.
 */
export class MemoryBudget {
  readonly totalBytes: number;
  readonly reservedBytes: number;
  #usedBytes = 0;

  constructor(totalBytes: number, reservedBytes: number) {
    this.totalBytes = totalBytes;
    this.reservedBytes = Math.min(reservedBytes, totalBytes);
  }

  get usedBytes(): number { return this.#usedBytes; }
  get freeBytes(): number { return this.totalBytes - this.reservedBytes - this.#usedBytes; }

  /** Charge `bytes` or throw OutOfMemoryBudgetError saying how much is free. */
  reserve(bytes: number): void {
    if (bytes > this.freeBytes) {
      throw new OutOfMemoryBudgetError(bytes, this.freeBytes, this.totalBytes - this.reservedBytes);
    }
    this.#usedBytes += bytes;
  }

  release(bytes: number): void {
    this.#usedBytes = Math.max(0, this.#usedBytes - bytes);
  }
}
