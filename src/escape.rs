//! Text from users (names, logins, daemon messages) made safe for the two
//! places that do not just display it: terminals, which run escape
//! sequences, and spreadsheets, which run formulas. HTML escaping is
//! askama's business.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` for a terminal: every control character (C0, DEL, C1) and every
/// character that reorders or hides text is shown as `\xNN` / `\u{NNNN}`
/// instead of being sent, so a name cannot clear the screen, move the
/// cursor or draw a fake prompt.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match u32::from(c) {
            _ if !hidden(c) => out.push(c),
            n @ 0..=0xff => {
                let _ = write!(out, "\\x{n:02x}");
            }
            n => {
                let _ = write!(out, "\\u{{{n:04x}}}");
            }
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the bidirectional overrides and isolates and
/// zero-width characters that make text display as something else.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A CSV cell that spreadsheets show as text: one starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return (a formula to Excel, LibreOffice
/// and Google Sheets) gets a leading `'`, as OWASP's CSV injection advice
/// says. The CSV writer quotes the cell as needed.
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => Cow::Owned(format!("'{text}")),
        _ => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_see_control_characters_escaped() {
        assert_eq!(for_terminal("train-01 训练"), "train-01 训练");
        assert_eq!(
            for_terminal("x\x1b[2J\x1b[H$ \x07\r\n\u{9b}"),
            "x\\x1b[2J\\x1b[H$ \\x07\\x0d\\x0a\\x9b"
        );
        assert_eq!(for_terminal("a\u{202e}b\x7f"), "a\\u{202e}b\\x7f");
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for (cell, want) in [
            (
                "=HYPERLINK(\"http://evil\")",
                "'=HYPERLINK(\"http://evil\")",
            ),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("alice", "alice"),
            ("", ""),
            ("a=b", "a=b"),
        ] {
            assert_eq!(csv_cell(cell), want, "{cell:?}");
        }
    }
}
