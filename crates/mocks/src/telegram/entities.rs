//! Telegram's parse modes (`HTML`, `MarkdownV2`, legacy `Markdown`) as far as the Bot API
//! refuses or counts with them: the text left after parsing (whose length in UTF-16 code units
//! is what the 4096 / 1024 limits apply to) or tdlib's own "can't parse entities" reason.
//!
//! The error texts are tdlib's (`td/telegram/MessageEntity.cpp`: `parse_html`,
//! `parse_markdown_v2`, `parse_markdown`); byte offsets are into the UTF-8 text, as tdlib
//! counts them. Entities themselves are not built: only whether the markup parses and what
//! text it leaves.

/// The text a parse mode leaves, or tdlib's reason it does not parse (without the
/// "Bad Request: can't parse entities: " prefix). `Err(None)` for an unknown parse mode.
pub(super) fn plain_text(text: &str, parse_mode: Option<&str>) -> Result<String, ParseError> {
    match parse_mode.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(text.to_owned()),
        Some("html") => html(text).map_err(ParseError::Entities),
        Some("markdownv2") => markdown_v2(text).map_err(ParseError::Entities),
        Some("markdown") => markdown(text).map_err(ParseError::Entities),
        Some(_) => Err(ParseError::UnsupportedMode),
    }
}

/// Why a text with a parse mode is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ParseError {
    /// tdlib's reason, e.g. `Unsupported start tag "foo" at byte offset 0`.
    Entities(String),
    /// `parse_mode` is none of the three.
    UnsupportedMode,
}

/// Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2).
pub(super) fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Tags `parse_html` accepts (Bot API 7+).
const HTML_TAGS: &[&str] = &[
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "tg-time",
    "span",
    "pre",
    "code",
    "blockquote",
];

/// `&lt;`, `&gt;`, `&amp;`, `&quot;` and numeric references; anything else stays as written.
fn html_entity(bytes: &[u8], at: usize) -> Option<(char, usize)> {
    let rest = &bytes[at + 1..];
    let (value, used) = if rest.first() == Some(&b'#') {
        let (radix, skip) = if rest.get(1) == Some(&b'x') {
            (16, 2)
        } else {
            (10, 1)
        };
        let digits = rest[skip..]
            .iter()
            .take_while(|b| (**b as char).is_digit(radix))
            .count();
        let digits_text = std::str::from_utf8(&rest[skip..skip + digits]).ok()?;
        let value = u32::from_str_radix(digits_text, radix).ok()?;
        if value == 0 || value >= 0x10ffff || skip + digits + 1 >= 10 {
            return None;
        }
        (char::from_u32(value)?, skip + digits)
    } else {
        let name_len = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let c = match &rest[..name_len] {
            b"lt" => '<',
            b"gt" => '>',
            b"amp" => '&',
            b"quot" => '"',
            _ => return None,
        };
        (c, name_len)
    };
    let end = at + 1 + used;
    Some((
        value,
        if bytes.get(end) == Some(&b';') {
            end + 1
        } else {
            end
        },
    ))
}

fn html(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'&' {
            if let Some((ch, next)) = html_entity(bytes, i) {
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i = next;
                continue;
            }
        }
        if c != b'<' {
            out.push(c);
            i += 1;
            continue;
        }
        let begin = i;
        i += 1;
        if bytes.get(i) == Some(&b'/') {
            i += 1;
            let name_start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                i += 1;
            }
            let name = String::from_utf8_lossy(&bytes[name_start..i]).to_ascii_lowercase();
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if bytes.get(i) != Some(&b'>') {
                return Err(format!("Unclosed end tag at byte offset {begin}"));
            }
            i += 1;
            let Some(top) = open.pop() else {
                return Err(format!("Unexpected end tag at byte offset {begin}"));
            };
            if name != top {
                return Err(format!(
                    "Unmatched end tag at byte offset {begin}, expected \"</{top}>\", found \"</{name}>\""
                ));
            }
            continue;
        }
        let name_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }
        let name = String::from_utf8_lossy(&bytes[name_start..i]).to_ascii_lowercase();
        if !HTML_TAGS.contains(&name.as_str()) {
            return Err(format!(
                "Unsupported start tag \"{name}\" at byte offset {begin}"
            ));
        }
        // Attributes: skipped up to the closing `>`, quoted values may hold one.
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            match (quote, bytes[i]) {
                (None, b'>') => break,
                (None, q @ (b'"' | b'\'')) => quote = Some(q),
                (Some(q), b) if b == q => quote = None,
                _ => {}
            }
            i += 1;
        }
        if i >= bytes.len() {
            return Err(format!("Unclosed start tag at byte offset {begin}"));
        }
        i += 1;
        open.push(name);
    }
    if let Some(top) = open.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{top}\""
        ));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// MarkdownV2's entity kinds, as tdlib names them in "Can't find end of … entity".
