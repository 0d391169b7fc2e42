//! What a client may send to create or change a note, checked once.

use serde::Deserialize;

use crate::error::ApiError;

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 20_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNoteBody {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    published: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteChangesBody {
    title: Option<String>,
    body: Option<String>,
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

fn title(value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_TITLE_CHARS {
        return Err(ApiError::new(400, "invalid_title", format!("a title has 1 to {MAX_TITLE_CHARS} characters")));
    }
    Ok(value.to_string())
}

fn body(value: &str) -> Result<String, ApiError> {
    if value.chars().count() > MAX_BODY_CHARS {
        return Err(ApiError::new(
            400,
            "invalid_body_text",
            format!("a note's body has at most {MAX_BODY_CHARS} characters"),
        ));
    }
    Ok(value.to_string())
}

impl NewNote {
    pub fn parse(json: &[u8]) -> Result<Self, ApiError> {
        let input: NewNoteBody = crate::json_body::parse_json(json)?;
        Ok(Self { title: title(&input.title)?, body: body(&input.body)?, published: input.published })
    }
}

impl NoteChanges {
    pub fn parse(json: &[u8]) -> Result<Self, ApiError> {
        let input: NoteChangesBody = crate::json_body::parse_json(json)?;
        if input.title.is_none() && input.body.is_none() {
            return Err(ApiError::new(400, "nothing_to_change", "send a title, a body, or both"));
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

    #[test]
    fn new_note_rules() {
        let note = NewNote::parse(br#"{"title": "  Hello ", "body": "text"}"#).unwrap();
        assert_eq!(note, NewNote { title: "Hello".into(), body: "text".into(), published: false });
        assert!(NewNote::parse(br#"{"title": "t", "published": true}"#).unwrap().published);
        for (json, code) in [
            (r#"{"title": ""}"#, "invalid_title"),
            (r#"{"title": "   "}"#, "invalid_title"),
            (r#"{"body": "no title"}"#, "invalid_body"),
            (r#"{"title": 5}"#, "invalid_body"),
            (r#"{"title": "t", "owner_id": "someone"}"#, "invalid_body"),
        ] {
            assert_eq!(NewNote::parse(json.as_bytes()).unwrap_err().code, code, "{json}");
        }
        let long_title = format!(r#"{{"title": "{}"}}"#, "é".repeat(201));
        assert_eq!(NewNote::parse(long_title.as_bytes()).unwrap_err().code, "invalid_title");
        let long_body = format!(r#"{{"title": "t", "body": "{}"}}"#, "x".repeat(20_001));
        assert_eq!(NewNote::parse(long_body.as_bytes()).unwrap_err().code, "invalid_body_text");
    }

    #[test]
    fn changes_need_something() {
        assert_eq!(NoteChanges::parse(b"{}").unwrap_err().code, "nothing_to_change");
        assert_eq!(
            NoteChanges::parse(br#"{"body": ""}"#).unwrap(),
            NoteChanges { title: None, body: Some(String::new()) }
        );
        assert_eq!(NoteChanges::parse(br#"{"title": ""}"#).unwrap_err().code, "invalid_title");
    }
}
