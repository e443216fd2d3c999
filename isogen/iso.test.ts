/**
 * The live ISO, end to end: `wv iso build` (twice: same bytes), unpack and
 * rebuild, then real boots in QEMU with the serial line on a pipe: the
 * normal entry (banner, the configured domains' output, the wv shell's
 * `list` and a debug key, a clean power-off), the safe-mode entry (picked
 * with its Grub hotkey) and a bad boot option typed into Grub's editor.
 * KVM when it runs a Linux kernel here, plain emulation otherwise (slower:
 * the timeouts allow for it). Skipped, naming the Debian packages, when the
 * tools are missing, unless WV_ISO_TESTS=required (CI).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILD_PREREQS, QEMU_PREREQS, missingPrereqs } from './tools.ts';
import { kvmRunsLinux, QemuMachine } from './qemu.ts';
import { grubEntry } from './grub.ts';
import type { BuildResult } from './build.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const wv = join(root, 'cli', 'wv.ts');
const required = process.env.WV_ISO_TESTS === 'required';
const missing = missingPrereqs([...BUILD_PREREQS, ...QEMU_PREREQS]);
const EPOCH = '1074902400';

// With KVM the whole file takes about a minute or two; without, the boots test raises this.
t.setTimeout(420_000);
const setFileTimeout = (ms: number): void => { t.setTimeout(ms); };

function wvCmd(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [wv, ...args], { encoding: 'utf8', env: { ...process.env, SOURCE_DATE_EPOCH: EPOCH, ...env }, maxBuffer: 16 * 2 ** 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('grub-entry prints an entry that finds its partition by the kernel path', async (t) => {
  const r = wvCmd(['iso', 'grub-entry', '--dir', '/wv', '--append', 'noreboot']);
  t.equal(r.status, 0, r.status === 0 ? 'exit status 0' : r.stderr);
  t.equal(r.stdout, grubEntry({ dir: '/wv', append: 'noreboot' }));
  t.match(r.stdout, /search --no-floppy --file --set=root \/wv\/vmlinuz/);
  t.match(r.stdout, /linux \/wv\/vmlinuz console=tty0 console=ttyS0,115200n8 .* noreboot\n/);
  t.match(r.stdout, /initrd \/wv\/initrd\.zst/);
  const bad = wvCmd(['iso', 'grub-entry', '--dir', 'relative/path']);
  t.equal(bad.status, 1);
  t.match(bad.stderr, /invalid --dir: "relative\/path" is not an absolute path \[WV_ERR_INVALID_ARGUMENT\]/);
});

if (missing.length && !required) {
  const pkgs = [...new Set(missing.map((m) => m.pkg))].sort().join(' ');
  t.test('build and boot the ISO', { skip: `the ISO tests need ${missing.map((m) => m.tool).join(', ')}: apt-get install ${pkgs}` }, async () => {});
} else {
  t.test('prerequisites', async (t) => {
    t.same(missing, [], 'every tool the build and the boot use is installed');
  });

  const work = mkdtempSync(join(tmpdir(), 'wv-iso-test-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const iso = join(work, 'wasmvisor.iso');
  const overlay = join(work, 'overlay');
  mkdirSync(join(overlay, 'etc'), { recursive: true });
  writeFileSync(join(overlay, 'etc', 'motd'), 'built by the ISO test\n');
  let built: BuildResult | undefined;

  t.test('bad inputs are refused before any work, naming the path and the reason', async (t) => {
    const noConfig = wvCmd(['iso', 'build', '-o', join(work, 'x.iso'), '--config', join(work, 'no-such-dir')]);
    t.equal(noConfig.status, 1);
    t.match(noConfig.stderr, `wv: invalid --config: ${join(work, 'no-such-dir')} does not exist [WV_ERR_INVALID_ARGUMENT]`);
    const fileOverlay = join(work, 'a-file');
    writeFileSync(fileOverlay, 'x');
    const notDir = wvCmd(['iso', 'build', '-o', join(work, 'x.iso'), '--overlay', fileOverlay]);
    t.equal(notDir.status, 1);
    t.match(notDir.stderr, `wv: invalid --overlay: ${fileOverlay} is not a directory [WV_ERR_INVALID_ARGUMENT]`);
    const notUnpacked = wvCmd(['iso', 'build', '-o', join(work, 'x.iso'), '--from', overlay]);
    t.match(notUnpacked.stderr, /is not an unpacked ISO \(no root\/init; make one with wv iso unpack ISO DIR\)/);
    const badTimeout = wvCmd(['iso', 'build', '--timeout', 'soon']);
    t.not(badTimeout.status, 0);
    t.match(badTimeout.stderr, /"soon" is not a whole number of seconds/);
    t.notOk(existsSync(join(work, 'x.iso')), 'no ISO was written');
  });

  t.test('wv iso build: progress on stderr, the result on stdout, the same bytes twice', async (t) => {
    const r = wvCmd(['iso', 'build', '-o', iso, '--overlay', overlay, '--json']);
    t.equal(r.status, 0, r.status === 0 ? 'exit status 0' : r.stderr);
    for (const step of ['prerequisites: all found', 'kernel: ', 'root: bundling wasmvisor', 'initramfs: cpio + zstd', 'image: grub-mkrescue']) {
      t.match(r.stderr, `wv iso: ${step}`, `progress: ${step}`);
    }
    built = JSON.parse(r.stdout) as BuildResult;
    t.equal(built.path, iso);
    t.ok(existsSync(iso));
    t.ok(built.bytes > 20 * 2 ** 20 && built.bytes < 150 * 2 ** 20, `size ${(built.bytes / 2 ** 20).toFixed(1)} MiB is under the 150 MiB target`);
    t.match(built.kernel.package, /^linux-image-.*-amd64_.*\.deb$/);
    t.same(built.domains, ['hello', 'ticker']);
    t.ok(built.guests.includes('hello') && built.guests.includes('ticker') && built.guests.includes('nat'), 'the reference guests are in');
    t.same(built.bootEntries, ['normal', 'ip', 'safe', 'hwinfo']);
    t.equal(built.epoch, Number(EPOCH));

    const again = wvCmd(['iso', 'build', '-o', join(work, 'again.iso'), '--overlay', overlay, '--json']);
    t.equal(again.status, 0, again.status === 0 ? 'exit status 0' : again.stderr);
    t.equal((JSON.parse(again.stdout) as BuildResult).sha256, built.sha256, 'a second build gives the same bytes');

    rmSync(join(work, 'again.iso'));
  });

  t.test('wv iso unpack, then build --from: the tree, the overlay, and the same bytes again', async (t) => {
    t.ok(built, 'built');
    const dir = join(work, 'unpacked');
    const u = wvCmd(['iso', 'unpack', iso, dir]);
    t.equal(u.status, 0, u.status === 0 ? 'exit status 0' : u.stderr);
    t.match(u.stdout, `rebuild with: wv iso build --from ${dir} -o NEW.iso`);
    for (const f of ['iso/boot/vmlinuz', 'iso/boot/initrd.zst', 'iso/boot/grub/grub.cfg', 'root/init', 'root/opt/wasmvisor/bin/node', 'root/opt/wasmvisor/dist/wv.js', 'root/etc/wv/domains/ticker.cfg']) {
      t.ok(existsSync(join(dir, f)), f);
    }
    t.equal(readFileSync(join(dir, 'root/etc/motd'), 'utf8'), 'built by the ISO test\n', 'the overlay is in the root');
    t.match(readFileSync(join(dir, 'iso/boot/grub/grub.cfg'), 'utf8'), /menuentry 'wasmvisor in safe mode \(one CPU, verbose\)' --id safe --hotkey=s/);
    const again = wvCmd(['iso', 'unpack', iso, dir]);
    t.match(again.stderr, /exists and is not an empty directory/);

    // The human summary this time: the path, then size and sha256, then the contents.
    const rebuilt = join(work, 'rebuilt.iso');
    const r = wvCmd(['iso', 'build', '--from', dir, '-o', rebuilt]);
    t.equal(r.status, 0, r.status === 0 ? 'exit status 0' : r.stderr);
    t.match(r.stdout, new RegExp(`^${rebuilt}\\n  size +\\d+\\.\\d MiB \\(${built!.bytes} bytes\\), sha256 ${built!.sha256}\\n`), 'an unedited tree rebuilds to the same bytes');
    t.match(r.stdout, /\n  domains +hello, ticker \(started at boot\)\n/);
    t.match(r.stdout, /\n  kernel +linux-image-\S+\.deb \(Linux \S+-amd64, [\d.]+ MiB\), \d+ network modules\n/);
    rmSync(rebuilt);
    rmSync(dir, { recursive: true, force: true });
  });

  t.test('boots in QEMU', async (t) => {
    t.ok(existsSync(iso), 'the ISO was built');
    const kvm = await kvmRunsLinux(iso);
    t.comment(`QEMU: ${kvm.ok ? 'KVM' : `plain emulation (${kvm.why})`}`);
    const slow = kvm.ok ? 1 : 8;
    // Plain emulation runs node about 20 times slower: three boots take minutes each on a loaded 2-core machine.
    if (!kvm.ok) setFileTimeout(1_200_000);

    await t.test('the normal entry: banner, domains, the wv shell, a debug key, power-off', async (t) => {
      const m = QemuMachine.start({ iso, kvm: kvm.ok });
      t.teardown(() => m.kill());
      const banner = await m.waitFor('a hypervisor for WebAssembly guests', 30_000 * slow);
      await m.waitFor(/wasmvisor 0\.1\.0 on Linux \d+\.\d+\.\d+-\d+-amd64, node v\d+/, 10_000 * slow, banner.end);
      await m.waitFor(/wasmvisor: hypervisor running/, 20_000 * slow, banner.end);
      const hello = await m.waitFor(/\[hello\] hello from domain \d+\n/, 20_000 * slow, banner.end);
      const tick = await m.waitFor(/\[ticker\] tick 0\n/, 20_000 * slow, banner.end);
      t.comment(`power-on -> banner ${(banner.ms / 1000).toFixed(1)} s, first domain output ${(Math.min(hello.ms, tick.ms) / 1000).toFixed(1)} s`);
      await m.waitFor(/\[hello\] cmdline: root=\/dev\/ram0 4\n/, 10_000 * slow, banner.end);
      const prompt = await m.waitFor('wv> ', 20_000 * slow, banner.end);

      m.send('list\r');
      const list = await m.waitFor(/Name +ID +Mem\(MiB\)[^]*?wv> /, 15_000 * slow, prompt.end);
      t.match(list.match[0], /Domain-0 +0 +256 /, 'domain 0 holds dom0_mem=256M');
      t.match(list.match[0], /hello +\d+ +16 .*shutdown\(poweroff\)/, 'hello ran and powered off (preserved)');
      t.match(list.match[0], /ticker +\d+ +16 .*(running|blocked)/, 'ticker is alive');

      m.send('h\r');
      const keys = await m.waitFor(/'h' pressed[^]*?wv> /, 15_000 * slow, list.end);
      t.match(keys.match[0], /key 'd': dump domains/);
      t.match(keys.match[0], /key 'm': dump the memory budget/);
      m.send('wv debug-keys d\r');
      const dump = await m.waitFor(/domain 0 \(Domain-0\): [^]*?wv> /, 15_000 * slow, keys.end);
      t.match(dump.match[0], /domain \d+ \(ticker\): (running|blocked), cpu \d/);

      m.send('cat /etc/motd\r');
      const bad = await m.waitFor(/wv> /, 15_000 * slow, dump.end);
      t.match(m.output.slice(dump.end, bad.end), /unknown command|error/i, 'a line that is not a wv command gets wv\'s error');

      m.send('poweroff\r');
      const exit = await m.exited;
      t.equal(exit.code, 0, 'QEMU exits with 0 (ACPI power-off)');
      t.match(m.output, /wasmvisor: stopping the domains\n[^]*wasmvisor: poweroff/);
      t.notMatch(m.output, /Kernel panic|Attempted to kill init/);
    });

    await t.test('the safe-mode entry (its Grub hotkey): one CPU, verbose, domains up', async (t) => {
      const m = QemuMachine.start({ iso, kvm: kvm.ok });
      t.teardown(() => m.kill());
      await m.waitFor(/safe mode \(one CPU, verbose\)/, 30_000 * slow);
      m.send('s');
      const banner = await m.waitFor('a hypervisor for WebAssembly guests', 30_000 * slow);
      t.match(m.output.slice(0, banner.end), /Linux version \d/, 'kernel messages are shown (no quiet)');
      // The serial line has no flow control: under emulation it can drop characters, so match the start of the line only.
      t.match(m.output.slice(0, banner.end), /Command line: .*nosmp/);
      await m.waitFor(/wasmvisor: 1 CPU\(s\)/, 10_000 * slow, banner.end);
      await m.waitFor(/starting the hypervisor \(boot options: nosmp dom0_mem=256M\)/, 10_000 * slow, banner.end);
      await m.waitFor(/\[ticker\] tick 0\n/, 30_000 * slow, banner.end);
      const prompt = await m.waitFor('wv> ', 30_000 * slow, banner.end);
      m.send('info\r');
      const info = await m.waitFor(/wv> /, 15_000 * slow, prompt.end);
      t.match(m.output.slice(prompt.end, info.end), /nr_cpus +: 1\n/, 'the hypervisor uses one CPU');
      m.send('exit\r');
      t.equal((await m.exited).code, 0);
      t.notMatch(m.output, /Kernel panic/);
    });

    await t.test('a bad boot option typed into Grub\'s editor is refused on the console, naming it', async (t) => {
      const m = QemuMachine.start({ iso, kvm: kvm.ok });
      t.teardown(() => m.kill());
      await m.waitFor(/command-line IP/, 30_000 * slow);
      m.send('e');
      const editor = await m.waitFor(/Minimum Emacs-like screen editing/, 10_000 * slow);
      // The entry's lines: setparams '...', a blank line, linux ...: Ctrl-N twice, Ctrl-E (end of line), type, then Ctrl-X boots.
      m.send('\x0e\x0e\x05 dom0_mem=lots');
      // (The editor wraps the long line, so the echo is matched by the typed word alone.)
      const typed = await m.waitFor(/dom0_mem=lots/, 10_000 * slow, editor.end);
      t.match(m.output.slice(editor.end, typed.end), /linux \/boot\/vmlinuz console=tty0/, 'the edit is on the linux line');
      m.send('\x18');
      const banner = await m.waitFor('a hypervisor for WebAssembly guests', 30_000 * slow, typed.end);
      const err = await m.waitFor(/boot option dom0_mem: "lots" is not a size[^\n]*\n/, 30_000 * slow, banner.end);
      t.pass(`the console says: ${err.match[0].trim()}`);
      await m.waitFor(/the hypervisor did not start; fix the boot line/, 10_000 * slow, banner.end);
      t.notMatch(m.output.slice(banner.end), /created domain/, 'no domain was started');
      await m.waitFor('wv> ', 20_000 * slow, banner.end);
      m.send('poweroff\r');
      t.equal((await m.exited).code, 0);
    });
  });
}
