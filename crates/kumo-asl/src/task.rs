//! What a `Task` calls, and what its answer becomes: the function and payload its resource
//! and effective input name (the `arn:aws:states:::lambda:invoke` integration takes both
//! from its `FunctionName` and `Payload` parameters), the integration's `{"Payload": ...}`
//! wrapping of the result, and the ASL error name of a failed call.

use crate::AslError;
use crate::definition::Resource;
use serde_json::{Value, json};

/// One function call of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Value,
}

/// The call a task with `resource` makes with its effective `input`.
pub fn call(resource: &Resource, input: &Value) -> Result<Call, AslError> {
    match resource {
        Resource::Function {
            name,
            qualifier,
            integration: false,
        } => Ok(Call {
            function: name.clone(),
            qualifier: qualifier.clone(),
            payload: input.clone(),
        }),
        Resource::Callback { name: Some(name) } => Ok(Call {
            function: name.clone(),
            qualifier: None,
            payload: input.clone(),
        }),
        Resource::Function { .. } | Resource::Callback { name: None } => {
            let Some(spec) = input.get("FunctionName").and_then(Value::as_str) else {
                return Err(AslError::runtime(
                    "the lambda:invoke integration needs a FunctionName parameter",
                ));
            };
            let (function, qualifier) = function_name(spec).ok_or_else(|| {
                AslError::runtime(format!("FunctionName {spec:?} names no function"))
            })?;
            Ok(Call {
                function,
                qualifier,
                payload: input.get("Payload").cloned().unwrap_or(json!({})),
            })
        }
    }
}

/// A `FunctionName` parameter: `NAME`, `NAME:QUALIFIER`, or a Lambda function ARN.
fn function_name(spec: &str) -> Option<(String, Option<String>)> {
    let spec = match spec.strip_prefix("arn:aws:lambda:") {
        // REGION:ACCOUNT:function:NAME[:QUALIFIER]
        Some(rest) => rest.splitn(3, ':').nth(2)?.strip_prefix("function:")?,
        None => spec,
    };
    let mut parts = spec.splitn(2, ':');
    let name = parts.next().filter(|n| !n.is_empty())?;
    Some((name.to_string(), parts.next().map(str::to_string)))
}

/// The task's result from the function's answer: the integration wraps it as Step Functions
/// does (`Payload`, `StatusCode`).
pub fn result(resource: &Resource, answer: Value) -> Value {
    match resource {
        Resource::Function {
            integration: true, ..
        } => json!({"Payload": answer, "StatusCode": 200}),
        _ => answer,
    }
}

/// A function's answer body as JSON: empty is null, and text that is not JSON is a string.
pub fn answer(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// The ASL error of a failed call: a Lambda-style error document's `errorType` and
/// `errorMessage`; kumo's `timeout` is `States.Timeout` (the one error `States.TaskFailed`
/// does not take); any other kumo error is its code (`function_error`, `memory_limit`,
/// `function_not_found`, ...).
pub fn error(code: &str, message: &str, document: Option<&[u8]>) -> AslError {
    if let Some(document) = document.and_then(|d| serde_json::from_slice::<Value>(d).ok())
        && let Some(kind) = document.get("errorType").and_then(Value::as_str)
    {
        return AslError {
            error: kind.to_string(),
            cause: document
                .get("errorMessage")
                .and_then(Value::as_str)
                .unwrap_or(message)
                .to_string(),
        };
    }
    AslError {
        error: match code {
            "timeout" => "States.Timeout".into(),
            code => code.to_string(),
        },
        cause: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::resource;

    #[test]
    fn a_resource_names_the_function_or_the_integration_takes_it_from_the_input() {
        let direct = call(
            &resource("kumo:function:pay:live").unwrap(),
            &json!({"a": 1}),
        )
        .unwrap();
        assert_eq!(direct.function, "pay");
        assert_eq!(direct.qualifier.as_deref(), Some("live"));
        assert_eq!(direct.payload, json!({"a": 1}));

        let integration = resource("arn:aws:states:::lambda:invoke").unwrap();
        let input = json!({
            "FunctionName": "arn:aws:lambda:eu-west-1:123456789012:function:ship:2",
            "Payload": {"order": 7}
        });
        let via = call(&integration, &input).unwrap();
        assert_eq!(
            (via.function.as_str(), via.qualifier.as_deref()),
            ("ship", Some("2"))
        );
        assert_eq!(via.payload, json!({"order": 7}));
        assert_eq!(
            result(&integration, json!("ok")),
            json!({"Payload": "ok", "StatusCode": 200})
        );
        assert_eq!(
            call(&integration, &json!({"Payload": 1}))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
        let callback = resource("arn:aws:states:::lambda:invoke.waitForTaskToken").unwrap();
        let by_name = call(&callback, &json!({"FunctionName": "approve"})).unwrap();
        assert_eq!(by_name.function, "approve");
        assert_eq!(by_name.payload, json!({}));
    }

    #[test]
    fn answers_and_errors_become_json_and_asl_names() {
        assert_eq!(answer(b""), Value::Null);
        assert_eq!(answer(b"{\"x\":1}"), json!({"x": 1}));
        assert_eq!(answer(b"plain"), json!("plain"));
        let lambda = error(
            "function_error",
            "the function failed",
            Some(br#"{"errorType":"CardDeclined","errorMessage":"no funds"}"#),
        );
        assert_eq!(
            (lambda.error.as_str(), lambda.cause.as_str()),
            ("CardDeclined", "no funds")
        );
        assert_eq!(error("timeout", "slow", None).error, "States.Timeout");
        assert_eq!(
            error("memory_limit", "big", Some(b"nope")).error,
            "memory_limit"
        );
    }
}
