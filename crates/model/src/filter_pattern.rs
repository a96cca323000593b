//! CloudWatch Logs filter patterns for unstructured log events: space-separated terms
//! that must all appear, `"quoted phrases"`, `-term` exclusions and `?term` alternatives.
//! (JSON and space-delimited patterns are refused for now, not silently mis-matched.)

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterPattern {
    required: Vec<String>,
    excluded: Vec<String>,
    any_of: Vec<String>,
}

impl FilterPattern {
    pub fn parse(pattern: &str) -> Result<FilterPattern, String> {
        let p = pattern.trim();
        if p.starts_with('{') || p.starts_with('[') {
            return Err(format!(
                "Filter pattern '{pattern}' uses JSON or space-delimited syntax, which Nimbus does not support yet"
            ));
        }
        let mut out = FilterPattern::default();
        let mut chars = p.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            let prefix = if c == '-' || c == '?' {
                chars.next();
                Some(c)
            } else {
                None
            };
            let term: String = if chars.peek() == Some(&'"') {
                chars.next();
                let mut t = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => {
                            if let Some(n) = chars.next() {
                                t.push(n);
                            }
                        }
                        Some(ch) => t.push(ch),
                        None => {
                            return Err(format!("Invalid filter pattern '{pattern}': unterminated quote"));
                        }
                    }
                }
                t
            } else {
                let mut t = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() {
                        break;
                    }
                    t.push(ch);
                    chars.next();
                }
                t
            };
            if term.is_empty() {
                continue;
            }
            match prefix {
                Some('-') => out.excluded.push(term),
                Some('?') => out.any_of.push(term),
                _ => out.required.push(term),
            }
        }
        Ok(out)
    }

    pub fn matches(&self, message: &str) -> bool {
        self.required.iter().all(|t| message.contains(t.as_str()))
            && !self.excluded.iter().any(|t| message.contains(t.as_str()))
            && (self.any_of.is_empty() || self.any_of.iter().any(|t| message.contains(t.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_phrases_exclusions_alternatives() {
        let p = FilterPattern::parse("ERROR \"request failed\" -retry").unwrap();
        assert!(p.matches("ERROR: request failed for x"));
        assert!(!p.matches("ERROR: request failed, retry later"));
        assert!(!p.matches("ERROR: failed request"));
        let p = FilterPattern::parse("?ERROR ?WARN").unwrap();
        assert!(p.matches("a WARN b"));
        assert!(!p.matches("INFO"));
        assert!(FilterPattern::parse("").unwrap().matches("anything"));
        assert!(FilterPattern::parse("{ $.level = \"x\" }").is_err());
        assert!(FilterPattern::parse("\"open").is_err());
    }
}
