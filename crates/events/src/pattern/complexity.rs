//! EventBridge refuses patterns whose wildcards would make matching too non-deterministic:
//! "Rule is too complex - try using fewer wildcard characters or fewer repeating character
//! sequences after a wildcard character". Event-ruler measures this with its
//! `MachineComplexityEvaluator`: the largest number of wildcard-pattern states one input value
//! can keep alive at once in a field's byte machine. This re-derives that measure on a small
//! NFA per field machine. The threshold (more than 10) is the one EventBridge enforces.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{Matcher, Negated, SubRule};

const LIMIT: usize = 10;
const TOO_COMPLEX: &str = "Rule is too complex - try using fewer wildcard characters or fewer repeating \
                           character sequences after a wildcard character";
/// Bound on explored state sets; beyond it the pattern is treated as too complex rather than
/// spending unbounded time deciding.
const MAX_SETS: usize = 100_000;

/// One wildcard value as byte-machine tokens (`None` is a star), quotes included.
type Tokens = Vec<Option<u8>>;

fn wildcards(m: &Matcher) -> Vec<Tokens> {
    match m {
        Matcher::Wildcard(w) => vec![w.machine_tokens()],
        Matcher::AnythingBut(Negated::Wildcards(ws)) => ws.iter().map(|w| w.machine_tokens()).collect(),
        _ => Vec::new(),
    }
}

/// A field's byte machine within one name state: the patterns added to it (by identity) and
/// the name states its matches lead to.
#[derive(Default)]
struct Machine {
    terms: Vec<(String, Vec<Tokens>)>,
    next: HashMap<String, usize>,
    /// Name states reached by value matches (not by `exists: false`): event-ruler's evaluator
    /// only follows those.
    value_next: BTreeSet<usize>,
}

#[derive(Default)]
struct NameState {
    machines: BTreeMap<String, Machine>,
}

pub(crate) fn check(rules: &[SubRule]) -> Result<(), String> {
    let any_wildcard =
        rules.iter().any(|r| r.fields.iter().any(|(_, ms)| ms.iter().any(|m| !wildcards(m).is_empty())));
    if !any_wildcard {
        return Ok(());
    }

    // Build the name-state graph the way event-ruler adds sub-rules: fields in path order, each
    // pattern of a field leading to a shared next state (identical patterns reuse theirs).
    let mut states = vec![NameState::default()];
    for rule in rules {
        let mut current = vec![0usize];
        for (path, matchers) in &rule.fields {
            let mut reached = Vec::new();
            for &s in &current {
                let mut last: Option<usize> = None;
                for m in matchers {
                    let id = format!("{m:?}");
                    let existing = states[s].machines.entry(path.clone()).or_default().next.get(&id).copied();
                    let target = match (existing, last) {
                        (Some(t), _) | (None, Some(t)) => t,
                        (None, None) => {
                            states.push(NameState::default());
                            states.len() - 1
                        }
                    };
                    last = Some(target);
                    let machine = states[s].machines.entry(path.clone()).or_default();
                    machine.next.entry(id.clone()).or_insert(target);
                    if !machine.terms.iter().any(|(t, _)| *t == id) {
                        machine.terms.push((id, wildcards(m)));
                    }
                    if *m != Matcher::Absent {
                        machine.value_next.insert(target);
                    }
                    if !reached.contains(&target) {
                        reached.push(target);
                    }
                }
            }
            current = reached;
        }
    }

    let mut seen = HashSet::new();
    let mut pending = vec![0usize];
    while let Some(s) = pending.pop() {
        if !seen.insert(s) {
            continue;
        }
        for machine in states[s].machines.values() {
            if complexity(&machine.terms) > LIMIT {
                return Err(TOO_COMPLEX.into());
            }
            pending.extend(machine.value_next.iter().copied());
        }
    }
    Ok(())
}

#[derive(Default)]
struct State {
    lit: Vec<(u8, usize)>,
    /// States entered by consuming any byte (the star after this state).
    any: Vec<usize>,
    /// A star state, which keeps consuming any byte.
    star: bool,
    /// Distinct patterns passing through this state.
    weight: BTreeSet<usize>,
}

