//! The JSONPath subset Step Functions accepts (it runs Jayway JsonPath): `$`, `$$`
//! (context object), `$name` (workflow variables), `.field`, `['field']`, `[n]` (negative
//! from the end), `[*]`, `[start:end:step]`, unions, `..` (recursive descent), filters
//! `[?(@.x == 1)]` and `[(@.length-1)]`. Also the `ResultPath` setter.

use crate::error::{EvalError, SyntaxError};
use serde_json::{Map, Value};
use std::fmt;

/// What a path starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    /// `$`: the effective input of the state.
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a workflow variable.
    Variable(String),
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// `.name` or `['name']`.
    Name(String),
    /// `[n]`; negative counts from the end.
    Index(i64),
    /// `.*` or `[*]`.
    Wildcard,
    /// `[start:end:step]`.
    Slice { start: Option<i64>, end: Option<i64>, step: Option<i64> },
    /// `['a','b']`.
    Names(Vec<String>),
    /// `[0,2]`.
    Indexes(Vec<i64>),
    /// `[?(...)]`.
    Filter(Box<Filter>),
    /// `[(@.length-n)]`: the element `n` from the end.
    LengthOffset(i64),
}

/// A selector, possibly applied recursively (`..`).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// `..` before the selector: apply to the node and all its descendants.
    pub descendant: bool,
    /// The selector.
    pub selector: Selector,
}

/// A filter expression inside `[?( )]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// A bare operand: true when it exists (and is not `false`/`null` for literals).
    Exists(Operand),
    Compare(Operand, CompareOp, Operand),
}

/// Comparison operators in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=~ /regex/`: parsed (Jayway accepts it) but not evaluated.
    Matches,
}

/// A value in a filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `@...`: relative to the element being filtered.
    Current(Vec<Segment>),
    /// `$...`: relative to the path's root document.
    Root(Vec<Segment>),
    /// A JSON literal; an unquoted word is taken as a string (Jayway is as lenient).
    Literal(Value),
    /// `/regex/flags`.
    Regex(String),
}

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    root: Root,
    segments: Vec<Segment>,
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The data a path can read: the state's input, the context object and the variables
/// in scope.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// What `$` refers to.
    pub input: &'a Value,
    /// What `$$` refers to.
    pub context: &'a Value,
    /// What `$name` refers to.
    pub variables: &'a Map<String, Value>,
}

impl JsonPath {
    /// Parses a path, checking its syntax.
    pub fn parse(text: &str) -> Result<JsonPath, SyntaxError> {
        let mut p = Parser { chars: text.chars().collect(), pos: 0, depth: 0 };
        let root = p.root()?;
        let segments = p.segments(false)?;
        if p.pos != p.chars.len() {
            return Err(SyntaxError::new(format!("unexpected character '{}'", p.chars[p.pos])));
        }
        Ok(JsonPath { text: text.to_string(), root, segments })
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the path starts from.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The steps after the root.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// A Reference Path (spec): only field names and indexes, so it names one node.
    pub fn is_reference(&self) -> bool {
        self.segments
            .iter()
            .all(|s| !s.descendant && matches!(s.selector, Selector::Name(_) | Selector::Index(_)))
    }

    /// True when the path can match at most one node (Jayway returns the node itself
    /// rather than a list of matches).
    pub fn is_definite(&self) -> bool {
        self.segments.iter().all(|s| {
            !s.descendant
                && matches!(s.selector, Selector::Name(_) | Selector::Index(_) | Selector::LengthOffset(_))
        })
    }

    /// Evaluates the path. `Ok(None)` means a definite path matched nothing (callers turn
    /// that into AWS's "could not be found" failure); an indefinite path that matches
    /// nothing gives `[]`.
    pub fn select(&self, scope: Scope<'_>) -> Result<Option<Value>, EvalError> {
        let start = match &self.root {
            Root::Input => scope.input,
            Root::Context => scope.context,
            Root::Variable(name) => match scope.variables.get(name) {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        let nodes = apply_segments(start, &self.segments, scope.input)?;
        if self.is_definite() {
            Ok(nodes.first().map(|v| (*v).clone()))
        } else {
            Ok(Some(Value::Array(nodes.into_iter().cloned().collect())))
        }
    }

    /// Writes `value` into `target` at this (reference) path, creating missing
    /// intermediate objects; `$` replaces the whole document. This is how `ResultPath`
    /// combines a state's input with its result.
    pub fn set(&self, target: Value, value: Value) -> Result<Value, EvalError> {
        if self.root != Root::Input || !self.is_reference() {
            return Err(EvalError::runtime(format!(
                "The ResultPath '{}' is not a valid reference path",
                self.text
            )));
        }
        let mut target = target;
        let slot = set_at(&mut target, &self.segments, &self.text)?;
        *slot = value;
        Ok(target)
    }
}

fn set_at<'v>(node: &'v mut Value, segments: &[Segment], text: &str) -> Result<&'v mut Value, EvalError> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(node);
    };
    let child = match (&first.selector, node) {
        (Selector::Name(name), Value::Object(map)) => {
            map.entry(name.clone()).or_insert_with(|| Value::Object(Map::new()))
        }
        (Selector::Index(i), Value::Array(items)) => {
            let len = items.len() as i64;
            let idx = if *i < 0 { len + i } else { *i };
            match usize::try_from(idx).ok().and_then(|idx| items.get_mut(idx)) {
                Some(v) => v,
                None => {
                    return Err(EvalError::runtime(format!(
                        "Unable to apply ResultPath '{text}': index {i} is out of bounds"
                    )));
                }
            }
        }
        (_, other) => {
            return Err(EvalError::runtime(format!(
                "Unable to apply ResultPath '{text}' to input: a {} cannot hold a field",
                type_name(other)
            )));
        }
    };
    set_at(child, rest, text)
}

