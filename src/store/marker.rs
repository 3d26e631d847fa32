//! `store.json`: the marker that says a folder is an mcp-audit-proxy store, and of which
//! layout version, checked before anything in the folder is read or written.
//!
//! Why: `audit.store_dir` is a path anybody can mistype. Given someone's home folder, a folder
//! of unrelated files, a file, or a store written by a newer release, the proxy must say so
//! and stop, never scatter `LOCK` and `journal/` among other files, nor read a layout it does
//! not know (and, say, move a newer index aside as "damaged").
//!
//! The marker is a small JSON object written once, when a proxy first opens the folder:
//!
//! ```json
//! {"store":"mcp-audit-proxy","version":1,"journal_format":3,"index_format":5,
//!  "created_by":"mcp-audit-proxy 0.1.0"}
//! ```
//!
//! `version` is the layout of the folder (`LOCK`, `journal/<ULID>/`, `index/`, see
//! [`super`]); a release that changes it incompatibly raises it, and older releases then
//! refuse the store with [`StoreError::NewerStore`]. `journal_format` and `index_format` are
//! what the writer wrote at the time, for a person reading the folder: the segments carry their
//! own format digit (`MCPAJNL2`, [`super::journal`]) and the index its own version (its `format`
//! key, rebuilt from the journals when it differs), so neither is checked here.
//!
//! Stores written before the marker existed (a `journal/` folder and no marker) are adopted:
//! the marker is added the first time a proxy opens them for writing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::StoreError;

/// The marker's file name in the store folder.
pub const MARKER: &str = "store.json";
/// The layout version this release reads and writes.
pub const STORE_VERSION: u64 = 1;
/// What the marker's `store` member says.
const STORE_NAME: &str = "mcp-audit-proxy";
/// Names only a store has at its top: a folder holding one of them and no marker is a store
/// of an earlier release (or one that only `tools accept` has written to yet).
const KNOWN: [&str; 6] = [
    "journal",
    "index",
    "LOCK",
    "index.lock",
    "pins.json",
    "keys",
];
/// The prefix of the marker's temporary name (followed by the process id).
const TEMP_MARKER: &str = ".store.json.new";
/// The prefix of the file that shows the folder is writable (followed by the process id).
const PROBE: &str = ".write-probe";
/// How many of a foreign folder's entries an error names.
const NAMED_ENTRIES: usize = 5;

/// The marker's JSON.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Marker {
    store: String,
    version: u64,
    #[serde(default)]
    journal_format: Option<u64>,
    #[serde(default)]
    index_format: Option<u64>,
    #[serde(default)]
    created_by: Option<String>,
}

/// What the caller will do with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A proxy (or `reindex`): the folder is made if missing, the marker written if absent,
    /// and the folder must be writable.
    Write,
    /// A query (`events`, `verify`, `store status`): nothing is written.
    Read,
}

/// Whether `root` is a store this release may use as `access` says; for [`Access::Write`],
/// makes the folder and its marker when missing. Errors say what was found, where, and what
/// to do: [`StoreError::NotAFolder`], [`StoreError::Foreign`], [`StoreError::BadMarker`],
/// [`StoreError::NewerStore`], [`StoreError::Unwritable`]. For [`Access::Read`], a folder
/// without a store in it (missing, or empty) is `Ok(false)`: the caller says "no store".
pub fn check(root: &Path, access: Access) -> Result<bool, StoreError> {
    check_once(root, access, true)
}

