//! `events --follow`: tails every journal of a store, whichever process writes it, including
//! journals made after following began. Read-only and lock-free like a query from the
//! journals: a record being written is seen once whole, never half.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::journal::{self, Damage, JournalPos};
use super::journals::{self, JournalId};
use super::personal::Keyring;
use super::{Filter, StoreError, StorePaths};
use crate::audit::event::AuditEvent;

/// Where each journal was read up to; [`Follower::poll`] reads what was written since.
#[derive(Debug)]
pub struct Follower {
    journal_root: PathBuf,
    at: HashMap<JournalId, JournalPos>,
    keys: Keyring,
}

impl Follower {
    /// Starts at the current end of every journal of the store at `root`: only events written
    /// from now on are returned (a journal that appears later is read from its start).
    pub fn new(root: &Path) -> Result<Follower, StoreError> {
        let journal_root = StorePaths::new(root).journal();
        let mut at = HashMap::new();
        for id in journals::list(&journal_root)? {
            at.insert(id, journal::end_of(&id.dir(&journal_root))?);
        }
        Ok(Follower {
            keys: Keyring::new(root),
            journal_root,
            at,
        })
    }

    /// The events matching `filter` written since the last poll, oldest first (by event id,
    /// across journals), and any damage met.
    pub fn poll(&mut self, filter: &Filter) -> Result<(Vec<AuditEvent>, Vec<Damage>), StoreError> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for id in journals::list(&self.journal_root)? {
            let from = self.at.get(&id).copied().unwrap_or(JournalPos::START);
            let end = journal::read_from(
                &id.dir(&self.journal_root),
                from,
                |at, payload| {
                    let event = self.keys.decode(payload, at)?;
                    if filter.matches(&event) {
                        out.push(event);
                    }
                    Ok::<(), StoreError>(())
                },
                |d| damaged.push(d),
            )?;
            self.at.insert(id, end);
        }
        out.sort_unstable_by_key(|e| e.event_id);
        Ok((out, damaged))
    }
}
