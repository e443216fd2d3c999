/**
 * The block ring protocol (after Xen's `io/blkif.h`): one request or
 * response per 112-byte slot of a shared ring page (32 slots).
 *
 * Request                                   Response
 *   0  u8   op   (Op)                         0  u64 id
 *   1  u8   nr_segments (read/write: 1..11)   8  u8  op
 *   2  u16  handle (the VBD's number)        10  i16 status (Status)
 *   8  u64  id (the frontend's, echoed)
 *  16  u64  sector (512-byte sectors)
 *  24  segments[11], 8 bytes each: u32 gref, u8 first_sect, u8 last_sect
 *      (a segment is sectors first..last, 0..7, of one granted 4 KiB page)
 *  24  discard only: u64 nr_sectors
 *
 * Data moves through the segments' grants (read: the backend writes the
 * pages; write: it reads them). Flush is a barrier: it is answered only when
 * every write answered before it is durable on the host.
 */
import type { RingCodec } from '../../kernel/ring.ts';

export const BLK_SLOT_SIZE = 112;
export const MAX_SEGMENTS = 11;
export const SECTORS_PER_PAGE = 8;

export const Op = { READ: 0, WRITE: 1, FLUSH: 3, DISCARD: 5 } as const;
export const Status = { OKAY: 0, ERROR: -1, NOT_SUPPORTED: -2 } as const;

export interface Segment { gref: number; firstSect: number; lastSect: number }

export interface BlkRequest {
  op: number;
  handle: number;
  id: bigint;
  sector: bigint;
  /** read/write only. */
  segments: Segment[];
  /** discard only. */
  nrSectors: bigint;
  /** The raw segment count as the frontend wrote it (validated by the backend). */
  nrSegments: number;
}

export interface BlkResponse { id: bigint; op: number; status: number }

export const requestCodec: RingCodec<BlkRequest> = {
  size: BLK_SLOT_SIZE,
  write(v, r) {
    v.setUint8(0, r.op);
    v.setUint8(1, r.op === Op.READ || r.op === Op.WRITE ? r.segments.length : 0);
    v.setUint16(2, r.handle, true);
    v.setBigUint64(8, r.id, true);
    v.setBigUint64(16, r.sector, true);
    if (r.op === Op.DISCARD) v.setBigUint64(24, r.nrSectors, true);
    else r.segments.forEach((s, i) => {
      v.setUint32(24 + i * 8, s.gref, true);
      v.setUint8(28 + i * 8, s.firstSect);
      v.setUint8(29 + i * 8, s.lastSect);
    });
  },
  read(v) {
    const op = v.getUint8(0);
    const nrSegments = v.getUint8(1);
    const segments: Segment[] = [];
    // Decode at most MAX_SEGMENTS whatever the count says; the backend rejects a bad count.
    for (let i = 0; i < Math.min(nrSegments, MAX_SEGMENTS); i++) {
      segments.push({ gref: v.getUint32(24 + i * 8, true), firstSect: v.getUint8(28 + i * 8), lastSect: v.getUint8(29 + i * 8) });
    }
    return {
      op, nrSegments, handle: v.getUint16(2, true), id: v.getBigUint64(8, true), sector: v.getBigUint64(16, true),
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
