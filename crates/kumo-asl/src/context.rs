//! The context object (`$$`): what a state knows of its execution, as Step Functions shapes it.

use serde_json::{Value, json};

/// An execution, as the context object shows it.
#[derive(Debug, Clone)]
pub struct Execution<'a> {
    /// The execution's id (an ARN on AWS; kumo's own id here).
    pub id: &'a str,
    pub name: &'a str,
    /// RFC 3339.
    pub start_time: &'a str,
    pub input: &'a Value,
    /// The state machine's name.
    pub state_machine: &'a str,
}

/// The context of state `state` entered at `entered_time` (RFC 3339), on its `retry_count`th
/// retry, with the task token of a callback task.
pub fn context(
    execution: &Execution,
    state: &str,
    entered_time: &str,
    retry_count: u32,
    task_token: Option<&str>,
) -> Value {
    let mut context = json!({
        "Execution": {
            "Id": execution.id,
            "Name": execution.name,
            "StartTime": execution.start_time,
            "Input": execution.input,
        },
        "State": {"Name": state, "EnteredTime": entered_time, "RetryCount": retry_count},
        "StateMachine": {"Id": execution.state_machine, "Name": execution.state_machine},
    });
    if let Some(token) = task_token {
        context["Task"] = json!({"Token": token});
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Path;

    #[test]
    fn paths_into_the_context_find_what_step_functions_puts_there() {
        let input = json!({"order": 7});
        let execution = Execution {
            id: "exec-1",
            name: "first",
            start_time: "2026-12-07T10:00:00Z",
            input: &input,
            state_machine: "checkout",
        };
        let context = context(&execution, "Pay", "2026-12-07T10:00:01Z", 2, Some("tok"));
        let at = |path: &str| {
            Path::parse(path)
                .unwrap()
                .select(&json!({}), &context)
                .unwrap()
        };
        assert_eq!(at("$$.Execution.Id"), json!("exec-1"));
        assert_eq!(at("$$.Execution.Input.order"), json!(7));
        assert_eq!(at("$$.State.Name"), json!("Pay"));
        assert_eq!(at("$$.State.RetryCount"), json!(2));
        assert_eq!(at("$$.StateMachine.Name"), json!("checkout"));
        assert_eq!(at("$$.Task.Token"), json!("tok"));
    }
}
