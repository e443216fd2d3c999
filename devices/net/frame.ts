/**
 * Ethernet, ARP and IPv4 as the switch reads them: address parsing and
 * formatting, the IPv4 header checksum, and builders for well-formed frames
 * (the switch's ARP replies, tests, benchmarks, the NAT gateway).
 *
 * Inside the switch a MAC is a 48-bit integer and an IPv4 address an
 * unsigned 32-bit integer, so lookups are Map<number> hits; the API takes
 * and returns the usual text forms.
 */
import { InvalidArgumentError } from '../../kernel/errors.ts';
import { ETH_HEADER } from './protocol.ts';

export const EtherType = { IPV4: 0x0800, ARP: 0x0806 } as const;
export const ArpOp = { REQUEST: 1, REPLY: 2 } as const;
/** Bytes of an Ethernet/IPv4 ARP packet. */
export const ARP_SIZE = 28;
/** Bytes of an IPv4 header without options. */
export const IPV4_HEADER = 20;
/** The Ethernet broadcast address as a 48-bit integer. */
export const BROADCAST_MAC = 0xffff_ffff_ffff;

/** The 48-bit integer of the MAC at `bytes[at..at+6)`. */
export function macAt(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 8) | bytes[at + 1]!) * 0x1_0000_0000
    + (((bytes[at + 2]! << 24) | (bytes[at + 3]! << 16) | (bytes[at + 4]! << 8) | bytes[at + 5]!) >>> 0);
}

/** Write the 48-bit MAC `mac` at `bytes[at..at+6)`. */
export function putMac(bytes: Uint8Array, at: number, mac: number): void {
  const hi = Math.floor(mac / 0x1_0000_0000);
  const lo = mac >>> 0;
  bytes[at] = hi >>> 8;
  bytes[at + 1] = hi;
  bytes[at + 2] = lo >>> 24;
  bytes[at + 3] = lo >>> 16;
  bytes[at + 4] = lo >>> 8;
  bytes[at + 5] = lo;
}

