//! Keyset pagination: a page ends at (timestamp, id), the cursor names that point, and the next
//! page starts strictly after it — stable while notes are added, and an index range scan.
//!
//! A cursor is `<point>.<mac>`: the point in base64url, and an HMAC-SHA256 (first 16 bytes) of
//! it bound to its purpose and its list, so the API reads only cursors it gave out. Without the
//! MAC anyone could name any point, and each one made up would be a new cache key of the public
//! feed: a database read, a memory-tier slot and a KV write per request, for free. A cursor of
//! the release before (the point alone) is still read for now — a gradual deployment hands out
//! both — but its page is never cached.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

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
    /// Whether `after` came without a MAC (a cursor of the release before): read, never cached.
    pub unsigned: bool,
}

/// Signs and checks the cursors of one list with the deployment's secret (`CONSISTENCY_KEY`,
/// or the key derived from the database token: `config::DataPathConfig::consistency_key`).
pub struct CursorSigner<'a> {
    key: &'a [u8],
    /// `public` or `mine`: a cursor of one list is not one of the other.
    list: &'static str,
}

impl<'a> CursorSigner<'a> {
    pub fn new(key: &'a [u8], list: &'static str) -> Self {
        Self { key, list }
    }

    fn mac(&self, point: &str) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key).ok()?;
        mac.update(format!("edgestack-cursor-v1\n{}\n{point}", self.list).as_bytes());
        Some(mac)
    }

    /// `<point>.<mac>`.
    pub fn sign(&self, cursor: &Cursor) -> String {
        let point = cursor.encode();
        let mac = self.mac(&point).map(|mac| mac.finalize().into_bytes()).unwrap_or_default();
        format!("{point}.{}", URL_SAFE_NO_PAD.encode(&mac[..MAC_BYTES.min(mac.len())]))
    }

    /// The cursor and whether it was signed; `None` for one this API did not give out (a
    /// forged or altered MAC, another list's, or not a point at all).
    fn check(&self, value: &str) -> Option<(Cursor, bool)> {
        let Some((point, signature)) = value.split_once('.') else {
            return Some((Cursor::decode(value)?, false));
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).ok().filter(|signature| signature.len() == MAC_BYTES)?;
        self.mac(point)?.verify_truncated_left(&signature).ok()?;
        Some((Cursor::decode(point)?, true))
    }
}

/// The MAC's length in a cursor: 128 bits.
const MAC_BYTES: usize = 16;

/// Names the key cursors are signed with, without revealing it: the first 48 bits of an
/// HMAC-SHA256 of a fixed label under the key, in base64url (8 characters). A cached feed page
/// holds the cursors of the key it was read under, which a Worker with another key refuses, so
/// the page's cache key carries this name (`cache::CacheKey::public_feed`).
pub fn signing_key_id(key: &[u8]) -> String {
    let digest = Hmac::<Sha256>::new_from_slice(key)
        .map(|mut mac| {
            mac.update(b"edgestack-cursor-key-id-v1");
            mac.finalize().into_bytes().to_vec()
        })
        .unwrap_or_default();
    URL_SAFE_NO_PAD.encode(&digest[..KEY_ID_BYTES.min(digest.len())])
}

