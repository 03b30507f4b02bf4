//! The signing keys of the chain's head: reading and making them, and checking a head's
//! signature (by `verify`, and by the writer when it loads the chain).

use std::path::Path;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

use super::*;

fn read_key_line(path: &Path, tag: &str) -> Result<[u8; 32], ManifestError> {
    let bad = |reason: String| ManifestError::Key {
        path: path.to_owned(),
        reason,
    };
    let text = read_input_text(path, KEY_MAX).map_err(|e| match e {
        InputError::Io(cause) => ManifestError::Io {
            path: path.to_owned(),
            op: "read key",
            cause,
        },
        other => bad(other.to_string()),
    })?;
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(t), Some(k), None) if t == tag => {
            unhex::<32>(k).ok_or_else(|| bad("the key is not 64 hex digits".into()))
        }
        (Some(t), _, _) if t != tag => Err(bad(format!("expected a line starting with {tag}"))),
        _ => Err(bad(format!(
            "expected exactly one line: {tag} <64 hex digits>"
        ))),
    }
}

/// Loads a secret key file (`xdp-audit-ed25519-secret-v1 <64 hex digits of the seed>`).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, ManifestError> {
    Ok(SigningKey::from_bytes(&read_key_line(
        path,
        SECRET_KEY_TAG,
    )?))
}

/// Loads a public key file (`xdp-audit-ed25519-public-v1 <64 hex digits>`).
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, ManifestError> {
    let bad = |reason: String| ManifestError::Key {
        path: path.to_owned(),
        reason,
    };
    let key = VerifyingKey::from_bytes(&read_key_line(path, PUBLIC_KEY_TAG)?)
        .map_err(|e| bad(format!("not a valid ed25519 public key: {e}")))?;
    // A key of small order (all zeros, say) is no key: signatures that verify under it can be
    // made without any secret. `keygen` never makes one.
    if key.is_weak() {
        return Err(bad(
            "a weak ed25519 public key (of small order): it would accept signatures anyone can make"
                .into(),
        ));
    }
    Ok(key)
}

