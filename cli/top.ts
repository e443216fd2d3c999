/**
 * `wv top`: a live view of the domains, refreshed every `--delay` seconds:
 * CPU % over the last interval, CPU time, memory, where each runs and its
 * I/O: console bytes, block devices (requests and bytes read and
 * written, errors) and network interfaces (packets and bytes each way,
 * drops). In a terminal `q` quits; `--batch` prints plain frames
 * (`-n` of them), and `--json` one JSON object per frame.
 */
import type { DomainInfo } from '../runtime/hypervisor.ts';
import type { BlockRow, HostInfo } from '../runtime/toolstack/protocol.ts';
import type { VifInfo } from '../devices/net/vif.ts';

/** A domain's block I/O, summed over its VBDs. */
export interface TopBlock { vbds: number; reads: number; writes: number; bytesRead: number; bytesWritten: number; errors: number }

/** A domain's network I/O, summed over its vifs (tx: what it sent). */
export interface TopNet { vifs: number; txPackets: number; txBytes: number; rxPackets: number; rxBytes: number; dropped: number }

export interface TopRow {
  id: number; name: string; phase: string; cpuPercent: number; cpuS: number; memMiB: number; cpu: number | undefined; consoleBytes: number;
  block: TopBlock;
  net: TopNet;
}

function netTotals(vifs: readonly VifInfo[]): Map<number, TopNet> {
  const out = new Map<number, TopNet>();
  for (const v of vifs) {
    const n = out.get(v.domid) ?? { vifs: 0, txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, dropped: 0 };
    n.vifs++;
    n.txPackets += v.stats.txPackets;
    n.txBytes += v.stats.txBytes;
    n.rxPackets += v.stats.rxPackets;
    n.rxBytes += v.stats.rxBytes;
    n.dropped += v.stats.dropped + v.stats.spoofed + v.stats.malformed + v.stats.unroutable + v.stats.rateLimited;
    out.set(v.domid, n);
  }
  return out;
}

function blockTotals(vbds: readonly BlockRow[]): Map<number, TopBlock> {
  const out = new Map<number, TopBlock>();
  for (const v of vbds) {
    const b = out.get(v.domid) ?? { vbds: 0, reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
    b.vbds++;
    b.reads += v.stats.reads;
    b.writes += v.stats.writes;
    b.bytesRead += v.stats.bytesRead;
    b.bytesWritten += v.stats.bytesWritten;
    b.errors += v.stats.errors;
    out.set(v.domid, b);
  }
  return out;
}

export function topRows(prev: Map<number, { ns: number; at: number }>, rows: readonly DomainInfo[], at: number, vbds: readonly BlockRow[] = [], vifs: readonly VifInfo[] = []): TopRow[] {
  const out: TopRow[] = [];
  const blocks = blockTotals(vbds);
  const nets = netTotals(vifs);
  const seen = new Set<number>();
  for (const r of rows) {
    seen.add(r.id);
    const p = prev.get(r.id);
    const pct = p && at > p.at ? Math.max(0, ((r.cpuTimeNs - p.ns) / 1e6 / (at - p.at)) * 100) : 0;
    prev.set(r.id, { ns: r.cpuTimeNs, at });
    out.push({ id: r.id, name: r.name, phase: r.phase, cpuPercent: pct, cpuS: r.cpuTimeNs / 1e9, memMiB: r.memoryBytes / (1024 * 1024), cpu: r.cpu, consoleBytes: r.consoleBytes,
      block: blocks.get(r.id) ?? { vbds: 0, reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, errors: 0 },
      net: nets.get(r.id) ?? { vifs: 0, txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0, dropped: 0 } });
  }
  for (const id of prev.keys()) if (!seen.has(id)) prev.delete(id);
  return out.sort((a, b) => b.cpuPercent - a.cpuPercent || a.id - b.id);
}

export function formatTop(info: HostInfo, rows: readonly TopRow[], columns = 100): string {
  const running = rows.filter((r) => r.phase === 'running').length;
  const head = [
    `wv top - up ${info.uptimeS.toFixed(0)} s, ${info.cpus} CPUs, ${rows.length} domains (${running} running), slice ${info.sliceMs} ms`,
    `Mem: ${Math.round(info.memoryTotalBytes / 1048576)} MiB total, ${Math.round(info.memoryFreeBytes / 1048576)} MiB free, ${Math.round(info.dom0MemoryBytes / 1048576)} MiB domain 0`,
    '',
    `${'NAME'.padEnd(20)} ${'ID'.padStart(5)} ${'STATE'.padEnd(9)} ${'CPU%'.padStart(6)} ${'CPU(s)'.padStart(9)} ${'MEM(MiB)'.padStart(9)} ${'PCPU'.padStart(4)} ${'CONS(B)'.padStart(9)} ${'VBDS'.padStart(4)} ${'VBD_RD'.padStart(8)} ${'VBD_WR'.padStart(8)} ${'VBD_RKiB'.padStart(9)} ${'VBD_WKiB'.padStart(9)} ${'VBD_ERR'.padStart(7)} ${'VIFS'.padStart(4)} ${'NET_TX'.padStart(8)} ${'NET_TKiB'.padStart(9)} ${'NET_RX'.padStart(8)} ${'NET_RKiB'.padStart(9)} ${'NET_DROP'.padStart(8)}`,
  ];
  const body = rows.map((r) => `${r.name.slice(0, 20).padEnd(20)} ${String(r.id).padStart(5)} ${r.phase.padEnd(9)} ${r.cpuPercent.toFixed(1).padStart(6)} ${r.cpuS.toFixed(1).padStart(9)} ${String(Math.round(r.memMiB)).padStart(9)} ${(r.cpu === undefined ? '-' : String(r.cpu)).padStart(4)} ${String(r.consoleBytes).padStart(9)} ${String(r.block.vbds).padStart(4)} ${String(r.block.reads).padStart(8)} ${String(r.block.writes).padStart(8)} ${String(Math.round(r.block.bytesRead / 1024)).padStart(9)} ${String(Math.round(r.block.bytesWritten / 1024)).padStart(9)} ${String(r.block.errors).padStart(7)} ${String(r.net.vifs).padStart(4)} ${String(r.net.txPackets).padStart(8)} ${String(Math.round(r.net.txBytes / 1024)).padStart(9)} ${String(r.net.rxPackets).padStart(8)} ${String(Math.round(r.net.rxBytes / 1024)).padStart(9)} ${String(r.net.dropped).padStart(8)}`);
  return [...head, ...body].map((l) => l.slice(0, columns)).join('\n') + '\n';
}