/// [`signing_key_id`]'s length: enough to tell a rotated key from the one before.
const KEY_ID_BYTES: usize = 6;

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
    pub fn from_query(query: &str, signer: &CursorSigner<'_>) -> Result<Self, PageError> {
        let mut page = Self { limit: DEFAULT_LIMIT, after: None, unsigned: false };
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
                    // Digits only: Rust's integer parser would also take a leading `+`.
                    page.limit = Some(&value)
                        .filter(|value| value.bytes().all(|byte| byte.is_ascii_digit()))
                        .and_then(|value| value.parse().ok())
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or(PageError::InvalidLimit)?;
                }
                "cursor" if !value.is_empty() => {
                    let (cursor, signed) = signer.check(&value).ok_or(PageError::InvalidCursor)?;
                    page.after = Some(cursor);
                    page.unsigned = !signed;
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

    /// Trims the extra row and names the signed cursor of the next page, if there is one.
    pub fn finish<T>(
        &self,
        mut items: Vec<T>,
        cursor_of: impl Fn(&T) -> Cursor,
        signer: &CursorSigner<'_>,
    ) -> (Vec<T>, Option<String>) {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if items.len() <= limit {
            return (items, None);
        }
        items.truncate(limit);
        let next = items.last().map(|item| signer.sign(&cursor_of(item)));
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

    const KEY: &[u8] = b"test key";

    fn query(query: &str) -> Result<PageRequest, PageError> {
        PageRequest::from_query(query, &CursorSigner::new(KEY, "public"))
    }

    #[test]
    fn query_parsing() {
        assert_eq!(query("").unwrap(), PageRequest { limit: 20, after: None, unsigned: false });
        assert_eq!(query("limit=5&x=y").unwrap().limit, 5);
        assert_eq!(query("%6Cimit=%35&x&cursor=").unwrap().limit, 5, "decoded as a form");
        let cursor = Cursor { timestamp: 7, id: new_id([1; 16]) };
        let signed = CursorSigner::new(KEY, "public").sign(&cursor);
        assert_eq!(
            query(&format!("cursor={signed}")).unwrap(),
            PageRequest { limit: 20, after: Some(cursor.clone()), unsigned: false }
        );
        let legacy = query(&format!("cursor={}", cursor.encode())).unwrap();
        assert_eq!((legacy.after, legacy.unsigned), (Some(cursor.clone()), true), "the release before's cursor");
        for (repeated, name) in [("limit=5&limit=10", "limit"), ("cursor=&limit=5&cursor=", "cursor")] {
            assert_eq!(query(repeated), Err(PageError::Repeated(name)), "{repeated}");
        }
        let other_list = CursorSigner::new(KEY, "mine").sign(&cursor);
        let other_key = CursorSigner::new(b"another key", "public").sign(&cursor);
        let (point, mac) = signed.split_once('.').unwrap();
        let moved = format!("{}.{mac}", Cursor { timestamp: 8, ..cursor.clone() }.encode());
        let short = format!("{point}.{}", &mac[..mac.len() - 2]);
        for bad in
            ["cursor=zzz", &format!("cursor={other_list}"), &format!("cursor={other_key}"), &format!("cursor={moved}")]
        {
            assert_eq!(query(bad), Err(PageError::InvalidCursor), "{bad}");
        }
        assert_eq!(query(&format!("cursor={short}")), Err(PageError::InvalidCursor));
        for bad in [
            "limit=0",
            "limit=101",
            "limit=abc",
            "limit=-1",
            "cursor=zzz",
            "limit=5&limit=5",
            "limit= 5",
            "limit=%2B5",
            "limit=+5",
        ] {
            let error = crate::error::ApiError::from(query(bad).unwrap_err());
            assert_eq!(error.status(), 400, "{bad}");
        }
    }

    #[test]
    fn a_key_is_named_without_being_revealed() {
        let id = signing_key_id(KEY);
        assert_eq!(id.len(), 8);
        assert_eq!(id, signing_key_id(KEY), "the same key, the same name");
        assert_ne!(id, signing_key_id(b"another key"));
        assert!(!id.contains(&URL_SAFE_NO_PAD.encode(KEY)[..8]));
    }

    #[test]
    fn finish_trims_and_points_at_the_last_item() {
        let page = PageRequest { limit: 2, after: None, unsigned: false };
        let signer = CursorSigner::new(KEY, "public");
        let cursor_of = |n: &i64| Cursor { timestamp: *n, id: new_id([0; 16]) };
        let (items, next) = page.finish(vec![30, 20, 10], cursor_of, &signer);
        assert_eq!(items, vec![30, 20]);
        let (cursor, signed) = signer.check(&next.unwrap()).unwrap();
        assert_eq!((cursor.timestamp, signed), (20, true));
        assert_eq!(page.finish(vec![30, 20], cursor_of, &signer).1, None);
    }
}
