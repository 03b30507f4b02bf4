//! The reader stage: drains the program's ring buffer and decodes each record into a typed
//! [`Event`]. It only reads memory: no disk, no map writes, no locks. It gives no space back:
//! the records stage does, once it has settled what was read ([`ring::Release`]; see
//! `daemon` for the stages downstream).
//!
//! Payload records ([`Payload`]) carry their bytes out of the ring in [`Bytes`] cut from a
//! shared arena: one allocation per 256 KiB of payloads, not one per event, and the arena's
//! memory is reused once every event cut from it is dropped.

use std::mem::size_of;

use agent_common::payload::{payload_flags, PayloadHead, SNIPPET_MAX, UNLIMITED};
use agent_common::{event_kind, FlowEvent, FlowKey, FlowValue, DIR_ORIG, DIR_RESP};
use bytes::{Bytes, BytesMut};
use tracing::error;

use crate::record::Mac;
use crate::throttle::Throttle;

pub mod ring;
use ring::{Release, Ring};

/// One decoded ring-buffer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A flow's first packet.
    FlowStart(FlowKey, FlowValue),
    /// A flow's first FIN or RST.
    FlowEnd(FlowKey, FlowValue),
    /// A flow's first packet dropped by a list, with the rule that dropped it.
    FlowDrop(FlowKey, FlowValue, u32),
    /// The last snapshot of a closed flow whose key a new connection took over.
    FlowClosed(FlowKey, FlowValue),
    /// A copy of a packet's payload, for the names and DHCP parsers.
    Payload(Payload),
}

/// Which way a packet went in its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by endpoint `a` of the key, the flow's originator (as the program saw it: on an
    /// internet-facing interface, the first packet seen may be a server's).
    Originator,
    /// Sent by endpoint `b`.
    Responder,
}

impl Direction {
    /// The index of this direction in [`FlowValue`]'s per-direction counters.
    pub fn index(self) -> usize {
        match self {
            Direction::Originator => DIR_ORIG,
            Direction::Responder => DIR_RESP,
        }
    }
}

/// The first bytes of one packet's payload, copied by the program (see
/// `agent_common::payload` for which packets, and `README.md`, "What the XDP program does").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The packet's flow, in the flow's orientation: the key of its [`Event::FlowStart`].
    pub key: FlowKey,
    /// The packet's direction in the flow.
    pub dir: Direction,
    /// CLOCK_MONOTONIC ns when the program saw the packet (as [`FlowValue::first_seen_ns`]).
    pub ts_ns: u64,
    /// TCP: the sequence number of `data[0]`. UDP: 0.
    pub seq: u32,
    /// TCP: the sequence number of the stream's first byte (the SYN's plus one) when the flow
    /// was created by this direction's SYN; what `enrich::names::payload::Reassembler` takes
    /// as its start. `None` for UDP and for the direction that did not open the flow.
    pub stream_start: Option<u32>,
    /// The payload's length by the packet's headers (TCP: the segment's data; UDP: the
    /// datagram's). `data` is shorter when the payload was longer than
    /// [`SNIPPET_MAX`], the frame was cut short, or the datagram was fragmented.
    pub payload_len: u16,
    /// Packets of the flow the program will still look at in this direction (each sends a
    /// payload event if it carries payload; a TCP budget counts pure ACKs too): `Some(0)`
    /// after the last one, `None` when there is no limit (DHCP).
    pub left: Option<u8>,
    /// Ethernet source of the packet.
    pub src_mac: Mac,
    /// Ethernet destination of the packet.
    pub dst_mac: Mac,
    /// A DNS query a domain rule dropped (or refused), which never reached its resolver.
    pub dropped: Option<DroppedQuery>,
    /// The copied bytes: the payload's first `min(payload_len, SNIPPET_MAX)` bytes, or fewer
    /// if the frame ended first.
    pub data: Bytes,
}

/// What a payload record says of the DNS query a domain rule dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedQuery {
    /// Where in `data` the question name the rule matched starts; `None` over TCP, and where
    /// that name is past the copied bytes.
    pub name_at: Option<u16>,
}

impl Payload {
    /// Whether `data` holds less than the packet's payload.
    pub fn is_cut(&self) -> bool {
        self.data.len() < usize::from(self.payload_len)
    }
}

