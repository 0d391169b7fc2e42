//! What a client may send to create or change a note, checked once.

use std::fmt;

use serde::Deserialize;

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 20_000;

/// The JSON body of `POST /api/notes`, before its rules are checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNoteBody {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub published: bool,
}

/// The JSON body of `PATCH /api/notes/{id}`, before its rules are checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteChangesBody {
    pub title: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNote {
    pub title: String,
    pub body: String,
    pub published: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteChanges {
    pub title: Option<String>,
    pub body: Option<String>,
}

/// Which rule a note's input broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteInputError {
    /// Empty (after trimming) or over `MAX_TITLE_CHARS`.
    InvalidTitle,
    /// Over `MAX_BODY_CHARS`.
    InvalidBodyText,
    /// A change with neither a title nor a body.
    NothingToChange,
}

impl fmt::Display for NoteInputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidTitle => write!(f, "a title has 1 to {MAX_TITLE_CHARS} characters"),
            Self::InvalidBodyText => write!(f, "a note's body has at most {MAX_BODY_CHARS} characters"),
            Self::NothingToChange => f.write_str("send a title, a body, or both"),
        }
    }
}

fn title(value: &str) -> Result<String, NoteInputError> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS {
        return Err(NoteInputError::InvalidTitle);
    }
    Ok(value.to_string())
}

fn body(value: &str) -> Result<String, NoteInputError> {
    if value.chars().count() > MAX_BODY_CHARS {
        return Err(NoteInputError::InvalidBodyText);
    }
    Ok(value.to_string())
}

impl NewNote {
    pub fn parse(input: NewNoteBody) -> Result<Self, NoteInputError> {
        Ok(Self { title: title(&input.title)?, body: body(&input.body)?, published: input.published })
    }
}

impl NoteChanges {
    pub fn parse(input: NoteChangesBody) -> Result<Self, NoteInputError> {
        if input.title.is_none() && input.body.is_none() {
            return Err(NoteInputError::NothingToChange);
        }
        Ok(Self {
            title: input.title.as_deref().map(title).transpose()?,
            body: input.body.as_deref().map(body).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use crate::json_body::parse_json;

    /// A body as the handler reads it: JSON first, then the rules; errors as the API's `code`.
    fn new_note(json: &str) -> Result<NewNote, String> {
        let input = parse_json(json.as_bytes()).map_err(|e| ApiError::from(e).code().to_string())?;
        NewNote::parse(input).map_err(|e| ApiError::from(e).code().to_string())
    }

    fn changes(json: &str) -> Result<NoteChanges, String> {
        let input = parse_json(json.as_bytes()).map_err(|e| ApiError::from(e).code().to_string())?;
        NoteChanges::parse(input).map_err(|e| ApiError::from(e).code().to_string())
    }

    #[test]
    fn new_note_rules() {
        let note = new_note(r#"{"title": "  Hello ", "body": "text"}"#).unwrap();
        assert_eq!(note, NewNote { title: "Hello".into(), body: "text".into(), published: false });
        assert!(new_note(r#"{"title": "t", "published": true}"#).unwrap().published);
        for (json, code) in [
            (r#"{"title": ""}"#, "invalid_title"),
            (r#"{"title": "   "}"#, "invalid_title"),
            (r#"{"body": "no title"}"#, "invalid_body"),
            (r#"{"title": 5}"#, "invalid_body"),
            (r#"{"title": "t", "owner_id": "someone"}"#, "invalid_body"),
        ] {
            assert_eq!(new_note(json).unwrap_err(), code, "{json}");
        }
        let long_title = format!(r#"{{"title": "{}"}}"#, "é".repeat(201));
        assert_eq!(new_note(&long_title).unwrap_err(), "invalid_title");
        let long_body = format!(r#"{{"title": "t", "body": "{}"}}"#, "x".repeat(20_001));
        assert_eq!(new_note(&long_body).unwrap_err(), "invalid_body_text");
    }

    #[test]
    fn changes_need_something() {
        assert_eq!(changes("{}").unwrap_err(), "nothing_to_change");
        assert_eq!(changes(r#"{"body": ""}"#).unwrap(), NoteChanges { title: None, body: Some(String::new()) });
        assert_eq!(changes(r#"{"title": ""}"#).unwrap_err(), "invalid_title");
    }
}
