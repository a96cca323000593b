//! Replays the EventBridge pattern conformance corpus (shared/corpora/eventbridge-patterns,
//! recorded against real AWS `TestEventPattern`): a plain name must match, `_NEG` must not,
//! `_EXC` must be refused. Every case must pass.

use std::path::{Path, PathBuf};

use nimbus_events::Pattern;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/eventbridge-patterns")
}

/// The corpus is JSON5 only in two ways: `//` (and `/* */`) comments and trailing commas.
/// Strip both outside strings and hand the rest to serde_json.
fn json5_to_json(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut in_string = false;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' && i + 1 < chars.len() {
                out.push(chars[i + 1]);
                i += 2;
                continue;
            }
            if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
                i += 1;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            ',' => {
                // Drop the comma if only whitespace and comments stand before `}` or `]`.
                let mut j = i + 1;
                loop {
                    while j < chars.len() && chars[j].is_whitespace() {
                        j += 1;
                    }
                    if chars.get(j) == Some(&'/') && chars.get(j + 1) == Some(&'/') {
                        while j < chars.len() && chars[j] != '\n' {
                            j += 1;
                        }
                        continue;
                    }
                    break;
                }
                if !matches!(chars.get(j), Some('}') | Some(']')) {
                    out.push(',');
                }
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Expect {
    Match,
    NoMatch,
    Refused,
}

fn expectation(stem: &str) -> Expect {
    if stem.ends_with("_EXC") {
        Expect::Refused
    } else if stem.ends_with("_NEG") {
        Expect::NoMatch
    } else {
        Expect::Match
    }
}

/// What the pattern does with the event, as an `Expect`, or why that could not be decided.
fn outcome(pattern: &str, event: &Value) -> Expect {
    match Pattern::parse(pattern) {
        Err(_) => Expect::Refused,
        Ok(p) if p.matches(event) => Expect::Match,
        Ok(_) => Expect::NoMatch,
    }
}

#[test]
fn eventbridge_pattern_corpus() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        eprintln!("SKIPPED: corpus directory {} is absent", dir.display());
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json5"))
        .collect();
    files.sort();
    assert!(files.len() >= 155, "expected the full corpus, found {} files", files.len());

    let mut failures = Vec::new();
    for path in &files {
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("utf-8 name").to_string();
        let text = std::fs::read_to_string(path).expect("read case");
        let case: Value = serde_json::from_str(&json5_to_json(&text))
            .unwrap_or_else(|e| panic!("{stem}: not JSON after JSON5 stripping: {e}"));
        // The pattern goes in as text, as TestEventPattern receives it.
        let pattern = serde_json::to_string(&case["EventPattern"]).expect("serialize pattern");
        let want = expectation(&stem);
        let got = outcome(&pattern, &case["Event"]);
        if got != want {
            let detail = Pattern::parse(&pattern).err().map(|e| e.to_string()).unwrap_or_default();
            failures.push(format!("{stem}: expected {want:?}, got {got:?} {detail}"));
        }
    }
    let passed = files.len() - failures.len();
    println!("eventbridge-patterns corpus: {passed}/{} cases pass", files.len());
    assert!(failures.is_empty(), "{} corpus case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// The duplicate-key case is kept as raw JSON (a JSON5 loader would merge the keys): AWS keeps
/// the last `location`, so the anything-but wins and the event matches.
#[test]
fn duplicate_key_case() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        eprintln!("SKIPPED: corpus directory {} is absent", dir.display());
        return;
    }
    let pattern = std::fs::read_to_string(dir.join("complex_multi_key_event_pattern.json")).expect("pattern");
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("complex_multi_key_event.json")).expect("event"),
    )
    .expect("event JSON");
    let p = Pattern::parse(&pattern).expect("valid pattern");
    assert!(p.matches(&event));
}

