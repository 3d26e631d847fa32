//! Personal data stored encrypted per user, so that one person's data can be erased without
//! changing a stored byte (crypto-shredding): GDPR Art. 17 (right to erasure) without breaking
//! the hash chain of Art. 5(2) accountability, and Art. 20 (data portability) by decrypting.
//!
//! # What is personal, and what stays readable
//!
//! An event's personal fields identify or describe the person who made the call (GDPR Art. 4(1):
//! "any information relating to an identified or identifiable natural person"). They are stored
//! in one AEAD ciphertext under the user's key ([`PERSONAL_FIELDS`]):
//!
//! | field                           | why it is personal                                      |
//! |---------------------------------|---------------------------------------------------------|
//! | `user_id`                       | the principal's identity (Art. 4(1) "identifier")       |
//! | `metadata.arguments`            | what the person sent: any content at all                |
//! | `metadata.input_responses`      | what the person answered the server: any content at all |
//! | `metadata.error_messages`       | error texts quote arguments and results                 |
//! | `metadata.reason`               | may quote what the client or server sent                |
//! | `metadata.user_agent`           | the client implementation the person runs               |
//! | `metadata.http.client_address`  | an IP address (CJEU C-582/14 Breyer: personal data)     |
//! | `metadata.http.user_agent`      | the `User-Agent` header: a device fingerprint           |
//! | `metadata.http.roles`           | describes the person (their roles)                      |
//! | `metadata.truncated`            | SHA-256 of cut values: lets a guess be confirmed        |
//!
//! The skeleton stays in clear for the auditor (Art. 17(3)(b) and (e): records kept for a legal
//! obligation or for legal claims): `event_id`, `timestamp`, `event_type`, `tool_name`,
//! `action`, `result`, `risk_level`, `compliance_tags`, `session_id`, `upstream`,
//! `linked_event_id` and the rest of `metadata` (request id, protocol, measurements, error
//! code, failure side, risk score and reasons, decision, policy version, classes redacted,
//! changes, confirmation, trace id, TLS version, status code). `user_id` is stored as the
//! user's pseudonym (`subject:` and 32 random hex digits, Art. 4(5)), so that the index keys a
//! user's events by it and never by name.
//!
//! # Stored form (journal format 3)
//!
//! The record holds the skeleton, `"user_id":"subject:HEX"` and one more member:
//!
//! ```text
//! "personal":{"alg":"XChaCha20-Poly1305","ciphertext":B64,"nonce":B64,"subject":HEX}
//! ```
//!
//! `ciphertext` is XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha, RFC 8439 with a 192-bit nonce)
//! of the personal fields' JSON (the table's fields, named as in the table, `http.` dropped
//! and `http_user_agent` for the header), with a random nonce and the associated data
//! `mcp-audit-proxy/personal/1\0` ‖ `event_id`, so a ciphertext moved to another record does
//! not open. Random 192-bit nonces are safe for any number of events per key and for many
//! writer processes sharing one key without coordination (a 96-bit nonce is not).
//!
//! The chain hashes the record as stored ([`super::chain`]): destroying the key changes no
//! stored byte, so every hash, checkpoint and export still verifies after an erasure.
//!
//! # Keys (`keys/` in the store folder)
//!
//! One file per user, `keys/<SHA-256(mcp-audit-proxy/user-key/1\0 ‖ user)>.key` (mode 0600):
//! `{"alg","created","format":"mcp-audit-proxy/user-key/1","key":B64,"subject":HEX}`. The name
//! is never stored in clear. Many writer processes share the folder: a writer that meets a user
//! without a key writes a new one to a hidden file, syncs it, and links it to its final name
//! (a link never replaces: the first process wins, the others read the winner's key), then
//! syncs the folder, all before the first record that uses it is appended. A key file never
//! changes once made.
//!
//! Erasure ([`erase`]) overwrites the key file with zeros, syncs, removes it and syncs the
//! folder. A writer re-reads a user's key file (by its inode) once per batch, so events
//! written after an erasure get a new key and pseudonym; events sealed in the same instant as
//! the erasure may be sealed with the old key and are then erased with it.
//!
//! Limits, said plainly: a backup or copy of `keys/` made before the erasure still opens the
//! records (erase backups on their own schedule); a file system that keeps old blocks (copy on
//! write, SSD wear levelling) may keep the key's bytes until they are reused; an erased user's
//! events still share one pseudonym, so they can be counted together, never named.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::StoreError;
use super::chain::hex;
use super::journal::{JournalPos, sync_dir};
use crate::audit::event::{AuditEvent, EventId, HttpContext, PersonalData, Truncation};

/// The AEAD, as named in stored records and key files.
pub const ALG: &str = "XChaCha20-Poly1305";
/// The `format` of a key file.
pub const KEY_FORMAT: &str = "mcp-audit-proxy/user-key/1";
/// What a pseudonymous `user_id` starts with.
pub const SUBJECT_PREFIX: &str = "subject:";

/// Whether `user` has the form of a pseudonym (starts with [`SUBJECT_PREFIX`], in any case).
/// An erased user's events keep their pseudonym as `user_id`: a live identity of that form
/// would be read as that person's by every filter and analysis (helper-116 M5), so the
/// proxy, the gateway and the config refuse one wherever an identity comes in.
pub fn is_pseudonym(user: &str) -> bool {
    user.get(..SUBJECT_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(SUBJECT_PREFIX))
}

