//! Domain names in lists: normalised (lower case, punycode, no trailing dot), checked against
//! DNS limits and the kernel's label limit, and hashed the way the kernel hashes query names,
//! under the secret key the kernel holds ([`random_key`] draws one).

use agent_common::domain::{
    label_hash, DomainKey, SuffixHasher, MAX_DOMAIN_LABELS, MAX_LABEL_LEN, MAX_NAME_LEN,
};

use super::error::LineError;

/// Normalises a domain: trailing dot stripped, lower case, IDNA (UTS 46) to punycode, then
/// checked against DNS limits and the kernel's label limit.
///
/// Letters, digits, `-` and `_` are allowed in labels: `_` and edge hyphens are not valid host
/// names, but they are valid DNS labels and real blocklists carry them.
pub fn normalize_domain(name: &str) -> Result<Box<str>, LineError> {
    normalize(name, MAX_DOMAIN_LABELS)
}

/// [`normalize_domain`] without the kernel's label limit: a name to look for in the records
/// (`query --domain`), where a long SNI may have any number of labels DNS allows.
pub fn normalize_name(name: &str) -> Result<Box<str>, LineError> {
    normalize(name, usize::MAX)
}

fn normalize(name: &str, max_labels: usize) -> Result<Box<str>, LineError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let needs_idna = !trimmed.is_ascii()
        || trimmed.split('.').any(|l| {
            l.as_bytes()
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"))
        });
    let ascii: String = if needs_idna {
        if trimmed.contains('*') {
            return Err(LineError::DomainWildcard { name: name.into() });
        }
        if let Some(ch) = crate::invisible::find(trimmed) {
            return Err(LineError::DomainInvisible {
                name: name.into(),
                ch,
            });
        }
        match idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::URL) {
            Ok(a) => a.into_owned(),
            Err(_) => return Err(LineError::DomainIdna { name: name.into() }),
        }
    } else {
        trimmed.to_ascii_lowercase()
    };
    validate_ascii_domain(name, &ascii, max_labels)?;
    Ok(ascii.into_boxed_str())
}

fn validate_ascii_domain(original: &str, ascii: &str, max_labels: usize) -> Result<(), LineError> {
    if ascii.len() > MAX_NAME_LEN {
        return Err(LineError::DomainLen {
            name: original.into(),
            len: ascii.len(),
        });
    }
    let mut count = 0;
    let mut last = "";
    for label in ascii.split('.') {
        count += 1;
        if label.is_empty() {
            return Err(LineError::DomainEmptyLabel {
                name: original.into(),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(LineError::DomainLabelLen {
                name: original.into(),
                label: label.into(),
                len: label.len(),
            });
        }
        if let Some(ch) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            if ch == '*' {
                return Err(LineError::DomainWildcard {
                    name: original.into(),
                });
            }
            return Err(LineError::DomainChar {
                name: original.into(),
                ch,
            });
        }
        last = label;
    }
    if count > max_labels {
        return Err(LineError::DomainLabels {
            name: original.into(),
            count,
        });
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::DomainNumericTld {
            name: original.into(),
            tld: last.into(),
        });
    }
    Ok(())
}

/// A domain rule as the compiler needs it: the suffix hash of the name (the kernel's key) and
/// of each of its proper suffixes (to fold a name under another listed name), under the key
/// the kernel hashes query names with. The text is not kept: hashes are smaller, and folding
/// a compile then never re-hashes a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRule {
    /// [`agent_common::domain::domain_hash`] of the name.
    pub hash: u64,
    /// Suffix hashes of the proper suffixes, from the top-level label down (`com`,
    /// `example.com` for `www.example.com`).
    pub parents: Box<[u64]>,
}

impl DomainRule {
    /// The rule for a normalised name (at most [`MAX_DOMAIN_LABELS`] labels) under `key`.
    pub fn new(name: &str, key: &DomainKey) -> DomainRule {
        let mut suffixes = [0u64; MAX_DOMAIN_LABELS];
        let mut n = 0;
        let mut hasher = SuffixHasher::new(key);
        let mut h = 0;
        for label in name.as_bytes().rsplit(|&b| b == b'.') {
            h = hasher.push(label_hash(key, label));
            if let Some(slot) = suffixes.get_mut(n) {
                *slot = h;
            }
            n += 1;
        }
        let parents = suffixes.get(..n.saturating_sub(1)).unwrap_or(&suffixes);
        DomainRule {
            hash: h,
            parents: parents.into(),
        }
    }
}

/// A fresh secret for domain hashes from the kernel's random source (`getrandom(2)`, which
/// waits only until the kernel's generator is first seeded).
pub fn random_key() -> std::io::Result<DomainKey> {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(DomainKey::from_bytes(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::domain::domain_hash;

    #[test]
    fn domain_rules_carry_the_kernel_hashes() {
        let key = random_key().expect("getrandom");
        let r = DomainRule::new("www.example.com", &key);
        assert_eq!(r.hash, domain_hash(&key, "www.example.com"));
        assert_eq!(
            &*r.parents,
            [domain_hash(&key, "com"), domain_hash(&key, "example.com")]
        );
        let tld = DomainRule::new("zip", &key);
        assert_eq!(tld.hash, domain_hash(&key, "zip"));
        assert!(tld.parents.is_empty());
    }

    /// IDNA drops invisible characters: written into a rule, one would make it another,
    /// broader rule (`\u{AD}com`, all of `com`). Refused, named; visible Unicode still maps.
    #[test]
    fn an_invisible_character_is_refused_not_dropped() {
        for name in ["\u{AD}com", "ex\u{200B}ample.com", "example.com\u{FEFF}"] {
            match normalize_domain(name) {
                Err(LineError::DomainInvisible { ch, .. }) => {
                    assert!(name.contains(ch), "{name:?}: {ch:?}")
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert_eq!(
            normalize_domain("Bücher.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
    }

    #[test]
    fn every_key_is_fresh_and_gives_other_hashes() {
        let (a, b) = (
            random_key().expect("getrandom"),
            random_key().expect("getrandom"),
        );
        assert_ne!(a, b);
        assert_ne!(
            DomainRule::new("example.com", &a).hash,
            DomainRule::new("example.com", &b).hash
        );
    }
}
