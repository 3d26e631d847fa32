//! Signed checkpoints: what a chain cannot show by itself (its end was cut off, or the whole
//! journal rewritten by someone who recomputed every hash) shown by an Ed25519 signature over
//! the journal's head.
//!
//! # Contract
//!
//! `journal/<ULID>/checkpoints`: one statement per line, each the RFC 8785 canonical JSON of
//!
//! ```text
//! {"alg":"ed25519"|"none","final":bool,"head_hash":HEX|null,"journal":ULID,
//!  "key_id":HEX,"seq":N|null,"signature":BASE64,"time":RFC3339,
//!  "type":"mcp-audit-proxy/checkpoint/1"}
//! ```
//!
//! `seq` and `head_hash` are the `seq` and `event_hash` of the journal's last record when the
//! statement was made (`null` before the first), `time` the writer's clock (RFC 3339 UTC,
//! microseconds), `final` true for the statement written when the writer stopped cleanly (no
//! record may follow it). `signature` is the Ed25519 signature (RFC 8032, 64 bytes, standard
//! base64) of the canonical JSON of the statement without `signature`; `key_id` the hex
//! SHA-256 of the 32-byte public key. Without a configured key the statement is written with
//! `"alg":"none"` and neither `key_id` nor `signature`: it still shows an accidental cut, not a
//! deliberate one.
//!
//! A statement only covers records that were durable before it was written: the writer makes
//! one right after an `fdatasync` of the journal (every `audit.checkpoint_every_events`
//! events or `audit.checkpoint_interval_ms`, whichever comes first, and at shutdown), so a
//! crash can never leave a checkpoint past the journal's end. The file itself is synced after
//! each line; a crash can tear only its last line, which `verify` reports as such.
//!
//! Keys: `mcp-audit-proxy keygen --out PATH` writes the private key as PKCS#8 PEM (mode 0600)
//! and the public key beside it as `PATH.pub` (SubjectPublicKeyInfo PEM): both the forms
//! `openssl pkey` reads, so a third party needs nothing of ours to check a signature.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::chain::{Head, digest, hex};
use super::journals::JournalId;

/// The checkpoint file's name in a journal's folder.
pub const FILE: &str = "checkpoints";
/// The `type` of a checkpoint statement.
pub const TYPE: &str = "mcp-audit-proxy/checkpoint/1";

/// A key file that cannot be used; says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read the key file {}: {source}\n  hint: check the path and its permissions, or make a key pair with `mcp-audit-proxy keygen --out PATH`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a key of the expected kind.
    #[error("{} is not an Ed25519 {what} in PEM form ({reason})\n  hint: use the files `mcp-audit-proxy keygen --out PATH` writes (PATH is the private key, PATH.pub the public key)", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// `private key (PKCS#8)` or `public key (SubjectPublicKeyInfo)`.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A private key others may read.
    #[error("the private key {} can be read by other users (mode {mode:o})\n  hint: `chmod 600 {}`; a signing key others can read proves nothing", path.display(), path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `keygen` never overwrites a key.
    #[error("{} already exists\n  hint: keygen never replaces a key (checkpoints signed with it could no longer be checked); choose another --out path", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Writing a new key failed.
    #[error("cannot write the key file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The OS gave no randomness.
    #[error("cannot get random bytes for a new key from the OS: {0}")]
    Random(getrandom::Error),
}

/// The private key that signs checkpoints (`audit.signing_key_file`), loaded at start.
pub struct Signer {
    key: SigningKey,
    key_id: String,
    path: PathBuf,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("path", &self.path)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a PKCS#8 PEM Ed25519 private key; refused when other users may read it.
    pub fn load(path: &Path) -> Result<Signer, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = fs::metadata(path).map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let text = fs::read_to_string(path).map_err(read)?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Parse {
            path: path.to_path_buf(),
            what: "private key (PKCS#8)",
            reason: e.to_string(),
        })?;
        Ok(Signer {
            key_id: key_id(&key.verifying_key()),
            key,
            path: path.to_path_buf(),
        })
    }

    /// The public half, as `verify` trusts it.
    pub fn public(&self) -> TrustedKey {
        TrustedKey {
            key: self.key.verifying_key(),
            key_id: self.key_id.clone(),
        }
    }

    /// Signs `statement` (its `alg`, `key_id` and `signature` are set here).
    pub fn sign(&self, statement: &mut Statement) {
        statement.alg = "ed25519".into();
        statement.key_id = Some(self.key_id.clone());
        statement.signature = None;
        let signature = self.key.sign(&statement.signed_bytes());
        statement.signature = Some(BASE64.encode(signature.to_bytes()));
    }

    /// Signs arbitrary bytes (an export's trailer).
    pub fn sign_bytes(&self, bytes: &[u8]) -> String {
        BASE64.encode(self.key.sign(bytes).to_bytes())
    }

    /// The key's id (hex SHA-256 of the public key).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// A public key `verify` checks signatures with (`--public-key`, or the configured key's).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: VerifyingKey,
    key_id: String,
}

