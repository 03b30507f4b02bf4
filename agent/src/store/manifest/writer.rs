//! The writer's side of the chain: [`Manifest`], loaded once at the store's open, appended to
//! by the sealer thread, frozen when it cannot be read.

use super::*;

/// The chain as the writer keeps it.
pub struct Manifest {
    dir: PathBuf,
    entries: Vec<Entry>,
    signing_key: Option<SigningKey>,
    broken: Option<String>,
    frozen: Option<String>,
    /// The last entry of a chain whose head named no key and carried no signature, which this
    /// writer's key signs on top of ([`Manifest::signing_began_on`]).
    signing_began: Option<u64>,
}

impl Manifest {
    /// Loads the chain of `dir` (empty if there is none yet) and checks its links and live
    /// set ([`check_chain`]; an error is logged naming the entry and line; see
    /// [`Manifest::broken`]). An entry naming a file that is no segment of the store is
    /// refused with the manifest ([`is_segment_file`]). With `signing_key`, the head must be
    /// one the key can go on signing from ([`check_signer`]); else the chain is broken too, and
    /// the writer signs none of the heads it writes (see the module docs).
    pub fn load(dir: &Path, signing_key: Option<SigningKey>) -> Result<Self, ManifestError> {
        let (entries, head) = read_chain(dir)?;
        let path = dir.join(MANIFEST);
        let mut broken = check_chain(&entries)
            .err()
            .map(|reason| format!("{} {reason}", path.display()));
        if let Some(why) = &broken {
            tracing::error!(error = %why, "the manifest's chain does not verify: retention and the deletion of files the chain removed are suspended until it does, and the heads written are not signed (run `xdp-audit verify`)");
        }
        let mut signing_began = None;
        match (&head, &signing_key) {
            (Some(head), Some(key)) if broken.is_none() => match check_signer(head, key) {
                Ok(HeadSigning::Signed) => {}
                Ok(HeadSigning::Unsigned) => {
                    signing_began = Some(head.seq);
                    tracing::warn!(
                    file = %path.display(),
                    entry = head.seq,
                    "the chain's head is not signed and names no key: the store was not signed \
                     before (or its head was stripped of key and signature); signing starts with \
                     the next entry, so the signature vouches for entries 0 to {} as they are \
                     now; if this store was signed before, check it with `xdp-audit verify` and \
                     a copy of its manifest",
                    head.seq
                    )
                }
                Err(reason) => {
                    let why = format!(
                        "{} head line (entry {}): {reason}",
                        path.display(),
                        head.seq
                    );
                    tracing::error!(error = %why, "the chain's head does not carry a valid signature by the signing key: the writer does not sign on top of it, and retention and the deletion of files the chain removed are suspended (run `xdp-audit verify --public-key FILE`; start with the key that signed it, or restore manifest.jsonl from a copy)");
                    broken = Some(why);
                }
            },
            (Some(head), None) if head.signature.is_some() => tracing::warn!(
                file = %path.display(),
                "the chain's head is signed, but no signing key is given: the heads written \
                 from now on are not signed, and `xdp-audit verify --public-key` fails until \
                 the agent signs again"
            ),
            _ => {}
        }
        Ok(Self {
            dir: dir.to_owned(),
            entries,
            signing_key,
            broken,
            frozen: None,
            signing_began,
        })
    }

    /// The chain of `dir` when it cannot be read (`why`: torn, garbage, a directory in its
    /// place, deleted while segments remain): empty, broken, and never written. The agent
    /// still starts and records into journals, which wait unsealed; nothing is sealed,
    /// merged, pruned or deleted on its word (a chain started afresh would reuse segment
    /// numbers and overwrite the damaged file, the evidence) until it is restored.
    pub fn frozen(dir: &Path, why: &ManifestError) -> Self {
        let reason = why.to_string();
        Self {
            dir: dir.to_owned(),
            entries: Vec::new(),
            signing_key: None,
            broken: Some(reason.clone()),
            frozen: Some(reason),
            signing_began: None,
        }
    }

