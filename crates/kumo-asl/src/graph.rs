//! A machine as a graph a UI can draw (its states, with the Parallel or Map each is inside,
//! and the edges between them), and each state's status in an execution, from its history.

use crate::definition::{Kind, StateMachine, targets};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `{"start_at", "states": [{name, type, parent, branch, start}], "edges": [{from, to, kind}]}`;
/// `kind` is the field that makes the edge (`Next`, `Choices.Next`, `Default`, `Catch.Next`).
pub fn graph(machine: &StateMachine) -> Value {
    let (mut states, mut edges) = (Vec::new(), Vec::new());
    walk(machine, None, &mut states, &mut edges);
    json!({"start_at": machine.start_at, "states": states, "edges": edges})
}

fn walk(
    machine: &StateMachine,
    parent: Option<(&str, usize)>,
    states: &mut Vec<Value>,
    edges: &mut Vec<Value>,
) {
    for (name, state) in &machine.states {
        states.push(json!({
            "name": name,
            "type": type_name(&state.kind),
            "parent": parent.map(|(p, _)| p),
            "branch": parent.map(|(_, i)| i),
            "start": *name == machine.start_at,
        }));
        for (kind, to) in targets(state) {
            edges.push(json!({"from": name, "to": to, "kind": kind}));
        }
        match &state.kind {
            Kind::Parallel { branches } => {
                for (i, branch) in branches.iter().enumerate() {
                    walk(branch, Some((name, i)), states, edges);
                }
            }
            Kind::Map { processor, .. } => walk(processor, Some((name, 0)), states, edges),
            _ => {}
        }
    }
}

fn type_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Task { .. } => "Task",
        Kind::Pass { .. } => "Pass",
        Kind::Choice { .. } => "Choice",
        Kind::Wait(_) => "Wait",
        Kind::Parallel { .. } => "Parallel",
        Kind::Map { .. } => "Map",
        Kind::Succeed => "Succeed",
        Kind::Fail { .. } => "Fail",
    }
}

/// Each state's status after the history entries `(kind, state)` in order: `running` once
/// entered, `retrying`, `caught` (its error went to a catcher), `failed`, `succeeded` once
/// exited. A state inside a Map shows its latest item's.
pub fn state_status<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, &'static str> {
    let mut status = BTreeMap::new();
    for (kind, state) in entries {
        let now = match kind {
            "StateEntered" | "TaskScheduled" | "WaitStarted" | "BranchesStarted" => "running",
            "RetryScheduled" => "retrying",
            "ErrorCaught" => "caught",
            "ThreadFailed" => "failed",
            "StateExited" => "succeeded",
            _ => continue,
        };
        if state.is_empty() {
            continue;
        }
        // A caught error's state exits to its catcher: it stays `caught`.
        if now == "succeeded" && status.get(state) == Some(&"caught") {
            continue;
        }
        status.insert(state.to_string(), now);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_has_every_state_and_edge_and_statuses_follow_the_history() {
        let machine = StateMachine::parse(&json!({"StartAt": "Check", "States": {
            "Check": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": true, "Next": "Fork"}], "Default": "Stop"},
            "Fork": {"Type": "Parallel", "End": true, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Stop"}],
                "Branches": [{"StartAt": "Inner", "States": {"Inner": {"Type": "Pass", "End": true}}}]},
            "Stop": {"Type": "Fail"}
        }}))
        .unwrap();
        let g = graph(&machine);
        let names: Vec<&str> = g["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Check", "Fork", "Inner", "Stop"]);
        assert_eq!(g["states"][2]["parent"], "Fork");
        assert_eq!(g["states"][0]["start"], true);
        let edges: Vec<(String, String, String)> = g["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["from"].to_string(),
                    e["to"].to_string(),
                    e["kind"].to_string(),
                )
            })
            .collect();
        assert_eq!(edges.len(), 3);
        assert!(edges.contains(&(
            "\"Fork\"".into(),
            "\"Stop\"".into(),
            "\"Catch.Next\"".into()
        )));
        let status = state_status([
            ("StateEntered", "Check"),
            ("StateExited", "Check"),
            ("StateEntered", "Fork"),
            ("RetryScheduled", "Fork"),
            ("ErrorCaught", "Fork"),
            ("StateExited", "Fork"),
            ("StateEntered", "Stop"),
            ("ThreadFailed", "Stop"),
        ]);
        assert_eq!(status["Check"], "succeeded");
        assert_eq!(status["Fork"], "caught");
        assert_eq!(status["Stop"], "failed");
    }
}
