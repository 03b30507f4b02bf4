//! The SNI of a QUIC connection's client Initial packets.
//!
//! QUIC v1 (RFC 9000, RFC 9001) and v2 (RFC 9369) protect Initial packets with keys every
//! observer can derive from the client's first destination connection id (RFC 9001 section
//! 5.2): HKDF-SHA256 with the version's salt, header protection with AES-128-ECB over a
//! sample of the ciphertext, payload protection with AES-128-GCM. The decrypted frames carry
//! the ClientHello in CRYPTO frames, which today's Chrome splits over two Initial packets
//! (a post-quantum key share) and reorders on purpose; [`QuicInitials`] collects them by
//! offset across packets and datagrams, then reads the SNI with [`super::tls::handshake_sni`].
//! Other versions (drafts, version negotiation) are refused with
//! [`ParseFailure::QuicNotInitial`].

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::Aes128;
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use super::payload::Reassembler;
use super::tls::{handshake_sni, SniOutcome};
use super::wire::Cursor;
use super::ParseFailure;

/// QUIC version 1.
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2.
pub const VERSION_2: u32 = 0x6b33_43cf;

/// Bytes of CRYPTO stream kept: a post-quantum ClientHello with QUIC transport parameters is
/// about 2 KB; a resumption ticket adds a few hundred bytes.
pub const CRYPTO_BUDGET: usize = 8192;
/// CRYPTO frames kept per connection: Chrome's "chaos protection" cuts the hello into many.
pub const MAX_CRYPTO_FRAMES: usize = 64;
/// Initial packets decrypted per connection before giving up.
pub const MAX_INITIALS: u32 = 8;

const AEAD_TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;
const MAX_CID_LEN: u8 = 20;

/// One QUIC version's Initial parameters.
struct VersionParams {
    salt: [u8; 20],
    /// Long-header packet type of an Initial.
    initial_type: u8,
    key_label: &'static [u8],
    iv_label: &'static [u8],
    hp_label: &'static [u8],
}

const V1: VersionParams = VersionParams {
    salt: [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ],
    initial_type: 0b00,
    key_label: b"quic key",
    iv_label: b"quic iv",
    hp_label: b"quic hp",
};

const V2: VersionParams = VersionParams {
    salt: [
        0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d,
        0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
    ],
    initial_type: 0b01,
    key_label: b"quicv2 key",
    iv_label: b"quicv2 iv",
    hp_label: b"quicv2 hp",
};

