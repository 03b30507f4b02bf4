//! Tests of QUIC Initial decryption: the RFC vectors, and Chrome-shaped connections built by
//! [`seal_initial`].

use super::*;
use crate::enrich::names::testdata::Hello;
use crate::enrich::names::DomainName;
use crate::store::testgen::Rng;

const RFC9001_A2: &[u8] =
    include_bytes!("../../../tests/fixtures/names/rfc9001-a2-client-initial.bin");
const RFC9369_A2: &[u8] =
    include_bytes!("../../../tests/fixtures/names/rfc9369-a2-client-initial.bin");
const RFC_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fn name(s: &str) -> SniOutcome {
    SniOutcome::Name(DomainName::from_wire(s.as_bytes()).expect("valid test name"))
}

fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&(0x8000_0000u32 | offset as u32).to_be_bytes());
    f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

#[test]
fn rfc9001_a1_key_derivation() {
    let k = InitialKeys::client(VERSION_1, &RFC_DCID).expect("v1 is supported");
    assert_eq!(
        k.iv,
        [0xfa, 0x04, 0x4b, 0x2f, 0x42, 0xa3, 0xfd, 0x3b, 0x46, 0xfb, 0x25, 0x5c]
    );
    // A.2: the header protection mask of the sample that follows the packet number.
    let sample: [u8; 16] = RFC9001_A2[22..38].try_into().expect("16 bytes");
    assert_eq!(&k.mask(&sample)[..5], &[0x43, 0x7b, 0x9a, 0xec, 0x36]);
}

#[test]
fn rfc9001_and_rfc9369_client_initials() {
    assert_eq!(initial_sni([RFC9001_A2]), Ok(name("example.com")));
    assert_eq!(initial_sni([RFC9369_A2]), Ok(name("example.com")));
}

#[test]
fn damaged_and_foreign_packets_fail_by_reason() {
    let mut tampered = RFC9001_A2.to_vec();
    tampered[600] ^= 1;
    assert_eq!(initial_sni([&tampered[..]]), Err(ParseFailure::QuicDecrypt));
    let mut draft = RFC9001_A2.to_vec();
    draft[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
    assert_eq!(initial_sni([&draft[..]]), Err(ParseFailure::QuicNotInitial));
    for cut in [1, 5, 6, 14, 17, 19, 100, 1199] {
        assert_eq!(
            initial_sni([&RFC9001_A2[..cut]]),
            Err(ParseFailure::QuicBadHeader),
            "cut at {cut}"
        );
    }
    let mut long_cid = RFC9001_A2.to_vec();
    long_cid[5] = 21;
    assert_eq!(
        initial_sni([&long_cid[..]]),
        Err(ParseFailure::QuicBadHeader)
    );
    // A STREAM frame (0x08) is not allowed in an Initial.
    let bad = seal_initial(VERSION_1, &RFC_DCID, 0, &[0x08, 0, 0]);
    assert_eq!(initial_sni([&bad[..]]), Err(ParseFailure::QuicBadFrame));
    // A short-header packet alone: nothing to read yet.
    assert_eq!(
        initial_sni([&[0x40u8, 1, 2, 3][..]]),
        Ok(SniOutcome::NeedMore)
    );
}

/// Today's Chrome: a ~1.8 KB ClientHello cut into CRYPTO frames in shuffled order, spread over
/// two Initial packets, with PING, PADDING and ACK frames in between; the packets either in
/// two datagrams (in either order) or coalesced in one.
#[test]
fn a_chrome_hello_over_two_initials_with_reordered_crypto_frames() {
    let mut rng = Rng::new(11);
    for version in [VERSION_1, VERSION_2] {
        for round in 0..20 {
            let hello = Hello::chrome_like("quic.example", &mut rng).encode();
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < hello.len() {
                let n = (1 + rng.below(400) as usize).min(hello.len() - at);
                pieces.push(crypto_frame(at, &hello[at..at + n]));
                at += n;
            }
            for i in (1..pieces.len()).rev() {
                pieces.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let half = pieces.len() / 2;
            let mut first = vec![0x01, 0x00, 0x00];
            first.extend(pieces[..half].concat());
            let mut second = vec![0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
            second.extend(pieces[half..].concat());
            let dcid: Vec<u8> = (0..8).map(|_| rng.next_u64() as u8).collect();
            let a = seal_initial(version, &dcid, 0, &first);
            let b = seal_initial(version, &dcid, 1, &second);
            let want = name("quic.example");
            assert_eq!(
                initial_sni([&a[..], &b[..]]),
                Ok(want.clone()),
                "v{version:x} round {round}"
            );
            assert_eq!(initial_sni([&b[..], &a[..]]), Ok(want.clone()), "reversed");
            let coalesced = [&a[..], &b[..]].concat();
            assert_eq!(initial_sni([&coalesced[..]]), Ok(want), "coalesced");
            assert_eq!(
                initial_sni([&a[..]]),
                Ok(SniOutcome::NeedMore),
                "half a hello"
            );
        }
    }
}

#[test]
fn crypto_past_the_budget_is_reported() {
    let frame = crypto_frame(0, &[1, 0, 0x40, 0]); // a ClientHello header claiming 16 KiB
    let mut far = frame.clone();
    far.extend(crypto_frame(CRYPTO_BUDGET - 2, &[0; 8]));
    let p = seal_initial(VERSION_1, &RFC_DCID, 0, &far);
    assert_eq!(
        initial_sni([&p[..]]),
        Err(ParseFailure::QuicCryptoOverBudget)
    );
    let p = seal_initial(VERSION_1, &RFC_DCID, 0, &frame);
    assert_eq!(initial_sni([&p[..]]), Ok(SniOutcome::NeedMore));
}
