//! What a client may send to create or change a note, checked once.

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::text::is_visible;

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 20_000;

// The largest valid note, every character escaped as a surrogate pair (`\uD83D\uDE00`, 12
// bytes), and 1 KiB for the field names, `published` and white space, fits one request body.
const _: () = assert!(12 * (MAX_TITLE_CHARS + MAX_BODY_CHARS) + 1024 <= crate::json_body::MAX_BODY_BYTES);

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

/// The JSON body of `PATCH /api/notes/{id}`, before its rules are checked: each field may be
/// left out, and one that is present is a string (`null` is `400 invalid_body`, as on `POST`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteChangesBody {
    #[serde(default, deserialize_with = "present")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub body: Option<String>,
}

/// A field that is there when it is given: serde reads `null` into an `Option` as left out, so
/// `{"body": null}` was answered 200 with the body untouched — and a JSON Merge Patch client
/// (RFC 7396) means "remove" by it. A note has no field to remove.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    String::deserialize(deserializer).map(Some)
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
    /// Empty (after trimming) or with no character that shows, over `MAX_TITLE_CHARS`, or
    /// holding a control character, a Unicode line or paragraph separator, or a bidi control.
    InvalidTitle,
    /// Over `MAX_BODY_CHARS`, or holding a control character other than tab and line breaks.
    InvalidBodyText,
    /// A change with neither a title nor a body.
    NothingToChange,
}

impl fmt::Display for NoteInputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidTitle => {
                write!(f, "a title has 1 to {MAX_TITLE_CHARS} characters and no control characters")
            }
            Self::InvalidBodyText => write!(
                f,
                "a note's body has at most {MAX_BODY_CHARS} characters and no control characters but tabs and line breaks"
            ),
            Self::NothingToChange => f.write_str("send a title, a body, or both"),
        }
    }
}

/// Characters that change how the text around them is shown without being text: the bidi
/// embeddings, overrides and isolates (a title shown in a list could otherwise reverse what
/// follows it on the page).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Unicode's own line breaks outside Cc: LINE SEPARATOR (Zl) and PARAGRAPH SEPARATOR (Zp).
fn is_unicode_line_break(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// A title is one line of text (ASVS 5.0 2.2.1: input is validated against what it is for),
/// trimmed of surrounding white space: no control character at all (NUL, line breaks, escapes:
/// `char::is_control`, Unicode's Cc), no Unicode line or paragraph separator and no bidi
/// control — and at least one character that shows ([`is_visible`]): a title of zero-width
/// characters alone would show as an empty line in every list. Ignorable characters between
/// visible ones stay allowed (an emoji sequence is joined by U+200D, Persian needs U+200C).
fn title(value: &str) -> Result<String, NoteInputError> {
    let value = value.trim();
    let chars = value.chars().count();
    let refused = |c: char| c.is_control() || is_unicode_line_break(c) || is_bidi_control(c);
    if chars == 0 || chars > MAX_TITLE_CHARS || value.chars().any(refused) || !value.chars().any(is_visible) {
        return Err(NoteInputError::InvalidTitle);
    }
    Ok(value.to_string())
}

/// A body is text of several lines: tabs and line breaks are its only control characters (Cc).
/// Bidi controls stay allowed: mixed-direction prose needs them, and a body is shown as its own
/// block, where the Unicode bidi algorithm ends their reach (a title is shown inline, in lists).
fn body(value: &str) -> Result<String, NoteInputError> {
    let stray_control = value.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'));
    if value.chars().count() > MAX_BODY_CHARS || stray_control {
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
    use crate::json_body::parse_json_object;

    /// A body as the handler reads it: JSON first, then the rules; errors as the API's `code`.
    fn new_note(json: &str) -> Result<NewNote, String> {
        let input = parse_json_object(json.as_bytes()).map_err(|e| ApiError::from(e).code().to_string())?;
        NewNote::parse(input).map_err(|e| ApiError::from(e).code().to_string())
    }

    fn changes(json: &str) -> Result<NoteChanges, String> {
        let input = parse_json_object(json.as_bytes()).map_err(|e| ApiError::from(e).code().to_string())?;
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
    fn titles_hold_no_control_characters_and_bodies_only_tabs_and_line_breaks() {
        for title in [
            "a\u{0}b",
            "line\nbreak",
            "tab\there",
            "bell\u{7}",
            "del\u{7f}",
            "c1\u{85}c1",
            "rlo\u{202e}txt",
            "iso\u{2067}",
            "line\u{2028}separator",
            "paragraph\u{2029}separator",
            "\u{feff}",
            "\u{200b}\u{200b}",
            "\u{200e}\u{200f}\u{61c}",
            "\u{2060} \u{ad}",
            "\u{3164}\u{3164}",
            "\u{2800}",
            "\u{fe0f}",
        ] {
            let json = serde_json::json!({ "title": title }).to_string();
            assert_eq!(new_note(&json).unwrap_err(), "invalid_title", "{title:?}");
            let json = serde_json::json!({ "title": title }).to_string();
            assert_eq!(changes(&json).unwrap_err(), "invalid_title", "{title:?}");
        }
        let fine = serde_json::json!({"title": "Zoë’s «notes» ✓ — 日本語", "body": "line one\r\nline two\n\tindented"});
        assert!(new_note(&fine.to_string()).is_ok());
        for title in ["👩\u{200d}💻 work", "می\u{200c}خواهم"] {
            let json = serde_json::json!({ "title": title }).to_string();
            assert_eq!(new_note(&json).unwrap().title, title, "joiners between visible characters stay");
        }
        for body in ["nul\u{0}", "escape\u{1b}[31m", "form\u{c}feed"] {
            let json = serde_json::json!({ "title": "t", "body": body }).to_string();
            assert_eq!(new_note(&json).unwrap_err(), "invalid_body_text", "{body:?}");
        }
        for body in ["one\u{2028}two", "\u{202b}עברית\u{202c} and English"] {
            let json = serde_json::json!({ "title": "t", "body": body }).to_string();
            assert_eq!(new_note(&json).unwrap().body, body, "a body may hold Unicode line breaks and bidi controls");
        }
    }

    #[test]
    fn changes_need_something() {
        assert_eq!(changes("{}").unwrap_err(), "nothing_to_change");
        assert_eq!(changes(r#"{"body": ""}"#).unwrap(), NoteChanges { title: None, body: Some(String::new()) });
        assert_eq!(changes(r#"{"title": ""}"#).unwrap_err(), "invalid_title");
    }

    /// A review's report: `{"title": "renamed", "body": null}` was 200 with the body untouched.
    #[test]
    fn a_null_field_is_refused_not_read_as_left_out() {
        for json in [r#"{"title": "renamed", "body": null}"#, r#"{"body": null}"#, r#"{"title": null, "body": "b"}"#] {
            assert_eq!(changes(json).unwrap_err(), "invalid_body", "{json}");
        }
    }
}
