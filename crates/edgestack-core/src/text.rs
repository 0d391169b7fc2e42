//! What a character looks like and how text is normalized, for the rules on user-typed text
//! (titles, email addresses, passwords).

/// The Unicode normalization forms (UAX #15) the rules on typed text use (an account's address,
/// `accounts::email`; a password, `accounts::password`). The caller brings them
/// (`Platform::normalize`): the Worker has the runtime's `String.prototype.normalize`, and the
/// tables as a crate would cost the wasm 60 KB gzip (docs/performance.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Canonical composition: one spelling for canonically equivalent text.
    Nfc,
    /// Compatibility composition: also maps ligatures, width and font variants to plain letters.
    Nfkc,
}

/// Whether `c` shows as something: not white space, not [default-ignorable](is_default_ignorable),
/// not U+2800 BRAILLE PATTERN BLANK (a letter-like blank that fonts draw as nothing), and not
/// one of the format characters (Unicode's Cf) that lay out text around them without a glyph of
/// their own though Unicode does not call them ignorable: the interlinear annotation marks
/// U+FFF9–FFFB and the Egyptian hieroglyph format controls U+13430–1343F (a review found
/// `a\u{FFF9}@example.com` taken beside `a@example.com`). The other Cf characters outside the
/// ignorable list (the Arabic number signs U+0600–0605, U+06DD, the Kaithi and Syriac marks) draw a
/// mark of their own.
pub fn is_visible(c: char) -> bool {
    !c.is_whitespace()
        && !is_default_ignorable(c)
        && !matches!(c, '\u{2800}' | '\u{FFF9}'..='\u{FFFB}' | '\u{13430}'..='\u{1343F}')
}

/// Unicode's `Default_Ignorable_Code_Point` (Unicode 16.0 `DerivedCoreProperties.txt`): what a
/// renderer draws as nothing unless it supports it — zero-width spaces and joiners, the soft
/// hyphen, the byte-order mark, bidi marks and controls, the combining grapheme joiner,
/// variation selectors, Hangul fillers, tags. The list, not a Unicode-properties crate: its
/// tables of every general category added 17 KB of gzip to the wasm every new isolate loads,
/// for one property that changes once in years.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{34F}'
            | '\u{61C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignorable_characters_and_blanks_are_invisible_and_letters_symbols_and_marks_are_not() {
        for c in [
            '\u{AD}',
            '\u{34F}',
            '\u{200B}',
            '\u{200D}',
            '\u{200E}',
            '\u{2060}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{FEFF}',
            '\u{FFA0}',
            '\u{E0041}',
            '\u{E0100}',
            '\u{2800}',
            '\u{FFF9}',
            '\u{FFFB}',
            '\u{13430}',
            '\u{1343F}',
            ' ',
            '\u{3000}',
        ] {
            assert!(!is_visible(c), "{c:?}");
        }
        for c in ['a', 'é', '日', '✓', '👩', '\u{301}', '-', '\u{2010}', '\u{600}'] {
            assert!(is_visible(c), "{c:?}");
        }
    }
}
