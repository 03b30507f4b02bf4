//! The live journal: the current hour's records in an append-only file of framed, checksummed
//! records, so a crash loses at most what was not yet fsynced and never corrupts what was.
//!
//! File layout (all integers little-endian; the full reference is `docs/store-format.md`):
//! ```text
//! header  : magic "XDPAJNL1" (8 bytes) | journal id u64 (creation time, Unix ns)
//! frame*  : payload length u32 | CRC-32 (IEEE) of the payload u32 | payload
//! ```
//! A payload is one record in the compact binary form of [`encode_record`].
//!
//! Three jobs, three modules: [`codec`] (a record as a payload and back), [`frame`] (frames,
//! and the one scanner every reader goes through, which resynchronises after damage) and
//! [`file`](mod@file) (the writer, reading, and recovery with quarantine).

pub mod codec;
pub mod file;
pub mod frame;

pub use codec::{decode_view, encode_record, AttrView, DecodeError, RecordView};
pub use file::{
    load, make_quarantine_dir, quarantine, quarantine_path, read, read_file, recover, JournalError,
    JournalWriter, Recovery, QUARANTINE_DIR,
};
pub use frame::{
    encode_frame, frame_records, scan, BadFrame, Count, Decoded, Frames, Scan, Skipped,
    DAMAGED_HEADER, FRAME_HEADER_LEN, HEADER_LEN, MAGIC, MAX_PAYLOAD,
};
