//! String matchers that need more than `==`: `wildcard` globs and the `equals-ignore-case`
//! family.

/// One piece of a parsed wildcard value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Piece {
    Lit(Vec<u8>),
    Star,
}

/// A `wildcard` value: `*` matches any run of characters, including none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Wildcard {
    /// The value as written, for error-free re-display and complexity analysis.
    pub(crate) source: String,
    pieces: Vec<Piece>,
}

impl Wildcard {
    /// Parses with event-ruler's rules and messages. Positions count UTF-8 bytes of the value
    /// wrapped in quotes, as event-ruler parses it.
    pub(crate) fn parse(text: &str) -> Result<Wildcard, String> {
        let quoted = format!("\"{text}\"");
        let bytes = quoted.as_bytes();
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'*' => {
                    if bytes.get(i + 1) == Some(&b'*') {
                        return Err(format!("Consecutive wildcard characters at pos {i}"));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Star);
                }
                b'\\' => match bytes.get(i + 1) {
                    Some(&b) if b == b'*' || b == b'\\' => {
                        lit.push(b);
                        i += 1;
                    }
                    _ => return Err(format!("Invalid escape character at pos {i}")),
                },
                b => lit.push(b),
            }
            i += 1;
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        // Strip the quotes back off for matching: they are always the first and last bytes.
        if let Some(Piece::Lit(first)) = pieces.first_mut() {
            first.remove(0);
        }
        if let Some(Piece::Lit(last)) = pieces.last_mut() {
            last.pop();
        }
        pieces.retain(|p| !matches!(p, Piece::Lit(l) if l.is_empty()));
        Ok(Wildcard { source: text.to_string(), pieces })
    }

    /// The value's bytes and stars including the enclosing quotes, as event-ruler's byte
    /// machine sees them (`None` is a star).
    pub(crate) fn machine_tokens(&self) -> Vec<Option<u8>> {
        let mut out = vec![Some(b'"')];
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.extend(l.iter().map(|b| Some(*b))),
                Piece::Star => out.push(None),
            }
        }
        out.push(Some(b'"'));
        out
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        glob(&self.pieces, text.as_bytes())
    }
}

/// Glob matching with `*` only: anchor the first and last literal, then place the middle
/// literals left-most. That is exact for star-only globs and linear-ish in practice.
fn glob(pieces: &[Piece], text: &[u8]) -> bool {
    let mut rest = text;
    let mut pieces = pieces;
    // Leading literal must be a prefix.
    if let Some(Piece::Lit(l)) = pieces.first() {
        if !rest.starts_with(l) {
            return false;
        }
        rest = &rest[l.len()..];
        pieces = &pieces[1..];
        if pieces.is_empty() {
            return rest.is_empty();
        }
    }
    // Trailing literal must be a suffix.
    if let Some(Piece::Lit(l)) = pieces.last() {
        if !rest.ends_with(l) {
            return false;
        }
        rest = &rest[..rest.len() - l.len()];
        pieces = &pieces[..pieces.len() - 1];
    }
    if pieces.is_empty() {
        return rest.is_empty();
    }
    // Now pieces start and end with a star; middle literals go to their first occurrence.
    for p in pieces {
        if let Piece::Lit(l) = p {
            match find(rest, l) {
                Some(at) => rest = &rest[at + l.len()..],
                None => return false,
            }
        }
    }
    true
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An `equals-ignore-case` value: per character, the strings event-ruler accepts in its place
/// (the character's lower- and upper-case forms, which may differ in length).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Folded {
    pub(crate) source: String,
    alternatives: Vec<Vec<String>>,
}

impl Folded {
    pub(crate) fn new(text: &str) -> Folded {
        let alternatives = text
            .chars()
            .map(|c| {
                let lower: String = c.to_lowercase().collect();
                let upper: String = c.to_uppercase().collect();
                if lower == upper { vec![lower] } else { vec![lower, upper] }
            })
            .collect();
        Folded { source: text.to_string(), alternatives }
    }

    /// Byte offsets reachable after matching all alternatives forward from `start`.
    fn forward(&self, text: &str) -> Vec<usize> {
        let mut at = vec![0usize];
        for alts in &self.alternatives {
            let mut next = Vec::new();
            for &p in &at {
                for a in alts {
                    if text[p..].starts_with(a.as_str()) && !next.contains(&(p + a.len())) {
                        next.push(p + a.len());
                    }
                }
            }
            if next.is_empty() {
                return next;
            }
            at = next;
        }
        at
    }

    pub(crate) fn equals(&self, text: &str) -> bool {
        self.forward(text).contains(&text.len())
    }

    pub(crate) fn is_prefix_of(&self, text: &str) -> bool {
        !self.forward(text).is_empty()
    }

    pub(crate) fn is_suffix_of(&self, text: &str) -> bool {
        let mut at = vec![text.len()];
        for alts in self.alternatives.iter().rev() {
            let mut next = Vec::new();
            for &p in &at {
                for a in alts {
                    if text[..p].ends_with(a.as_str()) && !next.contains(&(p - a.len())) {
                        next.push(p - a.len());
                    }
                }
            }
            if next.is_empty() {
                return false;
            }
            at = next;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching() {
        let w = Wildcard::parse("/Users/*/doc.txt").unwrap();
        assert!(w.matches("/Users/ls_user/dir/dir/doc.txt"));
        assert!(!w.matches("/Users/ls_user/dir/notdoc.txt.bak"));
        assert!(Wildcard::parse("*").unwrap().matches(""));
        assert!(Wildcard::parse("").unwrap().matches(""));
        assert!(!Wildcard::parse("").unwrap().matches("x"));
        assert!(Wildcard::parse("a*b*c").unwrap().matches("abc"));
        assert!(Wildcard::parse("a*b*c").unwrap().matches("aXbYbZc"));
        assert!(!Wildcard::parse("a*b*c").unwrap().matches("acb"));
        assert!(Wildcard::parse("*ab").unwrap().matches("aab"));
        assert!(Wildcard::parse(r"a\*b").unwrap().matches("a*b"));
        assert!(!Wildcard::parse(r"a\*b").unwrap().matches("axb"));
        assert!(Wildcard::parse(r"a\\b").unwrap().matches(r"a\b"));
    }

    #[test]
    fn wildcard_errors() {
        assert_eq!(
            Wildcard::parse("arn:aws:events:us-east-1:**:event-bus/*").unwrap_err(),
            "Consecutive wildcard characters at pos 26"
        );
        assert_eq!(Wildcard::parse(r"a\b").unwrap_err(), "Invalid escape character at pos 2");
        assert_eq!(Wildcard::parse(r"ab\").unwrap_err(), "Invalid escape character at pos 3");
    }

    #[test]
    fn case_folding() {
        let f = Folded::new("EventB");
        assert!(f.is_prefix_of("EvEnTbridge"));
        assert!(!f.equals("eventbridge"));
        assert!(f.equals("EVENTB"));
        assert!(Folded::new(".png").is_suffix_of("image.PNG"));
        assert!(Folded::new("straße").equals("STRASSE"));
        assert!(Folded::new("").equals(""));
        assert!(!Folded::new("").equals("x"));
    }
}
