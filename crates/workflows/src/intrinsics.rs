//! `States.*` intrinsic functions: parsing and static checks (arity, literal argument
//! types, nesting depth), and evaluation.

use crate::digest;
use crate::error::{EvalError, SyntaxError};
use crate::jsonpath::{JsonPath, Scope, type_name};
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::Digest as _;

/// AWS allows at most 10 nested intrinsic functions in one field.
const MAX_NESTING: usize = 10;
/// `States.ArrayRange` may produce at most 1000 items.
const MAX_RANGE_ITEMS: i64 = 1000;
/// Base64 and hash inputs are limited to 10,000 characters.
const MAX_STRING_INPUT: usize = 10_000;

/// The source of randomness for `States.MathRandom` and `States.UUID`. The interpreter
/// supplies a seeded, persisted generator so replays are deterministic.
pub trait Entropy {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64;
}

/// An intrinsic function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

/// What an argument must be (checked statically for literals and nested calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Any,
    Str,
    Int,
    Bool,
    Array,
    Object,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "Format" => Func::Format,
            "StringToJson" => Func::StringToJson,
            "JsonToString" => Func::JsonToString,
            "Array" => Func::Array,
            "ArrayPartition" => Func::ArrayPartition,
            "ArrayContains" => Func::ArrayContains,
            "ArrayRange" => Func::ArrayRange,
            "ArrayGetItem" => Func::ArrayGetItem,
            "ArrayLength" => Func::ArrayLength,
            "ArrayUnique" => Func::ArrayUnique,
            "Base64Encode" => Func::Base64Encode,
            "Base64Decode" => Func::Base64Decode,
            "Hash" => Func::Hash,
            "JsonMerge" => Func::JsonMerge,
            "MathRandom" => Func::MathRandom,
            "MathAdd" => Func::MathAdd,
            "StringSplit" => Func::StringSplit,
            "UUID" => Func::Uuid,
            _ => return None,
        })
    }

    /// The name as written after `States.`.
    pub fn name(self) -> &'static str {
        match self {
            Func::Format => "Format",
            Func::StringToJson => "StringToJson",
            Func::JsonToString => "JsonToString",
            Func::Array => "Array",
            Func::ArrayPartition => "ArrayPartition",
            Func::ArrayContains => "ArrayContains",
            Func::ArrayRange => "ArrayRange",
            Func::ArrayGetItem => "ArrayGetItem",
            Func::ArrayLength => "ArrayLength",
            Func::ArrayUnique => "ArrayUnique",
            Func::Base64Encode => "Base64Encode",
            Func::Base64Decode => "Base64Decode",
            Func::Hash => "Hash",
            Func::JsonMerge => "JsonMerge",
            Func::MathRandom => "MathRandom",
            Func::MathAdd => "MathAdd",
            Func::StringSplit => "StringSplit",
            Func::Uuid => "UUID",
        }
    }

    /// Parameter kinds; `None` means any number of `Any` arguments.
    fn params(self) -> Option<&'static [Kind]> {
        use Kind::*;
        Some(match self {
            Func::Format | Func::Array => return None,
            Func::StringToJson | Func::Base64Encode | Func::Base64Decode => &[Str],
            Func::JsonToString => &[Any],
            Func::ArrayPartition | Func::ArrayGetItem => &[Array, Int],
            Func::ArrayContains => &[Array, Any],
            Func::ArrayRange => &[Int, Int, Int],
            Func::ArrayLength | Func::ArrayUnique => &[Array],
            Func::Hash | Func::StringSplit => &[Str, Str],
            Func::JsonMerge => &[Object, Object, Bool],
            Func::MathRandom => &[Int, Int, Int],
            Func::MathAdd => &[Int, Int],
            Func::Uuid => &[],
        })
    }

    fn returns(self) -> Kind {
        match self {
            Func::Format
            | Func::JsonToString
            | Func::Base64Encode
            | Func::Base64Decode
            | Func::Hash
            | Func::Uuid => Kind::Str,
            Func::Array | Func::ArrayPartition | Func::ArrayRange | Func::ArrayUnique | Func::StringSplit => {
                Kind::Array
            }
            Func::ArrayContains => Kind::Bool,
            Func::ArrayLength | Func::MathRandom | Func::MathAdd => Kind::Int,
            Func::JsonMerge => Kind::Object,
            Func::StringToJson | Func::ArrayGetItem => Kind::Any,
        }
    }
}

