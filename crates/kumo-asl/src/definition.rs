//! A state machine's definition: parsed into typed states and checked whole before it is
//! deployed. Every problem found is reported (not only the first), each naming the state and
//! the field: a missing `Next`, a `Next` to no state, an unreachable state, a bad path, an
//! unknown resource, a malformed rule, retrier or catcher.

use crate::choice::Rule;
use crate::dataflow::DataFlow;
use crate::errors::{Catcher, Retrier, all_is_last};
use crate::path::Path;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One problem in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The state (`Branch 1 of Fork / Step` inside a Parallel), or None for the machine.
    pub state: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            Some(state) => write!(f, "state {state:?}, {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// What a `Task` runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// `kumo:function:NAME[:QUALIFIER]`, a Lambda function ARN, or
    /// `arn:aws:states:::lambda:invoke` (whose `Payload` parameter is the input).
    Function {
        name: String,
        qualifier: Option<String>,
        /// The `lambda:invoke` integration: the result is wrapped as `{"Payload": ...}`.
        integration: bool,
    },
    /// The same, with `.waitForTaskToken`: the task ends when a token's owner says so.
    Callback { name: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Task {
        resource: Resource,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
    },
    Pass {
        result: Option<Value>,
    },
    Choice {
        choices: Vec<(Rule, String)>,
        default: Option<String>,
    },
    Wait(Wait),
    Parallel {
        branches: Vec<StateMachine>,
    },
    Map {
        processor: Box<StateMachine>,
        items_path: Option<String>,
        item_selector: Option<Value>,
        max_concurrency: u32,
        /// How many items may fail before the Map does (`ToleratedFailurePercentage` and
        /// `ToleratedFailureCount`; none given: none may).
        tolerated: Tolerance,
    },
    Succeed,
    Fail {
        error: Option<String>,
        cause: Option<String>,
        /// `ErrorPath` / `CausePath`: taken from the state's input (or the context).
        error_path: Option<String>,
        cause_path: Option<String>,
    },
}

/// A Map's tolerated failures: the state fails once more items failed than either allows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tolerance {
    pub percentage: Option<f64>,
    pub count: Option<u64>,
}

