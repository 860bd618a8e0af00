//! The on-disk record frame and the pure scan that tells a torn tail from
//! corruption.
//!
//! Every record carries its own length and CRC32C so that recovery can decide,
//! from the bytes alone, where the durable log ends. The distinction matters:
//! a crash mid-write leaves an incomplete *last* record, which is safe to cut
//! off because nobody was told it was durable; a bad record with valid data
//! after it means the disk lost acknowledged writes, and silently cutting
//! there would throw those away. So the scan is a pure function over a
//! segment's bytes, returning either "records, then a torn tail at offset X"
//! or "corrupt at offset X", and the caller alone decides what to touch.
//!
//! Frame: `len: u32 LE | crc: u32 LE | type: u8 | payload`, where `len`
//! counts type and payload, and `crc` is CRC32C over the `len` bytes, the
//! type and the payload (so a flipped length is caught too).

use bytes::{Buf, BufMut, Bytes};

/// Bytes before the record body: length and CRC.
pub const FRAME_HEADER: usize = 8;
/// Records larger than this are treated as a corrupt length.
pub const MAX_RECORD: usize = 512 * 1024 * 1024;

const T_ENTRY: u8 = 1;
const T_HARD_STATE: u8 = 2;
const T_TRUNCATE: u8 = 3;
const T_PURGE: u8 = 4;
const T_HEADER: u8 = 5;

const HEADER_MAGIC: &[u8; 4] = b"KWAL";
const HEADER_VERSION: u8 = 1;

/// The first record of every segment: enough state to replay the log from
/// this segment alone, so that older segments can be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    pub metadata: Bytes,
    pub hard_state: Option<Bytes>,
    pub purged: Option<(u64, Bytes)>,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A log entry; replaces any entry at `index` or later.
    Entry { index: u64, data: Bytes },
    /// The latest hard state (vote, committed), opaque.
    HardState(Bytes),
    /// Entries at `from` and later are gone.
    Truncate { from: u64 },
    /// Entries up to `index` (inclusive) are gone.
    Purge { index: u64, meta: Bytes },
    /// Segment start.
    Header(SegmentHeader),
}

impl Record {
    /// Appends the framed record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u32_le(0);
        out.put_u32_le(0);
        match self {
            Record::Entry { index, data } => {
                out.put_u8(T_ENTRY);
                out.put_u64_le(*index);
                out.put_slice(data);
            }
            Record::HardState(data) => {
                out.put_u8(T_HARD_STATE);
                out.put_slice(data);
            }
            Record::Truncate { from } => {
                out.put_u8(T_TRUNCATE);
                out.put_u64_le(*from);
            }
            Record::Purge { index, meta } => {
                out.put_u8(T_PURGE);
                out.put_u64_le(*index);
                out.put_slice(meta);
            }
            Record::Header(h) => {
                out.put_u8(T_HEADER);
                out.put_slice(HEADER_MAGIC);
                out.put_u8(HEADER_VERSION);
                out.put_u64_le(h.seq);
                put_blob(out, Some(&h.metadata));
                put_blob(out, h.hard_state.as_ref());
                match &h.purged {
                    Some((index, meta)) => {
                        out.put_u8(1);
                        out.put_u64_le(*index);
                        put_blob(out, Some(meta));
                    }
                    None => out.put_u8(0),
                }
            }
        }
        let len = (out.len() - start - FRAME_HEADER) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&out[start..start + 4]),
            &out[start + FRAME_HEADER..],
        );
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The framed record as a fresh buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// Decodes a record body (type byte and payload) whose CRC has been
    /// verified.
    fn decode_body(body: &[u8]) -> Result<Record, String> {
        let mut b = body;
        let Some((&t, rest)) = b.split_first() else {
            return Err("empty record".into());
        };
        b = rest;
        match t {
            T_ENTRY => {
                let index = get_u64(&mut b)?;
                Ok(Record::Entry {
                    index,
                    data: Bytes::copy_from_slice(b),
                })
            }
            T_HARD_STATE => Ok(Record::HardState(Bytes::copy_from_slice(b))),
            T_TRUNCATE => {
                let from = get_u64(&mut b)?;
                expect_end(b)?;
                Ok(Record::Truncate { from })
            }
            T_PURGE => {
                let index = get_u64(&mut b)?;
                Ok(Record::Purge {
                    index,
                    meta: Bytes::copy_from_slice(b),
                })
            }
            T_HEADER => {
                if b.len() < 5 || &b[..4] != HEADER_MAGIC {
                    return Err("segment header without magic".into());
                }
                if b[4] != HEADER_VERSION {
                    return Err(format!("unsupported segment version {}", b[4]));
                }
                b = &b[5..];
                let seq = get_u64(&mut b)?;
                let metadata = get_blob(&mut b)?.unwrap_or_default();
                let hard_state = get_blob(&mut b)?;
                let purged = match get_u8(&mut b)? {
                    0 => None,
                    1 => {
                        let index = get_u64(&mut b)?;
                        Some((index, get_blob(&mut b)?.unwrap_or_default()))
                    }
                    f => return Err(format!("bad purge flag {f} in segment header")),
                };
                expect_end(b)?;
                Ok(Record::Header(SegmentHeader {
                    seq,
                    metadata,
                    hard_state,
                    purged,
                }))
            }
            other => Err(format!("unknown record type {other}")),
        }
    }
}

