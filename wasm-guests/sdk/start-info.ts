import { start_info_cmdline, start_info_domain_id, start_info_memory_size, start_info_page } from "./abi";

/** Magic at offset 0 of the start-info page ("WVSI"). */
export const START_INFO_MAGIC: u32 = 0x49535657;

/** This domain's id. */
export function domainId(): u32 {
  return start_info_domain_id();
}

/** The domain's memory allocation in bytes. */
export function memorySize(): u64 {
  return start_info_memory_size();
}

/** Guest address of the start-info page the kernel wrote before start(). */
export function startInfoPage(): u32 {
  return start_info_page();
}

/** True when the start-info page holds the kernel's magic. */
export function startInfoValid(): bool {
  return load<u32>(<usize>start_info_page()) == START_INFO_MAGIC;
}

/** The command line, read through the hypercall. */
export function cmdline(): string {
  const cap: u32 = 1024;
  const buf = new ArrayBuffer(<i32>cap);
  const n = start_info_cmdline(changetype<usize>(buf), cap);
  if (n <= 0) return "";
  return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>min<u32>(<u32>n, cap));
}

/** The value of `key=value` on the command line, or `dflt`. */
export function cmdlineArg(key: string, dflt: string): string {
  const parts = cmdline().split(" ");
  const prefix = key + "=";
  for (let i = 0; i < parts.length; i++) {
    if (parts[i].startsWith(prefix)) return parts[i].substring(prefix.length);
  }
  return dflt;
}

/** The shutdown the toolstack asked for (0 poweroff, 1 reboot, 2 suspend), or -1 when none was asked. */
export function requestedShutdown(): i32 {
  return <i32>atomic.load<u32>(<usize>start_info_page() + 40) - 1;
}
