//! Conformance corpus (from asl-validator): every `valid-*.json` must parse and every
//! `invalid-*.json` must be rejected, except the files listed below with the reason.

use nimbus_workflows::StateMachine;
use nimbus_workflows::error::codes;
use std::path::PathBuf;

/// Valid definitions this implementation refuses, and why.
const UNSUPPORTED_VALID: &[(&str, &str)] = &[
    ("valid-assign.asl.json", "JSONata"),
    ("valid-comments-are-not-parsed.asl.json", "JSONata"),
    ("valid-json-surround-syntax.json", "JSONata"),
    ("valid-jsonata-syntax-function-call.json", "JSONata"),
    ("valid-jsonata-syntax-path-expression.json", "JSONata"),
    ("valid-jsonata-syntax-simple-arithmetic.json", "JSONata"),
    ("valid-jsonata.asl.json", "JSONata"),
    ("valid-map-items.asl.json", "JSONata"),
    ("valid-map-with-item-batcher-jsonata.json", "JSONata"),
    ("valid-task-timeout-jsonata.json", "JSONata"),
    ("valid-wait-jsonata.asl.json", "JSONata"),
    (
        "valid-task-intrisic-function.json",
        "Resource given as a CloudFormation intrinsic object ({\"Ref\": ...}, {\"Fn::GetAtt\": ...}): \
         template syntax resolved before CreateStateMachine, which itself requires a string",
    ),
];

/// Invalid definitions that are rejected, but only because they use JSONata (so the
/// specific mistake they contain is not what this implementation detects).
const REJECTED_AS_JSONATA: &[&str] = &[
    "invalid-assign.asl.json",
    "invalid-json-surround-syntax-extra-spaces.json",
    "invalid-jsonata-fields.json",
    "invalid-jsonata-path-fields.asl.json",
    "invalid-jsonata-surround-syntax-no-close.json",
    "invalid-jsonata-surround-syntax-no-open.json",
    "invalid-jsonata-surround-syntax-no-spaces.json",
    "invalid-jsonata-syntax-arithmetic.json",
    "invalid-jsonata-syntax-jsonpath-in-jsonata-surround.json",
    "invalid-jsonata-syntax-mismatched-parens.json",
    "invalid-map-items.asl.json",
];

/// The corpus sits in the repository's sibling `shared/` folder; `ASL_CORPUS_DIR`
/// overrides it for out-of-tree builds.
fn corpus_dir() -> PathBuf {
    match std::env::var_os("ASL_CORPUS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/asl-definitions"),
    }
}

#[test]
fn asl_corpus() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("corpus not found at {}", dir.display());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && (n.starts_with("valid-") || n.starts_with("invalid-")))
        .collect();
    names.sort();
    assert!(names.len() > 90, "expected the whole corpus, found {} files", names.len());

    let mut failures = Vec::new();
    let (mut passed, mut listed) = (0, 0);
    for name in &names {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let result = StateMachine::parse(&text);
        if name.starts_with("valid-") {
            if let Some((_, why)) = UNSUPPORTED_VALID.iter().find(|(n, _)| n == name) {
                listed += 1;
                // Still refused, and for the stated reason (not some other bug).
                match &result {
                    Ok(_) => failures.push(format!(
                        "{name}: listed as unsupported ({why}) but now parses: remove it from the list"
                    )),
                    Err(e) if *why == "JSONata" && !e.has_code(codes::UNSUPPORTED_FEATURE) => {
                        failures.push(format!("{name}: expected UNSUPPORTED_FEATURE, got {e}"))
                    }
                    Err(_) => {}
                }
                continue;
            }
            match result {
                Ok(_) => passed += 1,
                Err(e) => failures.push(format!("{name}: should parse but was rejected: {e}")),
            }
        } else {
            match result {
                Ok(_) => failures.push(format!("{name}: should be rejected but parsed")),
                Err(e) => {
                    let jsonata = REJECTED_AS_JSONATA.contains(&name.as_str());
                    if jsonata {
                        listed += 1;
                    } else {
                        passed += 1;
                    }
                    if jsonata != e.has_code(codes::UNSUPPORTED_FEATURE) {
                        failures.push(format!("{name}: rejected for an unexpected reason: {e}"));
                    }
                }
            }
        }
    }
    println!(
        "ASL corpus: {passed} conformant, {listed} listed as unsupported, {} failures, {} files",
        failures.len(),
        names.len()
    );
    assert!(failures.is_empty(), "corpus failures:\n{}", failures.join("\n"));
}

/// Spot-checks of the diagnostics' wording and locations (AWS's style).
#[test]
fn corpus_messages() {
    let dir = corpus_dir();
    let check = |file: &str, expected: &[&str]| {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let err = StateMachine::parse(&text).unwrap_err().to_string();
        for e in expected {
            assert!(err.contains(e), "{file}: expected {e:?} in {err}");
        }
    };
    check(
        "invalid-inexistant-state.json",
        &["MISSING_TRANSITION_TARGET: Missing 'Next' target: Finished at /States/Start State/Next"],
    );
    check(
        "invalid-unreachable-state.json",
        &[
            "MISSING_TRANSITION_TARGET: State \"Finished Choice\" is not reachable. at /States/Finished Choice",
        ],
    );
    check("invalid-missing-terminal.json", &["MISSING_END_STATE: Workflow has no terminal state"]);
    check("invalid-map-dupe-state.json", &["DUPLICATE_STATE_NAME: Duplicate State name: Final State"]);
    check(
        "invalid-exercise-ajv-additional-properties.asl.json",
        &["SCHEMA_VALIDATION_FAILED: Field 'bugInputPath' is not supported at /States/PassState"],
    );
    check(
        "invalid-map-ob-link.json",
        &["Missing 'Next' target: Final State at /States/Map/Iterator/States/ChoiceState/Choices[1]/Next"],
    );
    check("invalid-duplicate-fields.json", &["Duplicate field 'channel'"]);
    check(
        "invalid-payload-template.asl.json",
        &["The value for the field 'lorem.$' must be a valid JSONPath"],
    );
    check(
        "invalid-json-path.json",
        &[
            "at /States/Invalid1/ResultPath",
            "at /States/Invalid2/ResultPath",
            "at /States/Invalid3/ResultPath",
            "at /States/Invalid4/ResultPath",
        ],
    );
}
