/**
 * The block ring protocol (after Xen's `io/blkif.h`): one request or
 * response per 112-byte slot of a shared ring page (32 slots).
 *
 * Direct request (read, write, flush, discard)   Response
 *   0  u8   op   (Op)                            0  u64 id
 *   1  u8   nr_segments (read/write: 1..11)      8  u8  op (as requested)
 *   2  u16  handle (the VBD's number)           10  i16 status (Status)
 *   8  u64  id (the frontend's, echoed)
 *  16  u64  sector (512-byte sectors)
 *  24  segments[11], 8 bytes each (Segment below)
 *  24  discard only: u64 nr_sectors
 *
 * Indirect request (op INDIRECT = 6, Xen's BLKIF_OP_INDIRECT)
 *   0  u8   op = 6
 *   1  u8   indirect_op (READ or WRITE)
 *   2  u16  nr_segments (1..the backend's feature-max-indirect-segments)
 *   8  u64  id
 *  16  u64  sector
 *  24  u16  handle
 *  28  u32  indirect_grefs[ceil(nr_segments / 512)] (room for 8)
 *  Each indirect gref names a granted page (read-only is enough) holding up
 *  to 512 segment descriptors in a row, segment i at page i / 512, offset
 *  (i % 512) * 8.
 *
 * Segment descriptor (8 bytes, in a request or an indirect page)
 *   0  u32  gref   a granted 4 KiB data page
 *   4  u8   first_sect, 5 u8 last_sect: sectors first..last (0..7) of that page
 *   6  u16  reserved (0)
 *
 * A request's segments are consecutive sectors on the disk from `sector`.
 * Data moves through the segments' grants (read: the backend writes the
 * pages, so they must be granted read-write; write: it reads them). Flush is
 * a barrier: it is answered only when every write answered before it is
 * durable on the host. A backend that takes indirect requests publishes
 * `feature-max-indirect-segments` (MAX_INDIRECT_SEGMENTS here); the answer to
 * an indirect request carries op 6.
 */
import type { RingCodec } from '../../kernel/ring.ts';

export const BLK_SLOT_SIZE = 112;
/** Segments a direct request carries in its slot (Xen's BLKIF_MAX_SEGMENTS_PER_REQUEST). */
export const MAX_SEGMENTS = 11;
export const SECTORS_PER_PAGE = 8;
/** Bytes of one segment descriptor. */
export const SEGMENT_SIZE = 8;
/** Descriptors in one indirect page. */
export const SEGMENTS_PER_INDIRECT_PAGE = 512;
/** Indirect page references a request has room for (Xen's BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST). */
export const MAX_INDIRECT_PAGES = 8;
/**
 * The most segments this backend takes in one indirect request, published
 * as `feature-max-indirect-segments`: 256 pages, 1 MiB per request (one
 * indirect page). A frontend may send fewer.
 */
export const MAX_INDIRECT_SEGMENTS = 256;
/** Offset of the indirect page references in an indirect request. */
export const INDIRECT_GREFS_OFFSET = 28;

export const Op = { READ: 0, WRITE: 1, FLUSH: 3, DISCARD: 5, INDIRECT: 6 } as const;
export const Status = { OKAY: 0, ERROR: -1, NOT_SUPPORTED: -2 } as const;

export interface Segment { gref: number; firstSect: number; lastSect: number }

export interface BlkRequest {
  op: number;
  handle: number;
  id: bigint;
  sector: bigint;
  /** Direct read/write only (the indirect ones are in the indirect pages). */
  segments: Segment[];
  /** discard only. */
  nrSectors: bigint;
  /** The raw segment count as the frontend wrote it (validated by the backend). */
  nrSegments: number;
  /** Indirect only: READ or WRITE, as the frontend wrote it (validated by the backend). */
  indirectOp?: number;
  /** Indirect only: the grants of the pages of descriptors (as many as nr_segments needs, at most MAX_INDIRECT_PAGES). */
  indirectGrefs?: number[];
}

export interface BlkResponse { id: bigint; op: number; status: number }

/** Indirect pages a request of `nrSegments` segments names. */
export function indirectPages(nrSegments: number): number {
  return Math.ceil(nrSegments / SEGMENTS_PER_INDIRECT_PAGE);
}

/** Write segment descriptor `s` at `offset` of `view` (an indirect page, or a request). */
export function writeSegment(view: DataView, offset: number, s: Segment): void {
  view.setUint32(offset, s.gref, true);
  view.setUint8(offset + 4, s.firstSect);
  view.setUint8(offset + 5, s.lastSect);
  view.setUint16(offset + 6, 0, true);
}

export const requestCodec: RingCodec<BlkRequest> = {
  size: BLK_SLOT_SIZE,
  write(v, r) {
    v.setUint8(0, r.op);
    v.setBigUint64(8, r.id, true);
    v.setBigUint64(16, r.sector, true);
    if (r.op === Op.INDIRECT) {
      v.setUint8(1, r.indirectOp ?? Op.READ);
      v.setUint16(2, r.nrSegments, true);
      v.setUint16(24, r.handle, true);
      (r.indirectGrefs ?? []).forEach((g, i) => v.setUint32(INDIRECT_GREFS_OFFSET + i * 4, g, true));
      return;
    }
    v.setUint8(1, r.op === Op.READ || r.op === Op.WRITE ? r.segments.length : 0);
    v.setUint16(2, r.handle, true);
    if (r.op === Op.DISCARD) v.setBigUint64(24, r.nrSectors, true);
    else r.segments.forEach((s, i) => writeSegment(v, 24 + i * SEGMENT_SIZE, s));
  },
  read(v) {
    const op = v.getUint8(0);
    const id = v.getBigUint64(8, true);
    const sector = v.getBigUint64(16, true);
    if (op === Op.INDIRECT) {
      const nrSegments = v.getUint16(2, true);
      const indirectGrefs: number[] = [];
      // Decode only as many references as fit; the backend rejects a count that needs more.
      for (let i = 0; i < Math.min(indirectPages(nrSegments), MAX_INDIRECT_PAGES); i++) indirectGrefs.push(v.getUint32(INDIRECT_GREFS_OFFSET + i * 4, true));
      return { op, indirectOp: v.getUint8(1), nrSegments, handle: v.getUint16(24, true), id, sector, segments: [], nrSectors: 0n, indirectGrefs };
    }
    const nrSegments = v.getUint8(1);
    const segments: Segment[] = [];
    // Decode at most MAX_SEGMENTS whatever the count says; the backend rejects a bad count.
    if (op === Op.READ || op === Op.WRITE) {
      for (let i = 0; i < Math.min(nrSegments, MAX_SEGMENTS); i++) {
        segments.push({ gref: v.getUint32(24 + i * 8, true), firstSect: v.getUint8(28 + i * 8), lastSect: v.getUint8(29 + i * 8) });
      }
    }
    return {
      op, nrSegments, handle: v.getUint16(2, true), id, sector,
      segments, nrSectors: op === Op.DISCARD ? v.getBigUint64(24, true) : 0n,
    };
  },
};

export const responseCodec: RingCodec<BlkResponse> = {
  size: 16,
  write(v, r) {
    v.setBigUint64(0, r.id, true);
    v.setUint8(8, r.op);
    v.setInt16(10, r.status, true);
  },
  read(v) {
    return { id: v.getBigUint64(0, true), op: v.getUint8(8), status: v.getInt16(10, true) };
  },
};