fn put_blob(out: &mut Vec<u8>, blob: Option<&Bytes>) {
    match blob {
        Some(b) => {
            out.put_u8(1);
            out.put_u32_le(b.len() as u32);
            out.put_slice(b);
        }
        None => out.put_u8(0),
    }
}

fn get_u8(b: &mut &[u8]) -> Result<u8, String> {
    if b.is_empty() {
        return Err("record too short".into());
    }
    Ok(b.get_u8())
}

fn get_u64(b: &mut &[u8]) -> Result<u64, String> {
    if b.len() < 8 {
        return Err("record too short".into());
    }
    Ok(b.get_u64_le())
}

fn get_blob(b: &mut &[u8]) -> Result<Option<Bytes>, String> {
    match get_u8(b)? {
        0 => Ok(None),
        1 => {
            if b.len() < 4 {
                return Err("record too short".into());
            }
            let n = b.get_u32_le() as usize;
            if b.len() < n {
                return Err("record too short".into());
            }
            let v = Bytes::copy_from_slice(&b[..n]);
            b.advance(n);
            Ok(Some(v))
        }
        f => Err(format!("bad blob flag {f}")),
    }
}

fn expect_end(b: &[u8]) -> Result<(), String> {
    if b.is_empty() {
        Ok(())
    } else {
        Err(format!("{} trailing bytes in record", b.len()))
    }
}

/// How a segment's bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// A torn tail starts at `offset`: cutting the file there loses only
    /// bytes that were never acknowledged.
    Torn { offset: u64, reason: String },
    /// A bad record at `offset` with data after it: acknowledged data may
    /// be lost, so recovery must stop.
    Corrupt { offset: u64, reason: String },
}

/// The records found in a segment and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Each valid record with its byte offset.
    pub records: Vec<(u64, Record)>,
    pub end: ScanEnd,
}

enum Frame {
    Ok(Record, usize),
    Bad(String),
}