/// An argument of an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `'text'`; `raw` keeps the escapes (`States.Format` needs to tell `\{` from `{`).
    Str {
        raw: String,
        value: String,
    },
    Number(serde_json::Number),
    Bool(bool),
    Null,
    Path(JsonPath),
    Call(Box<Call>),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub func: Func,
    pub args: Vec<Arg>,
}

/// True when `text` looks like an intrinsic call (so a `.$` value is parsed as one
/// rather than as a path).
pub fn looks_like_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl Call {
    /// Parses and statically checks an intrinsic function expression.
    pub fn parse(text: &str) -> Result<Call, SyntaxError> {
        let mut p = Parser { chars: text.chars().collect(), pos: 0 };
        p.skip_ws();
        let call = p.call(1)?;
        p.skip_ws();
        if p.pos != p.chars.len() {
            return Err(SyntaxError::new(format!(
                "unexpected text after the closing parenthesis: '{}'",
                p.chars[p.pos..].iter().collect::<String>()
            )));
        }
        Ok(call)
    }

    /// Evaluates the call against the state's data.
    pub fn evaluate(&self, scope: Scope<'_>, entropy: &mut dyn Entropy) -> Result<Value, EvalError> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Str { value, .. } => Value::String(value.clone()),
                Arg::Number(n) => Value::Number(n.clone()),
                Arg::Bool(b) => Value::Bool(*b),
                Arg::Null => Value::Null,
                Arg::Path(p) => p.select(scope)?.ok_or_else(|| {
                    EvalError::runtime(format!(
                        "The JSONPath '{p}' specified for the intrinsic function States.{} could not be found in the input '{}'",
                        self.func.name(),
                        scope.input
                    ))
                })?,
                Arg::Call(c) => c.evaluate(scope, entropy)?,
            });
        }
        self.apply(args, entropy)
    }

    fn fail(&self, why: impl std::fmt::Display) -> EvalError {
        EvalError::intrinsic(format!("Invalid arguments in States.{}: {why}", self.func.name()))
    }

    fn int(&self, v: &Value, what: &str) -> Result<i64, EvalError> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
                .ok_or_else(|| self.fail(format!("{what} must be an integer, got {n}"))),
            other => Err(self.fail(format!("{what} must be an integer, got a {}", type_name(other)))),
        }
    }

    fn string<'v>(&self, v: &'v Value, what: &str) -> Result<&'v str, EvalError> {
        v.as_str().ok_or_else(|| self.fail(format!("{what} must be a string, got a {}", type_name(v))))
    }

    fn array<'v>(&self, v: &'v Value, what: &str) -> Result<&'v Vec<Value>, EvalError> {
        v.as_array().ok_or_else(|| self.fail(format!("{what} must be an array, got a {}", type_name(v))))
    }

    fn apply(&self, args: Vec<Value>, entropy: &mut dyn Entropy) -> Result<Value, EvalError> {
        let arg = |i: usize| args.get(i).unwrap_or(&Value::Null);
        Ok(match self.func {
            Func::Format => {
                let Some(Arg::Str { raw, .. }) = self.args.first() else {
                    // A path/call template: no escapes to honour.
                    let template = self.string(arg(0), "the template")?.to_string();
                    return self.format(&template, false, args.get(1..).unwrap_or(&[])).map(Value::String);
                };
                Value::String(self.format(raw, true, args.get(1..).unwrap_or(&[]))?)
            }
            Func::StringToJson => {
                let s = self.string(arg(0), "the argument")?;
                serde_json::from_str(s).map_err(|e| self.fail(format!("the string is not JSON: {e}")))?
            }
            Func::JsonToString => Value::String(arg(0).to_string()),
            Func::Array => Value::Array(args),
            Func::ArrayPartition => {
                let items = self.array(arg(0), "the first argument")?;
                let size = self.int(arg(1), "the chunk size")?;
                if size <= 0 {
                    return Err(self.fail("the chunk size must be greater than 0"));
                }
                let size = usize::try_from(size).map_err(|_| self.fail("chunk size out of range"))?;
                Value::Array(items.chunks(size).map(|c| Value::Array(c.to_vec())).collect())
            }
            Func::ArrayContains => Value::Bool(self.array(arg(0), "the first argument")?.contains(arg(1))),
            Func::ArrayRange => {
                let (start, end, step) =
                    (self.int(arg(0), "start")?, self.int(arg(1), "end")?, self.int(arg(2), "step")?);
                if step == 0 {
                    return Err(self.fail("the step must not be 0"));
                }
                // i128 so extreme bounds cannot overflow.
                let (start, end, step) = (i128::from(start), i128::from(end), i128::from(step));
                let count = if (step > 0 && end < start) || (step < 0 && end > start) {
                    0
                } else {
                    (end - start) / step + 1
                };
                if count > i128::from(MAX_RANGE_ITEMS) {
                    return Err(self.fail(format!("the range has more than {MAX_RANGE_ITEMS} items")));
                }
                let items: Vec<Value> = (0..count)
                    .filter_map(|i| i64::try_from(start + i * step).ok())
                    .map(Value::from)
                    .collect();
                Value::Array(items)
            }
            Func::ArrayGetItem => {
                let items = self.array(arg(0), "the first argument")?;
                let i = self.int(arg(1), "the index")?;
                usize::try_from(i).ok().and_then(|i| items.get(i)).cloned().ok_or_else(|| {
                    self.fail(format!("index {i} is out of bounds for an array of {}", items.len()))
                })?
            }
            Func::ArrayLength => Value::from(self.array(arg(0), "the argument")?.len()),
            Func::ArrayUnique => {
                let mut out: Vec<Value> = Vec::new();
                for v in self.array(arg(0), "the argument")? {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Value::Array(out)
            }
            Func::Base64Encode => {
                let s = self.string(arg(0), "the argument")?;
                if s.chars().count() > MAX_STRING_INPUT {
                    return Err(self.fail(format!("the input exceeds {MAX_STRING_INPUT} characters")));
                }
                Value::String(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))
            }
            Func::Base64Decode => {
                let s = self.string(arg(0), "the argument")?;
                if s.chars().count() > MAX_STRING_INPUT {
                    return Err(self.fail(format!("the input exceeds {MAX_STRING_INPUT} characters")));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| self.fail(format!("not valid base64: {e}")))?;
                Value::String(
                    String::from_utf8(bytes).map_err(|_| self.fail("the decoded data is not UTF-8"))?,
                )
            }
            Func::Hash => {
                let data = match arg(0) {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if data.chars().count() > MAX_STRING_INPUT {
                    return Err(self.fail(format!("the input exceeds {MAX_STRING_INPUT} characters")));
                }
                let algorithm = self.string(arg(1), "the algorithm")?;
                Value::String(hash(algorithm, data.as_bytes()).ok_or_else(|| {
                    self.fail(format!(
                        "unsupported algorithm '{algorithm}' (expected MD5, SHA-1, SHA-256, SHA-384 or SHA-512)"
                    ))
                })?)
            }
            Func::JsonMerge => {
                let (Value::Object(a), Value::Object(b)) = (arg(0), arg(1)) else {
                    return Err(self.fail("both inputs must be JSON objects"));
                };
                if arg(2) != &Value::Bool(false) {
                    // AWS only supports the shallow mode.
                    return Err(self.fail("only shallow merge (false) is supported"));
                }
                let mut out: Map<String, Value> = a.clone();
                for (k, v) in b {
                    out.insert(k.clone(), v.clone());
                }
                Value::Object(out)
            }
            Func::MathRandom => {
                let (start, end) = (self.int(arg(0), "start")?, self.int(arg(1), "end")?);
                if end <= start {
                    return Err(self.fail("end must be greater than start"));
                }
                let span = end.checked_sub(start).ok_or_else(|| self.fail("the range is too large"))? as u64;
                let bits = match args.get(2) {
                    // An explicit seed makes the result a pure function of its arguments.
                    Some(seed) => splitmix64(self.int(seed, "the seed")? as u64),
                    None => entropy.next_u64(),
                };
                Value::from(start.wrapping_add((bits % span) as i64))
            }
            Func::MathAdd => {
                let (a, b) =
                    (self.int(arg(0), "the first argument")?, self.int(arg(1), "the second argument")?);
                let sum = a.checked_add(b).ok_or_else(|| self.fail("the sum overflows"))?;
                Value::from(sum)
            }
            Func::StringSplit => {
                let s = self.string(arg(0), "the first argument")?;
                let delims: Vec<char> = self.string(arg(1), "the splitter")?.chars().collect();
                // Every character of the splitter is a delimiter; empty pieces are dropped
                // (AWS: 'This.is+a,test=string' split by '.+,=' gives five words).
                Value::Array(
                    s.split(|c| delims.contains(&c))
                        .filter(|p| !p.is_empty())
                        .map(|p| Value::String(p.to_string()))
                        .collect(),
                )
            }
            Func::Uuid => {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&entropy.next_u64().to_le_bytes());
                bytes[8..].copy_from_slice(&entropy.next_u64().to_le_bytes());
                Value::String(uuid::Builder::from_random_bytes(bytes).into_uuid().to_string())
            }
        })
    }

    fn format(&self, template: &str, escaped: bool, values: &[Value]) -> Result<String, EvalError> {
        let mut out = String::new();
        let mut next = 0usize;
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if escaped => {
                    if let Some(e) = chars.next() {
                        out.push(e);
                    }
                }
                '{' if chars.peek() == Some(&'}') => {
                    chars.next();
                    let v = values.get(next).ok_or_else(|| self.fail("more placeholders than arguments"))?;
                    next += 1;
                    match v {
                        Value::String(s) => out.push_str(s),
                        Value::Array(_) | Value::Object(_) => {
                            return Err(
                                self.fail("only string, number, boolean and null values can be formatted")
                            );
                        }
                        other => out.push_str(&other.to_string()),
                    }
                }
                c => out.push(c),
            }
        }
        if next != values.len() {
            return Err(self.fail("the number of arguments does not match the number of placeholders"));
        }
        Ok(out)
    }
}

