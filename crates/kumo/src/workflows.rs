//! `kumo workflow ...`: deploy ASL state machines, start and follow their executions, and
//! answer callback tasks.

use crate::commands::CmdResult;
use clap::Subcommand;
use kumo_api::Client;
use kumo_core::format_timestamp;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum WorkflowCommand {
    /// Deploy (or replace) a workflow from an ASL definition file (`.asl.json`).
    Deploy {
        name: String,
        file: PathBuf,
        /// Start an execution on this schedule (`rate(5 minutes)` or cron, UTC).
        #[arg(long)]
        schedule: Option<String>,
        /// Start an execution for each message of this topic (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
    /// List the workflows, or (with NAME) a workflow's executions, newest first.
    Ls {
        name: Option<String>,
        /// Only executions of this status (running, succeeded, failed, timed_out, aborted).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Delete a workflow (its executions stay readable; running ones run on).
    Rm { name: String },
    /// Start an execution. Prints its id alone on the last line; with --wait, its output
    /// JSON once it succeeded (or its error, and exits 1).
    Start {
        name: String,
        /// The input, as JSON.
        #[arg(long, default_value = "{}")]
        input: String,
        /// A name unique among the workflow's executions (a repeated start gives the first).
        #[arg(long = "name")]
        execution_name: Option<String>,
        /// Wait for the end, at most this many seconds.
        #[arg(long, num_args = 0..=1, default_missing_value = "300")]
        wait: Option<u64>,
    },
    /// An execution's status, input, output or error, and each state's status.
    Describe { execution: String },
    /// An execution's history, oldest first.
    History { execution: String },
    /// Stop a running execution.
    Stop {
        execution: String,
        #[arg(long)]
        cause: Option<String>,
    },
    /// Run a failed, stopped or timed-out execution again from the state it ended in.
    Redrive { execution: String },
    /// Answer a callback task with its output (JSON).
    SendTaskSuccess {
        /// The task token (`$$.Task.Token`).
        #[arg(value_name = "TASK_TOKEN")]
        task_token: String,
        #[arg(long, default_value = "{}")]
        output: String,
    },
    /// Fail a callback task.
    SendTaskFailure {
        #[arg(value_name = "TASK_TOKEN")]
        task_token: String,
        #[arg(long, default_value = "States.TaskFailed")]
        error: String,
        #[arg(long, default_value = "")]
        cause: String,
    },
    /// Tell a callback task its worker is alive (its HeartbeatSeconds start again).
    SendTaskHeartbeat {
        #[arg(value_name = "TASK_TOKEN")]
        task_token: String,
    },
}

/// A deploy's body: the definition as it is, or under `definition` beside the triggers.
pub(crate) fn with_triggers(
    definition: &[u8],
    triggers: &kumo_core::WorkflowTriggers,
) -> anyhow::Result<Vec<u8>> {
    if triggers.is_empty() {
        return Ok(definition.to_vec());
    }
    let definition = parse_json("the definition", &String::from_utf8_lossy(definition))?;
    let mut body = serde_json::to_value(triggers)?;
    body["definition"] = definition;
    Ok(serde_json::to_vec(&body)?)
}

fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{what} is not JSON: {e}"))
}

pub(crate) async fn run(client: &Client, command: WorkflowCommand) -> CmdResult {
    match command {
        WorkflowCommand::Deploy {
            name,
            file,
            schedule,
            topics,
        } => {
            let definition = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let triggers: kumo_core::WorkflowTriggers =
                serde_json::from_value(json!({"schedule": schedule, "topics": topics}))?;
            let definition = with_triggers(&definition, &triggers)?;
            let (workflow, created) = client.put_workflow(&name, definition).await?;
            let states = workflow["graph"]["states"].as_array().map_or(0, Vec::len);
            let verb = if created { "created" } else { "replaced" };
            println!("{verb} workflow {name} ({states} states)");
        }
        WorkflowCommand::Ls { name: None, .. } => {
            println!("{:<32} UPDATED", "NAME");
            for w in client.workflows().await?.as_array().into_iter().flatten() {
                let updated = format_timestamp(w["updated_at"].as_i64().unwrap_or(0));
                println!("{:<32} {updated}", w["name"].as_str().unwrap_or(""));
            }
        }
        WorkflowCommand::Ls {
            name: Some(name),
            status,
            limit,
        } => {
            println!(
                "{:<38} {:<10} {:<24} NAME",
                "EXECUTION", "STATUS", "STARTED"
            );
            let executions = client.executions(&name, status.as_deref(), limit).await?;
            for e in executions.as_array().into_iter().flatten() {
                println!(
                    "{:<38} {:<10} {:<24} {}",
                    e["id"].as_str().unwrap_or(""),
                    e["status"].as_str().unwrap_or(""),
                    format_timestamp(e["started_at"].as_i64().unwrap_or(0)),
                    e["name"].as_str().unwrap_or("")
                );
            }
        }
        WorkflowCommand::Rm { name } => {
            client.delete_workflow(&name).await?;
            println!("deleted workflow {name}");
        }
        WorkflowCommand::Start {
            name,
            input,
            execution_name,
            wait,
        } => {
            let input = parse_json("--input", &input)?;
            let execution = client
                .start_execution(&name, input, execution_name.as_deref(), wait)
                .await?;
            let id = execution["id"].as_str().unwrap_or_default();
            if wait.is_none() {
                println!("{id}");
                return Ok(ExitCode::SUCCESS);
            }
            return Ok(ended(&execution));
        }
        WorkflowCommand::Describe { execution } => {
            let execution = client.execution(&execution).await?;
            println!("{}", serde_json::to_string_pretty(&execution)?);
        }
        WorkflowCommand::History { execution } => {
            println!(
                "{:>5} {:<24} {:<16} {:<20} DETAIL",
                "SEQ", "AT", "EVENT", "STATE"
            );
            for e in client.execution_history(&execution).await? {
                let state = match e["thread"].as_str() {
                    Some("") | None => e["state"].as_str().unwrap_or("").to_string(),
                    Some(thread) => format!("{}{thread}", e["state"].as_str().unwrap_or("")),
                };
                println!(
                    "{:>5} {:<24} {:<16} {:<20} {}",
                    e["seq"],
                    format_timestamp(e["at"].as_i64().unwrap_or(0)),
                    e["kind"].as_str().unwrap_or(""),
                    state,
                    e["detail"]
                );
            }
        }
        WorkflowCommand::Stop { execution, cause } => {
            client.stop_execution(&execution, cause.as_deref()).await?;
            println!("stopping execution {execution}");
        }
        WorkflowCommand::Redrive { execution } => {
            let redriven = client.redrive_execution(&execution).await?;
            println!(
                "redriving execution {} (redrive {})",
                execution, redriven["redrives"]
            );
        }
        WorkflowCommand::SendTaskSuccess { task_token, output } => {
            let output = parse_json("--output", &output)?;
            client
                .answer_task(
                    "success",
                    &json!({"taskToken": task_token, "output": output}),
                )
                .await?;
            println!("sent");
        }
        WorkflowCommand::SendTaskFailure {
            task_token,
            error,
            cause,
        } => {
            let answer = json!({"taskToken": task_token, "error": error, "cause": cause});
            client.answer_task("failure", &answer).await?;
            println!("sent");
        }
        WorkflowCommand::SendTaskHeartbeat { task_token } => {
            client
                .answer_task("heartbeat", &json!({"taskToken": task_token}))
                .await?;
            println!("sent");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// After `start --wait`: the output JSON of a success; the error of anything else (exit 1).
fn ended(execution: &Value) -> ExitCode {
    match execution["status"].as_str() {
        Some("succeeded") => {
            println!("{}", execution["output"]);
            ExitCode::SUCCESS
        }
        Some("running") => {
            eprintln!(
                "execution {} is still running (the wait ended)",
                execution["id"].as_str().unwrap_or("")
            );
            ExitCode::FAILURE
        }
        status => {
            eprintln!(
                "execution {} {}: {}: {}",
                execution["id"].as_str().unwrap_or(""),
                status.unwrap_or("ended"),
                execution["error"].as_str().unwrap_or(""),
                execution["cause"].as_str().unwrap_or("")
            );
            ExitCode::FAILURE
        }
    }
}