/// The largest number of live wildcard-pattern states over all inputs (capped just above the
/// limit). Determinate prefixes up to the first star are shared between patterns, as in
/// event-ruler's trie; states after a star are per pattern.
fn complexity(terms: &[(String, Vec<Tokens>)]) -> usize {
    let mut st = vec![State::default()];
    let mut shared_lit: HashMap<(usize, u8), usize> = HashMap::new();
    let mut shared_star: HashMap<usize, usize> = HashMap::new();
    let mut terminal: HashMap<usize, usize> = HashMap::new();
    let mut alphabet = BTreeSet::new();

    for (term, (_, patterns)) in terms.iter().enumerate() {
        for tokens in patterns {
            let mut cur = 0usize;
            let mut before_star = 0usize;
            let mut determinate = true;
            for (i, tok) in tokens.iter().enumerate() {
                let last = i + 1 == tokens.len();
                let next = match *tok {
                    None => {
                        let next = match (determinate, shared_star.get(&cur)) {
                            (true, Some(&n)) => n,
                            (true, None) => {
                                let n = new_state(&mut st);
                                shared_star.insert(cur, n);
                                n
                            }
                            (false, _) => new_state(&mut st),
                        };
                        if !st[cur].any.contains(&next) {
                            st[cur].any.push(next);
                        }
                        st[next].star = true;
                        determinate = false;
                        before_star = cur;
                        next
                    }
                    Some(b) => {
                        alphabet.insert(b);
                        let next = if last {
                            match terminal.get(&term) {
                                Some(&n) => n,
                                None => {
                                    let n = new_state(&mut st);
                                    terminal.insert(term, n);
                                    n
                                }
                            }
                        } else if determinate {
                            match shared_lit.get(&(cur, b)) {
                                Some(&n) => n,
                                None => {
                                    let n = new_state(&mut st);
                                    shared_lit.insert((cur, b), n);
                                    n
                                }
                            }
                        } else {
                            new_state(&mut st)
                        };
                        add_lit(&mut st[cur], b, next);
                        // A star may match nothing: the byte after it is also reachable from
                        // the state before it.
                        if i > 0 && tokens[i - 1].is_none() {
                            add_lit(&mut st[before_star], b, next);
                        }
                        next
                    }
                };
                st[next].weight.insert(term);
                cur = next;
            }
        }
    }

    // Explore every reachable set of live states; bytes outside the alphabet behave alike.
    let symbols: Vec<Option<u8>> = alphabet.iter().copied().map(Some).chain([None]).collect();
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    let mut pending = vec![vec![0usize]];
    let mut max = 0;
    while let Some(set) = pending.pop() {
        for sym in &symbols {
            let mut next = BTreeSet::new();
            for &s in &set {
                next.extend(st[s].any.iter().copied());
                if st[s].star {
                    next.insert(s);
                }
                if let Some(b) = sym {
                    next.extend(st[s].lit.iter().filter(|(l, _)| l == b).map(|(_, t)| *t));
                }
            }
            if next.is_empty() {
                continue;
            }
            let size: usize = next
                .iter()
                .map(|&s| {
                    let pending_stars: usize =
                        st[s].any.iter().filter(|t| !next.contains(*t)).map(|&t| st[t].weight.len()).sum();
                    st[s].weight.len() + pending_stars
                })
                .sum();
            if size > LIMIT {
                return size;
            }
            max = max.max(size);
            let key: Vec<usize> = next.into_iter().collect();
            if seen.insert(key.clone()) {
                if seen.len() > MAX_SETS {
                    return LIMIT + 1;
                }
                pending.push(key);
            }
        }
    }
    max
}

fn new_state(st: &mut Vec<State>) -> usize {
    st.push(State::default());
    st.len() - 1
}

fn add_lit(s: &mut State, b: u8, to: usize) {
    if !s.lit.contains(&(b, to)) {
        s.lit.push((b, to));
    }
}

#[cfg(test)]
mod tests {
    use super::super::Pattern;

    fn ok(wildcard: &str) -> bool {
        Pattern::parse(&format!(r#"{{"f": [{{"wildcard": "{wildcard}"}}]}}"#)).is_ok()
    }

    #[test]
    fn wildcard_complexity_threshold() {
        assert!(ok("arn:aws:events:us-east-1:*:event-bus/*"));
        assert!(ok("/Users/*/dir/dir/dir/dir/dir/doc.txt"));
        assert!(ok("*:*:*:*:event-bus/*"));
        assert!(!ok("*:*:*:*:*:event-bus/*"));
        assert!(!ok("*a*a*a*a*a*a*"));
    }

    #[test]
    fn complexity_adds_up_across_a_field() {
        let many = (0..12).map(|i| format!(r#"{{"wildcard": "*x{i}*"}}"#)).collect::<Vec<_>>().join(",");
        assert!(Pattern::parse(&format!(r#"{{"f": [{many}]}}"#)).is_err());
        // Spread over different fields, each machine stays simple.
        let spread = (0..12).map(|i| format!(r#""f{i}": [{{"wildcard": "*x*"}}]"#)).collect::<Vec<_>>();
        assert!(Pattern::parse(&format!("{{{}}}", spread.join(","))).is_ok());
    }
}