/** The u32 of the IPv4 address at `bytes[at..at+4)` (network order). */
export function ipAt(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

export function putIp(bytes: Uint8Array, at: number, ip: number): void {
  bytes[at] = ip >>> 24;
  bytes[at + 1] = ip >>> 16;
  bytes[at + 2] = ip >>> 8;
  bytes[at + 3] = ip;
}

/** Parse `aa:bb:cc:dd:ee:ff` (or with `-`); throws InvalidArgumentError. */
export function parseMac(text: string): number {
  const m = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i.exec(text);
  if (!m) throw new InvalidArgumentError('MAC address', `"${text}" is not six hex octets like 00:16:3e:00:01:00`);
  const b = new Uint8Array([m[1], m[3], m[4], m[5], m[6], m[7]].map((x) => parseInt(x!, 16)));
  return macAt(b, 0);
}

export function formatMac(mac: number): string {
  const b = new Uint8Array(6);
  putMac(b, 0, mac);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** True for a group (multicast or broadcast) MAC: the I/G bit of the first octet. */
export function isGroupMac(mac: number): boolean {
  return (Math.floor(mac / 0x100_0000_0000) & 1) === 1;
}

/**
 * The MAC Xen's tools give vif `devid` of domain `domid` when the config
 * names none: the Xen OUI 00:16:3e, then the domain id (15 bits) and the
 * vif number.
 */
export function defaultMac(domid: number, devid: number): string {
  if (!Number.isInteger(domid) || domid < 0 || domid > 0x7fff) throw new InvalidArgumentError('domain id', `${domid}`);
  if (!Number.isInteger(devid) || devid < 0 || devid > 0xff) throw new InvalidArgumentError('vif number', `${devid} is not 0..255`);
  return formatMac(0x00163e_000000 + domid * 0x100 + devid);
}

/** Parse dotted-quad IPv4 text into a u32; throws InvalidArgumentError. */
export function parseIp(text: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  const parts = m ? [m[1], m[2], m[3], m[4]].map(Number) : [];
  if (!m || parts.some((p) => p > 255)) throw new InvalidArgumentError('IPv4 address', `"${text}" is not a dotted quad like 169.254.1.1`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function formatIp(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

/** The Internet checksum (RFC 1071) of `bytes[at..at+len)`: 0 over a header whose checksum field is right. */
export function inetChecksum(bytes: Uint8Array, at: number, len: number): number {
  let sum = 0;
  let i = at;
  for (const end = at + len - 1; i < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (i < at + len) sum += bytes[i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export interface Ipv4FrameSpec {
  dstMac: string | number;
  srcMac: string | number;
  src: string | number;
  dst: string | number;
  /** IP protocol number; default 17 (UDP, the payload is not interpreted). */
  protocol?: number;
  ttl?: number;
  payload?: Uint8Array;
}

const mac = (m: string | number): number => (typeof m === 'string' ? parseMac(m) : m);
const ip = (a: string | number): number => (typeof a === 'string' ? parseIp(a) : a);

/** A well-formed Ethernet/IPv4 frame (20-byte header, checksum set) around `payload`. */
export function ipv4Frame(s: Ipv4FrameSpec): Uint8Array {
  const payload = s.payload ?? new Uint8Array(0);
  const f = new Uint8Array(ETH_HEADER + IPV4_HEADER + payload.length);
  putMac(f, 0, mac(s.dstMac));
  putMac(f, 6, mac(s.srcMac));
  f[12] = EtherType.IPV4 >> 8;
  f[13] = EtherType.IPV4 & 0xff;
  const h = ETH_HEADER;
  f[h] = 0x45;
  const total = IPV4_HEADER + payload.length;
  f[h + 2] = total >> 8;
  f[h + 3] = total & 0xff;
  f[h + 8] = s.ttl ?? 64;
  f[h + 9] = s.protocol ?? 17;
  putIp(f, h + 12, ip(s.src));
  putIp(f, h + 16, ip(s.dst));
  const sum = inetChecksum(f, h, IPV4_HEADER);
  f[h + 10] = sum >> 8;
  f[h + 11] = sum & 0xff;
  f.set(payload, h + IPV4_HEADER);
  return f;
}

export interface ArpFrameSpec {
  op: number;
  /** Ethernet destination; default broadcast. */
  dstMac?: string | number;
  /** Ethernet source; default the sender MAC. */
  srcMac?: string | number;
  senderMac: string | number;
  senderIp: string | number;
  /** Default 00:00:00:00:00:00 (unknown, in a request). */
  targetMac?: string | number;
  targetIp: string | number;
}

/** An Ethernet/IPv4 ARP frame (42 bytes, unpadded). */
export function arpFrame(s: ArpFrameSpec): Uint8Array {
  const f = new Uint8Array(ETH_HEADER + ARP_SIZE);
  writeArp(f, s.op, mac(s.dstMac ?? BROADCAST_MAC), mac(s.srcMac ?? s.senderMac), mac(s.senderMac), ip(s.senderIp), mac(s.targetMac ?? 0), ip(s.targetIp));
  return f;
}

/** Write an Ethernet/IPv4 ARP frame into `f[0..42)` (the switch's replies, without allocating). */
export function writeArp(f: Uint8Array, op: number, dstMac: number, srcMac: number, senderMac: number, senderIp: number, targetMac: number, targetIp: number): void {
  putMac(f, 0, dstMac);
  putMac(f, 6, srcMac);
  f[12] = EtherType.ARP >> 8;
  f[13] = EtherType.ARP & 0xff;
  const a = ETH_HEADER;
  f[a] = 0; f[a + 1] = 1; // hardware: Ethernet
  f[a + 2] = EtherType.IPV4 >> 8; f[a + 3] = EtherType.IPV4 & 0xff;
  f[a + 4] = 6; f[a + 5] = 4;
  f[a + 6] = op >> 8; f[a + 7] = op & 0xff;
  putMac(f, a + 8, senderMac);
  putIp(f, a + 14, senderIp);
  putMac(f, a + 18, targetMac);
  putIp(f, a + 24, targetIp);
}