/// JSON type name as AWS prints it in errors.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn apply_segments<'a>(
    start: &'a Value,
    segments: &[Segment],
    doc: &'a Value,
) -> Result<Vec<&'a Value>, EvalError> {
    let mut nodes = vec![start];
    for seg in segments {
        let mut next = Vec::new();
        for node in nodes {
            if seg.descendant {
                let mut all = Vec::new();
                descendants(node, &mut all);
                for d in all {
                    apply_selector(d, &seg.selector, doc, &mut next)?;
                }
            } else {
                apply_selector(node, &seg.selector, doc, &mut next)?;
            }
        }
        nodes = next;
    }
    Ok(nodes)
}

fn descendants<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    match node {
        Value::Array(items) => items.iter().for_each(|v| descendants(v, out)),
        Value::Object(map) => map.values().for_each(|v| descendants(v, out)),
        _ => {}
    }
}

fn index(items: &[Value], i: i64) -> Option<&Value> {
    let idx = if i < 0 { items.len() as i64 + i } else { i };
    usize::try_from(idx).ok().and_then(|idx| items.get(idx))
}

fn apply_selector<'a>(
    node: &'a Value,
    sel: &Selector,
    doc: &'a Value,
    out: &mut Vec<&'a Value>,
) -> Result<(), EvalError> {
    match sel {
        Selector::Name(name) => {
            if let Some(v) = node.as_object().and_then(|m| m.get(name)) {
                out.push(v);
            }
        }
        Selector::Names(names) => {
            if let Some(m) = node.as_object() {
                out.extend(names.iter().filter_map(|n| m.get(n)));
            }
        }
        Selector::Index(i) => {
            if let Some(v) = node.as_array().and_then(|a| index(a, *i)) {
                out.push(v);
            }
        }
        Selector::Indexes(is) => {
            if let Some(a) = node.as_array() {
                out.extend(is.iter().filter_map(|i| index(a, *i)));
            }
        }
        Selector::LengthOffset(k) => {
            if let Some(a) = node.as_array() {
                let idx = a.len() as i64 + k;
                if idx >= 0
                    && let Some(v) = index(a, idx)
                {
                    out.push(v);
                }
            }
        }
        Selector::Wildcard => match node {
            Value::Array(items) => out.extend(items.iter()),
            Value::Object(map) => out.extend(map.values()),
            _ => {}
        },
        Selector::Slice { start, end, step } => {
            if let Some(items) = node.as_array() {
                slice(items, *start, *end, *step, out);
            }
        }
        Selector::Filter(filter) => {
            let children: Vec<&Value> = match node {
                Value::Array(items) => items.iter().collect(),
                Value::Object(map) => map.values().collect(),
                _ => Vec::new(),
            };
            for child in children {
                if eval_filter(filter, child, doc)? {
                    out.push(child);
                }
            }
        }
    }
    Ok(())
}