    /// Why the manifest could not be read at the start ([`Manifest::frozen`]), if so.
    pub fn unreadable(&self) -> Option<&str> {
        self.frozen.as_deref()
    }

    /// [`ManifestError::Frozen`] where the manifest could not be read: what would write a
    /// segment, merge or delete on its word stops before it starts.
    pub fn writable(&self) -> Result<(), ManifestError> {
        match &self.frozen {
            Some(reason) => Err(ManifestError::Frozen {
                path: self.dir.join(MANIFEST),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Why the chain as loaded does not verify, naming the line; `None` if it does. Entries
    /// appended since are linked to it and cannot repair it. While set, nothing is deleted on
    /// the chain's word: a changed `time_max_ns` or file name would delete a live segment.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// The last entry of an unsigned chain (its head named no key and carried no signature)
    /// that this writer's key signs on top of: a store first given a key, or one whose head was
    /// stripped of key and signature, which the store alone cannot tell apart. The agent raises
    /// it as an alert, so that the start is in the alert log the next signed head vouches for.
    pub fn signing_began_on(&self) -> Option<u64> {
        self.signing_began
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The chain position the next entry takes: one past the last entry's. A last entry at
    /// the largest seq there is (damage: a chain that verifies never gets there) leaves none,
    /// and the error names the manifest and that entry's line.
    pub fn next_seq(&self) -> Result<u64, ManifestError> {
        let Some(last) = self.entries.last() else {
            return Ok(0);
        };
        last.seq.checked_add(1).ok_or_else(|| ManifestError::Parse {
            path: self.dir.join(MANIFEST),
            line: self.entries.len(),
            reason: format!(
                "seq {} is the largest there is: no entry can follow it; `xdp-audit verify` \
                 checks the whole chain",
                last.seq
            ),
        })
    }

    /// Appends an entry: the whole manifest, with the new head line (signed when a key is
    /// set), is written to a temporary file, fsynced and renamed over the old one.
    pub fn append(&mut self, body: Body) -> Result<&Entry, ManifestError> {
        self.writable()?;
        let seq = self.next_seq()?;
        let prev = self
            .entries
            .last()
            .map_or_else(|| GENESIS.to_owned(), |e| e.hash.clone());
        let hash = entry_hash(seq, &body, &prev);
        let entry = Entry {
            seq,
            body,
            prev,
            hash,
        };
        let mut text = Vec::new();
        let encode_err = |e: serde_json::Error| ManifestError::Parse {
            path: self.dir.join(MANIFEST),
            line: 0,
            reason: format!("cannot encode: {e}"),
        };
        for e in self.entries.iter().chain(std::iter::once(&entry)) {
            serde_json::to_writer(&mut text, e).map_err(encode_err)?;
            text.push(b'\n');
        }
        text.extend_from_slice(head_line(&self.head_for(&entry)).as_bytes());
        text.push(b'\n');
        write_atomic(&self.dir, MANIFEST, &text).map_err(|source| ManifestError::Io {
            path: self.dir.join(MANIFEST),
            op: "replace",
            cause: source,
        })?;
        self.entries.push(entry);
        Ok(&self.entries[self.entries.len() - 1])
    }

    /// The head naming `last`: signed when a key is set and the chain as loaded verified. A
    /// chain that did not is not vouched for: its heads name the key but carry no signature,
    /// so the next start with the key finds the chain broken again ([`check_signer`]) instead
    /// of taking it as a store never signed.
    fn head_for(&self, last: &Entry) -> Head {
        let (public_key, signature) = match &self.signing_key {
            Some(k) => (
                Some(hex(&k.verifying_key().to_bytes())),
                self.broken
                    .is_none()
                    .then(|| hex(&k.sign(&head_message(last.seq, &last.hash)).to_bytes())),
            ),
            None => (None, None),
        };
        Head {
            seq: last.seq,
            hash: last.hash.clone(),
            public_key,
            signature,
        }
    }
}