/// Why an identity of a pseudonym's form is refused, for error messages.
pub const PSEUDONYM_FORM: &str = "starts with `subject:`, the form the trail gives an erased user's pseudonym: its events would be read as that person's; give another name";
/// The fields stored encrypted, as JSON pointers into the event (see the module docs).
pub const PERSONAL_FIELDS: [&str; 10] = [
    "/user_id",
    "/metadata/arguments",
    "/metadata/input_responses",
    "/metadata/error_messages",
    "/metadata/reason",
    "/metadata/user_agent",
    "/metadata/http/client_address",
    "/metadata/http/user_agent",
    "/metadata/http/roles",
    "/metadata/truncated",
];
const AAD_PREFIX: &[u8] = b"mcp-audit-proxy/personal/1\0";

/// Why personal fields could not be sealed or opened, or a key not be made or destroyed.
#[derive(Debug, thiserror::Error)]
pub enum PersonalError {
    /// A key file or the keys folder failed.
    #[error("cannot {op} the user key file {}: {source}\n  hint: {}", path.display(), io_hint(op, source))]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file is not one this version wrote.
    #[error("{} is not a valid user key file ({reason})\n  hint: it was left untouched; if it was damaged, the personal fields sealed with it cannot be read again: move it aside to let new events get a new key", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An event handed to the journal is not event JSON.
    #[error("an audit event could not be sealed: {0}")]
    NotAnEvent(serde_json::Error),
    /// The random source failed (nonces and keys need it).
    #[error(
        "the system's random source failed: {0}\n  hint: the audit trail cannot be encrypted without it"
    )]
    Random(String),
    /// A ciphertext that its key does not open: the record or the key file was changed.
    #[error(
        "the personal fields of event {event} (journal record ending at {at}) do not open with the key of {subject}\n  hint: run `mcp-audit-proxy verify`: the record or its key file was changed"
    )]
    Open {
        /// The event.
        event: EventId,
        /// Where its record ends.
        at: JournalPos,
        /// The pseudonym.
        subject: String,
    },
}

/// What to do about a key file's I/O error `source` while doing `op`: a read refused is an
/// account without access to the keys (helper-116 M6: it was told to free disk space).
fn io_hint(op: &str, source: &std::io::Error) -> &'static str {
    let reading = matches!(op, "read" | "open" | "list" | "stat");
    match source.kind() {
        std::io::ErrorKind::PermissionDenied if reading => {
            "this account cannot read the store's keys/ folder: run as the store's owner, or give this account read access to keys/ (the keys open every user's personal fields: only to those who may read them)"
        }
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            "this account cannot write the store's keys/ folder: run as the store's owner, on a writable store"
        }
        _ => "check that the store folder is writable and not full",
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PersonalError + 'a {
    move |source| PersonalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The personal fields of one event (see the module docs), as encrypted.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Fields {
    /// `user_id`.
    pub user_id: String,
    /// `metadata.arguments`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Box<RawValue>>,
    /// `metadata.input_responses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_responses: Option<Box<RawValue>>,
    /// `metadata.error_messages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_messages: Vec<String>,
    /// `metadata.reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `metadata.user_agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// `metadata.http.client_address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    /// `metadata.http.user_agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_user_agent: Option<String>,
    /// `metadata.http.roles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// `metadata.truncated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<Truncation>,
}

impl Fields {
    /// Moves the personal fields out of `e`, leaving the skeleton.
    fn take(e: &mut AuditEvent) -> Fields {
        let m = &mut e.metadata;
        let mut f = Fields {
            user_id: std::mem::take(&mut e.user_id),
            arguments: m.arguments.take(),
            input_responses: m.input_responses.take(),
            error_messages: std::mem::take(&mut m.error_messages),
            reason: m.reason.take(),
            user_agent: m.user_agent.take(),
            truncated: std::mem::take(&mut m.truncated),
            ..Fields::default()
        };
        if let Some(http) = m.http.as_deref_mut() {
            f.client_address = http.client_address.take();
            f.http_user_agent = http.user_agent.take();
            f.roles = std::mem::take(&mut http.roles);
        }
        if m.http.as_deref() == Some(&HttpContext::default()) {
            m.http = None;
        }
        f
    }

    /// Puts the personal fields back into `e`.
    /// Whether any `metadata.http` field was sealed (an event without an HTTP context has
    /// none, and gets none back).
    pub(crate) fn has_http(&self) -> bool {
        self.client_address.is_some() || self.http_user_agent.is_some() || !self.roles.is_empty()
    }

    fn put(self, e: &mut AuditEvent) {
        let has_http = self.has_http();
        let m = &mut e.metadata;
        e.user_id = self.user_id;
        m.arguments = self.arguments;
        m.input_responses = self.input_responses;
        m.error_messages = self.error_messages;
        m.reason = self.reason;
        m.user_agent = self.user_agent;
        m.truncated = self.truncated;
        if has_http {
            let http = m.http.get_or_insert_default();
            http.client_address = self.client_address;
            http.user_agent = self.http_user_agent;
            http.roles = self.roles;
        }
    }
}

/// The `personal` member of a stored record.
#[derive(Serialize, Deserialize)]
struct Sealed {
    alg: String,
    ciphertext: String,
    nonce: String,
    subject: String,
}

impl Sealed {
    fn as_ref(&self) -> SealedRef<'_> {
        SealedRef {
            ciphertext: Cow::Borrowed(&self.ciphertext),
            nonce: Cow::Borrowed(&self.nonce),
            subject: Cow::Borrowed(&self.subject),
        }
    }
}

