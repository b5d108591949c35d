//! The lexical scan of a document's raw text, before any parsing: tokens, aliases and root
//! fields, so an abusive document is refused for a few microseconds instead of a parse.

/// What a scan of the raw text finds, before any parsing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scan {
    /// Lexical tokens (punctuators, names, numbers, strings), up to just past the limit.
    pub tokens: usize,
    /// Aliases (`name:` outside parentheses): exact.
    pub aliases: usize,
    /// Fields written directly in operations' top-level selection sets: a lower bound of the
    /// root fields (spreads and inline fragments are counted after parsing).
    pub root_fields: usize,
}

/// Scans the query text once, stopping when the tokens pass `limit`: this is what lets an
/// abusive document be refused for a few microseconds instead of a parse.
pub fn scan(text: &str, limit: usize) -> Scan {
    #[derive(PartialEq, Clone, Copy)]
    enum Tok<'a> {
        Name(&'a [u8]),
        Punct(u8),
        Spread,
        Other,
    }
    let bytes = text.as_bytes();
    let mut out = Scan::default();
    let (mut i, mut braces, mut parens) = (0usize, 0usize, 0usize);
    let (mut prev, mut pending): (Option<Tok>, Option<Tok>) = (None, None);
    let (mut in_fragment, mut fragment_keyword) = (false, false);
    // A name becomes a root field or an alias only once the next token is known.
    let settle =
        |name_prev: Option<Tok>, next: Option<Tok>, braces: usize, parens: usize, in_fragment: bool, out: &mut Scan| {
            if parens != 0 {
                return;
            }
            if next == Some(Tok::Punct(b':')) {
                out.aliases += 1;
            } else if braces == 1
                && !in_fragment
                && !matches!(name_prev, Some(Tok::Spread) | Some(Tok::Punct(b'@')) | Some(Tok::Name(b"on")))
            {
                out.root_fields += 1;
            }
        };
    let mut pending_ctx = (None, 0usize, 0usize, false);
    while i < bytes.len() && out.tokens <= limit {
        let b = bytes[i];
        let tok = match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                if bytes[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 3;
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                Tok::Other
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                i += 3;
                Tok::Spread
            }
            _ if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                Tok::Name(&bytes[start..i])
            }
            _ if b.is_ascii_digit() || b == b'-' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'.' | b'-' | b'+')) {
                    i += 1;
                }
                Tok::Other
            }
            _ => {
                i += 1;
                Tok::Punct(b)
            }
        };
        out.tokens += 1;
        if let Some(Tok::Name(_)) = pending.take() {
            let (p, br, pa, fr) = pending_ctx;
            settle(p, Some(tok), br, pa, fr, &mut out);
        }
        match tok {
            Tok::Punct(b'{') => {
                if braces == 0 {
                    in_fragment = fragment_keyword;
                    fragment_keyword = false;
                }
                braces += 1;
            }
            Tok::Punct(b'}') => braces = braces.saturating_sub(1),
            Tok::Punct(b'(') => parens += 1,
            Tok::Punct(b')') => parens = parens.saturating_sub(1),
            Tok::Name(b"fragment") if braces == 0 => fragment_keyword = true,
            Tok::Name(_) if braces > 0 => {
                pending = Some(tok);
                pending_ctx = (prev, braces, parens, in_fragment);
            }
            _ => {}
        }
        prev = Some(tok);
    }
    if let Some(Tok::Name(_)) = pending {
        let (p, br, pa, fr) = pending_ctx;
        settle(p, None, br, pa, fr, &mut out);
    }
    out
}

/// Counts GraphQL tokens, stopping past `limit`.
pub fn count_tokens(text: &str, limit: usize) -> usize {
    scan(text, limit).tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_like_the_lexer() {
        assert_eq!(count_tokens("{ a }", 100), 3);
        assert_eq!(count_tokens("query Q($x: Int = 5) { a(b: \"s t\", c: -1.5e3) ...F } # c", 100), 23);
        assert_eq!(count_tokens(&"{ a ".repeat(1000), 50), 51, "stops once past the limit");
        assert_eq!(count_tokens("\"\"\"block\nstring\"\"\" x", 10), 2);
    }

    #[test]
    fn the_scan_counts_aliases_and_root_fields_without_parsing() {
        let q = "query Q($x: Int = 5) { a: x(b: { c: 1 }) y @skip(if: true) ...F ... on Q { z } } fragment F on Q { d: w v }";
        let found = scan(q, 1000);
        assert_eq!((found.aliases, found.root_fields), (2, 2), "a: and d: are aliases; x and y are root fields");
        assert_eq!(scan("{ __typename __typename }", 100).root_fields, 2);
        assert_eq!(scan("query { a: b c }", 100), Scan { tokens: 7, aliases: 1, root_fields: 2 });
        let big = format!("{{ {} }}", (0..60).map(|i| format!("a{i}: __typename")).collect::<Vec<_>>().join(" "));
        assert_eq!(scan(&big, 10_000).aliases, 60);
        assert_eq!(scan("mutation { clearCart(input: { key: \"a: b\" }) { cart { id } } }", 100).aliases, 0);
    }
}
