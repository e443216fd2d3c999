/** Text formatting for the CLI. */
import type { DomainInfo } from '../runtime/hypervisor.ts';

const MiB = 1024 * 1024;

/** A table like `xl list`. */
export function formatList(rows: readonly DomainInfo[]): string {
  const head = ['Name', 'ID', 'Mem(MiB)', 'CPU', 'State', 'Time(s)'];
  const body = rows.map((r) => [
    r.name,
    String(r.id),
    String(Math.round(r.memoryBytes / MiB)),
    r.cpu === undefined ? '-' : String(r.cpu),
    r.shutdownReason && (r.phase === 'shutdown' || r.phase === 'crashed') ? `${r.phase}(${r.shutdownReason})` : r.phase,
    (r.cpuTimeNs / 1e9).toFixed(1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}

/** Prefix every line of a console chunk with the domain tag, keeping partial lines per domain. */
export class ConsolePrefixer {
  readonly #partial = new Map<number, string>();
  readonly #decoders = new Map<number, TextDecoder>();

  /** Returns the complete lines (with prefix) in this chunk. */
  push(domid: number, tag: string, bytes: Uint8Array): string[] {
    let dec = this.#decoders.get(domid);
    if (!dec) this.#decoders.set(domid, (dec = new TextDecoder()));
    const text = (this.#partial.get(domid) ?? '') + dec.decode(bytes, { stream: true });
    const parts = text.split('\n');
    this.#partial.set(domid, parts.pop()!);
    return parts.map((p) => `${tag} ${p}`);
  }

  /** Whatever is left of an unterminated last line. */
  flush(domid: number, tag: string): string[] {
    const rest = this.#partial.get(domid);
    this.#partial.delete(domid);
    return rest ? [`${tag} ${rest}`] : [];
  }
}