impl Tolerance {
    /// Whether `failed` of `total` items is more than tolerated.
    pub fn exceeded(&self, failed: usize, total: usize) -> bool {
        if failed == 0 {
            return false;
        }
        let by_count = self.count.is_some_and(|c| failed as u64 <= c);
        let by_percentage = self
            .percentage
            .is_some_and(|p| (failed as f64) * 100.0 <= p * total as f64);
        !(by_count || by_percentage)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    Seconds(u64),
    Timestamp(String),
    SecondsPath(Path),
    TimestampPath(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub kind: Kind,
    /// None for a terminal state (`End`, `Succeed`, `Fail`) and for `Choice`.
    pub next: Option<String>,
    pub flow: DataFlow,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateMachine {
    pub start_at: String,
    pub states: BTreeMap<String, State>,
    pub timeout_seconds: Option<u64>,
}

impl StateMachine {
    /// Parses and checks a definition; every problem found, or the machine.
    pub fn parse(definition: &Value) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let machine = machine(definition, "", &mut problems);
        match (machine, problems.is_empty()) {
            (Some(machine), true) => Ok(machine),
            _ => Err(problems),
        }
    }
}

fn problem(problems: &mut Vec<Problem>, state: Option<&str>, field: &str, message: String) {
    problems.push(Problem {
        state: state.map(str::to_string),
        field: field.to_string(),
        message,
    });
}

/// A machine (the top one, a Parallel branch or a Map processor); `scope` prefixes the names
/// of its states in problems.
fn machine(value: &Value, scope: &str, problems: &mut Vec<Problem>) -> Option<StateMachine> {
    let at = (!scope.is_empty()).then(|| scope.trim_end_matches(" / "));
    let Some(fields) = value.as_object() else {
        problem(problems, at, "definition", "must be a JSON object".into());
        return None;
    };
    let start_at = fields.get("StartAt").and_then(Value::as_str);
    if start_at.is_none() {
        problem(problems, at, "StartAt", "is missing".into());
    }
    let Some(state_fields) = fields.get("States").and_then(Value::as_object) else {
        problem(problems, at, "States", "must be an object of states".into());
        return None;
    };
    let mut states = BTreeMap::new();
    for (name, value) in state_fields {
        let label = format!("{scope}{name}");
        if name.is_empty() || name.len() > 80 {
            problem(
                problems,
                Some(&label),
                "name",
                "must be 1 to 80 characters".into(),
            );
        }
        if let Some(state) = state(value, &label, problems) {
            states.insert(name.clone(), state);
        }
    }
    let start_at = start_at?.to_string();
    if !state_fields.contains_key(&start_at) {
        problem(
            problems,
            at,
            "StartAt",
            format!("names no state: {start_at:?}"),
        );
        return None;
    }
    // Every transition goes to a state of this machine, and every state can be reached.
    let mut reached = BTreeSet::from([start_at.clone()]);
    let mut queue = VecDeque::from([start_at.clone()]);
    while let Some(name) = queue.pop_front() {
        let Some(state) = states.get(&name) else {
            continue;
        };
        for (field, target) in targets(state) {
            if !state_fields.contains_key(target) {
                let label = format!("{scope}{name}");
                problem(
                    problems,
                    Some(&label),
                    field,
                    format!("names no state: {target:?}"),
                );
            } else if reached.insert(target.to_string()) {
                queue.push_back(target.to_string());
            }
        }
    }
    for name in state_fields.keys().filter(|n| !reached.contains(*n)) {
        let label = format!("{scope}{name}");
        problem(
            problems,
            Some(&label),
            "state",
            "cannot be reached from StartAt".into(),
        );
    }
    let timeout_seconds = fields.get("TimeoutSeconds").and_then(Value::as_u64);
    Some(StateMachine {
        start_at,
        states,
        timeout_seconds,
    })
}

/// Where a state can go next, and the field that says so.
pub(crate) fn targets(state: &State) -> Vec<(&'static str, &str)> {
    let mut out = Vec::new();
    if let Some(next) = &state.next {
        out.push(("Next", next.as_str()));
    }
    if let Kind::Choice { choices, default } = &state.kind {
        out.extend(
            choices
                .iter()
                .map(|(_, next)| ("Choices.Next", next.as_str())),
        );
        out.extend(default.iter().map(|d| ("Default", d.as_str())));
    }
    out.extend(state.catch.iter().map(|c| ("Catch.Next", c.next.as_str())));
    out
}

fn state(value: &Value, label: &str, problems: &mut Vec<Problem>) -> Option<State> {
    let at = Some(label);
    let Some(fields) = value.as_object() else {
        problem(problems, at, "state", "must be a JSON object".into());
        return None;
    };
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
    let kind_name = text("Type").unwrap_or_default();
    let terminal_kind = matches!(kind_name.as_str(), "Succeed" | "Fail" | "Choice");
    let end = fields.get("End").and_then(Value::as_bool) == Some(true);
    let next = text("Next");
    if !terminal_kind {
        match (&next, end) {
            (None, false) => problem(
                problems,
                at,
                "Next",
                "is missing (or give End: true)".into(),
            ),
            (Some(_), true) => problem(problems, at, "End", "cannot be given with Next".into()),
            _ => {}
        }
    }
    let before = problems.len();
    let flow = data_flow(fields, label, problems);
    let retry = list(fields, "Retry", label, problems, Retrier::parse);
    let catch = list(fields, "Catch", label, problems, Catcher::parse);
    if !all_is_last(
        &retry
            .iter()
            .map(|r| r.error_equals.clone())
            .collect::<Vec<_>>(),
    ) || !all_is_last(
        &catch
            .iter()
            .map(|c| c.error_equals.clone())
            .collect::<Vec<_>>(),
    ) {
        problem(
            problems,
            at,
            "Retry/Catch",
            "States.ALL must be in the last entry".into(),
        );
    }
    let kind = match kind_name.as_str() {
        "Task" => task(fields, label, problems),
        "Pass" => Some(Kind::Pass {
            result: fields.get("Result").cloned(),
        }),
        "Choice" => choice(fields, label, problems),
        "Wait" => wait(fields, label, problems).map(Kind::Wait),
        "Parallel" => {
            let branches = fields
                .get("Branches")
                .and_then(Value::as_array)
                .filter(|b| !b.is_empty());
            match branches {
                None => {
                    problem(problems, at, "Branches", "must be a non-empty array".into());
                    None
                }
                Some(branches) => {
                    let machines: Vec<_> = branches
                        .iter()
                        .enumerate()
                        .filter_map(|(i, b)| {
                            machine(b, &format!("{label} branch {} / ", i + 1), problems)
                        })
                        .collect();
                    (machines.len() == branches.len())
                        .then_some(Kind::Parallel { branches: machines })
                }
            }
        }
        "Map" => map(fields, label, problems),
        "Succeed" => Some(Kind::Succeed),
        "Fail" => Some(Kind::Fail {
            error: text("Error"),
            cause: text("Cause"),
            error_path: path_field(fields, "ErrorPath", false, label, problems).flatten(),
            cause_path: path_field(fields, "CausePath", false, label, problems).flatten(),
        }),
        "" => {
            problem(problems, at, "Type", "is missing".into());
            None
        }
        other => {
            problem(
                problems,
                at,
                "Type",
                format!(
                    "{other:?} is not a state type (Task, Pass, Choice, Wait, Parallel, Map, Succeed, Fail)"
                ),
            );
            None
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(State {
        kind: kind?,
        next: if terminal_kind { None } else { next },
        flow,
        retry,
        catch,
    })
}

/// An optional path field: absent, null, or a path (checked).
fn path_field(
    fields: &Map<String, Value>,
    name: &str,
    reference: bool,
    label: &str,
    problems: &mut Vec<Problem>,
) -> Option<Option<String>> {
    match fields.get(name)? {
        Value::Null => Some(None),
        Value::String(text) => {
            match Path::parse(text) {
                Ok(path) if reference && (!path.is_reference() || path.context) => problem(
                    problems,
                    Some(label),
                    name,
                    format!("{text:?} must be a reference path into the input"),
                ),
                Ok(_) => {}
                Err(why) => problem(problems, Some(label), name, why),
            }
            Some(Some(text.clone()))
        }
        _ => {
            problem(problems, Some(label), name, "must be a path or null".into());
            None
        }
    }
}

fn data_flow(fields: &Map<String, Value>, label: &str, problems: &mut Vec<Problem>) -> DataFlow {
    DataFlow {
        input_path: path_field(fields, "InputPath", false, label, problems),
        parameters: fields.get("Parameters").cloned(),
        result_selector: fields.get("ResultSelector").cloned(),
        result_path: path_field(fields, "ResultPath", true, label, problems),
        output_path: path_field(fields, "OutputPath", false, label, problems),
    }
}

fn list<T>(
    fields: &Map<String, Value>,
    name: &str,
    label: &str,
    problems: &mut Vec<Problem>,
    parse: fn(&Value) -> Result<T, String>,
) -> Vec<T> {
    let Some(value) = fields.get(name) else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        problem(problems, Some(label), name, "must be an array".into());
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            parse(item)
                .map_err(|why| problem(problems, Some(label), &format!("{name}[{i}]"), why))
                .ok()
        })
        .collect()
}

fn task(fields: &Map<String, Value>, label: &str, problems: &mut Vec<Problem>) -> Option<Kind> {
    let Some(text) = fields.get("Resource").and_then(Value::as_str) else {
        problem(problems, Some(label), "Resource", "is missing".into());
        return None;
    };
    let resource = match resource(text) {
        Ok(r) => r,
        Err(why) => {
            problem(problems, Some(label), "Resource", why);
            return None;
        }
    };
    let seconds = |name: &str| fields.get(name).and_then(Value::as_u64);
    Some(Kind::Task {
        resource,
        timeout_seconds: seconds("TimeoutSeconds"),
        heartbeat_seconds: seconds("HeartbeatSeconds"),
    })
}

/// A `Task`'s `Resource`.
pub fn resource(text: &str) -> Result<Resource, String> {
    let (text, callback) = match text.strip_suffix(".waitForTaskToken") {
        Some(base) => (base, true),
        None => (text, false),
    };
    let function = |spec: &str| -> Result<(String, Option<String>), String> {
        let mut parts = spec.splitn(2, ':');
        let name = parts
            .next()
            .filter(|n| !n.is_empty())
            .ok_or("names no function")?;
        Ok((name.to_string(), parts.next().map(str::to_string)))
    };
    if text == "arn:aws:states:::lambda:invoke" {
        return Ok(match callback {
            true => Resource::Callback { name: None },
            false => Resource::Function {
                name: String::new(),
                qualifier: None,
                integration: true,
            },
        });
    }
    let spec = if let Some(spec) = text.strip_prefix("kumo:function:") {
        spec
    } else if let Some(rest) = text.strip_prefix("arn:aws:lambda:") {
        // REGION:ACCOUNT:function:NAME[:QUALIFIER]
        let mut parts = rest.splitn(3, ':');
        let (_region, _account) = (parts.next(), parts.next());
        parts
            .next()
            .and_then(|r| r.strip_prefix("function:"))
            .ok_or_else(|| format!("{text:?} is not a Lambda function ARN"))?
    } else {
        return Err(format!(
            "{text:?} is not a resource kumo runs (kumo:function:NAME[:QUALIFIER], a Lambda function ARN, arn:aws:states:::lambda:invoke[.waitForTaskToken])"
        ));
    };
    let (name, qualifier) = function(spec).map_err(|why| format!("{text:?} {why}"))?;
    Ok(match callback {
        true => Resource::Callback { name: Some(name) },
        false => Resource::Function {
            name,
            qualifier,
            integration: false,
        },
    })
}

fn choice(fields: &Map<String, Value>, label: &str, problems: &mut Vec<Problem>) -> Option<Kind> {
    let Some(items) = fields
        .get("Choices")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        problem(
            problems,
            Some(label),
            "Choices",
            "must be a non-empty array".into(),
        );
        return None;
    };
    let mut choices = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("Choices[{i}]");
        let Some(next) = item.get("Next").and_then(Value::as_str) else {
            problem(problems, Some(label), &field, "needs a Next".into());
            continue;
        };
        match Rule::parse(item) {
            Ok(rule) => choices.push((rule, next.to_string())),
            Err(why) => problem(problems, Some(label), &field, why),
        }
    }
    let default = fields
        .get("Default")
        .and_then(Value::as_str)
        .map(str::to_string);
    (choices.len() == items.len()).then_some(Kind::Choice { choices, default })
}

