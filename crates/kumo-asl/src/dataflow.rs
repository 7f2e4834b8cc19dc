//! A state's data flow, in the order ASL applies it:
//!
//! ```text
//! state input ─InputPath─▶ ─Parameters─▶ task input ─▶ (the task) ─▶ result
//! result ─ResultSelector─▶ ─ResultPath (into the state input)─▶ ─OutputPath─▶ state output
//! ```
//!
//! A payload template (`Parameters`, `ResultSelector`, and a Map's `ItemSelector`) copies its
//! JSON, replacing each field whose name ends in `.$` by what its value (a path, or an
//! intrinsic call) gives, under the name without `.$`.

use crate::path::Path;
use crate::{AslError, intrinsics};
use serde_json::{Map, Value};

/// `InputPath` / `OutputPath`: absent keeps everything (`$`), null keeps nothing (`{}`).
pub fn filter(
    path: Option<&Option<String>>,
    value: &Value,
    context: &Value,
) -> Result<Value, AslError> {
    match path {
        None => Ok(value.clone()),
        Some(None) => Ok(Value::Object(Map::new())),
        Some(Some(text)) => parse(text)?.select(value, context),
    }
}

/// Fills a payload template from `input` (for `$`) and `context` (for `$$`).
pub fn template(shape: &Value, input: &Value, context: &Value) -> Result<Value, AslError> {
    match shape {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (name, value) in fields {
                match name.strip_suffix(".$") {
                    Some(name) => {
                        let text = value.as_str().ok_or_else(|| {
                            AslError::runtime(format!(
                                "the field {name}.$ must hold a path or an intrinsic call"
                            ))
                        })?;
                        out.insert(name.to_string(), dynamic(text, input, context)?);
                    }
                    None => {
                        out.insert(name.clone(), template(value, input, context)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| template(item, input, context))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// A `.$` field's value: an intrinsic call or a path.
fn dynamic(text: &str, input: &Value, context: &Value) -> Result<Value, AslError> {
    if intrinsics::is_call(text) {
        let call = intrinsics::parse(text)?;
        return intrinsics::evaluate(&call, input, context);
    }
    parse(text)?.select(input, context)
}

/// `ResultPath`: absent puts the result in place of the input (`$`), null discards it (the
/// output is the input), a reference path puts it there in a copy of the input.
pub fn place(
    result_path: Option<&Option<String>>,
    input: &Value,
    result: Value,
) -> Result<Value, AslError> {
    match result_path {
        None => Ok(result),
        Some(None) => Ok(input.clone()),
        Some(Some(text)) => {
            let path = parse(text)?;
            if path.context || !path.is_reference() {
                return Err(AslError::runtime(format!(
                    "the result path {text} must be a reference path into the input"
                )));
            }
            path.put(input.clone(), result)
        }
    }
}

fn parse(text: &str) -> Result<Path, AslError> {
    Path::parse(text).map_err(AslError::runtime)
}

/// The fields of a state that shape its data (all optional; `Some(None)` is an explicit JSON
/// null, which means something different from absent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataFlow {
    pub input_path: Option<Option<String>>,
    pub parameters: Option<Value>,
    pub result_selector: Option<Value>,
    pub result_path: Option<Option<String>>,
    pub output_path: Option<Option<String>>,
}

impl DataFlow {
    /// The state input as the task (or Pass, or Map) sees it.
    pub fn task_input(&self, state_input: &Value, context: &Value) -> Result<Value, AslError> {
        let input = filter(self.input_path.as_ref(), state_input, context)?;
        match &self.parameters {
            Some(parameters) => template(parameters, &input, context),
            None => Ok(input),
        }
    }

    /// The state output, from its input and the task's result.
    pub fn state_output(
        &self,
        state_input: &Value,
        result: Value,
        context: &Value,
    ) -> Result<Value, AslError> {
        let result = match &self.result_selector {
            Some(selector) => template(selector, &result, context)?,
            None => result,
        };
        let placed = place(self.result_path.as_ref(), state_input, result)?;
        filter(self.output_path.as_ref(), &placed, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn some(text: &str) -> Option<Option<String>> {
        Some(Some(text.to_string()))
    }

    #[test]
    fn the_whole_flow_as_the_spec_example_runs_it() {
        // The States Language's own example of InputPath, Parameters, ResultSelector,
        // ResultPath and OutputPath together.
        let flow = DataFlow {
            input_path: some("$.library"),
            parameters: Some(
                json!({"staticValue": "Just a string", "catalog": {"myFavoriteMovie.$": "$.movies[0]"}}),
            ),
            result_selector: Some(
                json!({"modifiedPayload": {"body.$": "$.Payload.body", "statusCode.$": "$.Payload.statusCode"}}),
            ),
            result_path: some("$.TaskResult"),
            output_path: some("$.TaskResult.modifiedPayload"),
        };
        let state_input = json!({"library": {"movies": [{"title": "Dune"}, {"title": "Heat"}]}});
        let context = json!({});
        let task_input = flow.task_input(&state_input, &context).unwrap();
        assert_eq!(
            task_input,
            json!({"staticValue": "Just a string", "catalog": {"myFavoriteMovie": {"title": "Dune"}}})
        );
        let result = json!({"Payload": {"body": "hi", "statusCode": 200, "extra": 1}});
        let output = flow.state_output(&state_input, result, &context).unwrap();
        assert_eq!(output, json!({"body": "hi", "statusCode": 200}));
    }

    #[test]
    fn absent_and_null_mean_different_things() {
        let input = json!({"a": 1});
        let context = json!({});
        let flow = DataFlow::default();
        assert_eq!(flow.task_input(&input, &context).unwrap(), input);
        assert_eq!(
            flow.state_output(&input, json!(2), &context).unwrap(),
            json!(2)
        );
        let nulls = DataFlow {
            input_path: Some(None),
            result_path: Some(None),
            output_path: None,
            ..DataFlow::default()
        };
        assert_eq!(nulls.task_input(&input, &context).unwrap(), json!({}));
        assert_eq!(
            nulls.state_output(&input, json!(2), &context).unwrap(),
            input
        );
        let no_output = DataFlow {
            output_path: Some(None),
            ..DataFlow::default()
        };
        assert_eq!(
            no_output.state_output(&input, json!(2), &context).unwrap(),
            json!({})
        );
    }

    #[test]
    fn templates_take_paths_context_and_intrinsics_at_any_depth() {
        let input = json!({"who": "Ada", "items": [1, 2]});
        let context = json!({"Execution": {"Id": "x-1"}, "Map": {"Item": {"Value": 7}}});
        let filled = template(
            &json!({
                "greeting.$": "States.Format('hi {}', $.who)",
                "run.$": "$$.Execution.Id",
                "nested": [{"item.$": "$$.Map.Item.Value"}, "plain"],
                "count.$": "States.ArrayLength($.items)",
                "kept": {"x": 1}
            }),
            &input,
            &context,
        )
        .unwrap();
        assert_eq!(
            filled,
            json!({"greeting": "hi Ada", "run": "x-1", "nested": [{"item": 7}, "plain"], "count": 2, "kept": {"x": 1}})
        );
        let bad = template(&json!({"x.$": 3}), &input, &context).unwrap_err();
        assert!(bad.cause.contains("x.$"), "{bad}");
        let missing = template(&json!({"x.$": "$.nope"}), &input, &context).unwrap_err();
        assert_eq!(missing.error, "States.Runtime");
    }

    #[test]
    fn a_result_path_must_name_one_place_in_the_input() {
        let input = json!({"a": 1});
        assert_eq!(
            place(some("$.r.s").as_ref(), &input, json!(2)).unwrap(),
            json!({"a": 1, "r": {"s": 2}})
        );
        assert!(place(some("$$.x").as_ref(), &input, json!(2)).is_err());
        assert!(place(some("$.a[*]").as_ref(), &input, json!(2)).is_err());
    }
}