fn slice<'a>(
    items: &'a [Value],
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
    out: &mut Vec<&'a Value>,
) {
    let len = items.len() as i64;
    let step = step.unwrap_or(1);
    if step == 0 {
        return;
    }
    let norm = |v: i64| if v < 0 { (len + v).max(0) } else { v.min(len) };
    if step > 0 {
        let (s, e) = (norm(start.unwrap_or(0)), norm(end.unwrap_or(len)));
        let mut i = s;
        while i < e {
            if let Some(v) = usize::try_from(i).ok().and_then(|i| items.get(i)) {
                out.push(v);
            }
            i += step;
        }
    } else {
        let s = start.map_or(len - 1, |v| if v < 0 { len + v } else { v.min(len - 1) });
        let e = end.map_or(-1, |v| if v < 0 { (len + v).max(-1) } else { v });
        let mut i = s;
        while i > e {
            if let Some(v) = usize::try_from(i).ok().and_then(|i| items.get(i)) {
                out.push(v);
            }
            i += step;
        }
    }
}

fn operand_value(op: &Operand, current: &Value, doc: &Value) -> Result<Option<Value>, EvalError> {
    let (start, segs) = match op {
        Operand::Literal(v) => return Ok(Some(v.clone())),
        Operand::Regex(r) => return Ok(Some(Value::String(r.clone()))),
        Operand::Current(segs) => (current, segs),
        Operand::Root(segs) => (doc, segs),
    };
    let nodes = apply_segments(start, segs, doc)?;
    Ok(match nodes.len() {
        0 => None,
        1 => Some(nodes[0].clone()),
        _ => Some(Value::Array(nodes.into_iter().cloned().collect())),
    })
}

fn eval_filter(f: &Filter, current: &Value, doc: &Value) -> Result<bool, EvalError> {
    Ok(match f {
        Filter::Or(a, b) => eval_filter(a, current, doc)? || eval_filter(b, current, doc)?,
        Filter::And(a, b) => eval_filter(a, current, doc)? && eval_filter(b, current, doc)?,
        Filter::Not(a) => !eval_filter(a, current, doc)?,
        Filter::Exists(op) => match op {
            Operand::Current(_) | Operand::Root(_) => operand_value(op, current, doc)?.is_some(),
            Operand::Literal(v) => !matches!(v, Value::Null | Value::Bool(false)),
            Operand::Regex(_) => true,
        },
        Filter::Compare(a, op, b) => {
            if *op == CompareOp::Matches {
                return Err(EvalError::runtime(
                    "Regular expression filters (=~) in JSONPath are not supported",
                ));
            }
            let (Some(x), Some(y)) = (operand_value(a, current, doc)?, operand_value(b, current, doc)?)
            else {
                return Ok(*op == CompareOp::Ne);
            };
            compare(&x, *op, &y)
        }
    })
}

fn compare(x: &Value, op: CompareOp, y: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (x, y) {
        (Value::Number(a), Value::Number(b)) => {
            a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b))
        }
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        CompareOp::Eq => ord.map_or(x == y, |o| o == Ordering::Equal),
        CompareOp::Ne => ord.map_or(x != y, |o| o != Ordering::Equal),
        CompareOp::Lt => ord == Some(Ordering::Less),
        CompareOp::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Gt => ord == Some(Ordering::Greater),
        CompareOp::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        CompareOp::Matches => false,
    }
}

/// Characters that end a dot-notation field name.
fn ends_name(c: char) -> bool {
    c.is_whitespace() || ".[]()'\",*?@$=!<>&|".contains(c)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    /// Nesting of brackets, filters and parentheses: bounded so a hostile path cannot
    /// exhaust the stack.
    depth: usize,
}

