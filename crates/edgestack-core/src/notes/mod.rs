//! Notes: input rules, pagination cursors, quotas, the SQL each operation runs, and the JSON
//! shapes.

mod input;
pub mod page;
pub mod quota;
pub mod sql;

pub use input::{NewNote, NewNoteBody, NoteChanges, NoteChangesBody, NoteInputError};
pub use page::{Cursor, CursorSigner, PageError, PageRequest};

use serde::Serialize;

use crate::conditional::{IfMatch, IfNoneMatch, Preconditions};
use crate::db::{FromRow, Row};

/// A note as its owner sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Note {
    pub id: String,
    pub title: String,
    pub body: String,
    pub published: bool,
    pub published_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A published note as anyone sees it: nothing about its author.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublicNote {
    pub id: String,
    pub title: String,
    pub body: String,
    pub published_at: i64,
}

/// An account deletion's tombstone, as every delivery of it reads it back: the notes that were
/// public when it first ran (their cached copies must go, on a redelivery too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletionTombstone {
    pub public_note_ids: Vec<String>,
}

impl FromRow for DeletionTombstone {
    const COLUMNS: &'static [&'static str] = &["public_note_ids"];

    /// `NULL` (a tombstone from before the column) is no notes; so is text that is not a JSON
    /// array of strings, which `json_group_array` never writes — a deletion must not fail on it.
    fn from_row(row: Row<'_>) -> Option<Self> {
        let ids = row.optional_text("public_note_ids")?;
        Some(Self { public_note_ids: ids.and_then(|ids| serde_json::from_str(ids).ok()).unwrap_or_default() })
    }
}

/// A deleted note, and whether it was public (its cached copies must go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedNote {
    pub id: String,
    pub was_public: bool,
}

impl FromRow for Note {
    const COLUMNS: &'static [&'static str] = &["id", "title", "body", "published_at", "created_at", "updated_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        let published_at = row.optional_integer("published_at")?;
        Some(Self {
            id: row.text("id")?.to_string(),
            title: row.text("title")?.to_string(),
            body: row.text("body")?.to_string(),
            published: published_at.is_some(),
            published_at,
            created_at: row.integer("created_at")?,
            updated_at: row.integer("updated_at")?,
        })
    }
}

impl FromRow for PublicNote {
    const COLUMNS: &'static [&'static str] = &["id", "title", "body", "published_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self {
            id: row.text("id")?.to_string(),
            title: row.text("title")?.to_string(),
            body: row.text("body")?.to_string(),
            published_at: row.integer("published_at")?,
        })
    }
}

impl Note {
    /// This version's entity tag ([`etag`]).
    pub fn etag(&self) -> String {
        etag(self.updated_at)
    }
}

/// The entity tag of a note's version (RFC 9110 §8.8.3), strong: its `updated_at` (ms) in
/// quotes, e.g. `"1764561600123"`. Every change moves `updated_at` forward by at least 1 ms
/// (`sql::update_mine`), so one tag names one version of one note — what `If-Match` needs to
/// refuse a change made on top of a version someone else has since replaced.
pub fn etag(updated_at: i64) -> String {
    format!("\"{updated_at}\"")
}

/// A change's preconditions as its statement binds them (`sql`'s `version_condition!`): the
/// versions it may act on (`None`: any) and those it may not (`None`: none), each a JSON array
/// of `updated_at` values. A tag that is not one of ours names no version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionCondition {
    pub admitted: Option<String>,
    pub excluded: Option<String>,
}

impl VersionCondition {
    pub fn of(preconditions: &Preconditions) -> Self {
        let mut admitted = match &preconditions.if_match {
            None | Some(IfMatch::Any) => None,
            Some(IfMatch::Strong(tags)) => Some(versions(tags)),
        };
        let excluded = match &preconditions.if_none_match {
            None => None,
            // A change under `If-None-Match: *` acts only where no note is: on none of ours.
            Some(IfNoneMatch::Any) => {
                admitted = Some(versions(&[]));
                None
            }
            Some(IfNoneMatch::Tags(tags)) => Some(versions(tags)),
        };
        Self { admitted, excluded }
    }
}

/// The versions `tags` name, as a JSON array: only a tag written exactly as [`etag`] writes it
/// (`"+5"` or `"05"` is not `"5"`).
fn versions(tags: &[String]) -> String {
    let versions: Vec<String> = tags
        .iter()
        .filter_map(|tag| tag.parse::<i64>().ok().filter(|version| version.to_string() == *tag))
        .map(|version| version.to_string())
        .collect();
    format!("[{}]", versions.join(","))
}

/// The current version of a note the caller owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVersion {
    pub updated_at: i64,
}

impl FromRow for NoteVersion {
    const COLUMNS: &'static [&'static str] = &["updated_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { updated_at: row.integer("updated_at")? })
    }
}

impl FromRow for DeletedNote {
    const COLUMNS: &'static [&'static str] = &["id", "published_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { id: row.text("id")?.to_string(), was_public: row.optional_integer("published_at")?.is_some() })
    }
}
