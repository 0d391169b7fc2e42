//! Random, URL-safe ids for users and notes: 128 bits, so ids can be neither guessed nor
//! counted, and a client-supplied id is checked for shape before it reaches SQL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const ID_CHARS: usize = 22;

pub fn new_id(random: [u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// `Some(id)` if `value` has the shape of an id this service made.
pub fn parse_id(value: &str) -> Option<&str> {
    let well_formed = value.len() == ID_CHARS && URL_SAFE_NO_PAD.decode(value).is_ok_and(|bytes| bytes.len() == 16);
    well_formed.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_garbage_is_refused() {
        let id = new_id([200; 16]);
        assert_eq!(id.len(), 22);
        assert_eq!(parse_id(&id), Some(id.as_str()));
        for bad in ["", "1", "' OR 1=1 --", &"a".repeat(23), "abc/def+ghi=jklmnopqrs", "%2e%2e%2fetc%2fpasswd00"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