/// A new key pair from the kernel's random source: (secret file text, public file text).
pub fn generate_keypair() -> std::io::Result<(String, String)> {
    let mut seed = [0u8; 32];
    let mut got = 0;
    while got < seed.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `seed`.
        let n = unsafe { libc::getrandom(seed[got..].as_mut_ptr().cast(), seed.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        got += n as usize;
    }
    let key = SigningKey::from_bytes(&seed);
    Ok((
        format!("{SECRET_KEY_TAG} {}\n", hex(&seed)),
        format!(
            "{PUBLIC_KEY_TAG} {}\n",
            hex(&key.verifying_key().to_bytes())
        ),
    ))
}

/// Checks a head's signature against `key`: `verify --public-key` with it, and the writer at
/// load ([`check_signer`]). A head naming another key, or naming a key without a signature,
/// is refused as such.
pub fn check_signature(head: &Head, key: &VerifyingKey) -> Result<(), String> {
    let ours = hex(&key.to_bytes());
    match (&head.public_key, &head.signature) {
        (Some(named), _) if !named.eq_ignore_ascii_case(&ours) => {
            return Err(format!(
                "the head is signed by another key ({named}) than the public key {ours} (a \
                 changed key, or the head rewritten)"
            ))
        }
        (Some(_), None) => {
            return Err(
                "the head names the signing key but carries no signature: the signature was \
                 stripped, or an agent with the key found the chain broken and did not sign it"
                    .into(),
            )
        }
        _ => {}
    }
    let sig = head
        .signature
        .as_deref()
        .ok_or("the head is not signed (was the agent run without --signing-key?)")?;
    let sig = unhex::<64>(sig).ok_or("the signature is not 128 hex digits")?;
    // Strict: refuses the malleable and small-order forms plain verification lets pass.
    key.verify_strict(
        &head_message(head.seq, &head.hash),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| "the signature does not match the public key (head rewritten or wrong key)".into())
}

/// Whether `key` may sign the chain of `dir`: refused when its head carries a valid signature
/// by another key. That is a damaged or wrong key file, not a damaged chain; signing on top
/// would leave heads naming the wrong key, and the store failing `verify --public-key` even
/// after the right key is back. Checked by `run` before the kernel is touched; a manifest
/// that cannot be read, or a head its own key does not verify, is for the store's open to say.
pub fn check_key_fits(dir: &Path, key: &SigningKey) -> Result<(), String> {
    let Ok((_, _, Some(head))) = read_chain_bytes(dir) else {
        return Ok(());
    };
    let Some(named) = head.public_key.as_deref() else {
        return Ok(());
    };
    let ours = hex(&key.verifying_key().to_bytes());
    let theirs = unhex::<32>(named).and_then(|b| VerifyingKey::from_bytes(&b).ok());
    match theirs {
        Some(theirs)
            if theirs != key.verifying_key() && check_signature(&head, &theirs).is_ok() =>
        {
            Err(format!(
                "its public key {ours} is not the one that signed the store's chain in {}: the \
                 head (entry {}) carries a valid signature by {named}. A damaged or wrong key \
                 file; start with the key that signed the store. To change keys on purpose, run \
                 once without --signing-key until a segment is sealed, then with the new key \
                 (the change is raised as XA-CHAIN-BROKEN, naming the entry it vouches from)",
                dir.display(),
                head.seq
            ))
        }
        _ => Ok(()),
    }
}

/// What a head found at load lets a writer with a signing key do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadSigning {
    /// The head carries a valid signature by the key: signing goes on.
    Signed,
    /// The head names no key and carries no signature: a store never signed (or last written
    /// by an agent without a key), which the key signs from its next entry on.
    Unsigned,
}

/// Whether a writer signing with `key` may sign on top of `head` ([`HeadSigning`]), or why not: a
/// head that names a key or carries a signature must pass [`check_signature`] (the check
/// `verify --public-key` makes), so a signed head made unsigned (its signature stripped, its
/// key left), badly signed or signed by another key is refused.
pub fn check_signer(head: &Head, key: &SigningKey) -> Result<HeadSigning, String> {
    if head.public_key.is_none() && head.signature.is_none() {
        return Ok(HeadSigning::Unsigned);
    }
    check_signature(head, &key.verifying_key()).map(|()| HeadSigning::Signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key file saved by an editor that puts a byte-order mark first loads as the same key
    /// (before: "expected a line starting with xdp-audit-ed25519-public-v1", its first
    /// word's invisible first character unnamed); one with another first word is named.
    #[test]
    fn a_key_file_with_a_byte_order_mark_loads() {
        let dir = crate::blocklist::tests::TempDir::new("key-bom");
        let (secret, public) = generate_keypair().expect("a key pair");
        let plain = dir.0.join("plain.pub");
        let marked = dir.0.join("marked.pub");
        let marked_secret = dir.0.join("marked.key");
        std::fs::write(&plain, &public).expect("write");
        std::fs::write(&marked, format!("\u{feff}{}", public.replace('\n', "\r\n")))
            .expect("write");
        std::fs::write(&marked_secret, format!("\u{feff}{secret}")).expect("write");
        let key = load_public_key(&plain).expect("the plain key");
        assert_eq!(load_public_key(&marked).expect("the marked key"), key);
        let signing = load_signing_key(&marked_secret).expect("the marked secret key");
        assert_eq!(signing.verifying_key(), key);
        std::fs::write(&marked, format!("\u{feff}x{public}")).expect("write");
        let e = load_public_key(&marked).expect_err("another first word");
        assert!(
            e.to_string()
                .contains(&format!("expected a line starting with {PUBLIC_KEY_TAG}")),
            "{e}"
        );
    }
}
