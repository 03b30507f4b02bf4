//! One flow's way from payload snippets to a [`FlowName`]: TCP snippets are reassembled and
//! read as TLS or HTTP/1.x by their first bytes (not by port: TLS on 8443 and HTTP on 8080
//! are common), UDP datagrams as QUIC Initials. The state is bounded by the reassembly budget
//! and ends at the first answer, so a flow costs nothing once named.

use super::http::{self, HostOutcome};
use super::payload::{Reassembler, Snippet, DEFAULT_BUDGET};
use super::quic::QuicInitials;
use super::tls::{self, SniOutcome};
use super::{FlowName, NameSource, ParseFailure};

/// Where a flow stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The flow's name is known (or known to be absent).
    Done(FlowName),
    /// More snippets are needed.
    NeedMore,
    /// The payload cannot give a name; count the reason.
    Failed(ParseFailure),
}

enum State {
    Tcp(Reassembler),
    Quic(Box<QuicInitials>),
    Over(Progress),
}

/// The name-finding state of one flow.
pub struct FlowNames {
    state: State,
}

impl FlowNames {
    /// A TCP flow whose client stream starts at `start` (the SYN's sequence number plus one)
    /// when known, reassembled within [`DEFAULT_BUDGET`] bytes.
    pub fn tcp(start: Option<u32>) -> FlowNames {
        FlowNames {
            state: State::Tcp(Reassembler::new(start, DEFAULT_BUDGET)),
        }
    }

    /// A UDP flow to be read as QUIC.
    pub fn quic() -> FlowNames {
        FlowNames {
            state: State::Quic(Box::default()),
        }
    }

    /// Takes the flow's next snippet (for UDP, `seq` is ignored).
    pub fn push(&mut self, snippet: Snippet<'_>) -> Progress {
        let progress = match &mut self.state {
            State::Over(done) => return done.clone(),
            State::Tcp(r) => {
                r.push(snippet.seq, snippet.data);
                // Rebuilt per snippet and not kept: a flow waiting holds only its segments.
                let mut stream = Vec::new();
                let assembled = r.assemble(&mut stream);
                if assembled.inconsistent {
                    Progress::Failed(ParseFailure::Inconsistent)
                } else {
                    match read_tcp(&stream) {
                        Progress::NeedMore if r.exhausted() => {
                            Progress::Failed(ParseFailure::OverBudget)
                        }
                        p => p,
                    }
                }
            }
            State::Quic(q) => match q.push(snippet.data).and_then(|()| q.outcome()) {
                Ok(o) => sni_progress(o, NameSource::QuicSni),
                Err(e) => Progress::Failed(e),
            },
        };
        if progress != Progress::NeedMore {
            self.state = State::Over(progress.clone());
        }
        progress
    }

    /// Heap bytes held while the search waits; none once it is over.
    pub fn held_bytes(&self) -> usize {
        match &self.state {
            State::Tcp(r) => r.held_bytes(),
            State::Quic(q) => std::mem::size_of::<QuicInitials>() + q.held_bytes(),
            State::Over(_) => 0,
        }
    }

    /// No more snippets will come (the flow ended, or XDP's per-flow snippet count is
    /// reached): a flow still waiting is cut short.
    pub fn finish(&mut self) -> Progress {
        let progress = match &self.state {
            State::Over(done) => done.clone(),
            State::Tcp(_) | State::Quic(_) => Progress::Failed(ParseFailure::Truncated),
        };
        self.state = State::Over(progress.clone());
        progress
    }
}

/// Reads a client's first TCP bytes by what they look like.
fn read_tcp(stream: &[u8]) -> Progress {
    if stream.is_empty() {
        Progress::NeedMore
    } else if tls::looks_like_tls(stream) {
        match tls::client_hello_sni(stream) {
            Ok(o) => sni_progress(o, NameSource::Sni),
            Err(e) => Progress::Failed(e),
        }
    } else if http::looks_like_http(stream) {
        match http::host(stream) {
            Ok(HostOutcome::Name(name)) => Progress::Done(FlowName::Name {
                name,
                source: NameSource::HttpHost,
            }),
            Ok(HostOutcome::Address(_) | HostOutcome::NoHost) => Progress::Done(FlowName::NoName),
            Ok(HostOutcome::NeedMore) => Progress::NeedMore,
            Err(e) => Progress::Failed(e),
        }
    } else {
        Progress::Failed(ParseFailure::UnknownProtocol)
    }
}

