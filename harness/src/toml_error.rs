//! `file:line` for the TOML files the harness reads (machine definitions,
//! scenarios, targets): the 1-based line of a byte offset, of a parse
//! error, or of the first place a key is written, so every error about a
//! file points at the line to fix.  The callers put the line into their own
//! `{path}:{line}: {message}` error variants.

/// The 1-based line of byte `offset` in `text` (the last line if past the end).
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line a TOML parse error points at (1 if it points nowhere) and its
/// message without the source snippet the error's `Display` adds.
pub fn locate(text: &str, e: &toml::de::Error) -> (usize, String) {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
    (line, e.message().to_string())
}

/// The line where `needle` first occurs in `text` (1 if it does not).
pub fn line_of_first(text: &str, needle: &str) -> usize {
    text.find(needle).map(|i| line_of(text, i)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based_and_clamped() {
        let text = "a = 1\nb = 2\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 6), 2);
        assert_eq!(line_of(text, 999), 3);
        assert_eq!(line_of_first(text, "b ="), 2);
        assert_eq!(line_of_first(text, "c ="), 1);
    }

    #[test]
    fn parse_errors_point_at_their_line() {
        let text = "a = 1\nb = \"open\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let (line, message) = locate(text, &e);
        assert_eq!(line, 2);
        assert!(!message.contains('\n'), "{message}");
    }
}