/// A record that does not decode: a build mismatch between program and agent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Wrong length.
    #[error("ring-buffer record of kind {kind} is {len} bytes, expected {expected}")]
    Length {
        /// The record's kind byte (0 if the record is empty).
        kind: u8,
        /// Its length.
        len: usize,
        /// The length its kind needs.
        expected: usize,
    },
    /// Unknown kind byte.
    #[error("ring-buffer record of unknown kind {0}")]
    Kind(u8),
    /// A payload record whose head is inconsistent.
    #[error("payload record with {0}")]
    Payload(&'static str),
}

/// Payload bytes are cut from arena chunks of this size.
const ARENA_CHUNK: usize = 256 << 10;

/// Decodes one ring-buffer record; payload bytes get an allocation of their own (the reader
/// cuts them from an arena instead: [`RingReader`]).
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    decode_with(bytes, &mut BytesMut::new())
}

/// Decodes one record, cutting payload bytes from `arena`.
fn decode_with(bytes: &[u8], arena: &mut BytesMut) -> Result<Event, DecodeError> {
    let kind = bytes.first().copied().unwrap_or(0);
    if kind == event_kind::PAYLOAD {
        return decode_payload(bytes, arena).map(Event::Payload);
    }
    let ev: FlowEvent = read(bytes, kind)?;
    match ev.kind {
        event_kind::FLOW_START => Ok(Event::FlowStart(ev.key, ev.value)),
        event_kind::FLOW_END => Ok(Event::FlowEnd(ev.key, ev.value)),
        event_kind::FLOW_DROP => Ok(Event::FlowDrop(ev.key, ev.value, ev.rule)),
        event_kind::FLOW_CLOSED => Ok(Event::FlowClosed(ev.key, ev.value)),
        k => Err(DecodeError::Kind(k)),
    }
}

/// The `T` at the start of a record of kind `kind`.
fn read<T: aya::Pod>(bytes: &[u8], kind: u8) -> Result<T, DecodeError> {
    crate::pod::read(bytes).ok_or(DecodeError::Length {
        kind,
        len: bytes.len(),
        expected: size_of::<T>(),
    })
}

fn decode_payload(bytes: &[u8], arena: &mut BytesMut) -> Result<Payload, DecodeError> {
    let head: PayloadHead = read(bytes, event_kind::PAYLOAD)?;
    let len = usize::from(head.cap_len);
    if len > SNIPPET_MAX {
        return Err(DecodeError::Payload(
            "a copy longer than the largest snippet",
        ));
    }
    let data = bytes
        .get(size_of::<PayloadHead>()..size_of::<PayloadHead>() + len)
        .ok_or(DecodeError::Length {
            kind: event_kind::PAYLOAD,
            len: bytes.len(),
            expected: size_of::<PayloadHead>() + len,
        })?;
    let dir = match usize::from(head.dir) {
        DIR_ORIG => Direction::Originator,
        DIR_RESP => Direction::Responder,
        _ => return Err(DecodeError::Payload("a direction other than 0 or 1")),
    };
    if arena.capacity() < len {
        arena.reserve(ARENA_CHUNK);
    }
    arena.extend_from_slice(data);
    // A program before the flag set only the offset (a pinned one taken over).
    let dropped = head.flags & payload_flags::DROPPED != 0 || head.blocked_name != 0;
    Ok(Payload {
        key: head.key,
        dir,
        ts_ns: head.ts_ns,
        seq: head.seq,
        stream_start: (head.flags & payload_flags::START_KNOWN != 0).then_some(head.stream_start),
        payload_len: head.payload_len,
        left: (head.left != UNLIMITED).then_some(head.left),
        src_mac: Mac(head.src_mac),
        dst_mac: Mac(head.dst_mac),
        dropped: dropped.then_some(DroppedQuery {
            name_at: (head.blocked_name != 0).then_some(head.blocked_name),
        }),
        data: arena.split().freeze(),
    })
}

/// What one drain read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Ring records read.
    pub records: u64,
    /// Of those, records that did not decode (logged at most every 10 s, counted).
    pub undecodable: u64,
    /// It stopped at a bound (events or payload bytes), not at an empty ring: more may wait.
    pub more: bool,
    /// The ring position after the last record read: [`Release::up_to`] it once what was
    /// read is settled.
    pub end: u64,
}

/// Payload bytes one drain moves at most: a batch of payload copies (up to 1,472 bytes
/// each) is cut there, so the queue's 32 batches hold at most 16 MiB of them, not 190 MiB
/// (a flood of large QUIC Initials while the records thread lags).
pub const BATCH_PAYLOAD_BYTES: usize = 512 << 10;

/// The ring buffer, the arena payload bytes are cut from, and the rate limit of decode
/// errors.
pub struct RingReader {
    ring: Ring,
    arena: BytesMut,
    undecodable: Throttle,
}