fn hash(algorithm: &str, data: &[u8]) -> Option<String> {
    Some(match algorithm {
        "MD5" => digest::hex(&digest::md5(data)),
        "SHA-1" => digest::hex(&digest::sha1(data)),
        "SHA-256" => digest::hex(&sha2::Sha256::digest(data)),
        "SHA-384" => digest::hex(&sha2::Sha384::digest(data)),
        "SHA-512" => digest::hex(&sha2::Sha512::digest(data)),
        _ => return None,
    })
}

/// One step of SplitMix64: a good 64-bit mix used to turn a seed into random bits.
pub(crate) fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }
    fn rest_starts_with(&self, s: &str) -> bool {
        (self.pos..).zip(s.chars()).all(|(i, c)| self.chars.get(i) == Some(&c))
    }

    fn call(&mut self, depth: usize) -> Result<Call, SyntaxError> {
        if depth > MAX_NESTING {
            return Err(SyntaxError::new(format!(
                "intrinsic functions can be nested at most {MAX_NESTING} deep"
            )));
        }
        if !self.rest_starts_with("States.") {
            return Err(SyntaxError::new("an intrinsic function must start with 'States.'"));
        }
        self.pos += "States.".len();
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let func = Func::from_name(&name)
            .ok_or_else(|| SyntaxError::new(format!("unknown intrinsic function 'States.{name}'")))?;
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(SyntaxError::new(format!("expected '(' after 'States.{name}'")));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                args.push(self.arg(depth)?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    Some(c) => return Err(SyntaxError::new(format!("expected ',' or ')' but found '{c}'"))),
                    None => return Err(SyntaxError::new(format!("missing ')' to close 'States.{name}('"))),
                }
            }
        }
        let call = Call { func, args };
        check(&call)?;
        Ok(call)
    }

    fn arg(&mut self, depth: usize) -> Result<Arg, SyntaxError> {
        match self.peek() {
            Some('\'') => self.string(),
            Some('$') => {
                // A path runs to the next top-level ',' or ')' or whitespace; brackets
                // (filters) may contain any of those.
                let start = self.pos;
                let mut depth_b = 0i32;
                let mut quote: Option<char> = None;
                while let Some(c) = self.peek() {
                    if let Some(q) = quote {
                        if c == q {
                            quote = None;
                        }
                    } else {
                        match c {
                            '\'' | '"' if depth_b > 0 => quote = Some(c),
                            '[' => depth_b += 1,
                            ']' => depth_b -= 1,
                            ',' | ')' if depth_b == 0 => break,
                            c if c.is_whitespace() && depth_b == 0 => break,
                            _ => {}
                        }
                    }
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                JsonPath::parse(&text).map(Arg::Path).map_err(|e| {
                    SyntaxError::new(format!("invalid path '{text}' in intrinsic function: {e}"))
                })
            }
            Some('S') if self.rest_starts_with("States.") => Ok(Arg::Call(Box::new(self.call(depth + 1)?))),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                crate::jsonpath::lex_number(&self.chars, &mut self.pos).map(Arg::Number)
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                match word.as_str() {
                    "true" => Ok(Arg::Bool(true)),
                    "false" => Ok(Arg::Bool(false)),
                    "null" => Ok(Arg::Null),
                    _ => Err(SyntaxError::new(format!(
                        "unexpected '{word}': arguments must be quoted strings, numbers, booleans, null, paths or intrinsic functions"
                    ))),
                }
            }
            Some(c) => Err(SyntaxError::new(format!("unexpected '{c}' in intrinsic function arguments"))),
            None => Err(SyntaxError::new("the intrinsic function ended unexpectedly")),
        }
    }

    fn string(&mut self) -> Result<Arg, SyntaxError> {
        self.pos += 1; // opening quote
        let mut raw = String::new();
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(SyntaxError::new("unterminated string literal")),
                Some('\\') => {
                    self.pos += 1;
                    let Some(c) = self.peek() else {
                        return Err(SyntaxError::new("unterminated string literal"));
                    };
                    raw.push('\\');
                    raw.push(c);
                    value.push(c);
                    self.pos += 1;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok(Arg::Str { raw, value });
                }
                Some(c) => {
                    raw.push(c);
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Any => "any value",
        Kind::Str => "a string",
        Kind::Int => "an integer",
        Kind::Bool => "a boolean",
        Kind::Array => "an array",
        Kind::Object => "an object",
    }
}

