//! The most common passwords, refused when a password is chosen (ASVS 5.0 6.2.4, level 1:
//! "checked against an available set of, at least, the top 3000 passwords which match the
//! application's password policy"). The set is SecLists' top 10,000 (see
//! `common_passwords/README.md`), vendored unmodified; while compiling, only its entries that
//! meet the length rule are kept — 3,337, about 12 KB of the wasm gzipped — so the binary never
//! carries the 76 KB source.

/// The vendored list: one password a line, ASCII, alphabetized, no trailing line break.
const SOURCE: &[u8] = include_bytes!("common_passwords/top-10000.txt");

/// Shorter entries break the length rule (`password::MIN_CHARS`) and are refused anyway.
const MIN_BYTES: usize = 8;

/// The bytes the kept entries take, each followed by `\n`.
const KEPT_BYTES: usize = kept_bytes(SOURCE);

/// The kept entries, lower-cased, each followed by `\n`. Built while compiling.
static KEPT: [u8; KEPT_BYTES] = keep(SOURCE);

/// The bytes the lines of `source` long enough to keep take, each with its `\n`. `const fn`
/// loops, because iterators are not available while compiling.
const fn kept_bytes(source: &[u8]) -> usize {
    let (mut total, mut start, mut index) = (0, 0, 0);
    while index <= source.len() {
        if index == source.len() || source[index] == b'\n' {
            let length = index - start;
            if length >= MIN_BYTES {
                total += length + 1;
            }
            start = index + 1;
        }
        index += 1;
    }
    total
}

const fn keep(source: &[u8]) -> [u8; KEPT_BYTES] {
    let mut kept = [0; KEPT_BYTES];
    let (mut at, mut start, mut index) = (0, 0, 0);
    while index <= source.len() {
        if index == source.len() || source[index] == b'\n' {
            if index - start >= MIN_BYTES {
                let mut copied = start;
                while copied < index {
                    kept[at] = source[copied].to_ascii_lowercase();
                    at += 1;
                    copied += 1;
                }
                kept[at] = b'\n';
                at += 1;
            }
            start = index + 1;
        }
        index += 1;
    }
    kept
}

/// Whether `password` is one of the common passwords, whatever its letter case ("Password1"
/// is as guessable as "password1"). A linear scan of ≈ 30 KB: microseconds, next to the
/// Argon2 hash that follows on every path that asks.
pub fn is_common(password: &str) -> bool {
    let candidate = password.as_bytes();
    candidate.len() >= MIN_BYTES && KEPT.split(|byte| *byte == b'\n').any(|entry| entry.eq_ignore_ascii_case(candidate))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn kept_entries() -> BTreeSet<&'static [u8]> {
        KEPT.split(|byte| *byte == b'\n').filter(|entry| !entry.is_empty()).collect()
    }

    #[test]
    fn keeps_every_entry_of_the_source_that_meets_the_length_rule_and_no_other() {
        let source = std::str::from_utf8(SOURCE).unwrap();
        assert_eq!(
            source.lines().filter(|line| !line.is_empty()).count(),
            10_000,
            "the vendored file is the top 10,000"
        );
        let expected: BTreeSet<String> =
            source.lines().filter(|line| line.len() >= MIN_BYTES).map(str::to_ascii_lowercase).collect();
        let kept: BTreeSet<String> =
            kept_entries().into_iter().map(|entry| String::from_utf8(entry.to_vec()).unwrap()).collect();
        assert_eq!(kept, expected);
        // ASVS 6.2.4 asks for at least the top 3,000 that meet the policy.
        assert!(kept.len() >= 3_000, "{} distinct common passwords of 8 or more characters", kept.len());
    }

    #[test]
    fn common_passwords_are_found_whatever_their_case_and_others_are_not() {
        for common in ["password", "12345678", "qwertyui", "11111111", "iloveyou", "Password1", "PASSWORD"] {
            assert!(is_common(common), "{common}");
        }
        for other in ["correct horse battery staple", "passwor", "password12345678x", "", "pässword"] {
            assert!(!is_common(other), "{other}");
        }
    }
}
