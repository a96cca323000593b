//! A subset of ECS's cluster query language, used by `memberOf` placement constraints.
//!
//! Supported: subjects `attribute:<name>`, `ec2InstanceId`, `agentConnected`,
//! `runningTasksCount`, `task:group`; operators `==`, `!=`, `>`, `>=`, `<`, `<=`, `in [..]`,
//! `not_in [..]`, `exists`, `!exists`, `=~` / `!~` (anchored; `.`, `*`, `^`, `$`);
//! combinators `and` / `&&`, `or` / `||`, `not` / `!`, parentheses. Values may be bare or
//! quoted. `task:group` is multi-valued (one value per task on the instance): `==` means
//! "some task has it", `!=` means "no task has it".

use super::InstanceView;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpressionError {
    #[error("empty expression")]
    Empty,
    #[error("unexpected token '{0}' in expression")]
    Unexpected(String),
    #[error("unexpected end of expression")]
    UnexpectedEnd,
    #[error("unterminated quoted string in expression")]
    UnterminatedString,
    #[error("unknown subject '{0}' in expression")]
    UnknownSubject(String),
}

/// Checks that `expr` parses, so the API can reject a bad memberOf up front.
pub fn validate_expression(expr: &str) -> Result<(), ExpressionError> {
    parse(expr).map(|_| ())
}

/// Evaluates `expr` against one instance.
pub fn matches_expression(expr: &str, instance: &InstanceView) -> Result<bool, ExpressionError> {
    Ok(parse(expr)?.eval(instance))
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp { subject: Subject, op: Op, values: Vec<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Subject {
    Attribute(String),
    Ec2InstanceId,
    AgentConnected,
    RunningTasksCount,
    TaskGroup,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    Exists,
    NotExists,
    Matches,
    NotMatches,
}

impl Expr {
    pub(crate) fn eval(&self, inst: &InstanceView) -> bool {
        match self {
            Expr::And(a, b) => a.eval(inst) && b.eval(inst),
            Expr::Or(a, b) => a.eval(inst) || b.eval(inst),
            Expr::Not(a) => !a.eval(inst),
            Expr::Cmp { subject, op, values } => {
                let actual = subject_values(subject, inst);
                let first = values.first().map(String::as_str).unwrap_or("");
                let any = |f: &dyn Fn(&str) -> bool| actual.iter().any(|a| f(a));
                match op {
                    Op::Eq => any(&|a| a == first),
                    Op::Ne => !any(&|a| a == first),
                    Op::In => any(&|a| values.iter().any(|v| v == a)),
                    Op::NotIn => !any(&|a| values.iter().any(|v| v == a)),
                    Op::Exists => !actual.is_empty(),
                    Op::NotExists => actual.is_empty(),
                    Op::Matches => any(&|a| regex_match(first, a)),
                    Op::NotMatches => !any(&|a| regex_match(first, a)),
                    Op::Gt => any(&|a| compare(a, first).is_gt()),
                    Op::Ge => any(&|a| compare(a, first).is_ge()),
                    Op::Lt => any(&|a| compare(a, first).is_lt()),
                    Op::Le => any(&|a| compare(a, first).is_le()),
                }
            }
        }
    }
}

fn subject_values(subject: &Subject, inst: &InstanceView) -> Vec<String> {
    match subject {
        Subject::Attribute(name) => inst.attributes.get(name).cloned().into_iter().collect(),
        // The EC2 id is an attribute when the engine knows one; the local node has none, so
        // its container instance id stands in.
        Subject::Ec2InstanceId => {
            vec![inst.attributes.get("ec2InstanceId").cloned().unwrap_or_else(|| inst.id.clone())]
        }
        Subject::AgentConnected => vec![inst.active.to_string()],
        Subject::RunningTasksCount => vec![inst.task_groups.len().to_string()],
        Subject::TaskGroup => inst.task_groups.clone(),
    }
}

/// Numbers compare numerically, everything else lexically.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// Anchored match of a small regex subset: literals, `.`, `x*`, optional `^`/`$`.
fn regex_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.trim_start_matches('^').trim_end_matches('$').chars().collect();
    let t: Vec<char> = text.chars().collect();
    match_here(&p, &t)
}

fn match_here(p: &[char], t: &[char]) -> bool {
    if p.is_empty() {
        return t.is_empty();
    }
    if p.len() >= 2 && p[1] == '*' {
        // Zero or more of p[0], shortest first.
        let mut i = 0;
        loop {
            if match_here(&p[2..], &t[i..]) {
                return true;
            }
            if i < t.len() && (p[0] == '.' || p[0] == t[i]) {
                i += 1;
            } else {
                return false;
            }
        }
    }
    if p[0] == '\\' && p.len() >= 2 {
        return !t.is_empty() && t[0] == p[1] && match_here(&p[2..], &t[1..]);
    }
    !t.is_empty() && (p[0] == '.' || p[0] == t[0]) && match_here(&p[1..], &t[1..])
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Sym(&'static str),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Quoted(w) => w.clone(),
            Tok::Sym(s) => (*s).to_string(),
        }
    }
}