/// The `_EXC` cases whose AWS messages were recorded: the reasons must be AWS's.
#[test]
fn recorded_error_messages() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        eprintln!("SKIPPED: corpus directory {} is absent", dir.display());
        return;
    }
    let cases = [
        ("int_nolist_EXC", "\"int\" must be an object or an array"),
        ("string_nolist_EXC", "\"string\" must be an object or an array"),
        ("arrays_empty_EXC", "Empty arrays are not allowed"),
        ("content_numeric_operatorcasing_EXC", "Unrecognized match type NUMERIC"),
        ("operator_case_sensitive_EXC", "Unrecognized match type EXISTS"),
        ("content_numeric_EXC", "Bad numeric range operator: >"),
        ("content_numeric_syntax_EXC", "Value of < must be numeric"),
        ("content_numeric_number_EXC", "Value of numeric must be an array."),
        (
            "content_wildcard_complex_EXC",
            "Rule is too complex - try using fewer wildcard characters or fewer repeating character \
             sequences after a wildcard character",
        ),
        ("content_wildcard_repeating_star_EXC", "Consecutive wildcard characters at pos 26"),
        ("content_ignorecase_EXC", "equals-ignore-case match pattern must be a string"),
        ("content_ignorecase_list_EXC", "equals-ignore-case match pattern must be a string"),
        ("content_ip_address_EXC", "Malformed CIDR, one '/' required"),
        ("content_ip_address_bad_mask_EXC", "Malformed CIDR, mask bits must be an integer"),
        ("content_ip_address_bad_ip_EXC", "Nonstandard IP address: xx.11.xx"),
        ("content_ip_address_v6_bad_ip_EXC", "Nonstandard IP address: xxxx:db8:1234:1a00::"),
        ("content_ip_address_type_EXC", "prefix match pattern must be a string"),
        (
            "content_anything_but_ignorecase_EXC",
            "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.",
        ),
        (
            "content_anything_but_ignorecase_list_EXC",
            "Inside anything-but/equals-ignore-case list, number|start|null|boolean is not supported.",
        ),
        ("content_wildcard_int_EXC", "wildcard match pattern must be a string"),
        ("content_wildcard_list_EXC", "wildcard match pattern must be a string"),
        ("content_anything_wildcard_list_type_EXC", "wildcard match pattern must be a string"),
        ("content_anything_wildcard_type_EXC", "wildcard match pattern must be a string"),
        ("content_anything_suffix_list_type_EXC", "prefix/suffix match pattern must be a string"),
        ("content_anything_suffix_int_EXC", "prefix/suffix match pattern must be a string"),
        ("content_anything_prefix_list_type_EXC", "prefix/suffix match pattern must be a string"),
        ("content_anything_prefix_int_EXC", "prefix/suffix match pattern must be a string"),
        ("content_prefix_list_EXC", "prefix match pattern must be a string"),
        ("content_prefix_int_EXC", "prefix match pattern must be a string"),
        ("content_suffix_int_EXC", "suffix match pattern must be a string"),
        ("content_suffix_list_EXC", "suffix match pattern must be a string"),
        (
            "content_anything_prefix_ignorecase_EXC",
            "Value of anything-but must be an array or single string/number value.",
        ),
        (
            "content_anything_suffix_ignorecase_EXC",
            "Value of anything-but must be an array or single string/number value.",
        ),
    ];
    let mut wrong = Vec::new();
    for (stem, reason) in cases {
        let text = std::fs::read_to_string(dir.join(format!("{stem}.json5"))).expect("read case");
        let case: Value = serde_json::from_str(&json5_to_json(&text)).expect("JSON");
        let pattern = serde_json::to_string(&case["EventPattern"]).expect("serialize");
        match Pattern::parse(&pattern) {
            Ok(_) => wrong.push(format!("{stem}: accepted")),
            Err(e) if e.reason() != reason => wrong.push(format!("{stem}: {:?} != {reason:?}", e.reason())),
            Err(e) => assert_eq!(e.to_string(), format!("Event pattern is not valid. Reason: {reason}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn json5_stripping() {
    let s = json5_to_json("{\n // c\n \"a\": [1, 2,], /* x */ \"b\": \"// not, a comment,]\",\n}");
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v, serde_json::json!({"a": [1, 2], "b": "// not, a comment,]"}));
}
