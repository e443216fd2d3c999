/**
 * The ISO's boot menu (grub.cfg) and the menu entry `wv iso grub-entry`
 * prints for a disk that already has Grub. One table of entries makes both,
 * so they cannot drift apart.
 */

/** The kernel command line every entry starts with: screen and serial consoles, reboot 10 s after a panic. */
export const BASE_CMDLINE = 'console=tty0 console=ttyS0,115200n8 panic=10';

/** The boot entries, as on the Demo CD (normal, command-line IP, safe mode, and a diagnostic one). */
export const BOOT_ENTRIES = [
  { id: 'normal', hotkey: 'n', title: 'wasmvisor', options: 'quiet dom0_mem=256M' },
  { id: 'ip', hotkey: 'i', title: 'wasmvisor, command-line IP (press e to edit ip=)', options: 'quiet dom0_mem=256M ip=10.0.2.15::10.0.2.2:255.255.255.0:wasmvisor:eth0:off' },
  { id: 'safe', hotkey: 's', title: 'wasmvisor in safe mode (one CPU, verbose)', options: 'nosmp nomodeset loglevel=7 wv.verbose dom0_mem=256M' },
  { id: 'hwinfo', hotkey: 'h', title: 'list the hardware and stop', options: 'quiet wv.hwinfo' },
] as const;

export type EntryId = (typeof BOOT_ENTRIES)[number]['id'];

/** grub.cfg for the ISO: the menu on the screen and on the serial line, `timeout` seconds before the first entry boots. */
export function grubCfg(opts: { timeout: number; kernel: string; initrd: string; append?: string }): string {
  const extra = opts.append ? ` ${opts.append}` : '';
  const L = [
    '# wasmvisor live ISO. Keys: n, i, s, h boot an entry at once; e edits one; c gives the Grub command line.',
    'serial --unit=0 --speed=115200',
    'terminal_input serial console',
    'terminal_output serial console',
    'if [ "${grub_platform}" = "efi" ]; then insmod all_video; fi',
    'set default=0',
    'set timeout_style=menu',
    `set timeout=${opts.timeout}`,
    '',
  ];
  for (const e of BOOT_ENTRIES) {
    L.push(`menuentry '${e.title}' --id ${e.id} --hotkey=${e.hotkey} {`,
      `  linux ${opts.kernel} ${BASE_CMDLINE} ${e.options}${extra}`,
      `  initrd ${opts.initrd}`,
      '}');
  }
  return `${L.join('\n')}\n`;
}

/**
 * A menu entry for booting wasmvisor from a disk whose Grub is already
 * installed: the ISO's kernel and initrd copied to `dir` on any partition
 * Grub can read (it finds the partition by the kernel's path).
 */
export function grubEntry(opts: { dir: string; append?: string; title?: string }): string {
  const dir = opts.dir.replace(/\/+$/, '');
  const normal = BOOT_ENTRIES[0];
  const extra = opts.append ? ` ${opts.append}` : '';
  return [
    `menuentry '${opts.title ?? 'wasmvisor'}' {`,
    `  search --no-floppy --file --set=root ${dir}/vmlinuz`,
    `  linux ${dir}/vmlinuz ${BASE_CMDLINE} ${normal.options}${extra}`,
    `  initrd ${dir}/initrd.zst`,
    '}',
    '',
  ].join('\n');
}
