/**
 * Paravirtual-core figures: event channel round trips and grant copies
 * between two domains, each against a same-run baseline.
 */
import { Hypervisor } from '../runtime/index.ts';
import type { Domain } from '../runtime/index.ts';
import { wat, ponger, timedPinger } from '../test/helpers/wat.ts';
import { guestPath } from '../runtime/guests.ts';

export interface PvFigure { name: string; value: number; unit: string; baseline?: number; baselineName?: string; ratio?: number; note?: string }

const MEM16 = '(import "env" "memory" (memory 32 256 shared))';
const NOW = '(import "wasmvisor:hypercall/time@0.1.0" "monotonic-now" (func $now (result i64)))';
const SHUT = '(import "wasmvisor:hypercall/sched@0.1.0" "shutdown" (func $shutdown (param i32) (result i32)))';
const BLOCK = '(import "wasmvisor:hypercall/sched@0.1.0" "block" (func $block (param i64) (result i32)))';

/** Event channel round trips: median and p99 in µs of the last 90 % (the first are warm-up). */
async function roundTrips(cpus: number, rounds: number): Promise<{ median: number; p99: number }> {
  const hv = new Hypervisor({ cpus });
  try {
    const pong = await hv.createDomain({ image: ponger(), memory: 1, paused: true });
    const ping = await hv.createDomain({ image: timedPinger(rounds), memory: 1, paused: true, onPoweroff: 'preserve' });
    hv.connect(ping.id, pong.id);
    await pong.unpause();
    await ping.unpause();
    await ping.waitForExit();
    const ns = [...new Uint32Array(ping.memory!.buffer, 65536, rounds)].slice(Math.floor(rounds / 10)).sort((a, b) => a - b);
    return { median: ns[Math.floor(ns.length / 2)]! / 1000, p99: ns[Math.floor(ns.length * 0.99)]! / 1000 };
  } finally {
    await hv.close();
  }
}

/**
 * A guest that copies `pages` granted pages (4 KiB each) `rounds` times,
 * either through grant copies from its peer or, for the baseline, with
 * memory.copy inside its own memory; it stores the elapsed ns at 1024.
 */
function copier(pages: number, rounds: number, viaGrant: boolean): Uint8Array<ArrayBuffer> {
  const copy = viaGrant
    ? `(drop (call $copy_from (local.get $peer) (i32.add (local.get $p) (i32.const 1)) (i32.const 0) (i32.add (i32.const 65536) (i32.mul (local.get $p) (i32.const 4096))) (i32.const 4096)))`
    : `(memory.copy (i32.add (i32.const 65536) (i32.mul (local.get $p) (i32.const 4096))) (i32.add (i32.const 262144) (i32.mul (local.get $p) (i32.const 4096))) (i32.const 4096))`;
  return wat(`(module ${MEM16} ${NOW} ${SHUT} ${BLOCK}
    (import "wasmvisor:hypercall/evtchn@0.1.0" "status" (func $status (param i32 i32) (result i32)))
    (import "wasmvisor:hypercall/grant@0.1.0" "copy-from" (func $copy_from (param i32 i32 i32 i32 i32) (result i32)))
    (func (export "start") (local $peer i32) (local $r i32) (local $p i32) (local $t0 i64)
      ${viaGrant ? '(drop (call $block (i64.const 0))) (drop (call $status (i32.const 1) (i32.const 2048))) (local.set $peer (i32.load (i32.const 2052)))' : ''}
      (local.set $t0 (call $now))
      (loop $round
        (local.set $p (i32.const 0))
        (loop $page
          ${copy}
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br_if $page (i32.lt_u (local.get $p) (i32.const ${pages}))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br_if $round (i32.lt_u (local.get $r) (i32.const ${rounds}))))
      (i64.store (i32.const 1024) (i64.sub (call $now) (local.get $t0)))
      (drop (call $shutdown (i32.const 0)))))`);
}

/** A guest that grants pages 16..31 of its memory to its peer as grefs 1..16 and notifies it. */
function granter(): Uint8Array<ArrayBuffer> {
  return wat(`(module ${MEM16} ${BLOCK}
    (import "wasmvisor:hypercall/evtchn@0.1.0" "status" (func $status (param i32 i32) (result i32)))
    (import "wasmvisor:hypercall/evtchn@0.1.0" "send" (func $send (param i32) (result i32)))
    (import "wasmvisor:hypercall/grant@0.1.0" "grant-access" (func $grant (param i32 i32 i32) (result i32)))
    (func (export "start") (local $p i32)
      (drop (call $status (i32.const 1) (i32.const 2048)))
      (loop $g
        (drop (call $grant (i32.load (i32.const 2052)) (i32.add (i32.const 16) (local.get $p)) (i32.const 1)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $g (i32.lt_u (local.get $p) (i32.const 16))))
      (drop (call $send (i32.const 1)))
      (loop $idle (drop (call $block (i64.const 0))) (br $idle))))`);
}