fn params(version: u32) -> Option<&'static VersionParams> {
    match version {
        VERSION_1 => Some(&V1),
        VERSION_2 => Some(&V2),
        _ => None,
    }
}

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 section 7.1) with an empty context.
fn expand_label<const N: usize>(secret: &Hkdf<Sha256>, label: &[u8]) -> [u8; N] {
    let mut info = Vec::with_capacity(4 + 6 + label.len());
    info.extend_from_slice(&(N as u16).to_be_bytes());
    info.push((6 + label.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    let mut out = [0u8; N];
    // N is at most 32 here, far below HKDF-SHA256's limit of 255 * 32 bytes.
    let _ = secret.expand(&info, &mut out);
    out
}

/// The client's Initial keys for one version and connection id.
pub(crate) struct InitialKeys {
    version: u32,
    aead: Aes128Gcm,
    iv: [u8; 12],
    hp: Aes128,
}

impl InitialKeys {
    /// Derives the client's Initial keys from the first destination connection id.
    pub(crate) fn client(version: u32, dcid: &[u8]) -> Option<InitialKeys> {
        let p = params(version)?;
        let (_, initial) = Hkdf::<Sha256>::extract(Some(&p.salt), dcid);
        let client_secret: [u8; 32] = expand_label(&initial, b"client in");
        let client = Hkdf::<Sha256>::from_prk(&client_secret).ok()?;
        let key: [u8; 16] = expand_label(&client, p.key_label);
        let hp: [u8; 16] = expand_label(&client, p.hp_label);
        Some(InitialKeys {
            version,
            aead: Aes128Gcm::new(&key.into()),
            iv: expand_label(&client, p.iv_label),
            hp: Aes128::new(&hp.into()),
        })
    }

    fn mask(&self, sample: &[u8; SAMPLE_LEN]) -> [u8; 16] {
        let mut block = (*sample).into();
        self.hp.encrypt_block(&mut block);
        block.into()
    }

    fn nonce(&self, pn: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        nonce
    }
}

/// One long-header packet's boundaries inside a datagram.
struct LongPacket {
    version: u32,
    packet_type: u8,
    dcid_start: usize,
    dcid_len: usize,
    /// Offset of the (protected) packet number.
    pn_offset: usize,
    /// Offset one past the packet's last byte.
    end: usize,
}

/// Reads the long header at `start` (RFC 9000 section 17.2).
fn long_header(datagram: &[u8], start: usize) -> Result<LongPacket, ParseFailure> {
    let bad = ParseFailure::QuicBadHeader;
    let mut c = Cursor::at(datagram, start);
    let first = c.u8().ok_or(bad)?;
    let version = c.u32().ok_or(bad)?;
    let dcid_len = c.u8().filter(|&l| l <= MAX_CID_LEN).ok_or(bad)?;
    let dcid_start = c.pos();
    c.take(usize::from(dcid_len)).ok_or(bad)?;
    let scid_len = c.u8().filter(|&l| l <= MAX_CID_LEN).ok_or(bad)?;
    c.take(usize::from(scid_len)).ok_or(bad)?;
    let packet_type = (first >> 4) & 0b11;
    let p = params(version).ok_or(ParseFailure::QuicNotInitial)?;
    if packet_type == p.initial_type {
        let token_len = c.varint().ok_or(bad)?;
        c.take(usize::try_from(token_len).map_err(|_| bad)?)
            .ok_or(bad)?;
    }
    let length = c.varint().ok_or(bad)?;
    let pn_offset = c.pos();
    let length = usize::try_from(length).map_err(|_| bad)?;
    if length > c.remaining() {
        return Err(bad);
    }
    Ok(LongPacket {
        version,
        packet_type,
        dcid_start,
        dcid_len: usize::from(dcid_len),
        pn_offset,
        end: pn_offset + length,
    })
}

/// The client Initials of one QUIC connection, gathered into its CRYPTO stream.
pub struct QuicInitials {
    keys: Option<InitialKeys>,
    crypto: Reassembler,
    initials: u32,
    scratch: Vec<u8>,
}

impl Default for QuicInitials {
    fn default() -> Self {
        QuicInitials::new()
    }
}

impl QuicInitials {
    /// An empty connection.
    pub fn new() -> Self {
        QuicInitials {
            keys: None,
            crypto: Reassembler::with_limits(Some(0), CRYPTO_BUDGET, MAX_CRYPTO_FRAMES),
            initials: 0,
            scratch: Vec::new(),
        }
    }

    /// Heap bytes held: the CRYPTO stream's frames and the decryption buffer.
    pub fn held_bytes(&self) -> usize {
        self.crypto.held_bytes() + self.scratch.capacity()
    }

    /// Takes one UDP datagram from the client: every Initial coalesced in it is decrypted and
    /// its CRYPTO frames kept; other long-header packets are stepped over and a short-header
    /// packet ends the datagram. The keys come from the first Initial's destination
    /// connection id (RFC 9001 section 5.2: they do not change when the client switches to
    /// the server's connection id).
    pub fn push(&mut self, datagram: &[u8]) -> Result<(), ParseFailure> {
        let mut start = 0;
        // Each packet is at least a header long, so the walk ends.
        while let Some(&first) = datagram.get(start) {
            if first & 0x80 == 0 {
                break;
            }
            let packet = long_header(datagram, start)?;
            let end = packet.end;
            let p = params(packet.version).ok_or(ParseFailure::QuicNotInitial)?;
            if packet.packet_type == p.initial_type {
                self.initial(datagram, start, &packet)?;
            } else if self.keys.is_none() {
                return Err(ParseFailure::QuicNotInitial);
            }
            start = end;
        }
        Ok(())
    }

    /// What the CRYPTO stream gathered so far says about the name.
    pub fn outcome(&self) -> Result<SniOutcome, ParseFailure> {
        let mut stream = Vec::new();
        self.crypto.assemble(&mut stream);
        match handshake_sni(&stream)? {
            SniOutcome::NeedMore if self.crypto.exhausted() => {
                Err(ParseFailure::QuicCryptoOverBudget)
            }
            outcome => Ok(outcome),
        }
    }

    fn initial(
        &mut self,
        datagram: &[u8],
        start: usize,
        packet: &LongPacket,
    ) -> Result<(), ParseFailure> {
        if self.initials >= MAX_INITIALS {
            return Ok(());
        }
        self.initials += 1;
        if self
            .keys
            .as_ref()
            .is_none_or(|k| k.version != packet.version)
        {
            let dcid = &datagram[packet.dcid_start..packet.dcid_start + packet.dcid_len];
            self.keys = InitialKeys::client(packet.version, dcid);
        }
        let keys = self.keys.as_ref().ok_or(ParseFailure::QuicNotInitial)?;
        self.scratch.clear();
        self.scratch.extend_from_slice(&datagram[start..packet.end]);
        let frames = unprotect(keys, &mut self.scratch, packet.pn_offset - start)?;
        read_frames(frames, &mut self.crypto)
    }
}

/// Removes header and payload protection from one Initial (`packet` starts at its first
/// byte); returns the plaintext frames.
fn unprotect<'p>(
    keys: &InitialKeys,
    packet: &'p mut [u8],
    pn_offset: usize,
) -> Result<&'p [u8], ParseFailure> {
    let sample: [u8; SAMPLE_LEN] = packet
        .get(pn_offset + 4..pn_offset + 4 + SAMPLE_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(ParseFailure::QuicBadHeader)?;
    let mask = keys.mask(&sample);
    packet[0] ^= mask[0] & 0x0f;
    let pn_len = usize::from(packet[0] & 0x03) + 1;
    let mut pn = 0u64;
    for i in 0..pn_len {
        packet[pn_offset + i] ^= mask[1 + i];
        pn = (pn << 8) | u64::from(packet[pn_offset + i]);
    }
    // The first Initials are numbered from 0, so the truncated number is the full one.
    let (header, body) = packet.split_at_mut(pn_offset + pn_len);
    let tag_at = body
        .len()
        .checked_sub(AEAD_TAG_LEN)
        .ok_or(ParseFailure::QuicBadHeader)?;
    let (ciphertext, tag) = body.split_at_mut(tag_at);
    let tag = Tag::try_from(&tag[..]).map_err(|_| ParseFailure::QuicBadHeader)?;
    let nonce = Nonce::from(keys.nonce(pn));
    keys.aead
        .decrypt_inout_detached(&nonce, header, ciphertext.into(), &tag)
        .map_err(|_| ParseFailure::QuicDecrypt)?;
    Ok(ciphertext)
}

/// Reads an Initial's frames (RFC 9000 section 12.4: PADDING, PING, ACK, CRYPTO,
/// CONNECTION_CLOSE); CRYPTO data goes to `crypto`. A frame type not allowed in an Initial
/// ends the packet with [`ParseFailure::QuicBadFrame`] after keeping what came before it.
fn read_frames(frames: &[u8], crypto: &mut Reassembler) -> Result<(), ParseFailure> {
    let bad = ParseFailure::QuicBadFrame;
    let mut c = Cursor::new(frames);
    while c.remaining() > 0 {
        match c.varint().ok_or(bad)? {
            0x00 | 0x01 => {}
            kind @ (0x02 | 0x03) => {
                c.varint().ok_or(bad)?; // largest acknowledged
                c.varint().ok_or(bad)?; // delay
                let ranges = c.varint().ok_or(bad)?;
                c.varint().ok_or(bad)?; // first range
                                        // Each range is two varints of at least a byte: a count past the bytes left
                                        // fails on the first missing one.
                for _ in 0..ranges.min(c.remaining() as u64) {
                    c.varint().ok_or(bad)?;
                    c.varint().ok_or(bad)?;
                }
                if kind == 0x03 {
                    for _ in 0..3 {
                        c.varint().ok_or(bad)?;
                    }
                }
            }
            0x06 => {
                let offset = c.varint().ok_or(bad)?;
                let len = usize::try_from(c.varint().ok_or(bad)?).map_err(|_| bad)?;
                let data = c.take(len).ok_or(bad)?;
                // An offset past the budget is pushed at the budget, where it is refused
                // and marks the stream as cut.
                let off = u32::try_from(offset)
                    .ok()
                    .filter(|&o| (o as usize) < CRYPTO_BUDGET)
                    .unwrap_or(CRYPTO_BUDGET as u32);
                crypto.push(off, data);
            }
            0x1c => {
                c.varint().ok_or(bad)?; // error code
                c.varint().ok_or(bad)?; // frame type
                let reason = usize::try_from(c.varint().ok_or(bad)?).map_err(|_| bad)?;
                c.take(reason).ok_or(bad)?;
            }
            _ => return Err(bad),
        }
    }
    Ok(())
}

/// The SNI of a connection's first client datagrams.
pub fn initial_sni<'a>(
    datagrams: impl IntoIterator<Item = &'a [u8]>,
) -> Result<SniOutcome, ParseFailure> {
    let mut conn = QuicInitials::new();
    for d in datagrams {
        conn.push(d)?;
    }
    conn.outcome()
}

