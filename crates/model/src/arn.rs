//! ARNs and the many ways a Lambda function can be named in a request.
use crate::ValidationError;

/// The account and region a request acts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

pub const DEFAULT_ACCOUNT: &str = "000000000000";
pub const DEFAULT_REGION: &str = "us-east-1";

impl Scope {
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Scope { account: account.into(), region: region.into() }
    }
    pub fn function_arn(&self, name: &str) -> String {
        format!("arn:aws:lambda:{}:{}:function:{}", self.region, self.account, name)
    }
    pub fn log_group_arn(&self, group: &str) -> String {
        format!("arn:aws:logs:{}:{}:log-group:{}", self.region, self.account, group)
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new(DEFAULT_ACCOUNT, DEFAULT_REGION)
    }
}

/// A function named by a request: `name`, `name:qualifier`, `123456789012:function:name`,
/// or a full/partial ARN, as Lambda accepts in `FunctionName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
    /// Account and region when the reference was an ARN.
    pub account: Option<String>,
    pub region: Option<String>,
}

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Checks a bare function name: 1–64 characters of `[a-zA-Z0-9-_]`.
pub fn validate_function_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ValidationError::Constraint {
            field: "functionName",
            value: name.to_string(),
            constraint: "Member must have length less than or equal to 64".into(),
        });
    }
    if !name.chars().all(valid_name_char) {
        return Err(ValidationError::Constraint {
            field: "functionName",
            value: name.to_string(),
            constraint: "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?".into(),
        });
    }
    Ok(())
}

fn valid_qualifier(q: &str) -> bool {
    !q.is_empty() && q.len() <= 128 && (q == "$LATEST" || q.chars().all(valid_name_char))
}

impl FunctionRef {
    /// Parses any of Lambda's accepted forms. The whole identifier may be up to 140
    /// characters (an ARN); the name inside it up to 64.
    pub fn parse(input: &str) -> Result<FunctionRef, ValidationError> {
        let too_long = |max: usize| ValidationError::Constraint {
            field: "functionName",
            value: input.to_string(),
            constraint: format!("Member must have length less than or equal to {max}"),
        };
        if input.len() > 140 {
            return Err(too_long(140));
        }
        let parts: Vec<&str> = input.split(':').collect();
        let (account, region, name, qualifier) = match parts.as_slice() {
            [name] => (None, None, *name, None),
            [name, q] => (None, None, *name, Some(*q)),
            [acct, "function", name] => (Some(*acct), None, *name, None),
            [acct, "function", name, q] => (Some(*acct), None, *name, Some(*q)),
            ["arn", _partition, "lambda", region, acct, "function", name] => {
                (Some(*acct), Some(*region), *name, None)
            }
            ["arn", _partition, "lambda", region, acct, "function", name, q] => {
                (Some(*acct), Some(*region), *name, Some(*q))
            }
            _ => {
                return Err(ValidationError::Constraint {
                    field: "functionName",
                    value: input.to_string(),
                    constraint: "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?".into(),
                });
            }
        };
        validate_function_name(name).map_err(|e| match e {
            ValidationError::Constraint { constraint, .. } => {
                ValidationError::Constraint { field: "functionName", value: input.to_string(), constraint }
            }
            other => other,
        })?;
        if let Some(acct) = account
            && (acct.len() != 12 || !acct.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(ValidationError::InvalidParameter(format!(
                "Invalid account id in function name: {input}"
            )));
        }
        if let Some(q) = qualifier
            && !valid_qualifier(q)
        {
            return Err(ValidationError::Constraint {
                field: "qualifier",
                value: q.to_string(),
                constraint: "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)".into(),
            });
        }
        Ok(FunctionRef {
            name: name.to_string(),
            qualifier: qualifier.map(str::to_string),
            account: account.map(str::to_string),
            region: region.map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_lambda_accepts() {
        let r = FunctionRef::parse("my-fn").unwrap();
        assert_eq!((r.name.as_str(), r.qualifier), ("my-fn", None));
        let r = FunctionRef::parse("my-fn:$LATEST").unwrap();
        assert_eq!(r.qualifier.as_deref(), Some("$LATEST"));
        let r = FunctionRef::parse("123456789012:function:my-fn").unwrap();
        assert_eq!(r.account.as_deref(), Some("123456789012"));
        let r = FunctionRef::parse("arn:aws:lambda:us-west-2:123456789012:function:my-fn:prod").unwrap();
        assert_eq!(r.region.as_deref(), Some("us-west-2"));
        assert_eq!(r.qualifier.as_deref(), Some("prod"));
        assert_eq!(r.name, "my-fn");
    }

    #[test]
    fn refuses_bad_names() {
        assert!(FunctionRef::parse(&"a".repeat(65)).is_err());
        assert!(FunctionRef::parse(&"a".repeat(141)).is_err());
        assert!(FunctionRef::parse("bad name").is_err());
        assert!(FunctionRef::parse("").is_err());
        assert!(FunctionRef::parse("a:b:c:d:e").is_err());
        assert!(FunctionRef::parse(&"a".repeat(64)).is_ok());
    }
}