/// Deepest nesting a path may have.
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.pos + n).copied()
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: char) -> Result<(), SyntaxError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(SyntaxError::new(match self.peek() {
                Some(got) => format!("expected '{c}' but found '{got}'"),
                None => format!("expected '{c}' but the path ended"),
            }))
        }
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn root(&mut self) -> Result<Root, SyntaxError> {
        if !self.eat('$') {
            return Err(SyntaxError::new("a path must start with '$'"));
        }
        if self.eat('$') {
            return Ok(Root::Context);
        }
        if self.peek().is_some_and(|c| c.is_alphabetic() || c == '_') {
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                self.pos += 1;
            }
            return Ok(Root::Variable(self.chars[start..self.pos].iter().collect()));
        }
        Ok(Root::Input)
    }

    /// Segments until the end of input, or (inside a filter) until a character that
    /// cannot continue a path.
    fn segments(&mut self, in_filter: bool) -> Result<Vec<Segment>, SyntaxError> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                '.' => {
                    self.pos += 1;
                    let descendant = self.eat('.');
                    let selector = if descendant && self.peek() == Some('[') {
                        self.bracket()?
                    } else if self.eat('*') {
                        Selector::Wildcard
                    } else {
                        Selector::Name(self.name()?)
                    };
                    out.push(Segment { descendant, selector });
                }
                '[' => {
                    let selector = self.bracket()?;
                    out.push(Segment { descendant: false, selector });
                }
                _ if in_filter => break,
                other => return Err(SyntaxError::new(format!("unexpected character '{other}'"))),
            }
        }
        Ok(out)
    }

    fn name(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| !ends_name(c)) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(SyntaxError::new(match self.peek() {
                Some(c) => format!("expected a field name but found '{c}'"),
                None => "expected a field name but the path ended".to_string(),
            }));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn quoted(&mut self) -> Result<String, SyntaxError> {
        let Some(q) = self.peek().filter(|c| *c == '\'' || *c == '"') else {
            return Err(SyntaxError::new("expected a quoted string"));
        };
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(SyntaxError::new("unterminated string")),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) => s.push(c),
                        None => return Err(SyntaxError::new("unterminated string")),
                    }
                    self.pos += 1;
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn int(&mut self) -> Result<Option<i64>, SyntaxError> {
        self.skip_ws();
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Ok(None);
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        let n = text.parse::<i64>().map_err(|_| SyntaxError::new(format!("invalid index '{text}'")))?;
        self.skip_ws();
        Ok(Some(n))
    }

    fn nest(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError::new(format!("the path is nested more than {MAX_DEPTH} deep")));
        }
        Ok(())
    }

    fn bracket(&mut self) -> Result<Selector, SyntaxError> {
        self.nest()?;
        let sel = self.bracket_inner();
        self.depth -= 1;
        sel
    }

    fn bracket_inner(&mut self) -> Result<Selector, SyntaxError> {
        self.expect('[')?;
        self.skip_ws();
        let sel = match self.peek() {
            Some('*') => {
                self.pos += 1;
                Selector::Wildcard
            }
            Some('?') => {
                self.pos += 1;
                self.skip_ws();
                self.expect('(')?;
                let f = self.filter_or()?;
                self.skip_ws();
                self.expect(')')?;
                Selector::Filter(Box::new(f))
            }
            Some('(') => {
                self.pos += 1;
                self.length_script()?
            }
            Some('\'' | '"') => {
                let mut names = vec![self.quoted()?];
                self.skip_ws();
                while self.eat(',') {
                    self.skip_ws();
                    names.push(self.quoted()?);
                    self.skip_ws();
                }
                if names.len() == 1 { Selector::Name(names.remove(0)) } else { Selector::Names(names) }
            }
            _ => {
                let first = self.int()?;
                if self.peek() == Some(':') {
                    self.pos += 1;
                    let end = self.int()?;
                    let step = if self.eat(':') { self.int()? } else { None };
                    Selector::Slice { start: first, end, step }
                } else {
                    let Some(first) = first else {
                        return Err(SyntaxError::new(
                            "expected an index, a slice, '*', a quoted name or a filter inside '[ ]'",
                        ));
                    };
                    let mut idx = vec![first];
                    while self.eat(',') {
                        match self.int()? {
                            Some(n) => idx.push(n),
                            None => return Err(SyntaxError::new("expected an index after ','")),
                        }
                    }
                    if idx.len() == 1 { Selector::Index(first) } else { Selector::Indexes(idx) }
                }
            }
        };
        self.skip_ws();
        self.expect(']')?;
        Ok(sel)
    }

    /// `(@.length)` or `(@.length - n)`, after the opening parenthesis.
    fn length_script(&mut self) -> Result<Selector, SyntaxError> {
        self.skip_ws();
        let word: String = "@.length".to_string();
        for c in word.chars() {
            if !self.eat(c) {
                return Err(SyntaxError::new("only (@.length-n) scripts are supported in '[ ]'"));
            }
        }
        self.skip_ws();
        let offset = if self.eat('-') {
            -self.int()?.ok_or_else(|| SyntaxError::new("expected a number after '-'"))?
        } else if self.eat('+') {
            self.int()?.ok_or_else(|| SyntaxError::new("expected a number after '+'"))?
        } else {
            0
        };
        self.skip_ws();
        self.expect(')')?;
        Ok(Selector::LengthOffset(offset))
    }

    fn filter_or(&mut self) -> Result<Filter, SyntaxError> {
        let mut left = self.filter_and()?;
        loop {
            self.skip_ws();
            if self.peek() == Some('|') && self.peek_at(1) == Some('|') {
                self.pos += 2;
                let right = self.filter_and()?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn filter_and(&mut self) -> Result<Filter, SyntaxError> {
        let mut left = self.filter_unary()?;
        loop {
            self.skip_ws();
            if self.peek() == Some('&') && self.peek_at(1) == Some('&') {
                self.pos += 2;
                let right = self.filter_unary()?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn filter_unary(&mut self) -> Result<Filter, SyntaxError> {
        self.nest()?;
        let f = self.filter_unary_inner();
        self.depth -= 1;
        f
    }

    fn filter_unary_inner(&mut self) -> Result<Filter, SyntaxError> {
        self.skip_ws();
        if self.peek() == Some('!') && self.peek_at(1) != Some('=') {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.filter_unary()?)));
        }
        if self.eat('(') {
            let inner = self.filter_or()?;
            self.skip_ws();
            self.expect(')')?;
            return Ok(inner);
        }
        let left = self.operand()?;
        self.skip_ws();
        let op = match (self.peek(), self.peek_at(1)) {
            (Some('='), Some('=')) => Some((CompareOp::Eq, 2)),
            (Some('='), Some('~')) => Some((CompareOp::Matches, 2)),
            (Some('!'), Some('=')) => Some((CompareOp::Ne, 2)),
            (Some('<'), Some('=')) => Some((CompareOp::Le, 2)),
            (Some('>'), Some('=')) => Some((CompareOp::Ge, 2)),
            (Some('<'), _) => Some((CompareOp::Lt, 1)),
            (Some('>'), _) => Some((CompareOp::Gt, 1)),
            _ => None,
        };
        match op {
            None => Ok(Filter::Exists(left)),
            Some((op, width)) => {
                self.pos += width;
                self.skip_ws();
                let right = self.operand()?;
                Ok(Filter::Compare(left, op, right))
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, SyntaxError> {
        self.skip_ws();
        match self.peek() {
            Some('@') => {
                self.pos += 1;
                Ok(Operand::Current(self.segments(true)?))
            }
            Some('$') => {
                self.pos += 1;
                Ok(Operand::Root(self.segments(true)?))
            }
            Some('\'' | '"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            Some('/') => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '/') {
                    if self.peek() == Some('\\') {
                        self.pos += 1;
                    }
                    self.pos += 1;
                }
                let re: String = self.chars[start..self.pos.min(self.chars.len())].iter().collect();
                self.expect('/')?;
                while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                    self.pos += 1;
                }
                Ok(Operand::Regex(re))
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                Ok(Operand::Literal(Value::Number(lex_number(&self.chars, &mut self.pos)?)))
            }
            Some(c) if c.is_alphanumeric() || c == '_' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                Ok(Operand::Literal(match word.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => Value::String(word),
                }))
            }
            Some(c) => Err(SyntaxError::new(format!("unexpected '{c}' in filter expression"))),
            None => Err(SyntaxError::new("unterminated filter expression")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(path: &str, input: &Value) -> Option<Value> {
        let empty = Map::new();
        let ctx = json!({"Execution": {"Id": "arn:exec"}});
        JsonPath::parse(path).unwrap().select(Scope { input, context: &ctx, variables: &empty }).unwrap()
    }

    #[test]
    fn syntax_accepted() {
        for p in [
            "$",
            "$$",
            "$.a",
            "$.a.b",
            "$['a b']",
            "$.a[0]",
            "$.a[-2]",
            "$.a[*]",
            "$.a[1:]",
            "$.a[:2]",
            "$.a[::2]",
            "$..b",
            "$..[0]",
            "$.*",
            "$.a[0,1]",
            "$['a','b']",
            "$$.Execution.Id",
            "$var.x",
            "$.input-foo-bar",
            "$[(@.length-1)].bar",
            "$.a[?(@.k == FooBar)].v",
            "$.a[?(@.p < 10 && @.q)]",
            "$.a[?(@.name =~ /x.*/i)]",
            "$.a[?(!@.flag)]",
        ] {
            assert!(JsonPath::parse(p).is_ok(), "{p} should parse");
        }
    }

    #[test]
    fn syntax_rejected() {
        for p in [
            ".guid",
            "..guid",
            "()",
            "$...",
            "$.",
            "bug$.library",
            "$.a[",
            "$.a[x]",
            "$[?(@.a ==)]",
            "ipsum",
            "$.a b",
            "",
        ] {
            assert!(JsonPath::parse(p).is_err(), "{p} should be rejected");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("$[?({}@.a{})]", "(".repeat(100_000), ")".repeat(100_000));
        assert!(JsonPath::parse(&deep).is_err());
        let bangs = format!("$[?({}@.a)]", "!".repeat(100_000));
        assert!(JsonPath::parse(&bangs).is_err());
        assert!(JsonPath::parse("$[?(!(@.a && (@.b || !@.c)))]").is_ok());
    }

    #[test]
    fn reference_paths() {
        assert!(JsonPath::parse("$.a['b'][0]").unwrap().is_reference());
        assert!(!JsonPath::parse("$.a[*]").unwrap().is_reference());
        assert!(!JsonPath::parse("$..a").unwrap().is_reference());
    }

    #[test]
    fn selects_like_jayway() {
        let doc = json!({"a": {"b": [1, 2, 3, 4]}, "books": [{"p": 5, "t": "x"}, {"p": 15, "t": "y"}], "k-1": true});
        assert_eq!(sel("$.a.b[0]", &doc), Some(json!(1)));
        assert_eq!(sel("$.a.b[-1]", &doc), Some(json!(4)));
        assert_eq!(sel("$.a.b[1:3]", &doc), Some(json!([2, 3])));
        assert_eq!(sel("$.a.b[:2]", &doc), Some(json!([1, 2])));
        assert_eq!(sel("$.a.b[-2:]", &doc), Some(json!([3, 4])));
        assert_eq!(sel("$.a.b[::2]", &doc), Some(json!([1, 3])));
        assert_eq!(sel("$.a.b[*]", &doc), Some(json!([1, 2, 3, 4])));
        assert_eq!(sel("$.a.b[0,2]", &doc), Some(json!([1, 3])));
        assert_eq!(sel("$.books[?(@.p < 10)].t", &doc), Some(json!(["x"])));
        assert_eq!(sel("$.books[?(@.t == 'y')].p", &doc), Some(json!([15])));
        assert_eq!(sel("$..t", &doc), Some(json!(["x", "y"])));
        assert_eq!(sel("$.books[(@.length-1)].t", &doc), Some(json!("y")));
        assert_eq!(sel("$['k-1']", &doc), Some(json!(true)));
        assert_eq!(sel("$.k-1", &doc), Some(json!(true)));
        assert_eq!(sel("$.missing", &doc), None);
        assert_eq!(sel("$.missing[*]", &doc), Some(json!([])));
        assert_eq!(sel("$$.Execution.Id", &doc), Some(json!("arn:exec")));
    }

    #[test]
    fn variables() {
        let mut vars = Map::new();
        vars.insert("x".into(), json!({"y": 7}));
        let input = json!({});
        let p = JsonPath::parse("$x.y").unwrap();
        assert_eq!(
            p.select(Scope { input: &input, context: &input, variables: &vars }).unwrap(),
            Some(json!(7))
        );
    }

    #[test]
    fn result_path_setter() {
        let set = |p: &str, t: Value, v: Value| JsonPath::parse(p).unwrap().set(t, v);
        assert_eq!(set("$", json!({"a": 1}), json!(2)).unwrap(), json!(2));
        assert_eq!(set("$.r", json!({"a": 1}), json!(2)).unwrap(), json!({"a": 1, "r": 2}));
        assert_eq!(set("$.x.y.z", json!({}), json!(2)).unwrap(), json!({"x": {"y": {"z": 2}}}));
        assert_eq!(set("$.a[1]", json!({"a": [0, 0]}), json!(9)).unwrap(), json!({"a": [0, 9]}));
        assert!(set("$.a.b", json!({"a": "str"}), json!(1)).is_err());
        assert!(set("$.a[*]", json!({"a": []}), json!(1)).is_err());
    }
}

/// Lexes a JSON number starting at `*pos` (a digit or `-`), advancing past it. Shared by
/// the JSONPath filter and intrinsic-function parsers.
pub(crate) fn lex_number(chars: &[char], pos: &mut usize) -> Result<serde_json::Number, SyntaxError> {
    let start = *pos;
    *pos += 1;
    while chars.get(*pos).is_some_and(|c| c.is_ascii_digit() || ".eE+-".contains(*c)) {
        *pos += 1;
    }
    let text: String = chars[start..*pos].iter().collect();
    serde_json::from_str(&text).map_err(|_| SyntaxError::new(format!("invalid number '{text}'")))
}