#[derive(Clone, Copy, PartialEq, Eq)]
enum Md {
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    TextUrl,
    Code,
    Pre,
}

impl Md {
    fn name(self) -> &'static str {
        match self {
            Md::Bold => "Bold",
            Md::Italic => "Italic",
            Md::Underline => "Underline",
            Md::Strikethrough => "Strikethrough",
            Md::Spoiler => "Spoiler",
            Md::TextUrl => "TextUrl",
            Md::Code => "Code",
            Md::Pre => "Pre",
        }
    }
}

/// Characters MarkdownV2 reserves: outside an entity's own markup each must be escaped.
const MD_RESERVED: &str = "_*[]()~`>#+-=|{}.!";

fn markdown_v2(text: &str) -> Result<String, String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = String::with_capacity(text.len());
    let mut open: Vec<(Md, usize)> = Vec::new();
    let mut i = 0;
    let at_line_start = |i: usize| i == 0 || chars[i - 1].1 == '\n';
    while i < chars.len() {
        let (offset, c) = chars[i];
        let next = chars.get(i + 1).map(|(_, c)| *c);
        if c == '\\' && next.is_some_and(|n| (n as u32) > 0 && (n as u32) < 127) {
            out.push(next.unwrap_or_default());
            i += 2;
            continue;
        }
        // Inside code and pre only the closing backticks mean anything.
        if let Some(&(kind @ (Md::Code | Md::Pre), _)) = open.last() {
            let closes = match kind {
                Md::Pre => text[offset..].starts_with("```"),
                _ => c == '`',
            };
            if closes {
                open.pop();
                i += if kind == Md::Pre { 3 } else { 1 };
            } else {
                out.push(c);
                i += 1;
            }
            continue;
        }
        if !MD_RESERVED.contains(c) {
            out.push(c);
            i += 1;
            continue;
        }
        let (kind, width) = match c {
            '_' if next == Some('_') => (Md::Underline, 2),
            '_' => (Md::Italic, 1),
            '*' => (Md::Bold, 1),
            '~' => (Md::Strikethrough, 1),
            '|' if next == Some('|') => (Md::Spoiler, 2),
            '`' if text[offset..].starts_with("```") => (Md::Pre, 3),
            '`' => (Md::Code, 1),
            '[' => (Md::TextUrl, 1),
            ']' if open.last().is_some_and(|(k, _)| *k == Md::TextUrl) => {
                open.pop();
                i += 1;
                if chars.get(i).map(|(_, c)| *c) == Some('(') {
                    // The URL runs to the first unescaped ')'.
                    let start = chars[i].0;
                    i += 1;
                    loop {
                        match chars.get(i).map(|(_, c)| *c) {
                            None => {
                                return Err(format!(
                                    "Can't find end of a URL at byte offset {start}"
                                ))
                            }
                            Some('\\') => i += 2,
                            Some(')') => {
                                i += 1;
                                break;
                            }
                            Some(_) => i += 1,
                        }
                    }
                }
                continue;
            }
            '>' if at_line_start(i) => {
                // A blockquote line.
                i += 1;
                continue;
            }
            _ => {
                return Err(format!(
                    "Character '{c}' is reserved and must be escaped with the preceding '\\'"
                ))
            }
        };
        if open.last().is_some_and(|(k, _)| *k == kind) && kind != Md::TextUrl {
            open.pop();
        } else {
            open.push((kind, offset));
            if kind == Md::Pre {
                // The first line after ``` may name the language.
                let line_end = text[offset + 3..].find('\n');
                let language = line_end.map(|end| &text[offset + 3..offset + 3 + end]);
                if language.is_some_and(|l| !l.contains(char::is_whitespace) && !l.contains('`')) {
                    let skip = line_end.unwrap_or_default() + 1;
                    i += width;
                    let target = offset + 3 + skip;
                    while i < chars.len() && chars[i].0 < target {
                        i += 1;
                    }
                    continue;
                }
            }
        }
        i += width;
    }
    if let Some((kind, offset)) = open.pop() {
        return Err(format!(
            "Can't find end of {} entity at byte offset {offset}",
            kind.name()
        ));
    }
    Ok(out)
}

