//! Test builders: ClientHellos shaped like today's browsers' (a post-quantum key share, GREASE,
//! random extension order, optional ECH) and TLS record framing, for cases no lab client
//! sends (OpenSSL 3.0 has neither ML-KEM nor ECH).

use crate::store::testgen::Rng;

/// A ClientHello to encode.
pub(crate) struct Hello {
    /// The server_name host, if any.
    pub sni: Option<String>,
    /// Whether to add an outer encrypted_client_hello extension.
    pub ech: bool,
    /// Every other extension, in the order sent.
    pub others: Vec<(u16, Vec<u8>)>,
    /// Where server_name goes among the others (ECH goes after it).
    pub sni_at: usize,
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn ext(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut v = kind.to_be_bytes().to_vec();
    v.extend_from_slice(&vec16(body));
    v
}

impl Hello {
    /// A hello like Chrome 131+'s: GREASE, X25519MLKEM768 + X25519 key shares (about 1.8 KB in
    /// all), and the extensions in a random order.
    pub fn chrome_like(sni: &str, rng: &mut Rng) -> Hello {
        let grease = 0x0a0a + 0x1010 * (rng.below(16) as u16);
        let mut key_share = Vec::new();
        key_share.extend_from_slice(&0x11ecu16.to_be_bytes());
        key_share.extend_from_slice(&vec16(&random_bytes(rng, 1216)));
        key_share.extend_from_slice(&0x001du16.to_be_bytes());
        key_share.extend_from_slice(&vec16(&random_bytes(rng, 32)));
        let mut others: Vec<(u16, Vec<u8>)> = vec![
            (10, vec16(&[0x11, 0xec, 0, 0x1d, 0, 0x17, 0, 0x18])),
            (11, vec![1, 0]),
            (13, vec16(&[4, 3, 8, 4, 4, 1, 5, 3, 8, 5, 5, 1, 8, 6, 6, 1])),
            (16, vec16(b"\x02h2\x08http/1.1")),
            (5, vec![1, 0, 0, 0, 0]),
            (18, vec![]),
            (23, vec![]),
            (0xff01, vec![0]),
            (35, vec![]),
            (43, vec![6, 0x3a, 0x3a, 3, 4, 3, 3]),
            (45, vec![1, 1]),
            (51, vec16(&key_share)),
            (27, vec![2, 0, 2]),
            (0x44cd, vec16(b"\x02h2")),
        ];
        for i in (1..others.len()).rev() {
            others.swap(i, rng.below(i as u64 + 1) as usize);
        }
        others.insert(0, (grease, vec![]));
        others.push((grease ^ 0x1010, vec![0]));
        let sni_at = 1 + rng.below(others.len() as u64 - 1) as usize;
        Hello {
            sni: Some(sni.to_owned()),
            ech: false,
            others,
            sni_at,
        }
    }

    fn extensions(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (kind, body)) in self.others.iter().enumerate() {
            if i == self.sni_at {
                if let Some(host) = &self.sni {
                    let mut entry = vec![0];
                    entry.extend_from_slice(&vec16(host.as_bytes()));
                    out.extend_from_slice(&ext(0, &vec16(&entry)));
                }
                if self.ech {
                    // Outer, HKDF-SHA256 + AES-128-GCM, config id, enc (X25519), payload.
                    let mut e = vec![0, 0, 1, 0, 1, 0x42];
                    e.extend_from_slice(&vec16(&[7; 32]));
                    e.extend_from_slice(&vec16(&[9; 208]));
                    out.extend_from_slice(&ext(0xfe0d, &e));
                }
            }
            out.extend_from_slice(&ext(*kind, body));
        }
        out
    }

    /// The handshake message (type, length, body).
    pub fn encode(&self) -> Vec<u8> {
        Self::with_raw_extensions(&self.extensions())
    }

    /// A ClientHello handshake message whose extension block is `raw`.
    pub fn with_raw_extensions(raw: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x5a; 32]);
        body.push(32);
        body.extend_from_slice(&[0x33; 32]);
        body.extend_from_slice(&vec16(&[0x3a, 0x3a, 0x13, 1, 0x13, 2, 0x13, 3, 0xc0, 0x2b]));
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&vec16(raw));
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }
}

/// `handshake` framed as TLS handshake records of at most `frag` bytes each.
pub(crate) fn records(handshake: &[u8], frag: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in handshake.chunks(frag.max(1)) {
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}
