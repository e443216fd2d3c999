// Network byte order and the Internet checksum (RFC 1071), over guest memory.
// Not exported from the SDK: the protocol files share them.

/** The big-endian u16 at `p`. */
@inline export function get16(p: usize): u32 {
  return <u32>bswap<u16>(load<u16>(p));
}

/** The big-endian u32 at `p`. */
@inline export function get32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}

@inline export function put16(p: usize, v: u32): void {
  store<u16>(p, bswap<u16>(<u16>v));
}

@inline export function put32(p: usize, v: u32): void {
  store<u32>(p, bswap<u32>(v));
}

/** A 48-bit MAC address (first byte in bits 40..47) at `p`. */
@inline export function getMac(p: usize): u64 {
  return (<u64>get16(p) << 32) | <u64>get32(p + 2);
}

@inline export function putMac(p: usize, mac: u64): void {
  put16(p, <u32>(mac >> 32));
  put32(p + 2, <u32>mac);
}

// The checksum is summed over little-endian loads: the one's-complement sum
// is the same up to a byte swap, so a sum folded here is stored with a
// little-endian store and lands in network order. Only the last part of a
// sum may have an odd length.

/** Add the `len` bytes at `p` to a running sum. */
export function csumAdd(sum: u64, p: usize, len: u32): u64 {
  let i: u32 = 0;
  while (i + 16 <= len) {
    sum += <u64>load<u32>(p + i) + <u64>load<u32>(p + i + 4) + <u64>load<u32>(p + i + 8) + <u64>load<u32>(p + i + 12);
    i += 16;
  }
  while (i + 4 <= len) {
    sum += <u64>load<u32>(p + i);
    i += 4;
  }
  if (i + 2 <= len) {
    sum += <u64>load<u16>(p + i);
    i += 2;
  }
  if (i < len) sum += <u64>load<u8>(p + i);
  return sum;
}

/** The TCP/UDP pseudo-header (RFC 793, 768) of a segment of `len` bytes. */
export function csumPseudo(src: u32, dst: u32, proto: u32, len: u32): u64 {
  return <u64>bswap<u32>(src) + <u64>bswap<u32>(dst) + <u64>(proto << 8) + <u64>bswap<u16>(<u16>len);
}

/** Fold a sum to 16 bits. A region whose checksum field is right folds to 0xffff. */
export function csumFold(sum: u64): u32 {
  sum = (sum & 0xffffffff) + (sum >> 32);
  sum = (sum & 0xffffffff) + (sum >> 32);
  let s = <u32>sum;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return s;
}

/** Store the checksum of `sum` (summed with the field zero) into the field at `p`. */
@inline export function csumStore(p: usize, sum: u64): void {
  store<u16>(p, <u16>~csumFold(sum));
}

/** Sequence-number order (RFC 793): a before b, modulo 2^32. */
@inline export function seqLt(a: u32, b: u32): bool {
  return <i32>(a - b) < 0;
}

@inline export function seqLe(a: u32, b: u32): bool {
  return <i32>(a - b) <= 0;
}

@inline export function seqGt(a: u32, b: u32): bool {
  return <i32>(a - b) > 0;
}

@inline export function seqGe(a: u32, b: u32): bool {
  return <i32>(a - b) >= 0;
}