impl TrustedKey {
    /// Reads a SubjectPublicKeyInfo PEM Ed25519 public key (`keygen`'s `PATH.pub`).
    pub fn load(path: &Path) -> Result<TrustedKey, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        TrustedKey::from_pem(&text).map_err(|reason| KeyError::Parse {
            path: path.to_path_buf(),
            what: "public key (SubjectPublicKeyInfo)",
            reason,
        })
    }

    /// Reads the PEM text of a public key.
    pub fn from_pem(text: &str) -> Result<TrustedKey, String> {
        let key = VerifyingKey::from_public_key_pem(text).map_err(|e| e.to_string())?;
        Ok(TrustedKey {
            key_id: key_id(&key),
            key,
        })
    }

    /// The PEM text of the key.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The key's id (hex SHA-256 of the public key).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether `signature` (standard base64) signs `bytes` with this key.
    pub fn verifies(&self, bytes: &[u8], signature: &str) -> bool {
        let Ok(raw) = BASE64.decode(signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&raw) else {
            return false;
        };
        self.key.verify(bytes, &signature).is_ok()
    }
}

fn key_id(key: &VerifyingKey) -> String {
    hex(&digest(key.as_bytes()))
}

/// Makes a new key pair: `out` (private, PKCS#8 PEM, mode 0600, never overwritten) and
/// `out.pub` (public, SubjectPublicKeyInfo PEM). Returns the public key's path and id.
pub fn keygen(out: &Path) -> Result<(PathBuf, String), KeyError> {
    let public_path = PathBuf::from(format!("{}.pub", out.display()));
    for p in [out, public_path.as_path()] {
        if p.exists() {
            return Err(KeyError::Exists {
                path: p.to_path_buf(),
            });
        }
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut()).map_err(KeyError::Random)?;
    let key = SigningKey::from_bytes(&seed);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Write {
            path: out.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Write {
            path: public_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let write = |path: &Path, text: &[u8], mode: u32| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| {
                f.write_all(text)?;
                f.sync_all()
            })
            .map_err(|source| KeyError::Write {
                path: path.to_path_buf(),
                source,
            })
    };
    write(out, private.as_bytes(), 0o600)?;
    write(&public_path, public.as_bytes(), 0o644)?;
    Ok((public_path, key_id(&key.verifying_key())))
}

/// One checkpoint statement (see the module docs for the contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Always [`TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The journal's id (ULID).
    pub journal: String,
    /// `seq` of the journal's last record, `None` before the first.
    pub seq: Option<u64>,
    /// Its `event_hash` (hex).
    pub head_hash: Option<String>,
    /// When the statement was made (RFC 3339 UTC, microseconds).
    pub time: String,
    /// Written by a writer stopping cleanly: no record may follow.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// `ed25519` or `none`.
    pub alg: String,
    /// Hex SHA-256 of the signing public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Standard base64 of the 64-byte Ed25519 signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Statement {
    /// An unsigned statement of `journal`'s head now.
    pub fn new(journal: JournalId, head: Option<Head>, is_final: bool) -> Statement {
        Statement {
            kind: TYPE.into(),
            journal: journal.to_string(),
            seq: head.map(|h| h.seq),
            head_hash: head.map(|h| hex(&h.hash)),
            time: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            is_final,
            alg: "none".into(),
            key_id: None,
            signature: None,
        }
    }

    /// The bytes the signature covers: the canonical JSON without `signature`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Statement {
            signature: None,
            ..self.clone()
        };
        super::canonical::to_canonical(&unsigned)
    }

    /// The line as stored (canonical JSON, no newline).
    pub fn to_line(&self) -> Vec<u8> {
        super::canonical::to_canonical(self)
    }

    /// What `key` says of the signature.
    pub fn check(&self, key: Option<&TrustedKey>) -> Signed {
        check_signature(
            &self.alg,
            self.key_id.as_deref(),
            self.signature.as_deref(),
            || self.signed_bytes(),
            key,
        )
    }
}

/// What `key` says of a statement's signature: the one rule for every signed statement of the
/// store (checkpoints, purge statements). `alg` is `ed25519`, or `none` for a statement
/// written without a key (then `key_id` and `signature` are absent); `signed` gives the bytes
/// the signature covers (the canonical JSON without `signature`), made only when a key can
/// check them.
pub(crate) fn check_signature(
    alg: &str,
    key_id: Option<&str>,
    signature: Option<&str>,
    signed: impl FnOnce() -> Vec<u8>,
    key: Option<&TrustedKey>,
) -> Signed {
    match (signature, key) {
        (None, _) if alg == "none" && key_id.is_none() => Signed::Unsigned,
        (None, _) => Signed::Invalid,
        (Some(_), None) => Signed::Unchecked,
        (Some(_), Some(k)) if key_id != Some(k.key_id()) => Signed::OtherKey,
        (Some(sig), Some(k)) if alg == "ed25519" && k.verifies(&signed(), sig) => Signed::Valid,
        (Some(_), Some(_)) => Signed::Invalid,
    }
}

