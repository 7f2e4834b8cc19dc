//! The runtimes a Lambda function (a zip package run by a native process) may name.

use serde::{Deserialize, Serialize};

/// `runtime` of a Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum LambdaRuntimeName {
    /// The package's own executable `bootstrap` (Lambda's `provided` custom runtime: Rust
    /// `lambda_runtime`, Go, C++, shell).
    #[serde(rename = "provided", alias = "provided.al2023", alias = "provided.al2")]
    Provided,
    /// `handler = "module.function"`, run by AWS's Python runtime interface client.
    #[serde(
        rename = "python3",
        alias = "python3.11",
        alias = "python3.12",
        alias = "python3.13"
    )]
    Python3,
}

impl LambdaRuntimeName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provided => "provided",
            Self::Python3 => "python3",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!("unknown runtime {s:?} (kumo runs provided, provided.al2023, python3, python3.11-3.13)")
        })
    }
}

/// Checks a handler for `runtime`: Python's is `module.function` (the module may be in a
/// package: `pkg/mod.fn` or `pkg.mod.fn`).
pub fn validate_handler(runtime: LambdaRuntimeName, handler: Option<&str>) -> Result<(), String> {
    match (runtime, handler) {
        (LambdaRuntimeName::Python3, None) => {
            Err("a python3 function needs a handler, e.g. \"app.handler\"".into())
        }
        (LambdaRuntimeName::Python3, Some(h)) => {
            let (module, function) = h
                .rsplit_once('.')
                .ok_or_else(|| format!("handler {h:?} is not module.function"))?;
            let identifier = |s: &str| {
                !s.is_empty()
                    && !s.starts_with(|c: char| c.is_ascii_digit())
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            let module_ok = module.split(['.', '/']).all(identifier);
            if module_ok && identifier(function) {
                Ok(())
            } else {
                Err(format!("handler {h:?} is not module.function"))
            }
        }
        (LambdaRuntimeName::Provided, Some(h)) if h.len() > 128 || h.contains(['\0', '\n']) => {
            Err("handler is longer than 128 characters or has a NUL or newline".into())
        }
        (LambdaRuntimeName::Provided, _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_and_handlers() {
        assert_eq!(
            LambdaRuntimeName::parse("provided.al2023"),
            Ok(LambdaRuntimeName::Provided)
        );
        assert_eq!(
            LambdaRuntimeName::parse("python3.12"),
            Ok(LambdaRuntimeName::Python3)
        );
        assert!(
            LambdaRuntimeName::parse("nodejs20.x")
                .unwrap_err()
                .contains("unknown runtime")
        );
        let py = LambdaRuntimeName::Python3;
        assert!(validate_handler(py, Some("app.handler")).is_ok());
        assert!(validate_handler(py, Some("pkg/mod.fn")).is_ok());
        for bad in ["handler", "app.", ".fn", "a-b.fn", "1x.fn"] {
            assert!(validate_handler(py, Some(bad)).is_err(), "{bad}");
        }
        assert!(validate_handler(py, None).is_err());
        assert!(validate_handler(LambdaRuntimeName::Provided, None).is_ok());
    }
}