fn wait(fields: &Map<String, Value>, label: &str, problems: &mut Vec<Problem>) -> Option<Wait> {
    let given: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
        .into_iter()
        .filter(|f| fields.contains_key(*f))
        .collect();
    let [field] = given.as_slice() else {
        problem(
            problems,
            Some(label),
            "Wait",
            "takes exactly one of Seconds, Timestamp, SecondsPath, TimestampPath".into(),
        );
        return None;
    };
    let value = &fields[*field];
    let parsed = match *field {
        "Seconds" => value
            .as_u64()
            .map(Wait::Seconds)
            .ok_or("a whole number of seconds".to_string()),
        "Timestamp" => value
            .as_str()
            .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
            .map(|t| Wait::Timestamp(t.to_string()))
            .ok_or("an RFC 3339 timestamp".to_string()),
        path_field => value
            .as_str()
            .ok_or("a path".to_string())
            .and_then(Path::parse)
            .map(|p| {
                if path_field == "SecondsPath" {
                    Wait::SecondsPath(p)
                } else {
                    Wait::TimestampPath(p)
                }
            }),
    };
    parsed
        .map_err(|why| problem(problems, Some(label), field, format!("must be {why}")))
        .ok()
}

fn map(fields: &Map<String, Value>, label: &str, problems: &mut Vec<Problem>) -> Option<Kind> {
    let processor = fields
        .get("ItemProcessor")
        .or_else(|| fields.get("Iterator"));
    let Some(processor) = processor else {
        problem(problems, Some(label), "ItemProcessor", "is missing".into());
        return None;
    };
    let processor = machine(processor, &format!("{label} items / "), problems)?;
    let items_path = path_field(fields, "ItemsPath", true, label, problems).flatten();
    let max_concurrency = match fields.get("MaxConcurrency") {
        None => 0,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => {
                problem(
                    problems,
                    Some(label),
                    "MaxConcurrency",
                    "must be a whole number".into(),
                );
                0
            }
        },
    };
    let percentage = match fields.get("ToleratedFailurePercentage") {
        None => None,
        Some(v) => match v.as_f64().filter(|p| (0.0..=100.0).contains(p)) {
            Some(p) => Some(p),
            None => {
                let why = "must be a number from 0 to 100".to_string();
                problem(problems, Some(label), "ToleratedFailurePercentage", why);
                None
            }
        },
    };
    let count = match fields.get("ToleratedFailureCount") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(c) => Some(c),
            None => {
                let why = "must be a whole number".to_string();
                problem(problems, Some(label), "ToleratedFailureCount", why);
                None
            }
        },
    };
    Some(Kind::Map {
        processor: Box::new(processor),
        items_path,
        item_selector: fields
            .get("ItemSelector")
            .or_else(|| fields.get("Parameters"))
            .cloned(),
        max_concurrency,
        tolerated: Tolerance { percentage, count },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(definition: Value) -> Vec<String> {
        match StateMachine::parse(&definition) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_saga_parses() {
        let definition = json!({
            "StartAt": "Book hotel",
            "TimeoutSeconds": 300,
            "States": {
                "Book hotel": {
                    "Type": "Task", "Resource": "kumo:function:hotel", "ResultPath": "$.hotel",
                    "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 2},
                              {"ErrorEquals": ["States.ALL"]}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed", "ResultPath": "$.error"}],
                    "Next": "Pick"
                },
                "Pick": {"Type": "Choice", "Choices": [
                    {"Variable": "$.hotel.ok", "BooleanEquals": true, "Next": "Both"}
                ], "Default": "Failed"},
                "Both": {"Type": "Parallel", "End": true, "Branches": [
                    {"StartAt": "Fly", "States": {"Fly": {"Type": "Task", "Resource": "arn:aws:lambda:eu-west-1:123456789012:function:flight:live", "End": true}}},
                    {"StartAt": "Drive", "States": {"Drive": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "car", "Payload.$": "$"}, "End": true}}}
                ]},
                "Failed": {"Type": "Fail", "Error": "Booking", "Cause": "no hotel"}
            }
        });
        let machine = StateMachine::parse(&definition).unwrap();
        assert_eq!(machine.start_at, "Book hotel");
        assert_eq!(machine.timeout_seconds, Some(300));
        let book = &machine.states["Book hotel"];
        assert_eq!(book.retry.len(), 2);
        assert_eq!(book.next.as_deref(), Some("Pick"));
        let Kind::Parallel { branches } = &machine.states["Both"].kind else {
            panic!("a Parallel")
        };
        let Kind::Task { resource, .. } = &branches[0].states["Fly"].kind else {
            panic!("a Task")
        };
        assert_eq!(
            resource,
            &Resource::Function {
                name: "flight".into(),
                qualifier: Some("live".into()),
                integration: false
            }
        );
    }

    #[test]
    fn every_problem_is_named_with_its_state_and_field() {
        let found = problems(json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Task", "Resource": "kumo:function:a"},
                "B": {"Type": "Pass", "Next": "Nowhere"},
                "C": {"Type": "Task", "Resource": "http://example.com", "End": true},
                "D": {"Type": "Choice", "Choices": [{"Variable": "$.x", "Next": "A"}]},
                "E": {"Type": "Wait", "Seconds": 1, "Timestamp": "2026-01-01T00:00:00Z", "End": true},
                "F": {"Type": "Pass", "ResultPath": "$.a[*]", "End": true},
                "G": {"Type": "Pass", "End": true,
                      "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]},
                "H": {"Type": "Sleep", "End": true}
            }
        }));
        let expect = [
            "state \"A\", Next: is missing",
            "state \"C\", Resource: \"http://example.com\" is not a resource kumo runs",
            "state \"D\", Choices[0]: a comparison has exactly one operator",
            "state \"E\", Wait: takes exactly one of",
            "state \"F\", ResultPath: \"$.a[*]\" must be a reference path",
            "state \"G\", Retry/Catch: States.ALL must be in the last entry",
            "state \"H\", Type: \"Sleep\" is not a state type",
        ];
        for e in expect {
            assert!(
                found.iter().any(|p| p.starts_with(e)),
                "{e} not in {found:#?}"
            );
        }
    }

    #[test]
    fn transitions_must_land_and_every_state_must_be_reachable() {
        let found = problems(json!({
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Next": "Missing"},
                "Lonely": {"Type": "Succeed"}
            }
        }));
        assert!(
            found.contains(&"state \"A\", Next: names no state: \"Missing\"".to_string()),
            "{found:?}"
        );
        assert!(
            found.contains(&"state \"Lonely\", state: cannot be reached from StartAt".to_string()),
            "{found:?}"
        );
        let start = problems(json!({"StartAt": "X", "States": {"A": {"Type": "Succeed"}}}));
        assert_eq!(start, ["StartAt: names no state: \"X\""]);
        // Inside a branch, the state is named with its place.
        let nested = problems(json!({
            "StartAt": "P",
            "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
                {"StartAt": "S", "States": {"S": {"Type": "Pass"}}}
            ]}}
        }));
        assert_eq!(
            nested,
            ["state \"P branch 1 / S\", Next: is missing (or give End: true)"]
        );
    }

    #[test]
    fn tolerated_failures_of_a_map() {
        let none = Tolerance::default();
        assert!(!none.exceeded(0, 10));
        assert!(none.exceeded(1, 10));
        let count = Tolerance {
            count: Some(2),
            percentage: None,
        };
        assert!(!count.exceeded(2, 10) && count.exceeded(3, 10));
        let percentage = Tolerance {
            count: None,
            percentage: Some(25.0),
        };
        assert!(!percentage.exceeded(1, 4) && percentage.exceeded(2, 4));
        // Either bound tolerates.
        let both = Tolerance {
            count: Some(1),
            percentage: Some(50.0),
        };
        assert!(!both.exceeded(2, 4) && both.exceeded(3, 4));
        let bad = problems(json!({"StartAt": "M", "States": {"M": {
            "Type": "Map", "End": true, "ToleratedFailurePercentage": 120,
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}
        }}}));
        assert_eq!(
            bad,
            ["state \"M\", ToleratedFailurePercentage: must be a number from 0 to 100"]
        );
    }

    #[test]
    fn resources_kumo_runs() {
        assert_eq!(
            resource("kumo:function:shop/checkout:3").unwrap(),
            Resource::Function {
                name: "shop/checkout".into(),
                qualifier: Some("3".into()),
                integration: false
            }
        );
        assert_eq!(
            resource("arn:aws:states:::lambda:invoke.waitForTaskToken").unwrap(),
            Resource::Callback { name: None }
        );
        assert_eq!(
            resource("kumo:function:approve.waitForTaskToken").unwrap(),
            Resource::Callback {
                name: Some("approve".into())
            }
        );
        assert!(resource("kumo:function:").is_err());
        assert!(resource("arn:aws:lambda:eu-west-1:1:layer:x").is_err());
        assert!(resource("arn:aws:states:::sqs:sendMessage").is_err());
    }
}