/// The outcome of checking a statement's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// Signed by the trusted key.
    Valid,
    /// Written without a key (`alg` `none`).
    Unsigned,
    /// Signed, but no public key was given to check it.
    Unchecked,
    /// Signed by a key other than the trusted one.
    OtherKey,
    /// The signature does not verify: the statement was changed or forged.
    Invalid,
}

/// Appends statements to a journal's checkpoint file, signing them when a key is configured.
#[derive(Debug)]
pub struct CheckpointWriter {
    path: PathBuf,
    journal: JournalId,
    signer: Option<std::sync::Arc<Signer>>,
    file: Option<File>,
}

impl CheckpointWriter {
    /// For the journal `journal` in folder `dir`; the file is made at the first statement.
    pub fn new(
        dir: &Path,
        journal: JournalId,
        signer: Option<std::sync::Arc<Signer>>,
    ) -> CheckpointWriter {
        CheckpointWriter {
            path: dir.join(FILE),
            journal,
            signer,
            file: None,
        }
    }

    /// Writes and syncs a statement of `head` (which must be durable in the journal already).
    pub fn write(&mut self, head: Option<Head>, is_final: bool) -> Result<Statement, StoreError> {
        let mut statement = Statement::new(self.journal, head, is_final);
        if let Some(signer) = &self.signer {
            signer.sign(&mut statement);
        }
        let mut line = statement.to_line();
        line.push(b'\n');
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| StoreError::io("open", &self.path, e))?;
            self.file = Some(file);
        }
        if let Some(file) = self.file.as_mut() {
            file.write_all(&line)
                .and_then(|()| file.sync_data())
                .map_err(|e| StoreError::io("append a checkpoint to", &self.path, e))?;
        }
        Ok(statement)
    }
}

/// One line of a checkpoint file as read back.
#[derive(Debug)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The statement, or why the line is not one.
    pub statement: Result<Statement, String>,
    /// The last line, without its newline: a write cut by a crash.
    pub torn: bool,
}

/// Reads the checkpoint file of the journal in `dir` (none: an empty list).
pub fn read(dir: &Path) -> Result<Vec<Line>, StoreError> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("read", &path, e)),
    };
    Ok(parse_lines(&bytes))
}

/// Parses checkpoint lines (also those carried in an export).
pub fn parse_lines(bytes: &[u8]) -> Vec<Line> {
    let complete = bytes.last() == Some(&b'\n');
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    if complete || lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let count = lines.len();
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| Line {
            number: i + 1,
            statement: serde_json::from_slice::<Statement>(line)
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    if s.kind == TYPE {
                        Ok(s)
                    } else {
                        Err(format!("unknown statement type {:?}", s.kind))
                    }
                }),
            torn: i + 1 == count && !complete,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("signing.key");
        let (public, id) = keygen(&out).unwrap();
        let mode = fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let signer = Signer::load(&out).unwrap();
        assert_eq!(signer.key_id(), id);
        assert_eq!(TrustedKey::load(&public).unwrap().key_id(), id);
        assert!(matches!(keygen(&out), Err(KeyError::Exists { .. })));
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Signer::load(&out).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let err = Signer::load(&dir.path().join("missing.key")).unwrap_err();
        assert!(err.to_string().contains("missing.key"), "{err}");
    }

    #[test]
    fn a_statement_verifies_only_as_signed_and_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("a")).unwrap();
        keygen(&dir.path().join("b")).unwrap();
        let a = Signer::load(&dir.path().join("a")).unwrap();
        let b = TrustedKey::load(&dir.path().join("b.pub")).unwrap();
        let head = Head {
            seq: 41,
            hash: digest(b"x"),
        };
        let mut s = Statement::new(JournalId(7), Some(head), false);
        assert_eq!(s.check(Some(&a.public())), Signed::Unsigned);
        a.sign(&mut s);
        assert_eq!(s.check(Some(&a.public())), Signed::Valid);
        assert_eq!(s.check(None), Signed::Unchecked);
        assert_eq!(s.check(Some(&b)), Signed::OtherKey);
        let line = s.to_line();
        let back = &parse_lines(&line)[0];
        assert!(back.torn, "no newline: a torn last line");
        assert_eq!(back.statement.as_ref().unwrap(), &s);
        let mut forged = s.clone();
        forged.seq = Some(42);
        assert_eq!(forged.check(Some(&a.public())), Signed::Invalid);
    }
}
