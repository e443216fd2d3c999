// Addresses and configuration: IPv4 and MAC text forms, and the Demo CD's
// kernel command line (`ip=<addr>::<gw>:<mask>::eth0:off`, `LINKLOCAL=<addr>`).
// IPv4 addresses are u32 in host order (169.254.1.1 is 0xa9fe0101); MACs are
// u64 with the first byte in bits 40..47.

/** a.b.c.d as a u32. */
export function ipAddr(a: u32, b: u32, c: u32, d: u32): u32 {
  return ((a & 255) << 24) | ((b & 255) << 16) | ((c & 255) << 8) | (d & 255);
}

/** Dotted-quad text to an address; -1 if it is not exactly four numbers 0..255. */
export function parseIpv4(s: string): i64 {
  let value: u32 = 0;
  let part: u32 = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 46) {
      if (digits == 0 || dots == 3) return -1;
      value = (value << 8) | part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits == 3) return -1;
      part = part * 10 + <u32>(c - 48);
      if (part > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  if (digits == 0 || dots != 3) return -1;
  return <i64>((value << 8) | part);
}

/** An address as dotted-quad text. */
export function formatIpv4(ip: u32): string {
  return (ip >> 24).toString() + "." + ((ip >> 16) & 255).toString() + "." + ((ip >> 8) & 255).toString() + "." + (ip & 255).toString();
}

function hexDigit(c: i32): i32 {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** `aa:bb:cc:dd:ee:ff` (or with `-`) to a MAC; -1 if malformed. */
export function parseMacAddress(s: string): i64 {
  if (s.length != 17) return -1;
  let mac: u64 = 0;
  for (let i = 0; i < 6; i++) {
    const hi = hexDigit(s.charCodeAt(i * 3));
    const lo = hexDigit(s.charCodeAt(i * 3 + 1));
    if (hi < 0 || lo < 0) return -1;
    if (i < 5) {
      const sep = s.charCodeAt(i * 3 + 2);
      if (sep != 58 && sep != 45) return -1;
    }
    mac = (mac << 8) | <u64>((hi << 4) | lo);
  }
  return <i64>mac;
}

/** A MAC as `aa:bb:cc:dd:ee:ff`. */
export function formatMacAddress(mac: u64): string {
  const hex = "0123456789abcdef";
  let s = "";
  for (let i = 5; i >= 0; i--) {
    const b = <i32>((mac >> (<u64>i * 8)) & 255);
    s += hex.charAt(b >> 4) + hex.charAt(b & 15);
    if (i > 0) s += ":";
  }
  return s;
}

/** The classful mask of `ip` (what Linux's ipconfig assumes when ip= gives none). */
export function defaultMask(ip: u32): u32 {
  if ((ip >> 31) == 0) return 0xff000000;
  if ((ip >> 30) == 2) return 0xffff0000;
  return 0xffffff00;
}

/** True for a mask of contiguous ones (0.0.0.0 and 255.255.255.255 included). */
export function validMask(mask: u32): bool {
  return (~mask & (~mask + 1)) == 0;
}

/**
 * What a command line asks for. `ip` 0 means no address (no `ip=`, or
 * `ip=off`/`dhcp`, which this stack does not do); `linkLocal` 0 means none.
 */
export class NetConfig {
  ip: u32 = 0;
  mask: u32 = 0;
  gateway: u32 = 0;
  /** The Demo CD's LINKLOCAL= alias (LOCALIP= is taken too), on 169.254/16. */
  linkLocal: u32 = 0;
  /** Why parsing failed, or "". */
  error: string = "";

  /**
   * Parse the `ip=` and `LINKLOCAL=` words of a kernel command line.
   * `ip=<client>:<server>:<gateway>:<netmask>:<hostname>:<device>:<autoconf>`
   * as in Linux's nfsroot.txt: only client, gateway and netmask are used,
   * empty fields take their defaults (classful mask, no gateway). Returns
   * false (and sets `error`) when a word present is malformed.
   */
  parse(cmdline: string): bool {
    const words = cmdline.split(" ");
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      if (w.startsWith("ip=")) {
        if (!this.parseIp(w.substring(3))) return false;
      } else if (w.startsWith("LINKLOCAL=") || w.startsWith("LOCALIP=")) {
        const v = w.substring(w.indexOf("=") + 1);
        if (v.length == 0) continue;
        const a = parseIpv4(v);
        if (a < 0) return this.fail("LINKLOCAL=: not an IPv4 address: " + v);
        this.linkLocal = <u32>a;
      }
    }
    return true;
  }

  private parseIp(v: string): bool {
    if (v == "off" || v == "none" || v == "dhcp" || v == "bootp" || v == "rarp" || v == "any" || v == "on" || v.length == 0) return true;
    const f = v.split(":");
    const client = parseIpv4(f[0]);
    if (client < 0) return this.fail("ip=: client address: " + f[0]);
    let gateway: i64 = 0;
    if (f.length > 2 && f[2].length > 0) {
      gateway = parseIpv4(f[2]);
      if (gateway < 0) return this.fail("ip=: gateway: " + f[2]);
    }
    let mask: i64 = <i64>defaultMask(<u32>client);
    if (f.length > 3 && f[3].length > 0) {
      mask = parseIpv4(f[3]);
      if (mask < 0 || !validMask(<u32>mask)) return this.fail("ip=: netmask: " + f[3]);
    }
    this.ip = <u32>client;
    this.mask = <u32>mask;
    this.gateway = <u32>gateway;
    return true;
  }

  private fail(why: string): bool {
    this.error = why;
    return false;
  }
}