const SYMBOLS: [&str; 15] =
    ["==", "!=", ">=", "<=", "=~", "!~", "&&", "||", ">", "<", "!", "(", ")", "[", "]"];

fn tokenize(s: &str) -> Result<Vec<Tok>, ExpressionError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    'outer: while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == ',' {
            out.push(Tok::Sym(","));
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += 1;
            }
            if j >= chars.len() {
                return Err(ExpressionError::UnterminatedString);
            }
            out.push(Tok::Quoted(chars[i + 1..j].iter().collect()));
            i = j + 1;
            continue;
        }
        for sym in SYMBOLS {
            let sc: Vec<char> = sym.chars().collect();
            if chars[i..].starts_with(&sc) {
                out.push(Tok::Sym(sym));
                i += sc.len();
                continue 'outer;
            }
        }
        let start = i;
        while i < chars.len()
            && !chars[i].is_whitespace()
            && !matches!(
                chars[i],
                '(' | ')' | '[' | ']' | ',' | '=' | '!' | '<' | '>' | '&' | '|' | '\'' | '"'
            )
        {
            i += 1;
        }
        if i == start {
            return Err(ExpressionError::Unexpected(c.to_string()));
        }
        out.push(Tok::Word(chars[start..i].iter().collect()));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

pub(crate) fn parse(s: &str) -> Result<Expr, ExpressionError> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err(ExpressionError::Empty);
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.or_expr()?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(ExpressionError::Unexpected(t.text())),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Result<Tok, ExpressionError> {
        let t = self.toks.get(self.pos).cloned().ok_or(ExpressionError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(t)
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn is_sym(&self, sym: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym)
    }

    fn or_expr(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.and_expr()?;
        while self.is_keyword("or") || self.is_sym("||") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.unary()?;
        while self.is_keyword("and") || self.is_sym("&&") {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ExpressionError> {
        if self.is_keyword("not") || self.is_sym("!") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.is_sym("(") {
            self.pos += 1;
            let e = self.or_expr()?;
            match self.next()? {
                Tok::Sym(")") => return Ok(e),
                t => return Err(ExpressionError::Unexpected(t.text())),
            }
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ExpressionError> {
        let subject = match self.next()? {
            Tok::Word(w) => parse_subject(&w)?,
            t => return Err(ExpressionError::Unexpected(t.text())),
        };
        let op = match self.next()? {
            Tok::Sym("==") => Op::Eq,
            Tok::Sym("!=") => Op::Ne,
            Tok::Sym(">") => Op::Gt,
            Tok::Sym(">=") => Op::Ge,
            Tok::Sym("<") => Op::Lt,
            Tok::Sym("<=") => Op::Le,
            Tok::Sym("=~") => Op::Matches,
            Tok::Sym("!~") => Op::NotMatches,
            Tok::Sym("!") if self.is_keyword("exists") => {
                self.pos += 1;
                return Ok(Expr::Cmp { subject, op: Op::NotExists, values: vec![] });
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("exists") => {
                return Ok(Expr::Cmp { subject, op: Op::Exists, values: vec![] });
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("in") => Op::In,
            Tok::Word(w) if w.eq_ignore_ascii_case("not_in") => Op::NotIn,
            t => return Err(ExpressionError::Unexpected(t.text())),
        };
        let values = if matches!(op, Op::In | Op::NotIn) { self.list()? } else { vec![self.value()?] };
        Ok(Expr::Cmp { subject, op, values })
    }

    fn value(&mut self) -> Result<String, ExpressionError> {
        match self.next()? {
            Tok::Word(w) | Tok::Quoted(w) => Ok(w),
            t => Err(ExpressionError::Unexpected(t.text())),
        }
    }

    /// `[a, b, c]` (or `(a, b)`); a single bare value is accepted too.
    fn list(&mut self) -> Result<Vec<String>, ExpressionError> {
        let close = if self.is_sym("[") {
            "]"
        } else if self.is_sym("(") {
            ")"
        } else {
            return Ok(vec![self.value()?]);
        };
        self.pos += 1;
        let mut values = Vec::new();
        loop {
            if self.is_sym(close) {
                self.pos += 1;
                return Ok(values);
            }
            values.push(self.value()?);
            if self.is_sym(",") {
                self.pos += 1;
            } else if !self.is_sym(close) {
                return Err(match self.peek() {
                    Some(t) => ExpressionError::Unexpected(t.text()),
                    None => ExpressionError::UnexpectedEnd,
                });
            }
        }
    }
}

fn parse_subject(w: &str) -> Result<Subject, ExpressionError> {
    if let Some(name) = w.strip_prefix("attribute:") {
        if name.is_empty() {
            return Err(ExpressionError::UnknownSubject(w.to_string()));
        }
        return Ok(Subject::Attribute(name.to_string()));
    }
    match w {
        "ec2InstanceId" => Ok(Subject::Ec2InstanceId),
        "agentConnected" => Ok(Subject::AgentConnected),
        "runningTasksCount" => Ok(Subject::RunningTasksCount),
        "task:group" => Ok(Subject::TaskGroup),
        _ => Err(ExpressionError::UnknownSubject(w.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, attrs: &[(&str, &str)], groups: &[&str]) -> InstanceView {
        InstanceView {
            id: id.into(),
            active: true,
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            task_groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn equality_and_lists() {
        let i =
            inst("i-1", &[("ecs.instance-type", "t2.small"), ("ecs.availability-zone", "us-east-1a")], &[]);
        let m = |e: &str| matches_expression(e, &i).unwrap();
        assert!(m("attribute:ecs.instance-type == t2.small"));
        assert!(!m("attribute:ecs.instance-type != t2.small"));
        assert!(m("attribute:ecs.instance-type in [t2.small, t2.medium]"));
        assert!(!m("attribute:ecs.instance-type not_in [t2.small, t2.medium]"));
        assert!(m("attribute:ecs.availability-zone == 'us-east-1a' and attribute:ecs.instance-type =~ t2.*"));
        assert!(m(
            "attribute:ecs.availability-zone == us-east-1b or attribute:ecs.instance-type == t2.small"
        ));
        assert!(!m(
            "attribute:ecs.availability-zone == us-east-1b || attribute:ecs.instance-type == t2.micro"
        ));
        assert!(m("not (attribute:ecs.availability-zone == us-east-1b)"));
        assert!(m("attribute:ecs.instance-type exists"));
        assert!(m("attribute:color !exists"));
        assert!(!m("attribute:color exists"));
        assert!(m("attribute:color != red"));
        assert!(m("ec2InstanceId == i-1"));
        assert!(m("ec2InstanceId in ['i-1', 'i-2']"));
        assert!(m("agentConnected == true"));
        assert!(m("attribute:ecs.instance-type !~ m5.*"));
    }

    #[test]
    fn numbers_and_task_group() {
        let i = inst("i-1", &[("cores", "16")], &["service:web", "service:db"]);
        let m = |e: &str| matches_expression(e, &i).unwrap();
        assert!(m("attribute:cores > 8"));
        assert!(m("attribute:cores >= 16"));
        assert!(!m("attribute:cores < 9"));
        assert!(m("runningTasksCount == 2"));
        assert!(m("task:group == service:db"));
        assert!(!m("task:group != service:db"));
        assert!(m("task:group in [service:web]"));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "attribute:x ==",
            "foo == bar",
            "attribute:x in [a, b",
            "(attribute:x == a",
            "attribute:x == 'a",
            "attribute:x ~~ a",
            "attribute:x == a b",
        ] {
            assert!(validate_expression(bad).is_err(), "{bad:?} should not parse");
        }
        assert!(validate_expression("attribute:x == a and (attribute:y != b or attribute:z in [c])").is_ok());
    }

    #[test]
    fn regex_subset() {
        assert!(regex_match("t2.*", "t2.micro"));
        assert!(regex_match("^g2\\..*$", "g2.large"));
        assert!(!regex_match("g2\\..*", "g2xlarge"));
        assert!(!regex_match("t2", "t2.micro"));
    }
}
