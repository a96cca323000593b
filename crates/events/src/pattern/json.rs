//! A pull tokenizer for pattern text. Event-ruler compiles patterns token by token from
//! Jackson's streaming parser, so which error is reported first (and whether a duplicate key
//! overrides an earlier one) depends on document order; a tree parser would lose both.
//! Error texts follow Jackson's wording, without its location suffix.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    StartObject,
    EndObject,
    StartArray,
    EndArray,
    Field(String),
    Str(String),
    /// A number, kept as written (event-ruler reports and compares the literal text).
    Num(String),
    True,
    False,
    Null,
}

impl Token {
    /// Jackson's `getText()`, which event-ruler quotes in some messages.
    pub(crate) fn text(&self) -> String {
        match self {
            Token::StartObject => "{".into(),
            Token::EndObject => "}".into(),
            Token::StartArray => "[".into(),
            Token::EndArray => "]".into(),
            Token::Field(s) | Token::Str(s) | Token::Num(s) => s.clone(),
            Token::True => "true".into(),
            Token::False => "false".into(),
            Token::Null => "null".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ctx {
    Object,
    Array,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// A value is due: at the root or after a field name.
    Value,
    ObjStart,
    ObjNext,
    ArrStart,
    ArrNext,
    /// The root value is complete; event-ruler never reads past it.
    Done,
}

/// Jackson's default `StreamReadConstraints` nesting limit; it also bounds our recursion.
const MAX_DEPTH: usize = 1000;

const VALUE_LIST: &str = "(JSON String, Number, Array, Object or token 'null', 'true' or 'false')";

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    stack: Vec<Ctx>,
    state: State,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0, stack: Vec::new(), state: State::Value }
    }