impl RingReader {
    /// Reads the ring buffer `map` from where its consumer position stands: what an earlier
    /// reader read and did not release is read again.
    pub fn new(map: &aya::maps::Map) -> std::io::Result<Self> {
        use std::os::fd::AsFd as _;
        let aya::maps::Map::RingBuf(data) = map else {
            return Err(std::io::Error::other("the map is not a ring buffer"));
        };
        let size = data.info().map_err(std::io::Error::other)?.max_entries();
        Ok(Self {
            ring: Ring::new(data.fd().as_fd(), size)?,
            arena: BytesMut::new(),
            undecodable: Throttle::default(),
        })
    }

    /// What gives the space of the records read back to the program.
    pub fn release(&self) -> Release {
        self.ring.release()
    }

    /// Moves up to `max` events into `out` and gives their space back at once (a reader
    /// whose caller settles nothing: benches).
    pub fn drain_released(&mut self, out: &mut Vec<Event>, max: usize) -> Drained {
        let d = self.drain_into(out, max);
        self.ring.release().up_to(d.end);
        d
    }

    /// The ring position after the last record read.
    pub fn position(&self) -> u64 {
        self.ring.position()
    }

    /// Moves up to `max` events, and [`BATCH_PAYLOAD_BYTES`] of payload, into `out`; stops
    /// early when the ring is empty.
    pub fn drain_into(&mut self, out: &mut Vec<Event>, max: usize) -> Drained {
        let mut d = Drained::default();
        let mut bytes = 0;
        loop {
            if out.len() >= max || bytes >= BATCH_PAYLOAD_BYTES {
                d.more = true;
                break;
            }
            let Some(item) = self.ring.next_record() else {
                break;
            };
            d.records += 1;
            match decode_with(item, &mut self.arena) {
                Ok(ev) => {
                    if let Event::Payload(p) = &ev {
                        bytes += p.data.len();
                    }
                    out.push(ev)
                }
                Err(e) => {
                    d.undecodable += 1;
                    if let Some(n) = self.undecodable.hit(1) {
                        error!(error = %e, records = n, "undecodable ring-buffer records (program and agent of different builds?); logged at most every 10 s");
                    }
                }
            }
        }
        d.end = self.ring.position();
        d
    }
}

