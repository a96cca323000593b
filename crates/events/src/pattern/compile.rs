//! Pattern text to sub-rules, mirroring event-ruler's `JsonRuleCompiler` token by token so that
//! the same inputs are refused with the same reason, in the same order.

use std::collections::BTreeMap;

use super::ip;
use super::json::{Lexer, Token};
use super::text::{Folded, Wildcard};
use super::{Exact, Matcher, Negated, NumRange, Number, SubRule};

/// Event-ruler's numbers live in [-5e9, 5e9].
pub(crate) const FIVE_BILLION: f64 = 5e9;

/// Sub-rules `$or` may fan out to. Event-ruler has no such cap; this keeps a hostile pattern
/// from exhausting memory (each `$or` multiplies the sub-rules).
pub(crate) const MAX_SUB_RULES: usize = 1024;

/// Field names event-ruler refuses inside `$or` objects.
const RESERVED_IN_OR: &[&str] = &[
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
];

/// A compile failure. `Json` and `Syntax` are Jackson's `JsonParseException` (event-ruler then
/// retries with its legacy compiler); `Illegal` is an `IllegalArgumentException`, not retried.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Malformed JSON (also a `JsonParseException`).
    Json(String),
    Syntax(String),
    Illegal(String),
}

type Result<T> = std::result::Result<T, Failure>;

fn barf<T>(msg: impl Into<String>) -> Result<T> {
    Err(Failure::Syntax(msg.into()))
}

type Rule = BTreeMap<String, Vec<Matcher>>;

/// Compiles pattern text. With `or_aware` false this is event-ruler's legacy compiler, for
/// which `$or` is an ordinary field name.
pub(crate) fn compile(src: &str, or_aware: bool) -> Result<Vec<SubRule>> {
    let mut c = Compiler { lx: Lexer::new(src), or_aware };
    if c.next()? != Some(Token::StartObject) {
        return barf("Filter is not an object");
    }
    let mut rules: Vec<Rule> = Vec::new();
    c.object(&mut rules, &mut Vec::new(), false)?;
    Ok(rules.into_iter().map(|r| SubRule { fields: r.into_iter().collect() }).collect())
}

struct Compiler<'a> {
    lx: Lexer<'a>,
    or_aware: bool,
}

