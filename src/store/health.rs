//! Whether the history store can commit: one shared answer for the writer
//! (which refuses batches while it cannot), the readers (which report
//! damage they find), the integrity check and `/readyz`.

use std::sync::{Arc, Mutex};

use crate::telemetry::events::{Emit, StoreHealthChanged};

/// Why the store cannot commit now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// The last commit or probe failed (disk full, I/O error, a file not
    /// writable): the next commit or probe may succeed, and clears it.
    Failing,
    /// SQLite found the file damaged. Nothing is written until a check of
    /// the whole file passes.
    Corrupt,
    /// The file at the store's path is not the one open: deleted or
    /// replaced. Nothing is written until a database is back at the path.
    Moved,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Failing => "failing",
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Moved => "moved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// What is wrong and what fixes it, for `/readyz` and refusals.
    pub message: String,
}

/// Cheap to clone; every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<Option<Problem>>>);

impl Health {
    /// The current problem; `None` when the store can commit.
    pub fn problem(&self) -> Option<Problem> {
        self.0.lock().map_or_else(
            |poisoned| poisoned.into_inner().clone(),
            |state| state.clone(),
        )
    }

    /// Whether writes must be refused without trying: the file is damaged
    /// or not the one open. A failing store is still tried (the next commit
    /// may well succeed).
    pub fn refuses_writes(&self) -> Option<Problem> {
        self.problem().filter(|p| p.kind > ProblemKind::Failing)
    }

    /// Records a problem. A graver one already recorded is kept: a reader
    /// that finds damage in a file that is gone says nothing new.
    pub fn set(&self, kind: ProblemKind, message: String) {
        let changed = self.update(|state| match state {
            Some(p) if p.kind > kind => false,
            Some(p) if p.kind == kind && p.message == message => false,
            _ => {
                *state = Some(Problem { kind, message });
                true
            }
        });
        if changed {
            self.report();
        }
    }

    /// Clears a problem of `kind` (and only that kind: a commit that
    /// succeeds says nothing about damage a reader just found).
    pub fn clear(&self, kind: ProblemKind) {
        let changed = self.update(|state| match state {
            Some(p) if p.kind == kind => {
                *state = None;
                true
            }
            _ => false,
        });
        if changed {
            self.report();
        }
    }

    fn update(&self, f: impl FnOnce(&mut Option<Problem>) -> bool) -> bool {
        match self.0.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn report(&self) {
        StoreHealthChanged {
            problem: self.problem().as_ref(),
        }
        .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graver_problem_is_kept_and_only_its_own_kind_clears() {
        let h = Health::default();
        assert!(h.problem().is_none());
        h.set(ProblemKind::Failing, "disk full".to_owned());
        assert!(
            h.refuses_writes().is_none(),
            "a failing store is still tried"
        );
        h.set(ProblemKind::Moved, "deleted".to_owned());
        h.set(ProblemKind::Corrupt, "malformed".to_owned());
        assert_eq!(h.problem().map(|p| p.kind), Some(ProblemKind::Moved));
        h.clear(ProblemKind::Failing);
        assert_eq!(h.refuses_writes().map(|p| p.kind), Some(ProblemKind::Moved));
        h.clear(ProblemKind::Moved);
        assert!(h.problem().is_none());
    }
}
