//! One step of an execution, as a pure function: what a state does with its input, and what
//! happens after its work (a task's result or error, a Parallel's or Map's results).
//! [`crate::execution`] applies these to an execution's threads.

use crate::AslError;
use crate::dataflow::{self, DataFlow};
use crate::definition::{Kind, Resource, State, StateMachine, Wait};
use crate::errors::{Retrier, takes};
use serde_json::{Value, json};

/// What entering a state asks for.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Go on to `state` with `input`.
    Next { state: String, input: Value },
    /// The machine ends, successfully, with `output`.
    Succeed { output: Value },
    /// The machine ends with an error (a `Fail` state, or an error nothing caught).
    Fail { error: String, cause: String },
    /// Run a task with `input`; then [`after_result`] or [`after_error`].
    Task {
        resource: Resource,
        input: Value,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
    },
    /// Wait until `until_ms` (unix ms), then go on as `then` says.
    Wait { until_ms: i64, then: Box<Step> },
    /// Run each branch with the same input; then [`after_result`] with their outputs in order.
    Parallel { input: Value },
    /// Run the item processor once per item (its input), at most `max_concurrency` at once
    /// (0: no bound); then [`after_result`] with their outputs in order.
    Map {
        items: Vec<Value>,
        max_concurrency: u32,
    },
}

/// What to do after a state's work failed with `error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// Run the work again after `delay_ms`; `retrier` is the index of the retrier whose
    /// count goes up.
    Retry { retrier: usize, delay_ms: u64 },
    /// Go on to a catcher's state.
    Catch(Step),
    /// Nothing takes the error: the execution fails with it.
    Fail(Step),
}

fn state<'a>(machine: &'a StateMachine, name: &str) -> Result<&'a State, AslError> {
    machine
        .states
        .get(name)
        .ok_or_else(|| AslError::runtime(format!("no state {name:?}")))
}

/// Where a state goes with `output`: its `Next`, or the machine's end.
fn onward(state: &State, output: Value) -> Step {
    match &state.next {
        Some(next) => Step::Next {
            state: next.clone(),
            input: output,
        },
        None => Step::Succeed { output },
    }
}