impl Compiler<'_> {
    fn next(&mut self) -> Result<Option<Token>> {
        self.lx.next_token().map_err(Failure::Json)
    }

    /// The next token where the grammar guarantees one (end of input is a syntax error there).
    fn token(&mut self) -> Result<Token> {
        match self.next()? {
            Some(t) => Ok(t),
            None => barf("Unexpected end-of-input"),
        }
    }

    /// The members of an object whose `{` was just read. `in_or` means we are inside a `$or`
    /// branch, where reserved names are refused.
    fn object(&mut self, rules: &mut Vec<Rule>, path: &mut Vec<String>, in_or: bool) -> Result<()> {
        let mut any = false;
        loop {
            let name = match self.token()? {
                Token::EndObject => break,
                Token::Field(name) => name,
                // The lexer only yields field names or `}` here.
                other => return barf(format!("Unexpected token {}", other.text())),
            };
            any = true;
            if self.or_aware && name == "$or" {
                self.or(rules, path)?;
                continue;
            }
            if in_or && RESERVED_IN_OR.contains(&name.as_str()) {
                return barf(format!("{name} is Ruler reserved fieldName which cannot be used inside $or."));
            }
            match self.token()? {
                Token::StartObject => {
                    path.push(name);
                    self.object(rules, path, in_or)?;
                    path.pop();
                }
                Token::StartArray => {
                    let full = if path.is_empty() { name } else { format!("{}.{name}", path.join(".")) };
                    self.values(rules, full)?;
                }
                _ => return barf(format!("\"{name}\" must be an object or an array")),
            }
        }
        if !any {
            return barf("Empty objects are not allowed");
        }
        Ok(())
    }

    /// `"$or": [ {...}, {...} ]`: every branch forks a copy of the sub-rules built so far.
    fn or(&mut self, rules: &mut Vec<Rule>, path: &mut Vec<String>) -> Result<()> {
        let current = std::mem::take(rules);
        if self.token()? != Token::StartArray {
            return barf("It must be an Array followed with $or.");
        }
        let mut branches = 0;
        loop {
            match self.token()? {
                Token::EndArray => break,
                Token::StartObject => {
                    branches += 1;
                    let mut forked = current.clone();
                    if forked.is_empty() {
                        forked.push(Rule::new());
                    }
                    self.object(&mut forked, path, true)?;
                    rules.extend(forked);
                    if rules.len() > MAX_SUB_RULES {
                        return Err(Failure::Illegal(format!(
                            "Rule is too complex - $or expands to more than {MAX_SUB_RULES} combinations"
                        )));
                    }
                }
                _ => return barf("Only JSON object is allowed in array of $or relationship."),
            }
        }
        if branches < 2 {
            return barf("There must have at least 2 Objects in $or relationship.");
        }
        Ok(())
    }

    /// A field's value list, after its `[`. Later duplicates of a path override earlier ones,
    /// as event-ruler's default "rule overriding" does.
    fn values(&mut self, rules: &mut Vec<Rule>, name: String) -> Result<()> {
        let mut values = Vec::new();
        loop {
            match self.token()? {
                Token::EndArray => break,
                Token::StartObject => values.push(self.match_expression()?),
                Token::Str(s) => values.push(match ip::ip_bytes(&s) {
                    // A string that is an IP literal matches that address in any spelling.
                    Ok(bytes) => Matcher::Exact(Exact::Ip(bytes)),
                    Err(_) => Matcher::Exact(Exact::Str(s)),
                }),
                Token::Num(t) => values.push(Matcher::Exact(Exact::Number(Number::parse(&t)))),
                Token::True => values.push(Matcher::Exact(Exact::Bool(true))),
                Token::False => values.push(Matcher::Exact(Exact::Bool(false))),
                Token::Null => values.push(Matcher::Exact(Exact::Null)),
                _ => return barf("Match value must be String, number, true, false, or null"),
            }
        }
        if values.is_empty() {
            return barf("Empty arrays are not allowed");
        }
        if rules.is_empty() {
            rules.push(Rule::new());
        }
        for rule in rules.iter_mut() {
            rule.insert(name.clone(), values.clone());
        }
        Ok(())
    }

    /// Expects the `}` closing a match expression.
    fn end(&mut self) -> Result<()> {
        if self.token()? != Token::EndObject {
            return barf("Only one key allowed in match expression");
        }
        Ok(())
    }

    fn match_expression(&mut self) -> Result<Matcher> {
        let Token::Field(kind) = self.token()? else {
            return barf("Match expression name not found");
        };
        match kind.as_str() {
            "exactly" => {
                let Token::Str(s) = self.token()? else {
                    return barf("exact match pattern must be a string");
                };
                self.end()?;
                Ok(Matcher::Exact(Exact::Str(s)))
            }
            "prefix" => match self.token()? {
                Token::StartObject => Ok(Matcher::PrefixFold(self.folded_operand("Prefix", "prefix")?)),
                Token::Str(s) => {
                    self.end()?;
                    Ok(Matcher::Prefix(s))
                }
                _ => barf("prefix match pattern must be a string"),
            },
            "suffix" => match self.token()? {
                Token::StartObject => Ok(Matcher::SuffixFold(self.folded_operand("Suffix", "suffix")?)),
                Token::Str(s) => {
                    self.end()?;
                    Ok(Matcher::Suffix(s))
                }
                _ => barf("suffix match pattern must be a string"),
            },
            "numeric" => {
                if self.token()? != Token::StartArray {
                    return barf("Value of numeric must be an array.");
                }
                let range = self.numeric()?;
                if self.token()? != Token::EndObject {
                    return barf("Too many elements in numeric expression");
                }
                Ok(range)
            }
            "anything-but" => self.anything_but(),
            "exists" => {
                let m = match self.token()? {
                    Token::True => Matcher::Exists,
                    Token::False => Matcher::Absent,
                    _ => return barf("exists match pattern must be either true or false."),
                };
                self.end()?;
                Ok(m)
            }
            "cidr" => {
                let Token::Str(s) = self.token()? else {
                    // Event-ruler's message, copied from its prefix branch.
                    return barf("prefix match pattern must be a string");
                };
                let range = ip::cidr(&s).map_err(Failure::Illegal)?;
                self.end()?;
                Ok(Matcher::Cidr(range))
            }
            "equals-ignore-case" => {
                let Token::Str(s) = self.token()? else {
                    return barf("equals-ignore-case match pattern must be a string");
                };
                self.end()?;
                Ok(Matcher::EqualsFold(Folded::new(&s)))
            }
            "wildcard" => {
                let Token::Str(s) = self.token()? else {
                    return barf("wildcard match pattern must be a string");
                };
                let w = Wildcard::parse(&s).map_err(Failure::Syntax)?;
                self.end()?;
                Ok(Matcher::Wildcard(w))
            }
            _ => barf(format!("Unrecognized match type {kind}")),
        }
    }

    /// `{"prefix": {"equals-ignore-case": "…"}}` (and suffix), after the inner `{`.
    fn folded_operand(&mut self, title: &str, kind: &str) -> Result<Folded> {
        let Token::Field(op) = self.token()? else {
            return barf(format!("{title} expression name not found"));
        };
        if op != "equals-ignore-case" {
            return barf(format!("Unsupported {kind} pattern: {op}"));
        }
        let Token::Str(s) = self.token()? else {
            return barf("equals-ignore-case match pattern must be a string");
        };
        self.end()?;
        self.end()?;
        Ok(Folded::new(&s))
    }

    fn anything_but(&mut self) -> Result<Matcher> {
        #[derive(PartialEq, Clone, Copy)]
        enum Kind {
            Plain,
            IgnoreCase,
            Prefix,
            Suffix,
            Wildcard,
        }
        let mut kind = Kind::Plain;
        let mut tok = self.token()?;
        if tok == Token::StartObject {
            let Token::Field(op) = self.token()? else {
                return barf("Anything-But expression name not found");
            };
            kind = match op.as_str() {
                "equals-ignore-case" => Kind::IgnoreCase,
                "prefix" => Kind::Prefix,
                "suffix" => Kind::Suffix,
                "wildcard" => Kind::Wildcard,
                _ => return barf(format!("Unsupported anything-but pattern: {op}")),
            };
            tok = self.token()?;
        }
        if !matches!(tok, Token::StartArray | Token::Str(_) | Token::Num(_)) {
            return barf("Value of anything-but must be an array or single string/number value.");
        }

        let negated = if kind == Kind::Plain {
            let items = if tok == Token::StartArray {
                let mut items = Vec::new();
                loop {
                    match self.token()? {
                        Token::EndArray => break,
                        t @ Token::Str(_) => items.push(t),
                        // Each number is range-checked as it is read, as event-ruler does.
                        t @ Token::Num(_) => {
                            check_comparable(Number::parse(&t.text()).float).map_err(Failure::Syntax)?;
                            items.push(t);
                        }
                        _ => return barf("Inside anything but list, start|null|boolean is not supported."),
                    }
                }
                let strings = items.iter().filter(|t| matches!(t, Token::Str(_))).count();
                if items.is_empty() || (strings != 0 && strings != items.len()) {
                    return barf(
                        "Inside anything but list, either all values are number or string, mixed type \
                         is not supported",
                    );
                }
                items
            } else {
                vec![tok]
            };
            if let Some(Token::Str(_)) = items.first() {
                let mut set: Vec<String> = items
                    .into_iter()
                    .filter_map(|t| if let Token::Str(s) = t { Some(s) } else { None })
                    .collect();
                set.sort();
                set.dedup();
                Negated::Strings(set)
            } else {
                let mut set = Vec::new();
                for t in items {
                    let n = Number::parse(&t.text());
                    check_comparable(n.float).map_err(Failure::Illegal)?;
                    set.push(n);
                }
                set.sort_by(|a, b| a.float.total_cmp(&b.float));
                set.dedup();
                Negated::Numbers(set)
            }
        } else {
            let wrong_type = match kind {
                Kind::IgnoreCase => {
                    "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported."
                }
                Kind::Wildcard => "wildcard match pattern must be a string",
                _ => "prefix/suffix match pattern must be a string",
            };
            let mut texts = Vec::new();
            let mut take = |t: Token| -> Result<()> {
                let Token::Str(s) = t else {
                    return barf(wrong_type);
                };
                if matches!(kind, Kind::Prefix | Kind::Suffix) && s.is_empty() {
                    return barf("Null prefix/suffix not allowed");
                }
                texts.push(s);
                Ok(())
            };
            if tok == Token::StartArray {
                loop {
                    match self.token()? {
                        Token::EndArray => break,
                        t => take(t)?,
                    }
                }
            } else {
                take(tok)?;
            }
            texts.sort();
            texts.dedup();
            match kind {
                Kind::IgnoreCase => Negated::Folded(texts.iter().map(|s| Folded::new(s)).collect()),
                Kind::Prefix => Negated::Prefixes(texts),
                Kind::Suffix => Negated::Suffixes(texts),
                _ => {
                    let mut ws = Vec::new();
                    for s in &texts {
                        ws.push(Wildcard::parse(s).map_err(Failure::Syntax)?);
                    }
                    Negated::Wildcards(ws)
                }
            }
        };

        if self.token()? != Token::EndObject {
            return barf("Too many elements in numeric expression");
        }
        if kind != Kind::Plain && self.token()? != Token::EndObject {
            return barf("Too many elements in numeric expression");
        }
        Ok(Matcher::AnythingBut(negated))
    }

    /// The inside of `"numeric": [ … ]`, after the `[`.
    fn numeric(&mut self) -> Result<Matcher> {
        let op = match self.token()? {
            Token::Str(op) => op,
            t => return barf(format!("Invalid member in numeric match: {}", t.text())),
        };
        let value = self.token()?;
        let operand = |name: &str, t: &Token| -> Result<f64> {
            match t {
                Token::Num(text) => Ok(Number::parse(text).float),
                _ => barf(format!("Value of {name} must be numeric")),
            }
        };
        match op.as_str() {
            "=" => {
                let v = operand("equals", &value)?;
                if self.token()? != Token::EndArray {
                    return barf("Too many elements in numeric expression");
                }
                check_comparable(v).map_err(Failure::Syntax)?;
                Ok(Matcher::Numeric(NumRange::equals(v)))
            }
            ">=" | ">" => {
                let bottom = operand(&op, &value)?;
                let open_bottom = op == ">";
                match self.token()? {
                    Token::EndArray => range(bottom, open_bottom, FIVE_BILLION, false),
                    Token::Str(op2) => {
                        let open_top = match op2.as_str() {
                            "<" => true,
                            "<=" => false,
                            _ => return barf(format!("Bad numeric range operator: {op2}")),
                        };
                        let top = operand(&op2, &self.token()?)?;
                        if self.token()? != Token::EndArray {
                            return barf("Too many terms in numeric range expression");
                        }
                        range(bottom, open_bottom, top, open_top)
                    }
                    t => barf(format!("Bad value in numeric range: {}", t.text())),
                }
            }
            "<=" | "<" => {
                let top = operand(&op, &value)?;
                if self.token()? != Token::EndArray {
                    return barf("Too many elements in numeric expression");
                }
                range(-FIVE_BILLION, false, top, op == "<")
            }
            _ => barf(format!("Unrecognized numeric range operator: {op}")),
        }
    }
}

/// Event-ruler's `ComparableNumber` range.
fn check_comparable(v: f64) -> std::result::Result<(), String> {
    if (-FIVE_BILLION..=FIVE_BILLION).contains(&v) {
        Ok(())
    } else {
        Err("Value must be between -5.0E9 and 5.0E9, inclusive".into())
    }
}

/// Event-ruler's `Range` constructor: the order of its checks decides the message.
fn range(bottom: f64, open_bottom: bool, top: f64, open_top: bool) -> Result<Matcher> {
    if bottom >= top || bottom.is_nan() || top.is_nan() {
        return barf("Bottom must be less than top");
    }
    check_comparable(bottom).map_err(Failure::Syntax)?;
    check_comparable(top).map_err(Failure::Syntax)?;
    Ok(Matcher::Numeric(NumRange { bottom, open_bottom, top, open_top }))
}
