//! `kumo.toml`: the functions of a project, how to build them and how to configure them,
//! and its workflows (ASL definitions in files).

use anyhow::{Context as _, bail};
use kumo_core::{
    Destination, FunctionConfig, Instances, Route, Schedule, Spec, parse_duration, validate_name,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    function: Vec<FunctionEntry>,
    #[serde(default)]
    workflow: Vec<WorkflowEntry>,
}

/// `[[workflow]]`: a name and the file of its ASL definition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowEntry {
    name: String,
    definition: PathBuf,
    schedule: Option<kumo_core::Spec<kumo_core::Schedule>>,
    #[serde(default)]
    topics: Vec<String>,
}

/// One workflow of a manifest, its definition's path resolved against the manifest's folder.
#[derive(Debug)]
pub(crate) struct ManifestWorkflow {
    pub name: String,
    pub definition: PathBuf,
    pub triggers: kumo_core::WorkflowTriggers,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionEntry {
    name: String,
    build: Option<String>,
    code: PathBuf,
    memory_mb: Option<u32>,
    timeout: Option<String>,
    max_concurrency: Option<u32>,
    provisioned_concurrency: Option<u32>,
    instances: Option<Instances>,
    max_instance_requests: Option<u32>,
    #[serde(default)]
    routes: Vec<Spec<Route>>,
    host: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    max_retries: Option<u32>,
    max_event_age: Option<String>,
    on_success: Option<Spec<Destination>>,
    on_failure: Option<Spec<Destination>>,
    schedule: Option<Spec<Schedule>>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    allow_outbound: Vec<String>,
    #[serde(default)]
    kv: Vec<String>,
    #[serde(default)]
    objects: Vec<String>,
    triggers_use: Option<String>,
    on_object: Option<kumo_core::ObjectTrigger>,
    auth: Option<kumo_core::FunctionAuth>,
    #[serde(default)]
    secrets: Vec<String>,
    /// A Lambda function's runtime (`code` is then its zip package).
    runtime: Option<kumo_core::LambdaRuntimeName>,
    handler: Option<String>,
    /// A Lambda function's `/tmp` in MiB (512 to 10240).
    ephemeral_storage_mb: Option<u32>,
}

/// One function of a manifest, checked and with paths resolved against the manifest's folder.
#[derive(Debug)]
pub(crate) struct ManifestFunction {
    pub name: String,
    pub build: Option<String>,
    pub code: PathBuf,
    pub config: FunctionConfig,
}

#[derive(Debug)]
pub(crate) struct Manifest {
    pub dir: PathBuf,
    pub functions: Vec<ManifestFunction>,
    /// Deployed after the functions (their tasks call them).
    pub workflows: Vec<ManifestWorkflow>,
}

impl Manifest {
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        // Paths and build commands are relative to the manifest's folder.
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self::parse(&text, &dir).with_context(|| format!("in {}", path.display()))
    }

    pub(crate) fn parse(text: &str, dir: &Path) -> anyhow::Result<Self> {
        let file: ManifestFile = toml::from_str(text)?;
        if file.function.is_empty() {
            bail!("no [[function]] entries");
        }
        let mut functions = Vec::new();
        for entry in file.function {
            let name = entry.name.clone();
            let function = Self::check(entry, dir).with_context(|| format!("function {name:?}"))?;
            if functions.iter().any(|f: &ManifestFunction| f.name == name) {
                bail!("function {name:?} is declared twice");
            }
            functions.push(function);
        }
        let mut workflows: Vec<ManifestWorkflow> = Vec::new();
        for entry in file.workflow {
            validate_name(&entry.name).with_context(|| format!("workflow {:?}", entry.name))?;
            if workflows.iter().any(|w| w.name == entry.name) {
                bail!("workflow {:?} is declared twice", entry.name);
            }
            let triggers = kumo_core::WorkflowTriggers {
                schedule: entry.schedule,
                topics: entry.topics,
            };
            triggers
                .validate()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("workflow {:?}", entry.name))?;
            workflows.push(ManifestWorkflow {
                name: entry.name,
                definition: dir.join(entry.definition),
                triggers,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            functions,
            workflows,
        })
    }

