//! Notes: input rules, pagination cursors, quotas, the SQL each operation runs, and the JSON
//! shapes.

mod input;
pub mod page;
pub mod quota;
pub mod sql;

pub use input::{NewNote, NewNoteBody, NoteChanges, NoteChangesBody, NoteInputError};
pub use page::{Cursor, PageError, PageRequest};

use serde::Serialize;

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

/// A note the caller owns, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteId {
    pub id: String,
}

impl FromRow for NoteId {
    const COLUMNS: &'static [&'static str] = &["id"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { id: row.text("id")?.to_string() })
    }
}

impl FromRow for DeletedNote {
    const COLUMNS: &'static [&'static str] = &["id", "published_at"];

    fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self { id: row.text("id")?.to_string(), was_public: row.optional_integer("published_at")?.is_some() })
    }
}