async function copyNs(pages: number, rounds: number, viaGrant: boolean): Promise<number> {
  const hv = new Hypervisor({ cpus: 2 });
  try {
    let source: Domain | undefined;
    if (viaGrant) source = await hv.createDomain({ image: granter(), memory: 2, paused: true });
    const dom = await hv.createDomain({ image: copier(pages, rounds, viaGrant), memory: 2, paused: true, onPoweroff: 'preserve' });
    if (source) {
      hv.connect(source.id, dom.id);
      await dom.unpause();
      await source.unpause();
    } else {
      await dom.unpause();
    }
    await dom.waitForExit();
    return Number(new DataView(dom.memory!.buffer).getBigUint64(1024, true)) / rounds;
  } finally {
    await hv.close();
  }
}

/** Messages per second between the ping and pong reference guests over a shared ring (ping's own clock). */
async function ringThroughput(cpus: number, count: number): Promise<number> {
  const hv = new Hypervisor({ cpus });
  try {
    const pong = await hv.createDomain({ image: guestPath('pong'), memory: 1, paused: true, cmdline: `count=${count}` });
    const ping = await hv.createDomain({ image: guestPath('ping'), memory: 1, paused: true, cmdline: `count=${count}`, onPoweroff: 'preserve' });
    hv.connect(ping.id, pong.id);
    await pong.unpause();
    await ping.unpause();
    await ping.waitForExit();
    const us = Number(/answered in (\d+) us/.exec(ping.consoleText())?.[1]);
    return count / (us / 1e6);
  } finally {
    await hv.close();
  }
}

export async function pvFigures(quick: boolean, log: (s: string) => void): Promise<PvFigure[]> {
  const out: PvFigure[] = [];
  const rounds = quick ? 20_000 : 100_000; // at most 196,608 fit the pinger's memory
  log(`event channel round trips: ${rounds} each, same CPU and across CPUs`);
  const same = await roundTrips(1, rounds);
  const across = await roundTrips(2, rounds);
  const copyRounds = quick ? 50_000 : 200_000;
  log(`grant copies: 4 KiB and 64 KiB, ${copyRounds} rounds, against memory.copy in a guest`);
  const g4 = await copyNs(1, copyRounds, true);
  const m4 = await copyNs(1, copyRounds, false);
  const g64 = await copyNs(16, copyRounds / 4, true);
  const m64 = await copyNs(16, copyRounds / 4, false);
  const gbps = (bytes: number, ns: number) => bytes / ns; // bytes per ns = GB/s
  out.push({ name: 'event channel round trip, same CPU, median', value: same.median, unit: 'µs', note: 'A sends, B answers, A wakes; target < 10 µs' });
  out.push({ name: 'event channel round trip, same CPU, p99', value: same.p99, unit: 'µs' });
  out.push({ name: 'event channel round trip, across CPUs, median', value: across.median, unit: 'µs' });
  out.push({ name: 'event channel round trip, across CPUs, p99', value: across.p99, unit: 'µs' });
  out.push({ name: 'grant copy 4 KiB', value: gbps(4096, g4), unit: 'GB/s', baseline: gbps(4096, m4), baselineName: 'memory.copy 4 KiB in a guest', ratio: m4 / g4 });
  out.push({ name: 'grant copy 64 KiB (16 pages)', value: gbps(65536, g64), unit: 'GB/s', baseline: gbps(65536, m64), baselineName: 'memory.copy 64 KiB in a guest', ratio: m64 / g64, note: 'target >= 0.7' });
  const messages = quick ? 50_000 : 200_000;
  log(`ring throughput: ${messages} 64-byte messages between ping and pong`);
  const ring1 = await ringThroughput(1, messages);
  const ring2 = await ringThroughput(2, messages);
  out.push({ name: 'ring throughput, 64-byte messages, same CPU', value: ring1, unit: 'msg/s', note: 'request + response per message; target >= 1 M/s' });
  out.push({ name: 'ring throughput, 64-byte messages, across CPUs', value: ring2, unit: 'msg/s' });
  return out;
}