    fn check(entry: FunctionEntry, dir: &Path) -> anyhow::Result<ManifestFunction> {
        validate_name(&entry.name)?;
        let defaults = FunctionConfig::default();
        let timeout = match &entry.timeout {
            Some(t) => parse_duration(t).map_err(|e| anyhow::anyhow!("timeout: {e}"))?,
            None => defaults.timeout,
        };
        let max_event_age = match &entry.max_event_age {
            Some(t) => parse_duration(t).map_err(|e| anyhow::anyhow!("max_event_age: {e}"))?,
            None => defaults.max_event_age,
        };
        let config = FunctionConfig {
            memory_mb: entry.memory_mb.unwrap_or(defaults.memory_mb),
            timeout,
            max_concurrency: entry.max_concurrency,
            provisioned_concurrency: entry.provisioned_concurrency,
            routes: entry.routes,
            host: entry.host,
            env: entry.env,
            instances: entry.instances.unwrap_or(defaults.instances),
            max_instance_requests: entry
                .max_instance_requests
                .unwrap_or(defaults.max_instance_requests),
            max_retries: entry.max_retries.unwrap_or(defaults.max_retries),
            max_event_age,
            on_success: entry.on_success,
            on_failure: entry.on_failure,
            schedule: entry.schedule,
            topics: entry.topics,
            allow_outbound: entry.allow_outbound,
            kv: entry.kv,
            objects: entry.objects,
            triggers_use: entry.triggers_use,
            on_object: entry.on_object,
            auth: entry.auth.unwrap_or_default(),
            secrets: entry.secrets,
            runtime: entry.runtime,
            handler: entry.handler,
            ephemeral_storage_mb: entry.ephemeral_storage_mb,
        };
        config.validate()?;
        Ok(ManifestFunction {
            name: entry.name,
            build: entry.build,
            code: dir.join(entry.code),
            config,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format() {
        let m = Manifest::parse(
            r#"
            [[function]]
            name = "hello"
            build = "cargo build"
            code = "target/hello.wasm"
            memory_mb = 64
            timeout = "10s"
            max_concurrency = 5
            routes = ["/hello", "/hello/*"]
            env = { GREETING = "hi" }
            max_retries = 1
            max_event_age = "1h"
            on_failure = "alerts"
            schedule = "rate(5 minutes)"
            topics = ["orders"]
            kv = ["orders"]
            objects = ["uploads", "thumbnails"]
            on_object = { bucket = "uploads" }

            [[workflow]]
            name = "checkout"
            definition = "flows/checkout.asl.json"
            schedule = "rate(1 hour)"
            topics = ["orders"]
            "#,
            Path::new("/p"),
        )
        .unwrap();
        assert_eq!(m.workflows[0].name, "checkout");
        assert_eq!(
            m.workflows[0].definition,
            Path::new("/p/flows/checkout.asl.json")
        );
        assert_eq!(m.workflows[0].triggers.topics, ["orders"]);
        let f = &m.functions[0];
        assert_eq!(f.code, Path::new("/p/target/hello.wasm"));
        assert_eq!(f.config.memory_mb, 64);
        assert_eq!(f.config.env["GREETING"], "hi");
        assert_eq!(f.config.max_retries, 1);
        assert_eq!(f.config.schedule.as_ref().unwrap(), &"rate(5 minutes)");
        assert_eq!(f.config.topics, ["orders"]);
        assert_eq!(f.config.kv, ["orders"]);
        assert_eq!(f.config.objects, ["uploads", "thumbnails"]);
        let trigger = f.config.on_object.as_ref().unwrap();
        assert_eq!(trigger.bucket, "uploads");
        assert_eq!(
            trigger.events,
            [kumo_core::ObjectEvent::Put],
            "put by default"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("name = \"Bad\"\ncode = \"x\"", "Bad"),
            ("name = \"a\"\ncode = \"x\"\nmemory_mb = 1", "memory_mb"),
            (
                "name = \"a\"\ncode = \"x\"\ntimeout = \"forever\"",
                "timeout",
            ),
            ("name = \"a\"\ncode = \"x\"\nmemroy = 1", "memroy"),
            ("name = \"a\"", "code"),
        ];
        for (body, field) in cases {
            let text = format!("[[function]]\n{body}\n");
            let err = format!("{:#}", Manifest::parse(&text, Path::new(".")).unwrap_err());
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