/// Static checks: arity and the types of literal arguments and nested calls. Paths are
/// checked at run time (their values are unknown here).
fn check(call: &Call) -> Result<(), SyntaxError> {
    let name = call.func.name();
    let n = call.args.len();
    match call.func.params() {
        None => {
            if call.func == Func::Format {
                if n == 0 {
                    return Err(SyntaxError::new("States.Format needs at least a template argument"));
                }
                // The placeholder count is only checked at run time: AWS's own documented
                // nested example has three placeholders for two values.
                check_arg(name, 0, &call.args[0], Kind::Str)?;
            }
        }
        Some(params) => {
            let optional = usize::from(call.func == Func::MathRandom);
            if n > params.len() || n + optional < params.len() {
                return Err(SyntaxError::new(format!(
                    "States.{name} takes {} arguments but {n} were given",
                    if optional > 0 {
                        format!("{} or {}", params.len() - optional, params.len())
                    } else {
                        params.len().to_string()
                    }
                )));
            }
            for (i, (arg, kind)) in call.args.iter().zip(params).enumerate() {
                check_arg(name, i, arg, *kind)?;
            }
            if call.func == Func::Hash
                && let Some(Arg::Str { value, .. }) = call.args.get(1)
                && hash(value, b"").is_none()
            {
                return Err(SyntaxError::new(format!(
                    "States.Hash does not support the algorithm '{value}'"
                )));
            }
            if call.func == Func::JsonMerge && matches!(call.args.get(2), Some(Arg::Bool(true))) {
                return Err(SyntaxError::new("States.JsonMerge only supports shallow merging (false)"));
            }
        }
    }
    Ok(())
}

