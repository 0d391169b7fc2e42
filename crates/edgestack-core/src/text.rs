//! What a character looks like, for the rules on user-typed text (titles, email addresses).

/// Whether `c` shows as something: not white space and not a [format character](is_format).
pub fn is_visible(c: char) -> bool {
    !c.is_whitespace() && !is_format(c)
}

/// Unicode's format characters (general category Cf, Unicode 16.0 `DerivedGeneralCategory.txt`):
/// zero-width spaces and joiners, the soft hyphen, the byte-order mark, bidi marks and
/// controls, tags. Drawn as nothing. The list, not a general-category crate: its tables of
/// every category added 17 KB of gzip to the wasm every new isolate loads, for one category
/// that changes once in years.
pub fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_characters_are_invisible_and_letters_symbols_and_marks_are_not() {
        for c in ['\u{AD}', '\u{200B}', '\u{200D}', '\u{200E}', '\u{2060}', '\u{FEFF}', '\u{E0041}', ' ', '\u{3000}'] {
            assert!(!is_visible(c), "{c:?}");
        }
        for c in ['a', 'é', '日', '✓', '👩', '\u{301}', '-', '\u{2010}'] {
            assert!(is_visible(c), "{c:?}");
        }
    }
}