/// For polling (tokio's `AsyncFd`): the ring's descriptor is readable when the program woke
/// the reader.
impl std::os::fd::AsRawFd for RingReader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::payload::{PayloadEvent, SNIPPET_SMALL};
    use std::mem::offset_of;

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a POD value (payload events are not `aya::Pod`).
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn raw(kind: u8) -> Vec<u8> {
        let ev = FlowEvent {
            kind,
            _pad: [0; 3],
            rule: agent_common::NO_RULE,
            // SAFETY: plain old data; all-zero is valid.
            key: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            value: unsafe { std::mem::zeroed() },
        };
        bytes_of(&ev)
    }

    fn payload_record(cap_len: u16, dir: u8, flags: u8, left: u8) -> Vec<u8> {
        let mut ev = PayloadEvent::<SNIPPET_SMALL> {
            head: PayloadHead {
                kind: event_kind::PAYLOAD,
                dir,
                flags,
                left,
                cap_len,
                payload_len: 300,
                ts_ns: 77,
                seq: 1000,
                stream_start: 901,
                // SAFETY: plain old data; all-zero is valid.
                key: unsafe { std::mem::zeroed() },
                dst_mac: [2, 0, 0, 0, 0, 0xb],
                src_mac: [2, 0, 0, 0, 0, 0xa],
                blocked_name: 0,
                _pad: [0; 2],
            },
            data: [0; SNIPPET_SMALL],
        };
        for (i, b) in ev.data.iter_mut().enumerate() {
            *b = i as u8;
        }
        bytes_of(&ev)
    }

    #[test]
    fn decodes_every_kind_and_rejects_the_rest() {
        assert!(matches!(
            decode(&raw(event_kind::FLOW_START)),
            Ok(Event::FlowStart(..))
        ));
        assert!(matches!(
            decode(&raw(event_kind::FLOW_END)),
            Ok(Event::FlowEnd(..))
        ));
        assert!(matches!(
            decode(&raw(event_kind::FLOW_DROP)),
            Ok(Event::FlowDrop(..))
        ));
        assert!(matches!(
            decode(&payload_record(10, 0, 0, 3)),
            Ok(Event::Payload(..))
        ));
        assert_eq!(decode(&raw(9)), Err(DecodeError::Kind(9)));
        assert_eq!(
            decode(&raw(1)[..100]),
            Err(DecodeError::Length {
                kind: 1,
                len: 100,
                expected: size_of::<FlowEvent>()
            })
        );
        assert!(matches!(
            decode(&[]),
            Err(DecodeError::Length { len: 0, .. })
        ));
    }

    #[test]
    fn payload_records_decode_to_their_head_and_copied_bytes() {
        let Ok(Event::Payload(p)) = decode(&payload_record(10, 0, payload_flags::START_KNOWN, 3))
        else {
            panic!("a payload record decodes to a payload event");
        };
        assert_eq!(p.dir, Direction::Originator);
        assert_eq!((p.ts_ns, p.seq, p.stream_start), (77, 1000, Some(901)));
        assert_eq!((p.payload_len, p.left), (300, Some(3)));
        assert_eq!(
            (p.src_mac, p.dst_mac),
            (Mac([2, 0, 0, 0, 0, 0xa]), Mac([2, 0, 0, 0, 0, 0xb]))
        );
        assert_eq!(&p.data[..], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(p.is_cut());

        let Ok(Event::Payload(p)) = decode(&payload_record(0, 1, 0, UNLIMITED)) else {
            panic!("an empty copy still decodes");
        };
        assert_eq!(p.dir, Direction::Responder);
        assert_eq!((p.stream_start, p.left, p.data.len()), (None, None, 0));
        assert_eq!(p.dropped, None);

        let mut rec = payload_record(40, 0, payload_flags::DROPPED, 0);
        let at = offset_of!(PayloadHead, blocked_name);
        rec[at..at + 2].copy_from_slice(&12u16.to_ne_bytes());
        let Ok(Event::Payload(p)) = decode(&rec) else {
            panic!("a dropped query's copy decodes");
        };
        let named = Some(DroppedQuery { name_at: Some(12) });
        assert_eq!((p.dropped, p.stream_start), (named, None));
        // Over TCP, or past the copy, the program names no offset: still a dropped query.
        let Ok(Event::Payload(p)) = decode(&payload_record(40, 0, payload_flags::DROPPED, 0))
        else {
            panic!("a dropped query's copy decodes");
        };
        assert_eq!(p.dropped, Some(DroppedQuery { name_at: None }));
        // A program before the flag (a pinned one taken over) set the offset alone.
        let mut old = payload_record(40, 0, 0, 0);
        old[at..at + 2].copy_from_slice(&12u16.to_ne_bytes());
        let Ok(Event::Payload(p)) = decode(&old) else {
            panic!("an older program's copy decodes");
        };
        assert_eq!(p.dropped, named);
    }

    #[test]
    fn inconsistent_payload_records_are_refused() {
        let too_long = payload_record(SNIPPET_SMALL as u16 + 1, 0, 0, 0);
        assert!(matches!(decode(&too_long), Err(DecodeError::Length { .. })));
        let over_max = payload_record(SNIPPET_MAX as u16 + 1, 0, 0, 0);
        assert!(matches!(decode(&over_max), Err(DecodeError::Payload(_))));
        assert!(matches!(
            decode(&payload_record(4, 2, 0, 0)),
            Err(DecodeError::Payload(_))
        ));
        assert!(matches!(
            decode(&payload_record(4, 0, 0, 0)[..40]),
            Err(DecodeError::Length { .. })
        ));
    }

    #[test]
    fn payload_bytes_share_arena_chunks_and_stay_intact() {
        let mut arena = BytesMut::new();
        let mut kept = Vec::new();
        for n in 0..3000u16 {
            let rec = payload_record(n % SNIPPET_SMALL as u16, 0, 0, 0);
            match decode_with(&rec, &mut arena) {
                Ok(Event::Payload(p)) => kept.push(p.data),
                other => panic!("record {n}: {other:?}"),
            }
        }
        for (n, data) in kept.iter().enumerate() {
            let want: Vec<u8> = (0..(n % SNIPPET_SMALL) as u8).collect();
            assert_eq!(&data[..], &want[..], "payload {n} intact after later cuts");
        }
        // Cut from one buffer, each payload starts where the one before it ends (separate
        // allocations never do: the allocator keeps a header between them).
        let adjacent = kept
            .windows(2)
            .filter(|w| w[0].as_ptr() as usize + w[0].len() == w[1].as_ptr() as usize)
            .count();
        assert!(
            adjacent > 2900,
            "only {adjacent} of 2999 payloads follow the one before"
        );
    }
}
