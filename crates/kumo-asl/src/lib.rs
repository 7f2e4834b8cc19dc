//! The Amazon States Language as kumo runs it, without I/O: JSONPath reference paths and
//! paths (path.rs), a state's data flow (dataflow.rs: `InputPath`, `Parameters`,
//! `ResultSelector`, `ResultPath`, `OutputPath`), the intrinsic functions (intrinsics.rs),
//! the `Choice` state's rules (choice.rs), `Retry` and `Catch` (errors.rs), a state
//! machine's definition, checked whole (definition.rs), the context object (context.rs), and
//! one step of an execution (step.rs: what a state does with its input, and what follows a
//! result, an error, or the ends of a Parallel's branches and a Map's items), a whole
//! execution as a state machine of threads (execution.rs: an event in, the changes to
//! persist and the tasks to run out), and what a task calls (task.rs). The server's engine
//! persists and performs what these decide.

pub mod choice;
pub mod context;
pub mod dataflow;
pub mod definition;
pub mod errors;
pub mod execution;
pub mod graph;
pub mod intrinsics;
pub mod path;
pub mod step;
pub mod task;

/// A failure of the language itself, named as Step Functions names it: `States.Runtime`
/// (a path that matches nothing, a bad argument), `States.IntrinsicFailure`, ...
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{error}: {cause}")]
pub struct AslError {
    /// The ASL error name (what `Retry`/`Catch` match).
    pub error: String,
    /// What went wrong, for people.
    pub cause: String,
}

impl AslError {
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self {
            error: "States.Runtime".into(),
            cause: cause.into(),
        }
    }

    pub fn intrinsic(cause: impl Into<String>) -> Self {
        Self {
            error: "States.IntrinsicFailure".into(),
            cause: cause.into(),
        }
    }
}
