//! The reader stage: drains the program's ring buffer and decodes each record into a typed
//! [`Event`]. It only reads memory: no disk, no map writes, no locks, so nothing it does can
//! make the ring overflow (see `daemon` for the stages downstream).

use agent_common::{event_kind, FlowEvent, FlowKey, FlowValue};
use aya::maps::{MapData, RingBuf};
use tracing::error;

use crate::throttle::Throttle;

/// One decoded ring-buffer record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A flow's first packet.
    FlowStart(FlowKey, FlowValue),
    /// A flow's first FIN or RST.
    FlowEnd(FlowKey, FlowValue),
    /// A flow's first packet dropped by a list, with the rule that dropped it.
    FlowDrop(FlowKey, FlowValue, u32),
}

/// A record that does not decode: a build mismatch between program and agent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Wrong length.
    #[error("ring-buffer record of {0} bytes, expected {expected}", expected = std::mem::size_of::<FlowEvent>())]
    Length(usize),
    /// Unknown kind byte.
    #[error("ring-buffer record of unknown kind {0}")]
    Kind(u8),
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() < std::mem::size_of::<FlowEvent>() {
        return Err(DecodeError::Length(bytes.len()));
    }
    // SAFETY: length checked; FlowEvent is plain old data valid for any bit pattern.
    let ev: FlowEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    match ev.kind {
        event_kind::FLOW_START => Ok(Event::FlowStart(ev.key, ev.value)),
        event_kind::FLOW_END => Ok(Event::FlowEnd(ev.key, ev.value)),
        event_kind::FLOW_DROP => Ok(Event::FlowDrop(ev.key, ev.value, ev.rule)),
        k => Err(DecodeError::Kind(k)),
    }
}

/// What one drain read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Ring records consumed.
    pub records: u64,
    /// Of those, records that did not decode (logged at most every 10 s, counted).
    pub undecodable: u64,
}

/// The ring buffer and the rate limit of its decode errors.
pub struct RingReader {
    ring: RingBuf<MapData>,
    undecodable: Throttle,
}

impl RingReader {
    /// Reads `ring`.
    pub fn new(ring: RingBuf<MapData>) -> Self {
        Self {
            ring,
            undecodable: Throttle::default(),
        }
    }

    /// Moves up to `max` events into `out`; stops early when the ring is empty.
    pub fn drain_into(&mut self, out: &mut Vec<Event>, max: usize) -> Drained {
        let mut d = Drained::default();
        while out.len() < max {
            let Some(item) = self.ring.next() else { break };
            d.records += 1;
            match decode(&item) {
                Ok(ev) => out.push(ev),
                Err(e) => {
                    d.undecodable += 1;
                    if let Some(n) = self.undecodable.hit(1) {
                        error!(error = %e, records = n, "undecodable ring-buffer records (program and agent of different builds?); logged at most every 10 s");
                    }
                }
            }
        }
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
        // SAFETY: reading the bytes of a POD value.
        unsafe {
            std::slice::from_raw_parts(
                (&ev as *const FlowEvent).cast::<u8>(),
                std::mem::size_of::<FlowEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_both_kinds_and_rejects_the_rest() {
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
        assert_eq!(decode(&raw(9)), Err(DecodeError::Kind(9)));
        assert_eq!(decode(&raw(1)[..100]), Err(DecodeError::Length(100)));
    }
}
