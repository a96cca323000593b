//! Names and ARNs of state machines and executions, validated as Step Functions does.
use crate::Error;

/// State machine and execution names: 1–80 characters, none of whitespace, brackets,
/// wildcards, ``"#%\^|~`$&,;:/`` or control characters.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let bad = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
    };
    let len = name.chars().count();
    if len == 0 || len > 80 || name.chars().any(bad) {
        return Err(Error::InvalidName(format!("Invalid Name: '{name}'")));
    }
    Ok(())
}

/// Checks `arn:aws:states:REGION:ACCOUNT:KIND:NAME[:MORE]` names a resource of `kind`.
pub(crate) fn check_arn(arn: &str, kind: &str) -> Result<(), Error> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    let ["arn", _, "states", region, account, k, tail] = parts.as_slice() else {
        return Err(Error::InvalidArn(format!("Invalid Arn: 'Invalid ARN prefix: {arn}'")));
    };
    if *k != kind {
        return Err(Error::InvalidArn(format!(
            "Invalid Arn: 'Resource type not valid in this context: {k}'"
        )));
    }
    if region.is_empty() || account.is_empty() || tail.is_empty() {
        return Err(Error::InvalidArn(format!("Invalid Arn: '{arn}'")));
    }
    Ok(())
}

pub(crate) fn machine_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:states:{region}:{account}:stateMachine:{name}")
}

/// Standard executions are `…:execution:MACHINE:NAME`; express ones `…:express:MACHINE:NAME:ID`.
pub(crate) fn execution_arn(machine_arn: &str, name: &str, express: bool) -> String {
    let base = machine_arn.replacen(":stateMachine:", if express { ":express:" } else { ":execution:" }, 1);
    if express { format!("{base}:{name}:{}", uuid::Uuid::new_v4()) } else { format!("{base}:{name}") }
}

/// An IAM role ARN, as CreateStateMachine requires.
pub(crate) fn check_role_arn(arn: &str) -> Result<(), Error> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "iam", "", _, res] if res.starts_with("role/") => Ok(()),
        ["arn", ..] => {
            Err(Error::InvalidArn(format!("Invalid Arn: 'Resource type not valid in this context: {arn}'")))
        }
        _ => Err(Error::InvalidArn(format!("Invalid Arn: 'Invalid ARN prefix: {arn}'"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("order-flow_1.v2").is_ok());
        for bad in ["", "a b", "a/b", "a:b", "a*", "tab\t", &"x".repeat(81)] {
            assert!(matches!(check_name(bad), Err(Error::InvalidName(_))), "{bad:?}");
        }
    }

    #[test]
    fn arns() {
        assert!(check_arn("arn:aws:states:us-east-1:123:execution:m:e1", "execution").is_ok());
        assert!(check_arn("arn:aws:states:us-east-1:123:stateMachine:m", "execution").is_err());
        assert!(check_arn("nope", "stateMachine").is_err());
        let m = machine_arn("eu-west-1", "1", "flow");
        assert_eq!(execution_arn(&m, "x", false), "arn:aws:states:eu-west-1:1:execution:flow:x");
        assert!(execution_arn(&m, "x", true).starts_with("arn:aws:states:eu-west-1:1:express:flow:x:"));
        assert!(check_role_arn("arn:aws:iam::1:role/r").is_ok());
        assert!(check_role_arn("arn:aws:s3:::b").is_err());
    }
}
