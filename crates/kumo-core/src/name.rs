//! Function names and invocation targets (`name`, `name:alias`, `name:3`).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid function name {name:?}: {why}")]
pub struct NameError {
    pub name: String,
    pub why: &'static str,
}

/// A function name is a DNS label (RFC 1123): 1–63 of `a-z`, `0-9`, `-`, not starting or ending
/// with `-`. Names end up in URLs, hostnames (`NAME.fn.internal`) and file names, so the rule is strict.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let fail = |why| {
        Err(NameError {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() || name.len() > 63 {
        return fail("must be 1 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("only lowercase letters, digits and '-' are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return fail("must not start or end with '-'");
    }
    Ok(())
}

/// What a caller asks to invoke: a function and, optionally, a qualifier after `:`
/// (an alias, a version number or `$LATEST`; see [`crate::Qualifier`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub qualifier: Option<String>,
}

impl Target {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let (name, qualifier) = match s.split_once(':') {
            Some((n, q)) => (n, Some(q.to_string())),
            None => (s, None),
        };
        // A function of another namespace than `default` is named by its key, `NS/NAME`.
        if let Some((namespace, bare)) = name.split_once('/') {
            validate_name(namespace)?;
            validate_name(bare)?;
        } else {
            validate_name(name)?;
        }
        Ok(Self {
            name: name.to_string(),
            qualifier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["a", "hello", "hello-world", "f1", &"x".repeat(63)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "Hello",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "a/b",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn target_splits_qualifier() {
        let t = Target::parse("hello:prod").unwrap();
        assert_eq!(t.name, "hello");
        assert_eq!(t.qualifier.as_deref(), Some("prod"));
        assert_eq!(Target::parse("hello").unwrap().qualifier, None);
        assert!(Target::parse("Bad:prod").is_err());
        assert_eq!(Target::parse("shop/hello:3").unwrap().name, "shop/hello");
        assert!(Target::parse("shop/a/b").is_err());
        assert!(Target::parse("/hello").is_err());
    }
}