fn check_arg(name: &str, i: usize, arg: &Arg, want: Kind) -> Result<(), SyntaxError> {
    let got = match arg {
        Arg::Path(_) => return Ok(()),
        Arg::Str { .. } => Kind::Str,
        Arg::Number(n) => {
            if want == Kind::Int && !(n.is_i64() || n.is_u64()) {
                return Err(SyntaxError::new(format!(
                    "argument {} of States.{name} must be an integer",
                    i + 1
                )));
            }
            Kind::Int
        }
        Arg::Bool(_) => Kind::Bool,
        Arg::Null => {
            return if want == Kind::Any {
                Ok(())
            } else {
                Err(SyntaxError::new(format!(
                    "argument {} of States.{name} must be {}",
                    i + 1,
                    kind_name(want)
                )))
            };
        }
        Arg::Call(c) => c.func.returns(),
    };
    if want == Kind::Any || got == Kind::Any || got == want {
        Ok(())
    } else {
        Err(SyntaxError::new(format!(
            "argument {} of States.{name} must be {}, not {}",
            i + 1,
            kind_name(want),
            kind_name(got)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed(u64);
    impl Entropy for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0 = splitmix64(self.0);
            self.0
        }
    }

    fn eval(expr: &str, input: Value) -> Result<Value, EvalError> {
        let vars = Map::new();
        let ctx = json!({"Execution": {"Input": {"machines": [1, 2, 3]}}});
        Call::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .evaluate(Scope { input: &input, context: &ctx, variables: &vars }, &mut Fixed(7))
    }

    // The examples below are the ones in AWS's "Intrinsic functions" page.
    #[test]
    fn format() {
        assert_eq!(
            eval("States.Format('Hello, my name is {}.', $.name)", json!({"name": "Arnav"})).unwrap(),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            eval(
                "States.Format('Welcome to {} {}\\'s playlist.', $.firstName, $.lastName)",
                json!({"firstName": "Jane", "lastName": "Doe"})
            )
            .unwrap(),
            json!("Welcome to Jane Doe's playlist.")
        );
        assert_eq!(eval("States.Format('\\{} {}', 1)", json!({})).unwrap(), json!("{} 1"));
        assert_eq!(eval("States.Format('{}{}', true, null)", json!({})).unwrap(), json!("truenull"));
        assert!(eval("States.Format('{}', $.o)", json!({"o": {}})).is_err());
    }

    #[test]
    fn json_functions() {
        assert_eq!(
            eval(
                "States.StringToJson($.escapedJsonString)",
                json!({"escapedJsonString": "{\"foo\": \"bar\"}"})
            )
            .unwrap(),
            json!({"foo": "bar"})
        );
        assert_eq!(
            eval("States.JsonToString($.unescapedJson)", json!({"unescapedJson": {"foo": "bar"}})).unwrap(),
            json!("{\"foo\":\"bar\"}")
        );
        assert_eq!(
            eval(
                "States.JsonMerge($.json1, $.json2, false)",
                json!({"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}})
            )
            .unwrap(),
            json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3})
        );
    }

    #[test]
    fn arrays() {
        let input =
            json!({"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "lookingFor": 5, "index": 5, "Id": 123456});
        assert_eq!(eval("States.Array($.Id)", input.clone()).unwrap(), json!([123456]));
        assert_eq!(
            eval("States.Array('Foo', 2020, $.Id, null)", input.clone()).unwrap(),
            json!(["Foo", 2020, 123456, null])
        );
        assert_eq!(
            eval("States.ArrayPartition($.inputArray,4)", input.clone()).unwrap(),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(
            eval("States.ArrayContains($.inputArray, $.lookingFor)", input.clone()).unwrap(),
            json!(true)
        );
        assert_eq!(eval("States.ArrayRange(1, 9, 2)", input.clone()).unwrap(), json!([1, 3, 5, 7, 9]));
        assert_eq!(eval("States.ArrayRange(9, 1, -3)", input.clone()).unwrap(), json!([9, 6, 3]));
        assert!(eval("States.ArrayRange(1, 5000, 1)", input.clone()).is_err());
        assert_eq!(eval("States.ArrayGetItem($.inputArray, $.index)", input.clone()).unwrap(), json!(6));
        assert!(eval("States.ArrayGetItem($.inputArray, 99)", input.clone()).is_err());
        assert_eq!(eval("States.ArrayLength($.inputArray)", input.clone()).unwrap(), json!(9));
        assert_eq!(
            eval("States.ArrayUnique($.a)", json!({"a": [1, 2, 3, 3, 3, 3, 3, 3, 4]})).unwrap(),
            json!([1, 2, 3, 4])
        );
    }

    #[test]
    fn encoding_and_hash() {
        assert_eq!(
            eval("States.Base64Encode($.input)", json!({"input": "Data to encode"})).unwrap(),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(
            eval("States.Base64Decode($.base64)", json!({"base64": "RGF0YSB0byBlbmNvZGU="})).unwrap(),
            json!("Data to encode")
        );
        assert_eq!(
            eval("States.Hash($.Data, $.Algorithm)", json!({"Data": "input data", "Algorithm": "SHA-1"}))
                .unwrap(),
            json!("aaff4a450a104cd177d28d18d74485e8cae074b7")
        );
        assert_eq!(
            eval("States.Hash('abc', 'MD5')", json!({})).unwrap(),
            json!("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            eval("States.Hash('abc', 'SHA-256')", json!({})).unwrap(),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert!(eval("States.Hash('abc', $.a)", json!({"a": "CRC32"})).is_err());
    }

    #[test]
    fn math_and_strings() {
        assert_eq!(
            eval("States.MathAdd($.value1, $.step)", json!({"value1": 111, "step": -1})).unwrap(),
            json!(110)
        );
        assert_eq!(
            eval("States.MathAdd(States.ArrayLength($$.Execution.Input.machines),-1)", json!({})).unwrap(),
            json!(2)
        );
        let r = eval("States.MathRandom($.start, $.end)", json!({"start": 1, "end": 999})).unwrap();
        assert!((1..999).contains(&r.as_i64().unwrap()));
        let seeded = |_: ()| eval("States.MathRandom(1, 100, 42)", json!({})).unwrap();
        assert_eq!(seeded(()), seeded(()));
        assert_eq!(
            eval(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "1,2,3,4,5", "splitter": ","})
            )
            .unwrap(),
            json!(["1", "2", "3", "4", "5"])
        );
        assert_eq!(
            eval(
                "States.StringSplit($.inputString, $.splitter)",
                json!({"inputString": "This.is+a,test=string", "splitter": ".+,="})
            )
            .unwrap(),
            json!(["This", "is", "a", "test", "string"])
        );
        let u = eval("States.UUID()", json!({})).unwrap();
        let u = uuid::Uuid::parse_str(u.as_str().unwrap()).unwrap();
        assert_eq!(u.get_version_num(), 4);
    }

    #[test]
    fn nested_example_from_docs() {
        let input = json!({"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/myrecipe.v1/1.0.0"}});
        // Split by '/', take "myrecipe.v1", split by '.', rejoin: nine nested calls.
        // AWS's documented nine-deep example (three placeholders, two values) parses; the
        // mismatch only fails when evaluated.
        let expr = "States.Format('{}.{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1))";
        assert!(Call::parse(expr).is_ok());
        assert_eq!(eval(expr, input.clone()).unwrap_err().error, "States.IntrinsicFailure");
        let expr = "States.Format('{}.{}', States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 1), '.'), 0), States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 1), '.'), 1))";
        assert_eq!(eval(expr, input).unwrap(), json!("myrecipe.v1"));
    }

    #[test]
    fn extreme_arguments_do_not_panic() {
        assert!(eval("States.MathRandom(-9223372036854775808, 9223372036854775807)", json!({})).is_err());
        assert!(eval("States.ArrayRange(-9223372036854775808, 9223372036854775807, 1)", json!({})).is_err());
        assert_eq!(
            eval("States.ArrayRange(9223372036854775806, 9223372036854775807, 1)", json!({})).unwrap(),
            json!([9223372036854775806i64, 9223372036854775807i64])
        );
        assert!(eval("States.MathAdd(9223372036854775807, 1)", json!({})).is_err());
        let manual = Call { func: Func::Format, args: vec![] };
        let vars = Map::new();
        let input = json!({});
        assert!(
            manual
                .evaluate(Scope { input: &input, context: &input, variables: &vars }, &mut Fixed(1))
                .is_err()
        );
    }

    #[test]
    fn static_checks() {
        for bad in [
            "States.MathAdd(1,'-1')",
            "States.Nope(1)",
            "States.ArrayLength()",
            "States.ArrayLength('x')",
            "States.UUID(1)",
            "States.Hash('a', 'CRC32')",
            "States.JsonMerge($.a, $.b, true)",
            "States.ArrayContains($.clients.unique, 'null'",
            "States.Array(foo)",
            "States.Array($.a) extra",
            "States.MathAdd(States.UUID(), 1)",
        ] {
            assert!(Call::parse(bad).is_err(), "{bad} should be refused");
        }
        for good in [
            "States.UUID()",
            "States.MathRandom(1, 2)",
            "States.MathRandom(1, 2, 3)",
            "States.ArrayGetItem($.a[?(@.k == FooBar)].v, 0)",
            "States.Format('{}{}', $.field1, $field2)",
            "States.Array()",
        ] {
            assert!(Call::parse(good).is_ok(), "{good} should parse");
        }
    }
}