/// The `personal` member of a stored record, borrowed from it (base64 and hex digits are not
/// escaped by the writer). `alg` is not read: there is one.
#[derive(Debug, Deserialize)]
pub(crate) struct SealedRef<'a> {
    /// XChaCha20-Poly1305 of the fields' JSON, base64.
    #[serde(borrow)]
    pub ciphertext: Cow<'a, str>,
    /// The 24-byte nonce, base64.
    #[serde(borrow)]
    pub nonce: Cow<'a, str>,
    /// The user's pseudonym without `subject:`.
    #[serde(borrow)]
    pub subject: Cow<'a, str>,
}

/// Only the `personal` member of a record (nested members of that name are not read).
#[derive(Deserialize)]
struct Outer {
    #[serde(default)]
    personal: Option<Sealed>,
}

/// A key file's content.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    alg: String,
    created: String,
    format: String,
    key: String,
    subject: String,
}

/// The key file of `user` in `keys` (the name is a hash: never stored in clear).
pub fn key_path(keys: &Path, user: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(b"mcp-audit-proxy/user-key/1\0");
    h.update(user.as_bytes());
    keys.join(format!("{}.key", hex(&h.finalize())))
}

fn random<const N: usize>() -> Result<[u8; N], PersonalError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| PersonalError::Random(e.to_string()))?;
    Ok(out)
}

/// The associated data of an event's ciphertext: [`AAD_PREFIX`] ‖ `event_id` (26 characters).
/// On the stack: it is made once per event read (10 M for a report over a large trail).
fn aad(event: EventId) -> [u8; AAD_PREFIX.len() + ulid::ULID_LEN] {
    let mut out = [0u8; AAD_PREFIX.len() + ulid::ULID_LEN];
    let (prefix, id) = out.split_at_mut(AAD_PREFIX.len());
    prefix.copy_from_slice(AAD_PREFIX);
    let id: &mut [u8; ulid::ULID_LEN] = id.try_into().expect("ULID_LEN bytes");
    event.0.array_to_str(id);
    out
}

/// A user's key as read from its file: pseudonym and cipher.
struct UserKey {
    subject: String,
    cipher: XChaCha20Poly1305,
}

fn read_key(path: &Path) -> Result<Option<UserKey>, PersonalError> {
    let bytes = match fs::read(path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path)(e)),
    };
    let bad = |reason: String| PersonalError::BadKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if file.format != KEY_FORMAT || file.alg != ALG {
        return Err(bad(format!("format {:?}, alg {:?}", file.format, file.alg)));
    }
    let key = Zeroizing::new(
        B64.decode(file.key.as_bytes())
            .map_err(|e| bad(format!("key: {e}")))?,
    );
    let cipher =
        XChaCha20Poly1305::new_from_slice(&key).map_err(|_| bad("key is not 32 bytes".into()))?;
    Ok(Some(UserKey {
        subject: file.subject,
        cipher,
    }))
}