/// Protects one client Initial: the inverse of [`QuicInitials::push`], for tests and
/// benchmarks. `frames` is padded with PADDING so the packet has room for the sample.
#[cfg(test)]
pub(crate) fn seal_initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
    let keys = InitialKeys::client(version, dcid).expect("supported version");
    let p = params(version).expect("supported version");
    let mut payload = frames.to_vec();
    payload.resize(payload.len().max(20), 0);
    let mut packet = vec![0xc0 | (p.initial_type << 4) | 0x03];
    packet.extend_from_slice(&version.to_be_bytes());
    packet.push(dcid.len() as u8);
    packet.extend_from_slice(dcid);
    packet.push(0); // empty source connection id
    packet.push(0); // empty token
    let length = 4 + payload.len() + AEAD_TAG_LEN;
    packet.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = packet.len();
    packet.extend_from_slice(&pn.to_be_bytes());
    let nonce = Nonce::from(keys.nonce(u64::from(pn)));
    let tag = keys
        .aead
        .encrypt_inout_detached(&nonce, &packet, payload.as_mut_slice().into())
        .expect("AES-GCM seals any Initial-sized payload");
    packet.extend_from_slice(&payload);
    packet.extend_from_slice(&tag);
    let sample: [u8; SAMPLE_LEN] = packet[pn_offset + 4..pn_offset + 20]
        .try_into()
        .expect("payload padded to hold a sample");
    let mask = keys.mask(&sample);
    packet[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        packet[pn_offset + i] ^= mask[1 + i];
    }
    packet
}

#[cfg(test)]
#[path = "quic_tests.rs"]
mod tests;
