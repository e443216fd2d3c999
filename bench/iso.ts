/**
 * Live ISO figures (`npm run bench -- --only=iso`): the ISO's size, its build
 * time, and the time from QEMU's power-on to the first domain's console
 * output, with KVM (when it runs a Linux kernel on this host) and with plain
 * emulation (TCG).
 *
 * Baselines from the same run: for the build, copying the same number of
 * bytes (`cp` of the ISO); for the boot, the same Grub, kernel and initramfs
 * booted with rdinit= pointing at a script that prints one line and powers
 * off (isogen/root/usr/libexec/wasmvisor/baseline): what is left is
 * wasmvisor's own start-up (node, the daemon, the domain creates). Both
 * ISOs are built with a 0 s menu timeout, so no boot waits for a key; the
 * shipped ISO waits 1 s more at its menu.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildIso } from '../isogen/build.ts';
import { kvmRunsLinux, QemuMachine } from '../isogen/qemu.ts';
import { BUILD_PREREQS, QEMU_PREREQS, missingPrereqs } from '../isogen/tools.ts';
import type { CpuFigure } from './cpu.ts';

const MiB = 2 ** 20;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Power-on -> the first line matching `first`; then power the machine off. */
async function bootTo(iso: string, kvm: boolean, first: RegExp, timeoutMs: number): Promise<number> {
  const m = QemuMachine.start({ iso, kvm });
  try {
    const hit = await m.waitFor(first, timeoutMs);
    if (/baseline/.test(first.source)) {
      await m.exited;
    } else {
      await m.waitFor('wv> ', timeoutMs, hit.end);
      m.send('poweroff\r');
      await Promise.race([m.exited, new Promise((r) => setTimeout(r, timeoutMs))]);
    }
    return hit.ms;
  } finally {
    m.kill();
  }
}

export async function isoFigures(quick: boolean, log: (s: string) => void): Promise<CpuFigure[]> {
  const missing = missingPrereqs([...BUILD_PREREQS, ...QEMU_PREREQS]);
  if (missing.length) {
    log(`iso: skipped, missing ${missing.map((m) => m.tool).join(', ')} (apt-get install ${[...new Set(missing.map((m) => m.pkg))].join(' ')})`);
    return [];
  }
  const out: CpuFigure[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'wv-isobench-'));
  try {
    const iso = join(dir, 'wasmvisor.iso');
    const baseIso = join(dir, 'baseline.iso');
    log('iso: building (the kernel package is fetched once, then cached)');
    await buildIso({ output: iso, timeout: 0 }); // warms the kernel cache; not timed
    const t0 = performance.now();
    const r = await buildIso({ output: iso, timeout: 0 });
    const buildMs = performance.now() - t0;
    const c0 = performance.now();
    spawnSync('cp', [iso, join(dir, 'copy.iso')]);
    const copyMs = performance.now() - c0;
    out.push({ name: 'ISO size', value: r.bytes / MiB, unit: 'MiB', note: `target < 150 MiB; initramfs ${(r.initrd.bytes / MiB).toFixed(1)} MiB (${(r.initrd.unpackedBytes / MiB).toFixed(0)} MiB unpacked), kernel ${(r.kernel.bytes / MiB).toFixed(1)} MiB` });
    out.push({ name: 'ISO build (kernel cached)', value: buildMs, unit: 'ms', baseline: copyMs, baselineName: 'cp of the same bytes', ratio: buildMs / copyMs });
    await buildIso({ output: baseIso, timeout: 0, append: 'rdinit=/usr/libexec/wasmvisor/baseline' });

    const kvm = await kvmRunsLinux(iso);
    const firstOutput = /\[(hello|ticker)\] /;
    const baseline = /baseline: userspace up/;
    for (const accel of [true, false]) {
      const name = accel ? 'KVM' : 'TCG';
      if (accel && !kvm.ok) {
        log(`iso: no KVM figure: ${kvm.why}`);
        out.push({ name: 'ISO power-on -> first domain output, KVM', value: Number.NaN, unit: 'ms', note: `not measured: ${kvm.why}; target < 5 s` });
        continue;
      }
      const runs = accel ? (quick ? 2 : 5) : 1;
      const timeout = accel ? 60_000 : 300_000;
      const times: number[] = [];
      const bases: number[] = [];
      for (let i = 0; i < runs; i++) {
        log(`iso: boot ${i + 1}/${runs} with ${name}`);
        times.push(await bootTo(iso, accel, firstOutput, timeout));
        bases.push(await bootTo(baseIso, accel, baseline, timeout));
      }
      const t = median(times);
      const b = median(bases);
      out.push({
        name: `ISO power-on -> first domain output, ${name}`, value: t, unit: 'ms', baseline: b,
        baselineName: 'same kernel+initramfs to a printing init', ratio: t / b,
        note: `${accel ? 'target < 5 s; ' : ''}median of ${runs}; wasmvisor's own start-up ${((t - b) / 1000).toFixed(1)} s`,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}
