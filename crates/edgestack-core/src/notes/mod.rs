//! Notes: input rules, pagination cursors, the SQL each operation runs, and the JSON shapes.

mod input;
pub mod page;
pub mod sql;

pub use input::{NewNote, NewNoteBody, NoteChanges, NoteChangesBody, NoteInputError};
pub use page::{Cursor, PageError, PageRequest};

use serde::Serialize;

use crate::db::Row;

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

impl Note {
    /// `None` when a column is missing: the caller reports a protocol error.
    pub fn from_row(row: Row<'_>) -> Option<Self> {
        let published_at = row.integer("published_at");
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

impl PublicNote {
    pub fn from_row(row: Row<'_>) -> Option<Self> {
        Some(Self {
            id: row.text("id")?.to_string(),
            title: row.text("title")?.to_string(),
            body: row.text("body")?.to_string(),
            published_at: row.integer("published_at")?,
        })
    }
}