fn check_once(root: &Path, access: Access, again: bool) -> Result<bool, StoreError> {
    match fs::metadata(root) {
        Ok(m) if !m.is_dir() => {
            return Err(StoreError::NotAFolder {
                path: root.to_path_buf(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if access == Access::Read {
                return Ok(false);
            }
            fs::create_dir_all(root).map_err(|e| unwritable(root, e))?;
        }
        Err(e) => return Err(StoreError::io("read", root, e)),
    }
    let marker = root.join(MARKER);
    match fs::read(&marker) {
        Ok(bytes) => {
            read_marker(&marker, &bytes)?;
            if access == Access::Write {
                probe_writable(root)?;
            }
            return Ok(true);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("read", &marker, e)),
    }
    // No marker: a store of an earlier release (it has journals), an empty folder, or
    // somebody else's folder.
    // Another process may be making this store at the same moment: its temporary files are
    // not somebody else's.
    let entries: Vec<String> = entries(root)?
        .into_iter()
        .filter(|n| !n.starts_with(TEMP_MARKER) && !n.starts_with(PROBE))
        .collect();
    // The marker appeared since it was looked for: another process made the store in
    // between (a writer starting beside it took the folder for somebody else's). Read it.
    if again && entries.iter().any(|n| n == MARKER) {
        return check_once(root, access, false);
    }
    let ours = entries.iter().any(|n| KNOWN.contains(&n.as_str()));
    if !ours && !entries.is_empty() {
        return Err(StoreError::Foreign {
            path: root.to_path_buf(),
            entries: entries.len(),
            named: entries.into_iter().take(NAMED_ENTRIES).collect(),
        });
    }
    if access == Access::Read {
        return Ok(ours);
    }
    write_marker(root)?;
    Ok(true)
}

/// The names in `root`, sorted (hidden ones too: a foreign folder may hold only those).
fn entries(root: &Path) -> Result<Vec<String>, StoreError> {
    let mut names = fs::read_dir(root)
        .map_err(|e| StoreError::io("list", root, e))?
        .map(|e| {
            e.map(|e| e.file_name().to_string_lossy().into_owned())
                .map_err(|e| StoreError::io("list", root, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    Ok(names)
}

fn read_marker(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let bad = |why: String| StoreError::BadMarker {
        path: path.to_path_buf(),
        why,
    };
    let marker: Marker = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if marker.store != STORE_NAME {
        return Err(bad(format!(
            "it names {:?}, not {STORE_NAME:?}",
            marker.store
        )));
    }
    if marker.version > STORE_VERSION {
        return Err(StoreError::NewerStore {
            path: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            found: marker.version,
            created_by: marker.created_by,
        });
    }
    Ok(())
}

/// Writes the marker (to a temporary name, synced, then renamed: never half a marker).
fn write_marker(root: &Path) -> Result<(), StoreError> {
    let marker = Marker {
        store: STORE_NAME.into(),
        version: STORE_VERSION,
        journal_format: Some(u64::from(super::journal::FORMAT)),
        index_format: Some(u64::from(super::index::FORMAT_VERSION)),
        created_by: Some(format!("mcp-audit-proxy {}", env!("CARGO_PKG_VERSION"))),
    };
    let mut text = serde_json::to_vec(&marker).unwrap_or_default();
    text.push(b'\n');
    // Per process: two proxies starting on a new folder at once each write their own, and
    // the second rename replaces the first with the same text.
    let tmp = root.join(format!("{TEMP_MARKER}-{}", unique()));
    fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&text)?;
            f.sync_all()
        })
        .map_err(|e| unwritable(root, e))?;
    fs::rename(&tmp, root.join(MARKER)).map_err(|e| unwritable(root, e))?;
    super::journal::sync_dir(root)
}

/// Checks that files can be made in `root` (a read-only mount or an immutable folder stops
/// root too, where permission bits do not).
fn probe_writable(root: &Path) -> Result<(), StoreError> {
    let probe = root.join(format!("{PROBE}-{}", unique()));
    fs::File::create(&probe).map_err(|e| unwritable(root, e))?;
    fs::remove_file(&probe).map_err(|e| unwritable(root, e))
}

/// A suffix no other process or thread uses at the same time: the process id and a count.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

fn unwritable(root: &Path, source: std::io::Error) -> StoreError {
    StoreError::Unwritable {
        path: PathBuf::from(root),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_folder_gets_the_marker_and_a_store_of_an_earlier_release_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new/store");
        assert!(!check(&root, Access::Read).unwrap(), "missing: no store");
        assert!(check(&root, Access::Write).unwrap());
        let text = fs::read_to_string(root.join(MARKER)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["store"], "mcp-audit-proxy");
        assert_eq!(json["version"], STORE_VERSION);
        assert_eq!(
            json["journal_format"],
            u64::from(super::super::journal::FORMAT)
        );
        assert!(check(&root, Access::Read).unwrap());

        let old = tempfile::tempdir().unwrap();
        fs::create_dir(old.path().join("journal")).unwrap();
        assert!(check(old.path(), Access::Read).unwrap());
        assert!(!old.path().join(MARKER).exists(), "a query writes nothing");
        assert!(check(old.path(), Access::Write).unwrap());
        assert!(old.path().join(MARKER).exists());
    }

    #[test]
    fn writers_making_one_new_store_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let root = root.clone();
                std::thread::spawn(move || check(&root, Access::Write))
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap().unwrap());
        }
        let names: Vec<String> = fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [MARKER], "no temporary file left behind");
    }

    #[test]
    fn foreign_folders_files_bad_and_newer_markers_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        fs::create_dir(dir.path().join(".ssh")).unwrap();
        for access in [Access::Read, Access::Write] {
            let err = check(dir.path(), access).unwrap_err();
            assert!(
                matches!(err, StoreError::Foreign { entries: 2, .. }),
                "{err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(".ssh") && text.contains("notes.txt"),
                "{text}"
            );
        }
        assert!(!dir.path().join(MARKER).exists());

        let file = dir.path().join("notes.txt");
        let err = check(&file, Access::Write).unwrap_err();
        assert!(matches!(err, StoreError::NotAFolder { .. }), "{err}");

        let store = tempfile::tempdir().unwrap();
        fs::write(store.path().join(MARKER), b"{\"store\":\"mcp-audit-proxy\",\"version\":7,\"created_by\":\"mcp-audit-proxy 9.0.0\"}").unwrap();
        let err = check(store.path(), Access::Read).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerStore { found: 7, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("9.0.0"), "{err}");

        fs::write(store.path().join(MARKER), b"garbage").unwrap();
        let err = check(store.path(), Access::Write).unwrap_err();
        assert!(matches!(err, StoreError::BadMarker { .. }), "{err}");
        assert_eq!(fs::read(store.path().join(MARKER)).unwrap(), b"garbage");
    }
}
