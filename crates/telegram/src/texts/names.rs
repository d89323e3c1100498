//! A user's display name (Telegram's `first_name`, any Unicode they chose) made safe to put
//! in a text the bot sends.

/// Telegram's own limit for `first_name`: a longer name is not a name Telegram gave us, and a
/// 7,000-character one pushed the greeting past sendMessage's 4,096 (the answer was lost).
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// Control characters (NUL, newlines…) and bidi controls (U+202E turns the rest of the
/// greeting around) dropped, whitespace runs and line breaks made one space, cut to
/// [`MAX_NAME_CHARS`] characters (never inside one).
pub(crate) fn display_name(raw: &str) -> String {
    let mut out = String::new();
    let mut kept = 0;
    let mut space_pending = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            // Line and paragraph separators are whitespace too: the name stays one line.
            space_pending = !out.is_empty();
            continue;
        }
        if c.is_control() || is_bidi_control(c) {
            continue;
        }
        let needed = if space_pending { 2 } else { 1 };
        if kept + needed > MAX_NAME_CHARS {
            break;
        }
        if space_pending {
            out.push(' ');
            space_pending = false;
        }
        out.push(c);
        kept += needed;
    }
    // Zero-width and blank characters alone (U+200B, U+FEFF, Hangul fillers: a popular way to
    // look nameless) are no name; among visible ones they stay (U+200D joins emoji).
    if out.chars().all(|c| c == ' ' || is_blank(c)) {
        out.clear();
    }
    out
}

/// Characters that draw nothing though they are neither whitespace nor controls.
pub(crate) fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// The bidi formatting characters of Unicode (marks, embeddings, overrides, isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_dropped_and_lines_joined() {
        assert_eq!(display_name("Ann\u{202E}a\0b"), "Annab");
        assert_eq!(display_name("  Ann\n\r\u{2028}Lee\t "), "Ann Lee");
        assert_eq!(display_name("Анна"), "Анна");
        assert_eq!(display_name("\u{200B}\u{FEFF} \u{3164}"), "");
        assert_eq!(display_name("👨\u{200D}👩"), "👨\u{200D}👩");
        assert_eq!(display_name(&"ж".repeat(7_000)), "ж".repeat(MAX_NAME_CHARS));
    }

    /// Arbitrary Unicode, with the characters that matter often enough to be seen.
    pub(crate) fn names() -> impl Strategy<Value = String> {
        let tricky = prop::sample::select(vec![
            '\u{202E}', '\u{2066}', '\u{200F}', '\u{061C}', '\0', '\n', '\r', '\u{2028}', ' ',
        ]);
        prop::collection::vec(prop_oneof![any::<char>(), tricky], 0..200)
            .prop_map(|chars| chars.into_iter().collect())
    }

    /// Only whitespace, control and bidi characters: names that clean to nothing.
    pub(crate) fn invisible_names() -> impl Strategy<Value = String> {
        let invisible = prop::sample::select(vec![
            '\u{202E}',
            '\u{2066}',
            '\u{200F}',
            '\u{061C}',
            '\0',
            '\n',
            '\r',
            '\t',
            '\u{2028}',
            '\u{2029}',
            '\u{7F}',
            '\u{85}',
            ' ',
            '\u{A0}',
            '\u{3000}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{2060}',
            '\u{E0020}',
            '\u{00AD}',
        ]);
        prop::collection::vec(invisible, 0..20).prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn a_cleaned_name_is_one_short_line_without_controls(raw in names()) {
            let name = display_name(&raw);
            prop_assert!(name.chars().count() <= MAX_NAME_CHARS, "{name:?}");
            prop_assert!(
                !name.chars().any(|c| c.is_control() || is_bidi_control(c)),
                "{name:?}"
            );
            prop_assert!(!name.contains('\u{2028}') && !name.contains('\u{2029}'), "{name:?}");
        }
    }
}