/// Reads `user`'s key, or makes it (durably, before it is used) if there is none.
fn key_or_create(keys: &Path, user: &str) -> Result<(UserKey, u64), PersonalError> {
    let path = key_path(keys, user);
    if let Some(k) = read_key(&path)? {
        return Ok((k, inode(&path)?));
    }
    if !keys.is_dir() {
        fs::create_dir_all(keys).map_err(io("create", keys))?;
        if let Some(parent) = keys.parent() {
            sync_dir(parent).map_err(|e| PersonalError::Io {
                op: "sync",
                path: parent.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
    }
    let key = Zeroizing::new(random::<32>()?);
    let file = KeyFile {
        alg: ALG.into(),
        created: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        format: KEY_FORMAT.into(),
        key: B64.encode(*key),
        subject: hex(&random::<16>()?),
    };
    let text = Zeroizing::new(serde_json::to_vec(&file).map_err(PersonalError::NotAnEvent)?);
    drop(file);
    let hidden = keys.join(format!(".new-{}", hex(&random::<8>()?)));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&hidden)
        .map_err(io("create", &hidden))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(io("write", &hidden))?;
    drop(f);
    // A link never replaces an existing file: another process's key for this user wins.
    let linked = fs::hard_link(&hidden, &path);
    let _ = fs::remove_file(&hidden);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("link", &path)(e)),
    }
    sync_dir(keys).map_err(|e| PersonalError::Io {
        op: "sync",
        path: keys.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let k = read_key(&path)?.ok_or_else(|| PersonalError::Io {
        op: "read",
        path: path.clone(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "removed while it was being made",
        ),
    })?;
    Ok((k, inode(&path)?))
}

fn inode(path: &Path) -> Result<u64, PersonalError> {
    fs::metadata(path)
        .map(|m| m.ino())
        .map_err(io("stat", path))
}

/// The writer's side: seals the personal fields of each event under its user's key before the
/// record is chained ([`super::Journal::append`]). Keys are cached and checked once per batch.
pub struct Sealer {
    keys: PathBuf,
    cache: HashMap<String, Cached>,
    batch: u64,
    /// Random bytes from the OS not used yet, taken [`NONCE_LEN`] at a time for nonces (nonces
    /// are stored in clear beside their ciphertext, so holding them before use reveals
    /// nothing): one `getrandom` call per [`NONCES_PER_FILL`] records instead of one per
    /// record.
    nonces: Vec<u8>,
}

/// XChaCha20-Poly1305's nonce, in bytes.
const NONCE_LEN: usize = 24;
/// Nonces taken from the OS at once.
const NONCES_PER_FILL: usize = 64;

struct Cached {
    key: UserKey,
    inode: u64,
    checked: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("keys", &self.keys).finish()
    }
}

impl Sealer {
    /// A sealer for the store at `root` (its keys in `root/keys`).
    pub fn new(root: &Path) -> Sealer {
        Sealer {
            keys: root.join("keys"),
            cache: HashMap::new(),
            batch: 0,
            nonces: Vec::new(),
        }
    }

    /// The next nonce: fresh random bytes from the OS, never handed out twice.
    fn nonce(&mut self) -> Result<[u8; NONCE_LEN], PersonalError> {
        if self.nonces.len() < NONCE_LEN {
            self.nonces.resize(NONCE_LEN * NONCES_PER_FILL, 0);
            getrandom::getrandom(&mut self.nonces)
                .map_err(|e| PersonalError::Random(e.to_string()))?;
        }
        let at = self.nonces.len() - NONCE_LEN;
        let mut out = [0u8; NONCE_LEN];
        out.copy_from_slice(&self.nonces[at..]);
        self.nonces.truncate(at);
        Ok(out)
    }

    /// Starts a batch: each user's key file is looked at again (once) in it, so that an
    /// erasure by another process is seen.
    pub fn begin_batch(&mut self) {
        self.batch += 1;
    }

    fn key(&mut self, user: &str) -> Result<&UserKey, PersonalError> {
        let fresh = match self.cache.get(user) {
            Some(c) if c.checked == self.batch => false,
            Some(c) => {
                let path = key_path(&self.keys, user);
                match fs::metadata(&path) {
                    Ok(m) if m.ino() == c.inode => false,
                    Ok(_) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) => return Err(io("stat", &path)(e)),
                }
            }
            None => true,
        };
        if fresh {
            let (key, inode) = key_or_create(&self.keys, user)?;
            self.cache.insert(
                user.to_string(),
                Cached {
                    key,
                    inode,
                    checked: self.batch,
                },
            );
        }
        let c = self.cache.get_mut(user).ok_or_else(|| {
            PersonalError::Random("the key cache lost an entry it had just made".into())
        })?;
        c.checked = self.batch;
        Ok(&c.key)
    }

    /// The event JSON `payload` with its personal fields sealed (see the module docs):
    /// [`Self::seal_event`] of the parsed event.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, PersonalError> {
        let event: AuditEvent =
            serde_json::from_slice(payload).map_err(PersonalError::NotAnEvent)?;
        self.seal_event(event)
    }

    /// The stored JSON of `event` with its personal fields sealed: the event's own JSON
    /// without them, `user_id` replaced by the user's pseudonym, and a `personal` member
    /// last. The audit writer has the event itself, so it seals it without writing its JSON
    /// and parsing it back (a third of the writer's work per event).
    ///
    /// Errors: [`PersonalError::BadKeyFile`] when the user's key file is damaged (that user
    /// only), [`PersonalError::Io`] when the keys folder fails, [`PersonalError::Random`].
    pub fn seal_event(&mut self, mut event: AuditEvent) -> Result<Vec<u8>, PersonalError> {
        Ok(self.seal_event_members(&mut event, 768)?.emit())
    }

    /// [`Self::seal_event`], kept as the canonical members of the record's top-level object
    /// ([`super::canonical_ser::Members`]), for the chain to add `seq` and `previous_hash`
    /// without parsing it back. `size_hint`: bytes the skeleton's members are likely to take.
    /// `event` is left as the skeleton written (its personal fields taken out, `user_id` the
    /// pseudonym), for the index keys the writer hands on ([`super::handoff`]).
    pub fn seal_event_members(
        &mut self,
        event: &mut AuditEvent,
        size_hint: usize,
    ) -> Result<super::canonical_ser::Members, PersonalError> {
        let fields = Fields::take(event);
        let plain = Zeroizing::new(serde_json::to_vec(&fields).map_err(PersonalError::NotAnEvent)?);
        let nonce = self.nonce()?;
        let key = self.key(&fields.user_id)?;
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad(event.event_id),
                },
            )
            .map_err(|_| PersonalError::Random("encryption failed".into()))?;
        event.user_id = format!("{SUBJECT_PREFIX}{}", key.subject);
        let sealed = Sealed {
            alg: ALG.into(),
            ciphertext: B64.encode(&ciphertext),
            nonce: B64.encode(nonce),
            subject: key.subject.clone(),
        };
        // The skeleton (a few hundred bytes) and the ciphertext as base64.
        let mut members = super::canonical_ser::Members::of(&*event, size_hint)
            .map_err(PersonalError::NotAnEvent)?;
        let personal = super::canonical_ser::Members::of(&sealed, 64 + sealed.ciphertext.len())
            .map_err(PersonalError::NotAnEvent)?
            .emit();
        members.push("personal", &personal);
        Ok(members)
    }
}

/// The readers' side: decodes stored records into events, opening personal fields with the
/// keys in `keys/` (read once, and again when a pseudonym is met that they do not hold and
/// the folder has changed since, or may have: see [`MTIME_SLACK`]).
pub struct Keyring {
    keys: PathBuf,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    /// The folder's modification time when it was read; `None` before.
    read_at: Option<Option<SystemTime>>,
    /// The clock when it was last read (taken before listing it).
    loaded: Option<SystemTime>,
    by_subject: HashMap<String, XChaCha20Poly1305>,
}

/// How coarse a folder's modification time may be: a key made this close after a read may
/// leave the time unchanged (the kernel's coarse clock, or whole seconds on some file
/// systems), so until a read is this much newer than the time, an unknown subject reloads.
const MTIME_SLACK: Duration = Duration::from_secs(2);
/// The fewest time between two such uncertain reloads.
const RELOAD_PAUSE: Duration = Duration::from_millis(50);

