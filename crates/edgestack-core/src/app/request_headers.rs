//! The request headers the API reads ([`API_REQUEST_HEADERS`]), each fetched from the runtime
//! the first time the API asks for it.
//!
//! Most routes read two or three of the twelve: a health check reads none outside development,
//! a public read `if-none-match` and the cookie. On Workers every header read is a call from
//! wasm into the runtime, so the worker's edge asks only for what a route reads
//! (docs/performance.md, change 11).

use std::cell::OnceCell;
use std::fmt;
use std::rc::Rc;

use super::API_REQUEST_HEADERS;

/// Reads one header by its lower-case name: the field's value, repeated fields joined with
/// `, ` as the Fetch standard's `Headers.get` joins them; `None` when the request has none.
pub type HeaderSource = Rc<dyn Fn(&str) -> Option<String>>;

/// The request's headers among [`API_REQUEST_HEADERS`], read on first use and kept.
#[derive(Clone)]
pub struct RequestHeaders {
    source: HeaderSource,
    values: [OnceCell<Option<String>>; API_REQUEST_HEADERS.len()],
}

impl RequestHeaders {
    /// Headers read through `source` when first asked for (the worker's runtime `Request`).
    pub fn from_source(source: HeaderSource) -> Self {
        Self { source, values: Default::default() }
    }

    /// Headers from a list of fields, as a runtime would present them: names compared without
    /// case, repeated fields joined with `, `, fields outside [`API_REQUEST_HEADERS`] dropped.
    pub fn from_fields(fields: &[(String, String)]) -> Self {
        let fields: Vec<(String, String)> = fields.to_vec();
        Self::from_source(Rc::new(move |name: &str| {
            let values: Vec<&str> = fields
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        }))
    }

    /// The value of header `name` (any case), read from the source once.
    ///
    /// Only names in [`API_REQUEST_HEADERS`] are read — the list is what the entry forwards to
    /// the services, so a handler reading another header would see it in one shape and not the
    /// other. Asking for one outside the list is a bug: debug builds panic, release builds
    /// answer `None`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let Some(index) = API_REQUEST_HEADERS.iter().position(|known| known.eq_ignore_ascii_case(name)) else {
            debug_assert!(false, "header {name:?} is read but not in API_REQUEST_HEADERS");
            return None;
        };
        self.values[index].get_or_init(|| (self.source)(API_REQUEST_HEADERS[index])).as_deref()
    }

    /// Every header of [`API_REQUEST_HEADERS`] the request carries, as `(lower-case name, value)`;
    /// reads all of them.
    pub fn present(&self) -> impl Iterator<Item = (&'static str, &str)> {
        API_REQUEST_HEADERS.iter().filter_map(|name| Some((*name, self.get(name)?)))
    }
}

impl fmt::Debug for RequestHeaders {
    /// Only what has been read: debugging output never makes the request read more.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let read = API_REQUEST_HEADERS.iter().zip(&self.values).filter_map(|(name, value)| Some((name, value.get()?)));
        f.debug_map().entries(read).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
    }

    #[test]
    fn reads_each_header_once_and_only_when_asked() {
        let reads = Rc::new(Cell::new(0));
        let counter = Rc::clone(&reads);
        let headers = RequestHeaders::from_source(Rc::new(move |name: &str| {
            counter.set(counter.get() + 1);
            (name == "cookie").then(|| "a=1".to_string())
        }));
        assert_eq!(reads.get(), 0, "nothing is read up front");
        assert_eq!(headers.get("Cookie"), Some("a=1"));
        assert_eq!(headers.get("cookie"), Some("a=1"));
        assert_eq!(headers.get("origin"), None);
        assert_eq!(headers.get("origin"), None);
        assert_eq!(reads.get(), 2, "one read per header, absent ones included");
    }

    #[test]
    fn fields_are_joined_and_filtered_as_the_runtime_presents_them() {
        let headers = RequestHeaders::from_fields(&fields(&[
            ("Cookie", "a=1"),
            ("X-Unread", "x"),
            ("cookie", "b=2"),
            ("If-None-Match", "\"e\""),
        ]));
        assert_eq!(headers.get("cookie"), Some("a=1, b=2"));
        assert_eq!(
            headers.present().collect::<Vec<_>>(),
            vec![("cookie", "a=1, b=2"), ("if-none-match", "\"e\"")],
            "in API_REQUEST_HEADERS order, the unread header dropped"
        );
    }

    #[test]
    #[should_panic(expected = "not in API_REQUEST_HEADERS")]
    fn reading_a_header_outside_the_list_is_a_bug() {
        RequestHeaders::from_fields(&fields(&[("x-unread", "x")])).get("x-unread");
    }
}