/// Legacy `Markdown`: `*bold*`, `_italic_`, `` `code` ``, ```` ```pre``` ````, `[text](url)`;
/// no escapes but a backslash before the four markup characters.
fn markdown(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text.char_indices().peekable();
    while let Some((offset, c)) = rest.next() {
        match c {
            '\\' if rest
                .peek()
                .is_some_and(|(_, n)| matches!(n, '_' | '*' | '`' | '[')) =>
            {
                if let Some((_, n)) = rest.next() {
                    out.push(n);
                }
            }
            '_' | '*' | '`' | '[' => {
                let end = if c == '`' && text[offset..].starts_with("```") {
                    text[offset + 3..]
                        .find("```")
                        .map(|e| (offset + 3, offset + 3 + e, 3))
                } else {
                    let close = if c == '[' { ']' } else { c };
                    text[offset + 1..]
                        .find(close)
                        .map(|e| (offset + 1, offset + 1 + e, 1))
                };
                let Some((from, to, width)) = end else {
                    return Err(format!(
                        "Can't find end of the entity starting at byte offset {offset}"
                    ));
                };
                out.push_str(&text[from..to]);
                let mut resume = to + width;
                if c == '[' && text[resume..].starts_with('(') {
                    match text[resume..].find(')') {
                        Some(e) => resume += e + 1,
                        None => {
                            return Err(format!("Can't find end of a URL at byte offset {resume}"))
                        }
                    }
                }
                while rest.peek().is_some_and(|(o, _)| *o < resume) {
                    rest.next();
                }
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, mode: &str) -> String {
        match plain_text(text, Some(mode)) {
            Err(ParseError::Entities(reason)) => reason,
            other => panic!("{text:?} in {mode} parsed: {other:?}"),
        }
    }

    #[test]
    fn html_leaves_the_text_and_names_tdlibs_errors() {
        assert_eq!(
            plain_text(
                "<b>bold</b> &lt;3 &amp; <a href=\"https://x.y/?a>b\">link</a>",
                Some("HTML")
            ),
            Ok("bold <3 & link".into())
        );
        assert_eq!(
            err("a <foo>b</foo>", "HTML"),
            "Unsupported start tag \"foo\" at byte offset 2"
        );
        assert_eq!(
            err("<b>never closed", "HTML"),
            "Can't find end tag corresponding to start tag \"b\""
        );
        assert_eq!(
            err("<i>a</em   >", "HTML"),
            "Unmatched end tag at byte offset 4, expected \"</i>\", found \"</em>\""
        );
        assert_eq!(err("x</b>", "HTML"), "Unexpected end tag at byte offset 1");
        assert_eq!(err("<b", "HTML"), "Unclosed start tag at byte offset 0");
        assert_eq!(
            err("<i>a</i   ", "HTML"),
            "Unclosed end tag at byte offset 4"
        );
        // A bare '<' is a tag to tdlib: an empty name is unsupported.
        assert_eq!(
            err("1 < 2", "HTML"),
            "Unsupported start tag \"\" at byte offset 2"
        );
    }

    #[test]
    fn markdown_v2_wants_reserved_characters_escaped() {
        assert_eq!(
            plain_text(
                "*bold* _it_ __u__ ~s~ ||sp|| `c.o.d.e` [link](https://x.y/a\\)b) 1\\.0",
                Some("MarkdownV2")
            ),
            Ok("bold it u s sp c.o.d.e link 1.0".into())
        );
        assert_eq!(
            err("Version 1.0", "MarkdownV2"),
            "Character '.' is reserved and must be escaped with the preceding '\\'"
        );
        assert_eq!(
            err("🏟 🏟_abacaba", "MarkdownV2"),
            "Can't find end of Italic entity at byte offset 9"
        );
        assert_eq!(
            plain_text("```rust\nfn main() {}\n```", Some("MarkdownV2")),
            Ok("fn main() {}\n".into())
        );
    }

    #[test]
    fn legacy_markdown_and_unknown_modes() {
        assert_eq!(
            plain_text("*b* _i_ [t](http://x)", Some("Markdown")),
            Ok("b i t".into())
        );
        assert_eq!(
            err("a *b", "Markdown"),
            "Can't find end of the entity starting at byte offset 2"
        );
        assert_eq!(
            plain_text("x", Some("BBCode")),
            Err(ParseError::UnsupportedMode)
        );
        assert_eq!(plain_text("<b>", None), Ok("<b>".into()));
    }

    #[test]
    fn length_is_counted_in_utf16_code_units() {
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("привет"), 6);
        assert_eq!(utf16_len("👍"), 2);
    }
}