impl Ring {
    /// Whether a subject missing from the ring may have a key made since it was read.
    fn may_be_stale(&self, folder: Option<SystemTime>) -> bool {
        let Some(read_at) = self.read_at else {
            return true;
        };
        if read_at != folder {
            return true;
        }
        let (Some(modified), Some(loaded)) = (folder, self.loaded) else {
            return false;
        };
        let close = loaded
            .duration_since(modified)
            .map_or(true, |d| d < MTIME_SLACK);
        close && loaded.elapsed().map_or(true, |e| e >= RELOAD_PAUSE)
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.keys).finish()
    }
}

impl Keyring {
    /// The keys of the store at `root`.
    pub fn new(root: &Path) -> Keyring {
        Keyring {
            keys: root.join("keys"),
            ring: Mutex::new(Ring::default()),
        }
    }

    /// The keys of the store whose journals are in `journal_root` (`root/journal`).
    pub fn for_journals(journal_root: &Path) -> Keyring {
        Keyring::new(journal_root.parent().unwrap_or(journal_root))
    }

    fn folder_time(&self) -> Option<SystemTime> {
        fs::metadata(&self.keys).and_then(|m| m.modified()).ok()
    }

    /// Forgets the keys removed since they were read (an erasure by another process): for a
    /// reader that lives on, as the index holder answering queries does ([`super::serve`]),
    /// so that it never opens what `erase` has made unreadable. Reads the folder again when
    /// its time changed, or when it changed less than [`MTIME_SLACK`] before the last read (a
    /// folder's time is coarse: a removal in the same tick would not show).
    pub fn refresh(&self) -> Result<(), PersonalError> {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let folder = self.folder_time();
        let settled = match (ring.loaded, folder) {
            (Some(loaded), Some(f)) => f + MTIME_SLACK < loaded,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if ring.read_at != Some(folder) || !settled {
            self.load(&mut ring)?;
        }
        Ok(())
    }

    fn load(&self, ring: &mut Ring) -> Result<(), PersonalError> {
        ring.loaded = Some(SystemTime::now());
        let now = self.folder_time();
        ring.by_subject.clear();
        let entries = match fs::read_dir(&self.keys) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ring.read_at = Some(now);
                return Ok(());
            }
            Err(e) => return Err(io("list", &self.keys)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", &self.keys))?;
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "key") {
                continue;
            }
            // A key removed by an erasure between listing and reading is simply gone.
            if let Some(k) = read_key(&path)? {
                ring.by_subject.insert(k.subject, k.cipher);
            }
        }
        ring.read_at = Some(now);
        Ok(())
    }

    /// Decodes the stored record `payload` (ending at `at`) into an event, its personal fields
    /// opened (`metadata.personal_data` = `encrypted`) or marked `erased` when their key is gone.
    pub fn decode(&self, payload: &[u8], at: JournalPos) -> Result<AuditEvent, StoreError> {
        let mut event: AuditEvent =
            serde_json::from_slice(payload).map_err(|source| StoreError::Decode { at, source })?;
        if memchr::memmem::find(payload, b"\"personal\":{").is_none() {
            return Ok(event);
        }
        let outer: Outer =
            serde_json::from_slice(payload).map_err(|source| StoreError::Decode { at, source })?;
        let Some(sealed) = outer.personal else {
            return Ok(event);
        };
        match self.open(&sealed.as_ref(), event.event_id, at)? {
            Some(fields) => {
                fields.put(&mut event);
                event.metadata.personal_data = Some(PersonalData::Encrypted);
            }
            None => event.metadata.personal_data = Some(PersonalData::Erased),
        }
        Ok(event)
    }

    /// Opens the sealed personal fields of event `event` (its record ending at `at`): `None`
    /// when their key is gone (the user was erased). For readers that decode records their own
    /// way ([`super::scan`]); [`Keyring::decode`] uses it too.
    pub(crate) fn open(
        &self,
        sealed: &SealedRef<'_>,
        event: EventId,
        at: JournalPos,
    ) -> Result<Option<Fields>, StoreError> {
        // The cipher is copied out (32 bytes), so that readers on several threads do not
        // decrypt one at a time under the lock.
        let cipher = {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            match ring.by_subject.get(&*sealed.subject) {
                Some(c) => c.clone(),
                None => {
                    if ring.may_be_stale(self.folder_time()) {
                        self.load(&mut ring)?;
                    }
                    match ring.by_subject.get(&*sealed.subject) {
                        Some(c) => c.clone(),
                        None => return Ok(None),
                    }
                }
            }
        };
        let failed = || PersonalError::Open {
            event,
            at,
            subject: format!("{SUBJECT_PREFIX}{}", sealed.subject),
        };
        // Decoded and opened in one buffer (wiped when dropped), the nonce and the associated
        // data on the stack: this runs for every event a report reads.
        let mut nonce = [0u8; 27];
        let nonce: [u8; 24] = match B64.decode_slice(sealed.nonce.as_bytes(), &mut nonce) {
            Ok(24) => nonce[..24].try_into().expect("24 bytes"),
            _ => return Err(failed().into()),
        };
        let mut plain = Zeroizing::new(
            B64.decode(sealed.ciphertext.as_bytes())
                .map_err(|_| failed())?,
        );
        cipher
            .decrypt_in_place(&XNonce::from(nonce), &aad(event), &mut *plain)
            .map_err(|_| failed())?;
        let fields: Fields = serde_json::from_slice(&plain).map_err(|_| failed())?;
        Ok(Some(fields))
    }
}

