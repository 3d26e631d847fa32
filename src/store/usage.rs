//! How much room the store takes, by part: what `store status` prints, what `/metrics`
//! exports, and what `audit.max_store_bytes` is checked against.
//!
//! Sizes are file lengths in bytes (what `ls -l` shows, summed; not allocated blocks, which
//! depend on the file system), read by one walk of the store folder without following
//! symbolic links. A file written while the walk runs is counted at the length it had when
//! reached: writers keep their own running total between walks (see
//! [`crate::audit::writer`]).

use std::fs;
use std::path::Path;

use serde::Serialize;

use super::StoreError;

/// Bytes of the store folder by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Journal segments (`journal/**/NNN.journal`), cut tails saved aside included.
    pub journals: u64,
    /// Signed checkpoints and purge statements (`journal/<ULID>/checkpoints`).
    pub checkpoints: u64,
    /// The sled index (`index/`), and damaged indexes kept aside (`index.replaced*`).
    pub index: u64,
    /// Per-user keys (`keys/`, for erasure), when present.
    pub keys: u64,
    /// Everything else: locks, the marker, tool pins, unknown files.
    pub other: u64,
}

impl Usage {
    /// The whole store, in bytes.
    pub fn total(&self) -> u64 {
        self.journals + self.checkpoints + self.index + self.keys + self.other
    }
}

/// Which part a path under the store belongs to, from its first component and its name.
fn part_of<'u>(usage: &'u mut Usage, top: &str, name: &str) -> &'u mut u64 {
    match top {
        "journal" if name == "checkpoints" || name.starts_with("checkpoints.") => {
            &mut usage.checkpoints
        }
        "journal" if name.contains(".journal") => &mut usage.journals,
        "index" => &mut usage.index,
        t if t.starts_with("index.replaced") => &mut usage.index,
        "keys" => &mut usage.keys,
        _ => &mut usage.other,
    }
}

/// Walks the store folder `root` and sums its files by part. A file or folder that vanishes
/// during the walk (a retention purge, a journal being made) is skipped; any other error
/// names the path.
pub fn measure(root: &Path) -> Result<Usage, StoreError> {
    let mut usage = Usage::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, top)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(StoreError::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &dir, e))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("read", &entry.path(), e)),
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let top = if top.is_empty() {
                name.clone()
            } else {
                top.clone()
            };
            if meta.is_dir() {
                stack.push((entry.path(), top));
            } else if meta.is_file() {
                *part_of(&mut usage, &top, &name) += meta.len();
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_is_counted_once_in_its_part() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let j = root.join("journal/01JABCDEFGHJKMNPQRSTVWXYZ0");
        fs::create_dir_all(&j).unwrap();
        fs::write(j.join("00000000000000000001.journal"), vec![0u8; 100]).unwrap();
        fs::write(j.join("00000000000000000001.journal.torn-16"), vec![0u8; 7]).unwrap();
        fs::write(j.join("checkpoints"), vec![0u8; 30]).unwrap();
        fs::write(j.join("LOCK"), b"").unwrap();
        fs::write(
            root.join("journal/00000000000000000001.journal"),
            vec![0u8; 5],
        )
        .unwrap();
        fs::create_dir_all(root.join("index/blobs")).unwrap();
        fs::write(root.join("index/db"), vec![0u8; 1000]).unwrap();
        fs::write(root.join("index/blobs/1"), vec![0u8; 11]).unwrap();
        fs::create_dir_all(root.join("index.replaced.1")).unwrap();
        fs::write(root.join("index.replaced.1/db"), vec![0u8; 3]).unwrap();
        fs::create_dir_all(root.join("keys")).unwrap();
        fs::write(root.join("keys/alice"), vec![0u8; 32]).unwrap();
        fs::write(root.join("pins.json"), vec![0u8; 9]).unwrap();
        let u = measure(root).unwrap();
        assert_eq!(
            u,
            Usage {
                journals: 112,
                checkpoints: 30,
                index: 1014,
                keys: 32,
                other: 9,
            }
        );
        assert_eq!(u.total(), 1197);
        assert!(measure(&root.join("missing")).is_err());
    }
}
