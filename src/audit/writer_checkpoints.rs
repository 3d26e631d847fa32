//! The writer's signed checkpoints (see [`crate::store::checkpoint`] for the statements and
//! what `verify` makes of them): when one is due (the first at the first durable records).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Writer;
use crate::store::checkpoint::{CheckpointWriter, Signer};
use crate::store::{Journal, journals};

/// When the writer signs checkpoints of its journal, and with what.
#[derive(Debug)]
pub struct CheckpointPlan {
    /// Writes the journal's `checkpoints` file.
    pub writer: CheckpointWriter,
    /// A checkpoint once this many durable events are not covered…
    pub every_events: u64,
    /// …or once the oldest of them has waited this long.
    pub interval: Duration,
    /// Whether the first checkpoint was written (or tried): it is due at the first durable
    /// records.
    first_tried: bool,
}

impl CheckpointPlan {
    /// The plan of `[audit]` for `journal` (signed with `signer` when configured).
    pub fn new(
        journal: &Journal,
        signer: Option<Arc<Signer>>,
        every_events: u64,
        interval: Duration,
    ) -> CheckpointPlan {
        CheckpointPlan {
            writer: CheckpointWriter::new(journal.dir(), journals::id_of(journal.dir()), signer),
            every_events,
            interval,
            first_tried: false,
        }
    }
}

impl Writer {
    /// Durable events no checkpoint covers yet.
    pub(super) fn uncovered(&self) -> u64 {
        let durable = self.durable.map_or(0, |h| h.seq + 1);
        durable.saturating_sub(self.checkpointed.map_or(0, |s| s + 1))
    }

    /// How long until the uncovered durable events are due a checkpoint, if there are any.
    pub(super) fn checkpoint_due_in(&self) -> Option<Duration> {
        let since = self.uncovered_since?;
        Some(self.plan.interval.saturating_sub(since.elapsed()))
    }

    /// Writes a checkpoint of the durable head when enough events or time call for one, and
    /// the first one as soon as the journal's first records are durable: a stdio wrapper its
    /// client SIGKILLs soon after it starts (before `audit.checkpoint_interval_ms`) would
    /// otherwise leave records no signed checkpoint covers, which `verify` must report as
    /// `unsigned` (a journal written whole by someone without the key looks the same). A
    /// signature of the head before any record would not do: it covers nothing, so a
    /// journal keeping only it could be rewritten whole. A failure is logged, not fatal: the
    /// records stay chained, only the signature is missing.
    pub(super) fn maybe_checkpoint(&mut self) {
        let uncovered = self.uncovered();
        let due = self
            .uncovered_since
            .is_some_and(|t| t.elapsed() >= self.plan.interval)
            || !self.plan.first_tried;
        if uncovered == 0 || (uncovered < self.plan.every_events && !due) {
            return;
        }
        self.plan.first_tried = true;
        match self.plan.writer.write(self.durable, false) {
            Ok(_) => {
                self.checkpointed = self.durable.map(|h| h.seq);
                self.uncovered_since = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "audit journal checkpoint failed");
                // Try again at the next interval, not at every batch.
                self.uncovered_since = Some(Instant::now());
            }
        }
    }
}