/// The pseudonym (`subject:HEX`) under which the events of `user` are stored in the store at
/// `root`, while their key exists; `None` when it has none (never had one, or was erased).
pub fn subject_of(root: &Path, user: &str) -> Result<Option<String>, PersonalError> {
    Ok(read_key(&key_path(&root.join("keys"), user))?
        .map(|k| format!("{SUBJECT_PREFIX}{}", k.subject)))
}

/// The pseudonyms (`HEX`, without `subject:`) of every key in the store at `root`'s `keys/`
/// (`None` if it has no such folder): what `verify` checks erasures against
/// ([`super::erasures`]). A key file that cannot be read as one opens nothing and is left out.
pub fn subjects(root: &Path) -> Result<Option<std::collections::HashSet<String>>, PersonalError> {
    #[derive(Deserialize)]
    struct SubjectOnly {
        subject: String,
    }
    let keys = root.join("keys");
    let entries = match fs::read_dir(&keys) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("list", &keys)(e)),
    };
    let mut out = std::collections::HashSet::new();
    for entry in entries {
        let path = entry.map_err(io("list", &keys))?.path();
        if path.extension().is_none_or(|e| e != "key") {
            continue;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => Zeroizing::new(b),
            // Erased between the listing and now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("read", &path)(e)),
        };
        if let Ok(key) = serde_json::from_slice::<SubjectOnly>(&bytes) {
            out.insert(key.subject);
        }
    }
    Ok(Some(out))
}

