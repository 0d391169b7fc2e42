//! Notes: input rules, pagination cursors, quotas, the SQL each operation runs, and the JSON
//! shapes.

mod input;
pub mod page;
pub mod quota;
pub mod sql;

pub use input::{NewNote, NewNoteBody, NoteChanges, NoteChangesBody, NoteInputError};
pub use page::{Cursor, PageError, PageRequest};

use serde::Serialize;

use crate::conditional::IfMatch;
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

/// The versions an `If-Match` admits, as the write statements bind them: `None` for `*` (any
/// version: the note must exist), else a JSON array of the `updated_at` values its strong tags
/// name — a tag that is not one of ours names none, so an empty array admits nothing.
pub fn admitted_versions(condition: &IfMatch) -> Option<String> {
    match condition {
        IfMatch::Any => None,
        IfMatch::Strong(tags) => {
            // Only a tag written exactly as `etag` writes it: `"+5"` or `"05"` is not `"5"`.
            let versions: Vec<i64> = tags
                .iter()
                .filter_map(|tag| tag.parse::<i64>().ok().filter(|version| version.to_string() == *tag))
                .collect();
            Some(serde_json::to_string(&versions).unwrap_or_else(|_| "[]".to_string()))
        }
    }
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
