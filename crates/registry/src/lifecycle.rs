//! ECR lifecycle policies: AWS's policy document parsed and validated, and the pure
//! evaluation that says which images expire (no I/O, the time is passed in).
use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountType {
    /// Keep the newest N images the rule selects, expire the rest.
    ImageCountMoreThan(u64),
    /// Expire images pushed more than N days ago.
    SinceImagePushed { days: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRule {
    pub priority: u64,
    pub tag_status: TagStatus,
    pub tag_prefixes: Vec<String>,
    pub tag_patterns: Vec<String>,
    pub count: CountType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecyclePolicy {
    /// Sorted by priority (lowest number first: it is evaluated first).
    pub rules: Vec<LifecycleRule>,
}

/// An image as a lifecycle rule sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPolicy {
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    rule_priority: Option<i64>,
    #[allow(dead_code)]
    description: Option<String>,
    selection: Option<RawSelection>,
    action: Option<RawAction>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSelection {
    tag_status: Option<String>,
    tag_prefix_list: Option<Vec<String>>,
    tag_pattern_list: Option<Vec<String>>,
    count_type: Option<String>,
    count_unit: Option<String>,
    count_number: Option<i64>,
}

#[derive(Deserialize)]
struct RawAction {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Parses and validates a policy the way ECR does; the error is the reason ECR gives
/// after "Lifecycle policy validation failure: ".
pub fn parse(text: &str) -> Result<LifecyclePolicy, String> {
    let raw: RawPolicy =
        serde_json::from_str(text).map_err(|e| format!("Could not parse the policy: {e}"))?;
    if raw.rules.is_empty() {
        return Err("object has missing required properties ([\"rules\"])".into());
    }
    let mut rules = Vec::new();
    for r in raw.rules {
        let priority = match r.rule_priority {
            Some(p) if p >= 1 => p as u64,
            Some(_) => return Err("rulePriority must be a positive integer".into()),
            None => return Err("object has missing required properties ([\"rulePriority\"])".into()),
        };
        if rules.iter().any(|x: &LifecycleRule| x.priority == priority) {
            return Err(format!("Rule priority {priority} is not unique"));
        }
        let sel = r.selection.ok_or("object has missing required properties ([\"selection\"])")?;
        match r.action.and_then(|a| a.kind) {
            Some(k) if k == "expire" => {}
            Some(k) => {
                return Err(format!(
                    "instance value (\"{k}\") not found in enum (possible values: [\"expire\"])"
                ));
            }
            None => return Err("object has missing required properties ([\"action\"])".into()),
        }
        let tag_status = match sel.tag_status.as_deref() {
            Some("tagged") => TagStatus::Tagged,
            Some("untagged") => TagStatus::Untagged,
            Some("any") => TagStatus::Any,
            Some(other) => {
                return Err(format!(
                    "instance value (\"{other}\") not found in enum (possible values: [\"tagged\",\"untagged\",\"any\"])"
                ));
            }
            None => return Err("object has missing required properties ([\"tagStatus\"])".into()),
        };
        let tag_prefixes = sel.tag_prefix_list.unwrap_or_default();
        let tag_patterns = sel.tag_pattern_list.unwrap_or_default();
        if tag_status == TagStatus::Tagged && tag_prefixes.is_empty() && tag_patterns.is_empty() {
            return Err("tagPrefixList or tagPatternList is required when tagStatus is tagged".into());
        }
        if tag_status != TagStatus::Tagged && !(tag_prefixes.is_empty() && tag_patterns.is_empty()) {
            return Err("tagPrefixList and tagPatternList can only be used when tagStatus is tagged".into());
        }
        let n = match sel.count_number {
            Some(n) if n >= 1 => n as u64,
            Some(_) => return Err("countNumber must be a positive integer".into()),
            None => return Err("object has missing required properties ([\"countNumber\"])".into()),
        };
        let count = match sel.count_type.as_deref() {
            Some("imageCountMoreThan") => {
                if sel.count_unit.is_some() {
                    return Err("countUnit cannot be used with imageCountMoreThan".into());
                }
                CountType::ImageCountMoreThan(n)
            }
            Some("sinceImagePushed") => match sel.count_unit.as_deref() {
                Some("days") => CountType::SinceImagePushed { days: n },
                Some(u) => {
                    return Err(format!(
                        "instance value (\"{u}\") not found in enum (possible values: [\"days\"])"
                    ));
                }
                None => return Err("countUnit is required when countType is sinceImagePushed".into()),
            },
            Some(other) => {
                return Err(format!(
                    "instance value (\"{other}\") not found in enum (possible values: [\"imageCountMoreThan\",\"sinceImagePushed\"])"
                ));
            }
            None => return Err("object has missing required properties ([\"countType\"])".into()),
        };
        rules.push(LifecycleRule { priority, tag_status, tag_prefixes, tag_patterns, count });
    }
    rules.sort_by_key(|r| r.priority);
    // ECR: a rule selecting `any` must be the last one evaluated.
    if let Some(pos) = rules.iter().position(|r| r.tag_status == TagStatus::Any)
        && pos + 1 != rules.len()
    {
        return Err("The rule with tagStatus 'any' must have the highest value for rulePriority".into());
    }
    Ok(LifecyclePolicy { rules })
}

/// `*` matches any run of characters (ECR's tagPatternList wildcards).
fn wildcard(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether `tag` matches an exclusion / pattern filter (`*` wildcards).
pub fn tag_matches(pattern: &str, tag: &str) -> bool {
    wildcard(pattern, tag)
}

impl LifecycleRule {
    fn selects(&self, c: &Candidate) -> bool {
        match self.tag_status {
            TagStatus::Any => true,
            TagStatus::Untagged => c.tags.is_empty(),
            // ECR: with several prefixes (or patterns), only images carrying all of them match.
            TagStatus::Tagged => {
                !c.tags.is_empty()
                    && self.tag_prefixes.iter().all(|p| c.tags.iter().any(|t| t.starts_with(p.as_str())))
                    && self.tag_patterns.iter().all(|p| c.tags.iter().any(|t| wildcard(p, t)))
            }
        }
    }
}

/// The digests the policy expires. Rules run by priority; an image selected by a rule is
/// never considered by a later one (ECR: "an image that matches the tagging requirements of
/// a rule cannot be expired by a rule with a lower priority").
pub fn expired(policy: &LifecyclePolicy, images: &[Candidate], now: DateTime<Utc>) -> Vec<String> {
    expired_by_rule(policy, images, now).into_iter().map(|(d, _)| d).collect()
}

/// Like `expired`, with the priority of the rule that expires each image.
pub fn expired_by_rule(
    policy: &LifecyclePolicy,
    images: &[Candidate],
    now: DateTime<Utc>,
) -> Vec<(String, u64)> {
    let mut remaining: Vec<&Candidate> = images.iter().collect();
    let mut out = Vec::new();
    for rule in &policy.rules {
        let (mut selected, rest): (Vec<&Candidate>, Vec<&Candidate>) =
            remaining.into_iter().partition(|c| rule.selects(c));
        remaining = rest;
        match rule.count {
            CountType::ImageCountMoreThan(n) => {
                // Newest first; ties broken by digest so the outcome is deterministic.
                selected.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then_with(|| a.digest.cmp(&b.digest)));
                out.extend(selected.iter().skip(n as usize).map(|c| (c.digest.clone(), rule.priority)));
            }
            CountType::SinceImagePushed { days } => {
                let limit = chrono::Duration::days(days as i64);
                out.extend(
                    selected
                        .iter()
                        .filter(|c| now - c.pushed_at > limit)
                        .map(|c| (c.digest.clone(), rule.priority)),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(d: &str, tags: &[&str], age_days: i64, now: DateTime<Utc>) -> Candidate {
        Candidate {
            digest: d.into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            pushed_at: now - chrono::Duration::days(age_days),
        }
    }

    #[test]
    fn count_rule_keeps_the_newest() {
        let now = Utc::now();
        let p = parse(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]}"#).unwrap();
        let imgs = vec![cand("a", &["1"], 3, now), cand("b", &[], 2, now), cand("c", &["3"], 1, now)];
        assert_eq!(expired(&p, &imgs, now), vec!["a".to_string()]);
    }

    #[test]
    fn age_rule_and_priorities() {
        let now = Utc::now();
        let p = parse(r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":10},"action":{"type":"expire"}}]}"#).unwrap();
        let imgs = vec![
            cand("old-prod", &["prod-1"], 30, now),
            cand("old-dev", &["dev-1"], 30, now),
            cand("new-untagged", &[], 1, now),
            cand("old-untagged", &[], 11, now),
        ];
        let mut e = expired(&p, &imgs, now);
        e.sort();
        // old-prod is selected by rule 1 (and kept), so rule 2 never sees it.
        assert_eq!(e, vec!["old-dev".to_string(), "old-untagged".to_string()]);
    }

    #[test]
    fn validation() {
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#).is_err());
        assert!(parse(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#).is_err());
        assert!(parse(r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#).is_err());
        assert!(wildcard("v*-prod", "v1.2-prod"));
        assert!(!wildcard("v*-prod", "v1.2-dev"));
    }
}