/// Enters state `name` with `input`; `now_ms` for waits.
pub fn enter(
    machine: &StateMachine,
    name: &str,
    input: &Value,
    context: &Value,
    now_ms: i64,
) -> Result<Step, AslError> {
    let state = state(machine, name)?;
    let flow = &state.flow;
    match &state.kind {
        Kind::Pass { result } => {
            let result = match result {
                Some(result) => result.clone(),
                None => flow.task_input(input, context)?,
            };
            Ok(onward(state, flow.state_output(input, result, context)?))
        }
        Kind::Task {
            resource,
            timeout_seconds,
            heartbeat_seconds,
        } => Ok(Step::Task {
            resource: resource.clone(),
            input: flow.task_input(input, context)?,
            timeout_seconds: *timeout_seconds,
            heartbeat_seconds: *heartbeat_seconds,
        }),
        Kind::Choice { choices, default } => {
            let filtered = dataflow::filter(flow.input_path.as_ref(), input, context)?;
            let output = dataflow::filter(flow.output_path.as_ref(), &filtered, context)?;
            for (rule, next) in choices {
                if rule.matches(&filtered, context)? {
                    return Ok(Step::Next {
                        state: next.clone(),
                        input: output,
                    });
                }
            }
            match default {
                Some(next) => Ok(Step::Next {
                    state: next.clone(),
                    input: output,
                }),
                None => Ok(Step::Fail {
                    error: "States.NoChoiceMatched".into(),
                    cause: format!("no choice of state {name:?} matched, and it has no Default"),
                }),
            }
        }
        Kind::Wait(wait) => {
            let filtered = dataflow::filter(flow.input_path.as_ref(), input, context)?;
            let until_ms = match wait {
                Wait::Seconds(s) => now_ms + (*s as i64) * 1000,
                Wait::Timestamp(t) => timestamp_ms(t)?,
                Wait::SecondsPath(path) => {
                    let seconds = path.select(&filtered, context)?;
                    let seconds = seconds.as_u64().ok_or_else(|| {
                        AslError::runtime(format!(
                            "SecondsPath {path} is not a whole number: {seconds}"
                        ))
                    })?;
                    now_ms + (seconds as i64) * 1000
                }
                Wait::TimestampPath(path) => {
                    let value = path.select(&filtered, context)?;
                    let text = value.as_str().ok_or_else(|| {
                        AslError::runtime(format!(
                            "TimestampPath {path} is not a timestamp: {value}"
                        ))
                    })?;
                    timestamp_ms(text)?
                }
            };
            let output = dataflow::filter(flow.output_path.as_ref(), &filtered, context)?;
            Ok(Step::Wait {
                until_ms,
                then: Box::new(onward(state, output)),
            })
        }
        Kind::Parallel { .. } => Ok(Step::Parallel {
            input: flow.task_input(input, context)?,
        }),
        Kind::Map {
            items_path,
            item_selector,
            max_concurrency,
            ..
        } => {
            let filtered = dataflow::filter(flow.input_path.as_ref(), input, context)?;
            let items = match items_path {
                Some(path) => crate::path::Path::parse(path)
                    .map_err(AslError::runtime)?
                    .select(&filtered, context)?,
                None => filtered.clone(),
            };
            let Value::Array(items) = items else {
                return Err(AslError::runtime(format!(
                    "the items of Map state {name:?} are not an array"
                )));
            };
            let items = match item_selector {
                Some(selector) => items
                    .into_iter()
                    .enumerate()
                    .map(|(index, value)| {
                        let mut item_context = context.clone();
                        item_context["Map"] = json!({"Item": {"Index": index, "Value": value}});
                        dataflow::template(selector, &filtered, &item_context)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None => items,
            };
            Ok(Step::Map {
                items,
                max_concurrency: *max_concurrency,
            })
        }
        Kind::Succeed => {
            let filtered = dataflow::filter(flow.input_path.as_ref(), input, context)?;
            Ok(Step::Succeed {
                output: dataflow::filter(flow.output_path.as_ref(), &filtered, context)?,
            })
        }
        Kind::Fail {
            error,
            cause,
            error_path,
            cause_path,
        } => {
            // A `...Path` takes a string from the input; it wins over the fixed text.
            let at = |path: &Option<String>| -> Result<Option<String>, AslError> {
                let Some(path) = path else { return Ok(None) };
                let value = crate::path::Path::parse(path)
                    .map_err(AslError::runtime)?
                    .select(input, context)?;
                match value {
                    Value::String(text) => Ok(Some(text)),
                    other => Err(AslError::runtime(format!(
                        "{path} of Fail state {name:?} is not a string: {other}"
                    ))),
                }
            };
            Ok(Step::Fail {
                error: at(error_path)?
                    .or_else(|| error.clone())
                    .unwrap_or_else(|| "States.Fail".into()),
                cause: at(cause_path)?
                    .or_else(|| cause.clone())
                    .unwrap_or_default(),
            })
        }
    }
}

/// After the work of state `name` (a task, Parallel or Map) gave `result`.
pub fn after_result(
    machine: &StateMachine,
    name: &str,
    input: &Value,
    result: Value,
    context: &Value,
) -> Result<Step, AslError> {
    let state = state(machine, name)?;
    Ok(onward(
        state,
        state.flow.state_output(input, result, context)?,
    ))
}

/// After the work of state `name` failed with `error`, its retriers having retried
/// `retried[i]` times each; `random` in [0, 1) for jitter.
pub fn after_error(
    machine: &StateMachine,
    name: &str,
    input: &Value,
    error: &AslError,
    retried: &[u32],
    random: f64,
) -> Result<Recovery, AslError> {
    let state = state(machine, name)?;
    // The first retrier that takes the error decides; used up, it passes to the catchers.
    if let Some((index, retrier)) = first_taker(&state.retry, &error.error) {
        let count = retried.get(index).copied().unwrap_or(0);
        if let Some(delay) = retrier.delay(count + 1, random) {
            return Ok(Recovery::Retry {
                retrier: index,
                delay_ms: delay.as_millis() as u64,
            });
        }
    }
    let error_output = json!({"Error": error.error, "Cause": error.cause});
    for catcher in &state.catch {
        if takes(&catcher.error_equals, &error.error) {
            let flow = DataFlow {
                result_path: catcher.result_path.clone(),
                ..DataFlow::default()
            };
            let output = dataflow::place(flow.result_path.as_ref(), input, error_output)?;
            return Ok(Recovery::Catch(Step::Next {
                state: catcher.next.clone(),
                input: output,
            }));
        }
    }
    Ok(Recovery::Fail(Step::Fail {
        error: error.error.clone(),
        cause: error.cause.clone(),
    }))
}

/// After a Parallel's branches or a Map's items ended, each with its output or its error, in
/// order. A Parallel fails with its first failed branch's error; a Map with
/// `States.ExceedToleratedFailureThreshold` once more items failed than it tolerates (the
/// failed items' outputs are their `{"Error", "Cause"}`). The error goes to
/// [`after_error`]; the outputs, as one array, to [`after_result`].
pub fn gather(
    machine: &StateMachine,
    name: &str,
    outcomes: Vec<Result<Value, AslError>>,
) -> Result<Result<Value, AslError>, AslError> {
    let state = state(machine, name)?;
    let total = outcomes.len();
    match &state.kind {
        Kind::Parallel { .. } => Ok(outcomes
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)),
        Kind::Map { tolerated, .. } => {
            let failed = outcomes.iter().filter(|o| o.is_err()).count();
            if tolerated.exceeded(failed, total) {
                return Ok(Err(AslError {
                    error: "States.ExceedToleratedFailureThreshold".into(),
                    cause: format!("{failed} of {total} items of Map state {name:?} failed"),
                }));
            }
            let outputs = outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|e| json!({"Error": e.error, "Cause": e.cause})))
                .collect();
            Ok(Ok(Value::Array(outputs)))
        }
        _ => Err(AslError::runtime(format!(
            "state {name:?} has no branches or items to gather"
        ))),
    }
}