    /// The next token, `None` at the end of input (Jackson's `null` token).
    pub(crate) fn next_token(&mut self) -> Result<Option<Token>, String> {
        match self.state {
            State::Done => Ok(None),
            State::Value => {
                self.skip_ws();
                match self.peek() {
                    None if self.stack.is_empty() => Ok(None),
                    None => Err(self.eof_error()),
                    Some(_) => self.value().map(Some),
                }
            }
            State::ObjStart => self.first_entry('}', Self::field_name),
            State::ObjNext => self.next_entry('}', "Object", Self::field_name),
            State::ArrStart => self.first_entry(']', Self::value),
            State::ArrNext => self.next_entry(']', "Array", Self::value),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        // JSON whitespace only: Jackson rejects other control characters.
        while let Some(c) = self.peek() {
            if matches!(c, ' ' | '\t' | '\n' | '\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Just inside `{` or `[`: `close` ends it at once, anything else starts an entry.
    fn first_entry(
        &mut self,
        close: char,
        entry: fn(&mut Self) -> Result<Token, String>,
    ) -> Result<Option<Token>, String> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.eof_error()),
            Some(c) if c == close => {
                self.pos += 1;
                Ok(Some(self.close()))
            }
            Some(_) => entry(self).map(Some),
        }
    }

    /// After an entry of an object or array: `close` ends it, a comma starts the next entry.
    fn next_entry(
        &mut self,
        close: char,
        kind: &str,
        entry: fn(&mut Self) -> Result<Token, String>,
    ) -> Result<Option<Token>, String> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.eof_error()),
            Some(c) if c == close => {
                self.pos += 1;
                Ok(Some(self.close()))
            }
            Some(',') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek().is_none() {
                    return Err(self.eof_error());
                }
                entry(self).map(Some)
            }
            Some(c) => Err(unexpected(c, &format!("was expecting comma to separate {kind} entries"))),
        }
    }

    fn eof_error(&self) -> String {
        match self.stack.last() {
            Some(Ctx::Array) => "Unexpected end-of-input: expected close marker for Array".into(),
            _ => "Unexpected end-of-input: expected close marker for Object".into(),
        }
    }

    fn after_value(&mut self) {
        self.state = match self.stack.last() {
            Some(Ctx::Object) => State::ObjNext,
            Some(Ctx::Array) => State::ArrNext,
            None => State::Done,
        };
    }

    fn close(&mut self) -> Token {
        let ctx = self.stack.pop();
        self.after_value();
        match ctx {
            Some(Ctx::Array) => Token::EndArray,
            _ => Token::EndObject,
        }
    }

    fn field_name(&mut self) -> Result<Token, String> {
        match self.peek() {
            Some('"') => {}
            Some(c) => return Err(unexpected(c, "was expecting double-quote to start field name")),
            None => return Err(self.eof_error()),
        }
        self.pos += 1;
        let name = self.string_body("name")?;
        self.skip_ws();
        match self.peek() {
            Some(':') => self.pos += 1,
            Some(c) => {
                return Err(unexpected(c, "was expecting a colon to separate field name and value"));
            }
            None => return Err(self.eof_error()),
        }
        self.state = State::Value;
        Ok(Token::Field(name))
    }

    fn value(&mut self) -> Result<Token, String> {
        let Some(c) = self.peek() else {
            return Err(self.eof_error());
        };
        match c {
            '{' | '[' if self.stack.len() >= MAX_DEPTH => Err(format!(
                "Document nesting depth ({}) exceeds the maximum allowed ({MAX_DEPTH}, from \
                 `StreamReadConstraints.getMaxNestingDepth()`)",
                self.stack.len() + 1
            )),
            '{' => {
                self.pos += 1;
                self.stack.push(Ctx::Object);
                self.state = State::ObjStart;
                Ok(Token::StartObject)
            }
            '[' => {
                self.pos += 1;
                self.stack.push(Ctx::Array);
                self.state = State::ArrStart;
                Ok(Token::StartArray)
            }
            '"' => {
                self.pos += 1;
                let s = self.string_body("string value")?;
                self.after_value();
                Ok(Token::Str(s))
            }
            '-' | '0'..='9' => {
                let n = self.number()?;
                self.after_value();
                Ok(Token::Num(n))
            }
            c if c.is_alphabetic() => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        self.pos += c.len_utf8();
                    } else {
                        break;
                    }
                }
                let word = &self.src[start..self.pos];
                let tok = match word {
                    "true" => Token::True,
                    "false" => Token::False,
                    "null" => Token::Null,
                    _ => return Err(format!("Unrecognized token '{word}': was expecting {VALUE_LIST}")),
                };
                self.after_value();
                Ok(tok)
            }
            c => Err(unexpected(c, &format!("expected a valid value {VALUE_LIST}"))),
        }
    }

    /// Reads a string after its opening quote. `what` names it in Jackson's messages.
    fn string_body(&mut self, what: &str) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!("Unexpected end-of-input: was expecting closing quote for a {what}"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err(format!(
                            "Unexpected end-of-input: was expecting closing quote for a {what}"
                        ));
                    };
                    self.pos += e.len_utf8();
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => {
                            let unit = self.hex4()?;
                            self.push_utf16(unit, &mut out)?;
                        }
                        other => {
                            return Err(format!(
                                "Unrecognized character escape '{other}' (code {})",
                                other as u32
                            ));
                        }
                    }
                }
                c if (c as u32) < 0x20 => {
                    return Err(format!(
                        "Illegal unquoted character ((CTRL-CHAR, code {})): has to be escaped using \
                         backslash to be included in {what}",
                        c as u32
                    ));
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u16, String> {
        let mut v: u16 = 0;
        for _ in 0..4 {
            let Some(c) = self.peek() else {
                return Err("Unexpected end-of-input in character escape sequence".into());
            };
            let Some(d) = c.to_digit(16) else {
                return Err(unexpected(c, "expected a hex-digit for character escape sequence"));
            };
            self.pos += 1;
            // Four hex digits fit a u16 by construction.
            v = (v << 4) | d as u16;
        }
        Ok(v)
    }

    /// Appends one `\u` escape, pairing surrogates. A lone surrogate (legal to Jackson, not to
    /// Rust strings) becomes U+FFFD.
    fn push_utf16(&mut self, unit: u16, out: &mut String) -> Result<(), String> {
        if (0xD800..0xDC00).contains(&unit) && self.src[self.pos..].starts_with("\\u") {
            let save = self.pos;
            self.pos += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + (((unit as u32) - 0xD800) << 10) + ((low as u32) - 0xDC00);
                out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                return Ok(());
            }
            self.pos = save;
        }
        out.push(char::from_u32(unit as u32).unwrap_or('\u{FFFD}'));
        Ok(())
    }

    fn number(&mut self) -> Result<String, String> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let at = |i: usize| bytes.get(i).copied();
        if at(self.pos) == Some(b'-') {
            self.pos += 1;
            match at(self.pos) {
                Some(b'0'..=b'9') => {}
                Some(_) => {
                    let c = self.peek().unwrap_or('?');
                    return Err(unexpected_numeric(
                        c,
                        "expected digit (0-9) to follow minus sign, for valid numeric value",
                    ));
                }
                None => return Err("Unexpected end-of-input in numeric value".into()),
            }
        }
        if at(self.pos) == Some(b'0') {
            self.pos += 1;
            if matches!(at(self.pos), Some(b'0'..=b'9')) {
                return Err("Invalid numeric value: Leading zeroes not allowed".into());
            }
        } else {
            while matches!(at(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        if at(self.pos) == Some(b'.') {
            self.pos += 1;
            if !matches!(at(self.pos), Some(b'0'..=b'9')) {
                return Err(self.numeric_tail_error("Decimal point not followed by a digit"));
            }
            while matches!(at(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        if matches!(at(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(at(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(at(self.pos), Some(b'0'..=b'9')) {
                return Err(self.numeric_tail_error("Exponent indicator not followed by a digit"));
            }
            while matches!(at(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn numeric_tail_error(&self, why: &str) -> String {
        match self.peek() {
            Some(c) => unexpected_numeric(c, why),
            None => "Unexpected end-of-input in numeric value".into(),
        }
    }
}

fn describe(c: char) -> String {
    if (c as u32) < 0x20 {
        format!("(CTRL-CHAR, code {})", c as u32)
    } else {
        format!("'{c}' (code {})", c as u32)
    }
}

fn unexpected(c: char, msg: &str) -> String {
    format!("Unexpected character ({}): {msg}", describe(c))
}

fn unexpected_numeric(c: char, msg: &str) -> String {
    format!("Unexpected character ({}) in numeric value: {msg}", describe(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(src: &str) -> Result<Vec<Token>, String> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        while let Some(t) = lx.next_token()? {
            out.push(t);
        }
        Ok(out)
    }

    #[test]
    fn tokenizes_nested_documents_in_order() {
        let toks = all(r#"{"b": [1, -2.5e3, "x\u00e9\n"], "a": {"c": true, "d": null}}"#).unwrap();
        assert_eq!(
            toks,
            vec![
                Token::StartObject,
                Token::Field("b".into()),
                Token::StartArray,
                Token::Num("1".into()),
                Token::Num("-2.5e3".into()),
                Token::Str("xé\n".into()),
                Token::EndArray,
                Token::Field("a".into()),
                Token::StartObject,
                Token::Field("c".into()),
                Token::True,
                Token::Field("d".into()),
                Token::Null,
                Token::EndObject,
                Token::EndObject,
            ]
        );
    }

    #[test]
    fn surrogate_pairs_combine() {
        assert_eq!(all(r#"["\ud83d\ude80"]"#).unwrap()[1], Token::Str("🚀".into()));
    }

    #[test]
    fn jackson_style_errors() {
        assert_eq!(
            all("this is valid json but not a dict").unwrap_err(),
            "Unrecognized token 'this': was expecting (JSON String, Number, Array, Object or token \
             'null', 'true' or 'false')"
        );
        assert_eq!(
            all("{'bad': 'quotation'}").unwrap_err(),
            "Unexpected character (''' (code 39)): was expecting double-quote to start field name"
        );
        assert_eq!(
            all(r#"{"not": closed mark""#).unwrap_err(),
            "Unrecognized token 'closed': was expecting (JSON String, Number, Array, Object or token \
             'null', 'true' or 'false')"
        );
        assert_eq!(all("[01]").unwrap_err(), "Invalid numeric value: Leading zeroes not allowed");
        assert!(all(r#"{"a": [1,]}"#).unwrap_err().starts_with("Unexpected character (']' (code 93))"));
        assert!(all(r#"{"a": [1}"#).unwrap_err().contains("comma to separate Array entries"));
        assert!(all(r#"{"a": 1"#).unwrap_err().contains("end-of-input"));
        let deep = format!("{}{}", "[".repeat(1001), "]".repeat(1001));
        assert!(all(&deep).unwrap_err().starts_with("Document nesting depth (1001) exceeds"));
        assert!(all(&format!("{}{}", "[".repeat(1000), "]".repeat(1000))).is_ok());
    }
}
