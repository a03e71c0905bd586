//! The interface between a revision policy and the store: what the policy is shown
//! ([`StoredRows`]), what it answers ([`Decision`]: a [`Write`], the rows to mark merged, an
//! [`Outcome`]), and its signature ([`Decide`]). Plain data, no SQL: the policy lives in
//! sync-engine (`policy::decide`); [`crate::record`] and [`crate::fast`] carry decisions out.

use std::collections::HashMap;

use crate::models::{EventRecord, StoredVersion};

/// What happened to one incoming record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Inserted,
    Updated,
    Unchanged,
    Deleted,
    Merged,
    Rejected(String),
}

/// The row write a [`Decision`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// No write of the record's own row.
    None,
    /// A new row (no row has the record's id).
    Insert,
    /// Every column of the stored row with the record's id; `merged_into` cleared.
    Update,
}

/// What the revision policy decided for one incoming record. The store writes
/// [`Decision::write`], marks the rows of [`Decision::merge`] merged into the record, and
/// counts [`Decision::outcome`] once that commits (a write the database refuses makes the
/// record `Rejected` instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub write: Write,
    /// Stored primary ids to be marked `merged_into` = the record's id.
    pub merge: Vec<String>,
    /// The record's outcome once the writes commit.
    pub outcome: Outcome,
}

impl Decision {
    /// Nothing to write (`Unchanged`, or `Rejected` before the database).
    pub fn is_noop(&self) -> bool {
        self.write == Write::None && self.merge.is_empty()
    }
}

/// The stored rows a page involves (its ids and the ids its events list), by primary id,
/// as the store keeps them in step while it applies the page.
pub type StoredRows = HashMap<String, StoredVersion>;

/// A revision policy: what to do with one incoming record, given the stored rows it
/// involves. A plain function, so either write path can ask it again after a refused
/// write changed what is stored.
pub type Decide = fn(&EventRecord, &StoredRows) -> Decision;