fn first_taker<'a>(retriers: &'a [Retrier], error: &str) -> Option<(usize, &'a Retrier)> {
    retriers
        .iter()
        .enumerate()
        .find(|(_, r)| takes(&r.error_equals, error))
}

fn timestamp_ms(text: &str) -> Result<i64, AslError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| AslError::runtime(format!("{text:?} is not an RFC 3339 timestamp")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a machine to its end, with tasks answered by `run` (name, input) -> result or
    /// error name; retries counted per state. Waits do not wait.
    fn execute(
        machine: &StateMachine,
        input: Value,
        run: &dyn Fn(&str, &Value) -> Result<Value, String>,
    ) -> (Step, Vec<String>) {
        let mut trail = Vec::new();
        let mut name = machine.start_at.clone();
        let mut input = input;
        let mut retried: Vec<u32> = Vec::new();
        loop {
            trail.push(name.clone());
            let context = json!({"State": {"Name": name}});
            let step = enter(machine, &name, &input, &context, 0).unwrap();
            let step = match step {
                Step::Wait { then, .. } => *then,
                Step::Task {
                    resource,
                    input: task_input,
                    ..
                } => {
                    let Resource::Function { name: function, .. } = resource else {
                        panic!("a function")
                    };
                    match run(&function, &task_input) {
                        Ok(result) => {
                            retried.clear();
                            after_result(machine, &name, &input, result, &context).unwrap()
                        }
                        Err(error) => {
                            let error = AslError {
                                error,
                                cause: "boom".into(),
                            };
                            match after_error(machine, &name, &input, &error, &retried, 0.0)
                                .unwrap()
                            {
                                Recovery::Retry { retrier, .. } => {
                                    retried.resize(retried.len().max(retrier + 1), 0);
                                    retried[retrier] += 1;
                                    continue;
                                }
                                Recovery::Catch(step) | Recovery::Fail(step) => {
                                    retried.clear();
                                    step
                                }
                            }
                        }
                    }
                }
                Step::Map { items, .. } => {
                    let Kind::Map { processor, .. } = &machine.states[&name].kind else {
                        panic!("a Map")
                    };
                    let outputs: Vec<Value> = items
                        .into_iter()
                        .map(|item| match execute(processor, item, run).0 {
                            Step::Succeed { output } => output,
                            other => panic!("{other:?}"),
                        })
                        .collect();
                    after_result(machine, &name, &input, Value::Array(outputs), &context).unwrap()
                }
                Step::Parallel {
                    input: branch_input,
                } => {
                    let Kind::Parallel { branches } = &machine.states[&name].kind else {
                        panic!("a Parallel")
                    };
                    let outputs: Vec<Value> = branches
                        .iter()
                        .map(|b| match execute(b, branch_input.clone(), run).0 {
                            Step::Succeed { output } => output,
                            other => panic!("{other:?}"),
                        })
                        .collect();
                    after_result(machine, &name, &input, Value::Array(outputs), &context).unwrap()
                }
                other => other,
            };
            match step {
                Step::Next { state, input: next } => {
                    name = state;
                    input = next;
                }
                end => return (end, trail),
            }
        }
    }

    fn machine(definition: Value) -> StateMachine {
        StateMachine::parse(&definition).unwrap_or_else(|p| panic!("{p:#?}"))
    }

    #[test]
    fn a_saga_compensates_what_was_booked() {
        let trip = machine(json!({
            "StartAt": "Hotel",
            "States": {
                "Hotel": {"Type": "Task", "Resource": "kumo:function:hotel", "ResultPath": "$.hotel",
                          "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed", "ResultPath": "$.error"}],
                          "Next": "Flight"},
                "Flight": {"Type": "Task", "Resource": "kumo:function:flight", "ResultPath": "$.flight",
                           "Retry": [{"ErrorEquals": ["Busy"], "MaxAttempts": 2}],
                           "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Cancel hotel", "ResultPath": "$.error"}],
                           "Next": "Done"},
                "Cancel hotel": {"Type": "Task", "Resource": "kumo:function:cancel-hotel",
                                 "ResultPath": null, "Next": "Failed"},
                "Failed": {"Type": "Fail", "Error": "TripFailed", "Cause": "a booking failed"},
                "Done": {"Type": "Succeed"}
            }
        }));
        let ok = |f: &str, _: &Value| -> Result<Value, String> { Ok(json!(format!("{f}-ref"))) };
        let (end, trail) = execute(&trip, json!({"who": "Ada"}), &ok);
        assert_eq!(
            end,
            Step::Succeed {
                output: json!({"who": "Ada", "hotel": "hotel-ref", "flight": "flight-ref"})
            }
        );
        assert_eq!(trail, ["Hotel", "Flight", "Done"]);

        // The flight is busy twice (retried), then full: the hotel is cancelled.
        let attempts = std::cell::Cell::new(0);
        let flaky = |f: &str, input: &Value| -> Result<Value, String> {
            match f {
                "flight" => {
                    attempts.set(attempts.get() + 1);
                    Err(if attempts.get() <= 2 { "Busy" } else { "Full" }.into())
                }
                "cancel-hotel" => {
                    assert_eq!(input["error"]["Error"], "Full");
                    Ok(json!("cancelled"))
                }
                f => Ok(json!(format!("{f}-ref"))),
            }
        };
        let (end, trail) = execute(&trip, json!({"who": "Ada"}), &flaky);
        assert_eq!(attempts.get(), 3);
        assert_eq!(
            end,
            Step::Fail {
                error: "TripFailed".into(),
                cause: "a booking failed".into()
            }
        );
        assert_eq!(
            trail,
            [
                "Hotel",
                "Flight",
                "Flight",
                "Flight",
                "Cancel hotel",
                "Failed"
            ]
        );
    }

    #[test]
    fn choice_pass_wait_map_and_parallel() {
        let m = machine(json!({
            "StartAt": "Route",
            "States": {
                "Route": {"Type": "Choice", "Choices": [
                    {"Variable": "$.n", "NumericGreaterThan": 2, "Next": "Big"}
                ], "Default": "Small"},
                "Small": {"Type": "Pass", "Result": {"size": "small"}, "End": true},
                "Big": {"Type": "Wait", "SecondsPath": "$.n", "Next": "Each"},
                "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                         "ItemSelector": {"item.$": "$$.Map.Item.Value", "at.$": "$$.Map.Item.Index"},
                         "ItemProcessor": {"StartAt": "Double", "States": {
                             "Double": {"Type": "Task", "Resource": "kumo:function:double", "End": true}}},
                         "ResultPath": "$.doubled", "Next": "Both"},
                "Both": {"Type": "Parallel", "ResultPath": "$.both", "Next": "End", "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "a", "End": true}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Pass", "InputPath": "$.n", "End": true}}}
                ]},
                "End": {"Type": "Succeed"}
            }
        }));
        let double = |_: &str, input: &Value| -> Result<Value, String> {
            assert!(input["at"].is_u64(), "{input}");
            Ok(json!(input["item"].as_i64().unwrap() * 2))
        };
        let (small, _) = execute(&m, json!({"n": 1}), &double);
        assert_eq!(
            small,
            Step::Succeed {
                output: json!({"size": "small"})
            }
        );
        let (big, trail) = execute(&m, json!({"n": 3, "items": [5, 6]}), &double);
        let output = json!({"n": 3, "items": [5, 6], "doubled": [10, 12], "both": ["a", 3]});
        assert_eq!(big, Step::Succeed { output });
        assert_eq!(trail, ["Route", "Big", "Each", "Both", "End"]);
        let context = json!({});
        let wait = enter(&m, "Big", &json!({"n": 3}), &context, 1_000).unwrap();
        assert!(
            matches!(
                wait,
                Step::Wait {
                    until_ms: 4_000,
                    ..
                }
            ),
            "{wait:?}"
        );
        let Step::Map {
            items,
            max_concurrency,
        } = enter(&m, "Each", &json!({"items": [5, 6]}), &context, 0).unwrap()
        else {
            panic!("a Map")
        };
        assert_eq!(
            items,
            [json!({"item": 5, "at": 0}), json!({"item": 6, "at": 1})]
        );
        assert_eq!(max_concurrency, 2);
    }

    #[test]
    fn parallel_fails_with_its_first_failure_and_map_tolerates_what_it_says() {
        let m = machine(json!({
            "StartAt": "P",
            "States": {
                "P": {"Type": "Parallel", "Next": "M", "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}]},
                "M": {"Type": "Map", "End": true, "ToleratedFailureCount": 1,
                      "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}
            }
        }));
        let failure = |name: &str| AslError {
            error: name.into(),
            cause: String::new(),
        };
        let all = gather(&m, "P", vec![Ok(json!(1)), Ok(json!(2))]).unwrap();
        assert_eq!(all, Ok(json!([1, 2])));
        let failed = gather(
            &m,
            "P",
            vec![Ok(json!(1)), Err(failure("X")), Err(failure("Y"))],
        )
        .unwrap();
        assert_eq!(failed.unwrap_err().error, "X");
        let tolerated = gather(&m, "M", vec![Ok(json!(1)), Err(failure("X"))]).unwrap();
        assert_eq!(tolerated, Ok(json!([1, {"Error": "X", "Cause": ""}])));
        let too_many = gather(&m, "M", vec![Err(failure("X")), Err(failure("Y"))]).unwrap();
        assert_eq!(
            too_many.unwrap_err().error,
            "States.ExceedToleratedFailureThreshold"
        );
    }

    #[test]
    fn no_choice_matched_and_runtime_errors_are_not_caught() {
        let m = machine(json!({
            "StartAt": "Pick",
            "States": {
                "Pick": {"Type": "Choice", "Choices": [
                    {"Variable": "$.x", "StringEquals": "a", "Next": "Done"},
                    {"Variable": "$.x", "StringEquals": "w", "Next": "Work"}]},
                "Done": {"Type": "Succeed"},
                "Work": {"Type": "Task", "Resource": "kumo:function:w", "End": true,
                         "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}]}
            }
        }));
        let step = enter(&m, "Pick", &json!({"x": "b"}), &json!({}), 0);
        assert!(
            matches!(step, Ok(Step::Fail { ref error, .. }) if error == "States.NoChoiceMatched")
        );
        let runtime = AslError::runtime("a path matched nothing");
        let recovery = after_error(&m, "Work", &json!({}), &runtime, &[], 0.0).unwrap();
        assert!(
            matches!(recovery, Recovery::Fail(Step::Fail { ref error, .. }) if error == "States.Runtime")
        );
        let task_failed = AslError {
            error: "Oops".into(),
            cause: "c".into(),
        };
        let recovery = after_error(&m, "Work", &json!({"k": 1}), &task_failed, &[], 0.0).unwrap();
        assert_eq!(
            recovery,
            Recovery::Catch(Step::Next {
                state: "Done".into(),
                input: json!({"Error": "Oops", "Cause": "c"})
            })
        );
    }

    #[test]
    fn a_fail_state_takes_its_error_and_cause_from_paths() {
        let machine = StateMachine::parse(&json!({"StartAt": "F", "States": {"F": {
            "Type": "Fail", "Error": "Fixed", "ErrorPath": "$.error.Error", "CausePath": "$.why"}}}))
        .unwrap();
        let input = json!({"error": {"Error": "Sold out"}, "why": "no rooms"});
        let step = enter(&machine, "F", &input, &json!({}), 0).unwrap();
        assert_eq!(
            step,
            Step::Fail {
                error: "Sold out".into(),
                cause: "no rooms".into()
            }
        );
        let bad = enter(
            &machine,
            "F",
            &json!({"error": {"Error": 1}, "why": "x"}),
            &json!({}),
            0,
        );
        assert_eq!(bad.unwrap_err().error, "States.Runtime");
    }
}