fn read_frame(buf: &[u8], off: usize) -> Option<Frame> {
    let rest = &buf[off..];
    if rest.len() < FRAME_HEADER {
        return None;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 || len > MAX_RECORD || rest.len() - FRAME_HEADER < len {
        return None;
    }
    let body = &rest[FRAME_HEADER..FRAME_HEADER + len];
    let actual = crc32c::crc32c_append(crc32c::crc32c(&rest[..4]), body);
    if actual != crc {
        return Some(Frame::Bad(format!(
            "crc mismatch (stored {crc:#010x}, computed {actual:#010x})"
        )));
    }
    match Record::decode_body(body) {
        Ok(r) => Some(Frame::Ok(r, FRAME_HEADER + len)),
        Err(e) => Some(Frame::Bad(e)),
    }
}

/// Whether some valid record starts anywhere after `from`: if so, a record
/// that seems to run past the end of the file has a corrupt length rather
/// than a torn body.
fn valid_record_after(buf: &[u8], from: usize) -> bool {
    (from..buf.len()).any(|o| {
        // Cheap filter first: the type byte must be one we write.
        buf.get(o + FRAME_HEADER)
            .is_some_and(|t| (T_ENTRY..=T_HEADER).contains(t))
            && matches!(read_frame(buf, o), Some(Frame::Ok(..)))
    })
}

/// Scans a segment. `is_last` says whether this is the newest segment, the
/// only one that may legitimately end in a torn write.
pub fn scan(buf: &[u8], is_last: bool) -> Scan {
    let mut records = Vec::new();
    let mut off = 0usize;
    let torn_or_corrupt = |offset: usize, reason: String, torn: bool| {
        let offset = offset as u64;
        if torn && is_last {
            ScanEnd::Torn { offset, reason }
        } else if is_last {
            ScanEnd::Corrupt { offset, reason }
        } else {
            ScanEnd::Corrupt {
                offset,
                reason: format!("{reason} (in a segment that is not the newest)"),
            }
        }
    };
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < FRAME_HEADER {
            let zeros = rest.iter().all(|b| *b == 0);
            let reason = if zeros {
                "zero-filled tail"
            } else {
                "incomplete record header"
            };
            let end = torn_or_corrupt(off, reason.into(), true);
            return Scan { records, end };
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len == 0 {
            let zeros = rest.iter().all(|b| *b == 0);
            let end = if zeros {
                torn_or_corrupt(off, "zero-filled tail".into(), true)
            } else {
                torn_or_corrupt(off, "zero-length record".into(), false)
            };
            return Scan { records, end };
        }
        if len > MAX_RECORD || rest.len() - FRAME_HEADER < len {
            let torn = !valid_record_after(buf, off + 1);
            let reason = if torn {
                format!(
                    "incomplete record (length {len}, {} bytes left)",
                    rest.len() - FRAME_HEADER
                )
            } else {
                format!("record length {len} runs past valid records")
            };
            let end = torn_or_corrupt(off, reason, torn);
            return Scan { records, end };
        }
        match read_frame(buf, off) {
            Some(Frame::Ok(r, n)) => {
                records.push((off as u64, r));
                off += n;
            }
            Some(Frame::Bad(reason)) => {
                let after = &buf[off + FRAME_HEADER + len..];
                // A torn write leaves garbage or zeros where the last
                // record should be, and nothing valid after it.
                let torn = reason.starts_with("crc")
                    && after.iter().all(|b| *b == 0)
                    && !valid_record_after(buf, off + 1);
                let end = torn_or_corrupt(off, reason, torn);
                return Scan { records, end };
            }
            None => unreachable_frame(),
        }
    }
    Scan {
        records,
        end: ScanEnd::Clean,
    }
}

// `read_frame` returns `None` only for the length cases handled above.
#[cold]
fn unreachable_frame() -> ! {
    panic!("read_frame rejected a frame whose length was already validated")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u64>(), arb_bytes()).prop_map(|(index, data)| Record::Entry { index, data }),
            arb_bytes().prop_map(Record::HardState),
            any::<u64>().prop_map(|from| Record::Truncate { from }),
            (any::<u64>(), arb_bytes()).prop_map(|(index, meta)| Record::Purge { index, meta }),
            (
                any::<u64>(),
                arb_bytes(),
                proptest::option::of(arb_bytes()),
                proptest::option::of((any::<u64>(), arb_bytes()))
            )
                .prop_map(|(seq, metadata, hard_state, purged)| Record::Header(
                    SegmentHeader {
                        seq,
                        metadata,
                        hard_state,
                        purged
                    }
                )),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(recs in proptest::collection::vec(arb_record(), 0..20)) {
            let mut buf = Vec::new();
            for r in &recs {
                r.encode_into(&mut buf);
            }
            let s = scan(&buf, true);
            prop_assert_eq!(s.end, ScanEnd::Clean);
            let got: Vec<Record> = s.records.into_iter().map(|(_, r)| r).collect();
            prop_assert_eq!(got, recs);
        }

        #[test]
        fn any_truncation_recovers_a_prefix(
            recs in proptest::collection::vec(arb_record(), 1..20),
            cut in any::<proptest::sample::Index>(),
            zeros in 0usize..40,
        ) {
            let mut buf = Vec::new();
            let mut ends = vec![0usize];
            for r in &recs {
                r.encode_into(&mut buf);
                ends.push(buf.len());
            }
            let cut = cut.index(buf.len() + 1);
            let mut torn = buf[..cut].to_vec();
            torn.extend(std::iter::repeat_n(0u8, zeros));
            let s = scan(&torn, true);
            // Every record wholly before the cut is kept. (One more may
            // survive when the zeros happen to restore its cut-off bytes.)
            let whole = ends.iter().filter(|e| **e <= cut).count() - 1;
            let kept = s.records.len();
            prop_assert!(kept >= whole && kept <= recs.len());
            for (i, (off, r)) in s.records.iter().enumerate() {
                prop_assert_eq!(*off as usize, ends[i]);
                prop_assert_eq!(r, &recs[i]);
            }
            match s.end {
                ScanEnd::Clean => prop_assert_eq!(torn.len(), ends[kept]),
                ScanEnd::Torn { offset, .. } => prop_assert_eq!(offset as usize, ends[kept]),
                ScanEnd::Corrupt { offset, reason } => {
                    prop_assert!(false, "corrupt at {} ({}) after a plain truncation", offset, reason)
                }
            }
        }

        #[test]
        fn a_flipped_bit_before_the_last_record_is_corruption(
            recs in proptest::collection::vec(arb_record(), 2..10),
            pick in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut buf = Vec::new();
            let mut ends = vec![0usize];
            for r in &recs {
                r.encode_into(&mut buf);
                ends.push(buf.len());
            }
            // Flip a bit anywhere except in the final record.
            let last_start = ends[recs.len() - 1];
            let at = pick.index(last_start);
            buf[at] ^= 1 << bit;
            let s = scan(&buf, true);
            match s.end {
                ScanEnd::Corrupt { offset, .. } => {
                    prop_assert!((offset as usize) <= at);
                }
                other => prop_assert!(false, "expected corruption, got {:?}", other),
            }
        }
    }

    #[test]
    fn bad_crc_followed_by_zeros_is_torn_but_not_in_older_segments() {
        let mut buf = Record::HardState(Bytes::from_static(b"v")).encode();
        let mut last = Record::Entry {
            index: 1,
            data: Bytes::from_static(b"hello"),
        }
        .encode();
        let n = last.len();
        last[n - 1] ^= 0xff;
        buf.extend_from_slice(&last);
        buf.extend_from_slice(&[0; 16]);
        assert!(matches!(scan(&buf, true).end, ScanEnd::Torn { .. }));
        assert!(matches!(scan(&buf, false).end, ScanEnd::Corrupt { .. }));
    }
}