fn sni_progress(outcome: SniOutcome, carrier: NameSource) -> Progress {
    match outcome {
        SniOutcome::Name(name) => Progress::Done(FlowName::Name {
            name,
            source: carrier,
        }),
        SniOutcome::Ech { outer } => Progress::Done(FlowName::Ech { outer, carrier }),
        SniOutcome::NoSni => Progress::Done(FlowName::NoName),
        SniOutcome::NeedMore => Progress::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::names::testdata::{records, Hello};
    use crate::enrich::names::DomainName;
    use crate::store::testgen::Rng;

    fn named(s: &str, source: NameSource) -> Progress {
        Progress::Done(FlowName::Name {
            name: DomainName::from_wire(s.as_bytes()).expect("valid test name"),
            source,
        })
    }

    #[test]
    fn a_two_segment_hello_out_of_order_with_a_retransmission() {
        let mut rng = Rng::new(9);
        let stream = records(&Hello::chrome_like("two.example", &mut rng).encode(), 16384);
        let isn = 0xffff_fff0u32;
        let (a, b) = stream.split_at(1448);
        let mut f = FlowNames::tcp(Some(isn.wrapping_add(1)));
        let second = isn.wrapping_add(1 + 1448);
        assert_eq!(
            f.push(Snippet {
                seq: second,
                data: b
            }),
            Progress::NeedMore
        );
        assert_eq!(
            f.push(Snippet {
                seq: second,
                data: b
            }),
            Progress::NeedMore
        );
        let done = named("two.example", NameSource::Sni);
        assert_eq!(
            f.push(Snippet {
                seq: isn.wrapping_add(1),
                data: a
            }),
            done
        );
        assert_eq!(
            f.push(Snippet {
                seq: 0,
                data: b"late"
            }),
            done,
            "a named flow stays named"
        );
        assert_eq!(f.finish(), done);
    }

    #[test]
    fn http_host_and_unknown_protocols() {
        let mut f = FlowNames::tcp(None);
        assert_eq!(
            f.push(Snippet {
                seq: 7,
                data: b"GET / HTTP/1.1\r\nHo"
            }),
            Progress::NeedMore
        );
        assert_eq!(
            f.push(Snippet {
                seq: 25,
                data: b"st: www.example.net\r\n\r\n"
            }),
            named("www.example.net", NameSource::HttpHost)
        );
        let mut f = FlowNames::tcp(None);
        assert_eq!(
            f.push(Snippet {
                seq: 1,
                data: b"SSH-2.0-OpenSSH_9.2\r\n"
            }),
            Progress::Failed(ParseFailure::UnknownProtocol)
        );
        let mut f = FlowNames::tcp(None);
        assert_eq!(
            f.push(Snippet {
                seq: 1,
                data: &[0x16, 3, 1, 0x10, 0]
            }),
            Progress::NeedMore
        );
        assert_eq!(f.finish(), Progress::Failed(ParseFailure::Truncated));
    }

    #[test]
    fn a_hello_longer_than_the_budget_is_over_budget() {
        let big = Hello::with_raw_extensions(&[0; 6000]);
        let stream = records(&big, 16384);
        let mut f = FlowNames::tcp(Some(0));
        let mut last = Progress::NeedMore;
        for (i, chunk) in stream.chunks(1448).enumerate() {
            last = f.push(Snippet {
                seq: (i * 1448) as u32,
                data: chunk,
            });
            if last != Progress::NeedMore {
                break;
            }
        }
        assert_eq!(last, Progress::Failed(ParseFailure::OverBudget));
    }

    #[test]
    fn inconsistent_retransmissions_fail() {
        let mut f = FlowNames::tcp(Some(0));
        assert_eq!(
            f.push(Snippet {
                seq: 0,
                data: &[0x16, 3, 1, 0x10]
            }),
            Progress::NeedMore
        );
        assert_eq!(
            f.push(Snippet {
                seq: 0,
                data: &[0x16, 3, 1, 0x20]
            }),
            Progress::Failed(ParseFailure::Inconsistent)
        );
    }
}
