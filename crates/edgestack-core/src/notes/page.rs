//! Keyset pagination: a page ends at (timestamp, id), the cursor names that point, and the next
//! page starts strictly after it — stable while notes are added, and an index range scan.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ids::parse_id;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub timestamp: i64,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<Cursor>,
}

/// Which query parameter was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageError {
    /// `limit` is not a number from 1 to [`MAX_LIMIT`].
    InvalidLimit,
    /// `cursor` is not one this API gave out.
    InvalidCursor,
    /// The named parameter appears more than once: which one counts would be a guess.
    Repeated(&'static str),
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidLimit => write!(f, "limit is a number from 1 to {MAX_LIMIT}"),
            Self::InvalidCursor => f.write_str("cursor is not one this API gave out"),
            Self::Repeated(name) => write!(f, "{name} is given more than once"),
        }
    }
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}", self.timestamp, self.id))
    }

    pub fn decode(value: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (timestamp, id) = text.split_once('.')?;
        Some(Self { timestamp: timestamp.parse().ok()?, id: parse_id(id)?.to_string() })
    }

    /// Where a first page starts: after every real (timestamp, id).
    pub fn start() -> Self {
        Self { timestamp: i64::MAX, id: String::new() }
    }
}

impl PageRequest {
    /// Reads `limit` and `cursor` from a query string (`application/x-www-form-urlencoded`, as
    /// `URLSearchParams` writes it: percent-encoding and `+` decoded); other parameters are
    /// ignored, and either of the two given twice is refused.
    pub fn from_query(query: &str) -> Result<Self, PageError> {
        let mut page = Self { limit: DEFAULT_LIMIT, after: None };
        let mut seen = [false; 2];
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let (slot, name) = match name.as_ref() {
                "limit" => (0, "limit"),
                "cursor" => (1, "cursor"),
                _ => continue,
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(PageError::Repeated(name));
            }
            match name {
                "limit" => {
                    page.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or(PageError::InvalidLimit)?;
                }
                "cursor" if !value.is_empty() => {
                    page.after = Some(Cursor::decode(&value).ok_or(PageError::InvalidCursor)?);
                }
                _ => {}
            }
        }
        Ok(page)
    }

    /// Rows to ask for: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    pub fn start(&self) -> Cursor {
        self.after.clone().unwrap_or_else(Cursor::start)
    }

    /// Trims the extra row and names the cursor of the next page, if there is one.
    pub fn finish<T>(&self, mut items: Vec<T>, cursor_of: impl Fn(&T) -> Cursor) -> (Vec<T>, Option<String>) {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if items.len() <= limit {
            return (items, None);
        }
        items.truncate(limit);
        let next = items.last().map(|item| cursor_of(item).encode());
        (items, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::new_id;

    #[test]
    fn cursor_round_trips() {
        let cursor = Cursor { timestamp: 1_700_000_000_123, id: new_id([3; 16]) };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "!!", "bm90LWEtY3Vyc29y", &URL_SAFE_NO_PAD.encode("12.' OR 1=1")] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_parsing() {
        assert_eq!(PageRequest::from_query("").unwrap(), PageRequest { limit: 20, after: None });
        assert_eq!(PageRequest::from_query("limit=5&x=y").unwrap().limit, 5);
        assert_eq!(PageRequest::from_query("%6Cimit=%35&x&cursor=").unwrap().limit, 5, "decoded as a form");
        let cursor = Cursor { timestamp: 7, id: new_id([1; 16]) };
        let query = format!("cursor={}", cursor.encode());
        assert_eq!(PageRequest::from_query(&query).unwrap().after, Some(cursor));
        for (repeated, name) in [("limit=5&limit=10", "limit"), ("cursor=&limit=5&cursor=", "cursor")] {
            assert_eq!(PageRequest::from_query(repeated), Err(PageError::Repeated(name)), "{repeated}");
        }
        for bad in ["limit=0", "limit=101", "limit=abc", "limit=-1", "cursor=zzz", "limit=5&limit=5", "limit= 5"] {
            let error = crate::error::ApiError::from(PageRequest::from_query(bad).unwrap_err());
            assert_eq!(error.status(), 400, "{bad}");
        }
    }

    #[test]
    fn finish_trims_and_points_at_the_last_item() {
        let page = PageRequest { limit: 2, after: None };
        let cursor_of = |n: &i64| Cursor { timestamp: *n, id: new_id([0; 16]) };
        let (items, next) = page.finish(vec![30, 20, 10], cursor_of);
        assert_eq!(items, vec![30, 20]);
        assert_eq!(Cursor::decode(&next.unwrap()).unwrap().timestamp, 20);
        assert_eq!(page.finish(vec![30, 20], cursor_of).1, None);
    }
}