/// The key files in the store at `root`'s `keys/` that cannot be read as keys (not JSON, another
/// format, a key that is not 32 bytes), each as `PATH (why)`: the records sealed with one
/// cannot be opened, and whose they are cannot be told (the pseudonym is inside the file).
/// For `verify`, which must not call such a key "gone" (helper-94 F10).
pub fn damaged_keys(root: &Path) -> Result<Vec<String>, PersonalError> {
    let keys = root.join("keys");
    let entries = match fs::read_dir(&keys) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list", &keys)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io("list", &keys))?.path();
        if path.extension().is_none_or(|e| e != "key") {
            continue;
        }
        match read_key(&path) {
            Ok(_) => {}
            Err(PersonalError::BadKeyFile { path, reason }) => {
                // `erase` overwrites a key with zeros before it removes it: such a file is an
                // erasure cut short (a crash, or a read meanwhile), never a key to restore.
                let zeros = fs::read(&path).is_ok_and(|b| b.iter().all(|&c| c == 0));
                out.push(match zeros {
                    true => format!(
                        "{} (all zeros: an erasure by `mcp-audit-proxy erase` that did not finish; delete the file, do not restore it)",
                        path.display()
                    ),
                    false => format!(
                        "{} ({reason}; restore it from a backup of keys/, it was left untouched)",
                        path.display()
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Destroys `user`'s key in the store at `root` (overwritten with zeros, synced, removed, the
/// folder synced): every personal field sealed with it is unreadable from then on. Returns
/// the pseudonym it had, `None` if there was no key.
pub fn erase(root: &Path, user: &str) -> Result<Option<String>, PersonalError> {
    let keys = root.join("keys");
    let path = key_path(&keys, user);
    let Some(key) = read_key(&path)? else {
        return Ok(None);
    };
    let len = fs::metadata(&path).map_err(io("stat", &path))?.len();
    let mut f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io("open for writing", &path))?;
    f.write_all(&vec![0u8; len as usize])
        .and_then(|()| f.sync_all())
        .map_err(io("overwrite", &path))?;
    drop(f);
    fs::remove_file(&path).map_err(io("remove", &path))?;
    sync_dir(&keys).map_err(|e| PersonalError::Io {
        op: "sync",
        path: keys.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Some(format!("{SUBJECT_PREFIX}{}", key.subject)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{EventType, Outcome};

    #[derive(Deserialize)]
    struct UserOnly {
        user_id: String,
    }

    fn event(user: &str) -> AuditEvent {
        let mut e = AuditEvent::test_event(EventType::ToolAccess, Outcome::Initiated);
        e.user_id = user.into();
        e.metadata.arguments =
            Some(RawValue::from_string(r#"{"n":1.50,"to":"x@y.z"}"#.into()).unwrap());
        e.metadata.error_messages = vec!["no such file /home/alice".into()];
        e.metadata.http = Some(Box::new(HttpContext {
            client_address: Some("192.0.2.7".into()),
            user_agent: Some("curl/8".into()),
            trace_id: Some("t".into()),
            roles: vec!["admin".into()],
            ..HttpContext::default()
        }));
        e
    }

    /// The writer's records are made from the event's members ([`super::super::canonical_ser`]):
    /// the same bytes as canonicalizing the event's JSON, skeleton and sealed record alike.
    #[test]
    fn a_key_file_this_account_cannot_read_is_said_so_not_a_full_disk() {
        let denied = |op| {
            PersonalError::Io {
                op,
                path: PathBuf::from("keys/x.key"),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            }
            .to_string()
        };
        assert!(
            denied("read").contains("cannot read the store's keys/"),
            "{}",
            denied("read")
        );
        assert!(
            denied("create").contains("cannot write the store's keys/"),
            "{}",
            denied("create")
        );
        let full = PersonalError::Io {
            op: "write",
            path: PathBuf::from("keys/x.key"),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        }
        .to_string();
        assert!(full.contains("writable and not full"), "{full}");
    }

    #[test]
    fn records_from_members_equal_the_canonicalized_json() {
        use crate::store::canonical::canonicalize;
        use crate::store::canonical_ser::Members;
        let mut e = event("alice");
        e.metadata.request_id = Some(serde_json::from_str("18446744073709551617.0").unwrap());
        e.metadata.risk_reasons = vec!["a \"quoted\" \u{1}reason".into()];
        e.compliance_tags = vec!["gdpr".into(), "pci_dss".into()];
        let json = serde_json::to_vec(&e).unwrap();
        assert_eq!(
            String::from_utf8(Members::of(&e, 64).unwrap().emit()).unwrap(),
            String::from_utf8(canonicalize(&json).unwrap()).unwrap()
        );
        let dir = tempfile::tempdir().unwrap();
        let mut sealer = Sealer::new(dir.path());
        sealer.begin_batch();
        let record = sealer.seal_event(e).unwrap();
        assert_eq!(record, canonicalize(&record).unwrap());
        let text = String::from_utf8(record).unwrap();
        assert!(text.contains("\"personal\":{\"alg\":"), "{text}");
        assert!(
            !text.contains("x@y.z") && !text.contains("192.0.2.7"),
            "{text}"
        );
        assert!(text.contains("18446744073709551617.0"), "{text}");
    }

    #[test]
    fn every_sealed_record_gets_its_own_nonce_across_refills() {
        #[derive(Deserialize)]
        struct NonceOnly {
            personal: Sealed,
        }
        let dir = tempfile::tempdir().unwrap();
        let mut sealer = Sealer::new(dir.path());
        let ring = Keyring::new(dir.path());
        let mut seen = std::collections::HashSet::new();
        // Three refills of the nonce pool, over batches.
        for i in 0..3 * NONCES_PER_FILL + 5 {
            if i % 50 == 0 {
                sealer.begin_batch();
            }
            let stored = sealer
                .seal(&serde_json::to_vec(&event("alice")).unwrap())
                .unwrap();
            let n: NonceOnly = serde_json::from_slice(&stored).unwrap();
            assert_eq!(B64.decode(&n.personal.nonce).unwrap().len(), NONCE_LEN);
            assert!(seen.insert(n.personal.nonce), "nonce reused at record {i}");
            assert_eq!(
                ring.decode(&stored, JournalPos::START).unwrap().user_id,
                "alice"
            );
        }
    }

    /// The audit writer seals events themselves ([`Sealer::seal_event`]); other writers seal
    /// their JSON ([`Sealer::seal`]). Both must store the same record (but for the nonce and
    /// so the ciphertext) and open to the same event.
    #[test]
    fn sealing_an_event_stores_what_sealing_its_json_stores() {
        let dir = tempfile::tempdir().unwrap();
        let mut sealer = Sealer::new(dir.path());
        let ring = Keyring::new(dir.path());
        sealer.begin_batch();
        let mut bare = AuditEvent::test_event(EventType::ToolFailure, Outcome::Refused);
        bare.user_id = "bob".into();
        bare.metadata.reason = Some("blocked by rule r1".into());
        let mut trace_only = event("carol");
        trace_only.metadata.http = Some(Box::new(HttpContext {
            trace_id: Some("t2".into()),
            ..HttpContext::default()
        }));
        let mut http_empty = event("dave");
        http_empty.metadata.http = Some(Box::default());
        let mut big_id = event("erin");
        big_id.metadata.request_id = Some(crate::jsonrpc::RequestId::Int(i64::MAX));
        for e in [event("alice"), bare, trace_only, http_empty, big_id] {
            let from_json = sealer.seal(&serde_json::to_vec(&e).unwrap()).unwrap();
            let from_event = sealer.seal_event(e.clone()).unwrap();
            let shape = |b: &[u8]| {
                let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                let p = &mut v["personal"];
                let len = p["ciphertext"].as_str().unwrap().len();
                p["ciphertext"] = len.into();
                p["nonce"] = serde_json::Value::Null;
                v
            };
            assert_eq!(shape(&from_json), shape(&from_event), "{}", e.user_id);
            let open = |b: &[u8]| {
                serde_json::to_string(&ring.decode(b, JournalPos::START).unwrap()).unwrap()
            };
            assert_eq!(open(&from_json), open(&from_event), "{}", e.user_id);
        }
    }

    #[test]
    fn sealed_fields_leave_the_record_and_come_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut sealer = Sealer::new(dir.path());
        sealer.begin_batch();
        let e = event("alice");
        let stored = sealer.seal(&serde_json::to_vec(&e).unwrap()).unwrap();
        let text = String::from_utf8(stored.clone()).unwrap();
        for secret in [
            "alice",
            "x@y.z",
            "192.0.2.7",
            "curl/8",
            "admin",
            "/home/alice",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        // The skeleton stays: tool, trace id, type.
        assert!(text.contains("\"tool_name\":\"echo\"") && text.contains("\"trace_id\":\"t\""));
        let ring = Keyring::new(dir.path());
        let back = ring.decode(&stored, JournalPos::START).unwrap();
        assert_eq!(back.user_id, "alice");
        assert_eq!(
            back.metadata.arguments.unwrap().get(),
            r#"{"n":1.50,"to":"x@y.z"}"#
        );
        assert_eq!(
            back.metadata.http.as_deref().unwrap(),
            e.metadata.http.as_deref().unwrap()
        );
        assert_eq!(back.metadata.personal_data, Some(PersonalData::Encrypted));

        // Another user gets another key and pseudonym; the same user keeps hers.
        let bob = sealer
            .seal(&serde_json::to_vec(&event("bob")).unwrap())
            .unwrap();
        let again = sealer
            .seal(&serde_json::to_vec(&event("alice")).unwrap())
            .unwrap();
        let user = |b: &[u8]| serde_json::from_slice::<UserOnly>(b).unwrap().user_id;
        assert_ne!(user(&bob), user(&stored));
        assert_eq!(user(&again), user(&stored));
        assert_eq!(
            subject_of(dir.path(), "alice").unwrap(),
            Some(user(&stored))
        );

        // Erased: the fields are gone, the skeleton reads, bob is untouched.
        assert_eq!(erase(dir.path(), "alice").unwrap(), Some(user(&stored)));
        assert_eq!(erase(dir.path(), "alice").unwrap(), None);
        let ring = Keyring::new(dir.path());
        let gone = ring.decode(&stored, JournalPos::START).unwrap();
        assert_eq!(gone.metadata.personal_data, Some(PersonalData::Erased));
        assert_eq!(gone.user_id, user(&stored));
        assert!(gone.metadata.arguments.is_none() && gone.metadata.error_messages.is_empty());
        assert_eq!(gone.tool_name.as_deref(), Some("echo"));
        assert_eq!(ring.decode(&bob, JournalPos::START).unwrap().user_id, "bob");

        // The writer sees the erasure at its next batch: alice gets a new key.
        sealer.begin_batch();
        let after = sealer
            .seal(&serde_json::to_vec(&event("alice")).unwrap())
            .unwrap();
        assert_ne!(user(&after), user(&stored));
        assert_eq!(
            ring.decode(&after, JournalPos::START).unwrap().user_id,
            "alice"
        );
    }

    #[test]
    fn a_key_made_within_the_folder_clocks_tick_is_found_not_read_as_erased() {
        let dir = tempfile::tempdir().unwrap();
        let mut sealer = Sealer::new(dir.path());
        sealer.begin_batch();
        let alice = sealer
            .seal(&serde_json::to_vec(&event("alice")).unwrap())
            .unwrap();
        let ring = Keyring::new(dir.path());
        assert_eq!(
            ring.decode(&alice, JournalPos::START).unwrap().user_id,
            "alice"
        );
        // Bob's key is made after the ring read the folder, and the folder's time does not
        // move (as within one tick of a coarse clock): set back by hand here.
        let keys = dir.path().join("keys");
        let before = fs::metadata(&keys).unwrap().modified().unwrap();
        let bob = sealer
            .seal(&serde_json::to_vec(&event("bob")).unwrap())
            .unwrap();
        fs::File::open(&keys).unwrap().set_modified(before).unwrap();
        assert_eq!(fs::metadata(&keys).unwrap().modified().unwrap(), before);
        std::thread::sleep(RELOAD_PAUSE);
        let back = ring.decode(&bob, JournalPos::START).unwrap();
        assert_eq!(back.metadata.personal_data, Some(PersonalData::Encrypted));
        assert_eq!(back.user_id, "bob");
    }

    #[test]
    fn a_ciphertext_moved_to_another_event_or_changed_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut sealer = Sealer::new(dir.path());
        let a = sealer
            .seal(&serde_json::to_vec(&event("alice")).unwrap())
            .unwrap();
        let b = sealer
            .seal(&serde_json::to_vec(&event("alice")).unwrap())
            .unwrap();
        let personal = |x: &[u8]| -> serde_json::Value {
            serde_json::from_slice::<serde_json::Value>(x).unwrap()["personal"].clone()
        };
        let mut moved: serde_json::Value = serde_json::from_slice(&b).unwrap();
        moved["personal"] = personal(&a);
        let ring = Keyring::new(dir.path());
        let err = ring
            .decode(&serde_json::to_vec(&moved).unwrap(), JournalPos::START)
            .unwrap_err();
        assert!(err.to_string().contains("do not open"), "{err}");
        // A record without personal fields (an older store) reads as it is.
        let plain = serde_json::to_vec(&event("carol")).unwrap();
        let e = ring.decode(&plain, JournalPos::START).unwrap();
        assert_eq!(e.user_id, "carol");
        assert_eq!(e.metadata.personal_data, None);
    }

    #[test]
    fn writers_meeting_a_new_user_at_once_agree_on_one_key() {
        // Each thread stands for a writer process: its own sealer, no shared memory.
        let dir = tempfile::tempdir().unwrap();
        let barrier = std::sync::Barrier::new(8);
        let stored: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let mut sealer = Sealer::new(dir.path());
                        let payload = serde_json::to_vec(&event("dave")).unwrap();
                        barrier.wait();
                        sealer.seal(&payload).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let user = |b: &[u8]| serde_json::from_slice::<UserOnly>(b).unwrap().user_id;
        assert!(stored.iter().all(|r| user(r) == user(&stored[0])));
        let ring = Keyring::new(dir.path());
        for r in &stored {
            assert_eq!(ring.decode(r, JournalPos::START).unwrap().user_id, "dave");
        }
        // One key file, no hidden leftovers.
        let names: Vec<_> = fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_damaged_key_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        fs::create_dir_all(&keys).unwrap();
        fs::write(key_path(&keys, "alice"), b"{not json").unwrap();
        let mut sealer = Sealer::new(dir.path());
        let err = sealer
            .seal(&serde_json::to_vec(&event("alice")).unwrap())
            .unwrap_err();
        assert!(matches!(err, PersonalError::BadKeyFile { .. }), "{err}");
        assert!(err.to_string().contains(".key"), "{err}");
    }
}
