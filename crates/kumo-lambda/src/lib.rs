//! AWS Lambda functions on kumo. A function is a deployment package (a zip, [`package`])
//! run by a runtime process (`provided`: the package's `bootstrap`) in sandboxed execution
//! environments (kumo-sandbox). Each environment serves the Lambda Runtime API
//! ([`runtime_api`]) inside its own network namespace, runs one invocation at a time, is kept
//! warm (frozen) for the next and dropped on failure. [`events`] shapes what a function
//! receives from each trigger as AWS would.

pub mod api;
mod egress;
mod environment;
pub mod events;
mod output;
pub mod package;
mod pool;
pub mod runtime_api;
pub mod sigv4;

pub use egress::Egress;
pub use pool::{Function, Invocation, Outcome, Pool, Warm};

use kumo_sandbox::Cgroups;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Serves kumo's own API to one function on a listener inside its environment (the
/// embedder's: kumo-server's app). Every request on it comes from that function, so it acts
/// as that function, whatever credentials it carries.
pub trait Endpoint: Send + Sync {
    /// Serves `listener` (in the environment of function `identity`, a store key) until the
    /// listener's environment is gone.
    fn serve(
        &self,
        listener: tokio::net::TcpListener,
        identity: &str,
    ) -> tokio::task::JoinHandle<()>;
}

/// What isolation the server insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationMode {
    /// Refuse to start when a layer is missing.
    Strict,
    /// Run with the layers that exist and say which are missing.
    BestEffort,
}

/// The machine-wide part: the sandbox helper, cgroups and where packages are unpacked.
pub struct LambdaRuntime {
    helper: PathBuf,
    cgroups: Option<Cgroups>,
    packages: PathBuf,
    /// An empty folder every environment mounts its root over (in its own mount namespace).
    scratch: PathBuf,
    /// Where the runtimes kumo provides are installed (`python3/`: awslambdaric).
    runtimes: PathBuf,
    /// What the probe at start found.
    isolation: kumo_sandbox::Isolation,
    /// Where functions reach kumo's API from their environments (set once the server's app
    /// exists); none: they do not.
    endpoint: std::sync::OnceLock<Arc<dyn Endpoint>>,
}

impl LambdaRuntime {
    /// Probes the machine's isolation (refusing to go on under `Strict` when a layer is
    /// missing), opens the cgroup hierarchy (killing environments a previous run left) and
    /// prepares `data_dir/lambda`. `helper` is the binary that runs
    /// [`kumo_sandbox::helper_main`]; `runtimes` is where `scripts/lambda-runtimes.sh`
    /// installed the runtimes kumo provides (None: `data_dir/lambda/runtimes`).
    pub fn new(
        data_dir: &Path,
        helper: PathBuf,
        mode: IsolationMode,
        runtimes: Option<PathBuf>,
    ) -> anyhow::Result<Arc<Self>> {
        // One parent group per data folder: servers sharing a machine never sweep each
        // other's environments.
        let root = data_dir.join("lambda");
        std::fs::create_dir_all(&root)?;
        let folder = root.canonicalize()?;
        let digest = sha2::Sha256::digest(folder.as_os_str().as_encoded_bytes());
        let cgroups = Cgroups::open(&format!("kumo-{}", &hex::encode(digest)[..12]));
        let isolation = kumo_sandbox::probe(&helper, &cgroups);
        let missing: Vec<String> = isolation
            .missing()
            .map(|l| format!("{} ({})", l.name, l.missing.as_deref().unwrap_or("")))
            .collect();
        if !missing.is_empty() {
            anyhow::ensure!(
                mode == IsolationMode::BestEffort,
                "--isolation strict: these isolation layers are missing: {}",
                missing.join("; ")
            );
            tracing::warn!(
                "Lambda functions run with best-effort isolation; missing: {}",
                missing.join("; ")
            );
        } else {
            tracing::info!("Lambda functions run with every isolation layer");
        }
        let cgroups = cgroups.ok();
        if let Some(cgroups) = &cgroups {
            cgroups.sweep();
        }
        let packages = root.join("packages");
        let scratch = root.join("root");
        std::fs::create_dir_all(&packages)?;
        std::fs::create_dir_all(&scratch)?;
        Ok(Arc::new(Self {
            helper,
            cgroups,
            packages,
            scratch,
            runtimes: runtimes.unwrap_or_else(|| root.join("runtimes")),
            isolation,
            endpoint: std::sync::OnceLock::new(),
        }))
    }

    /// Gives environments started from now on kumo's API on their loopback (once).
    pub fn set_endpoint(&self, endpoint: Arc<dyn Endpoint>) {
        let _ = self.endpoint.set(endpoint);
    }

    pub(crate) fn endpoint(&self) -> Option<&Arc<dyn Endpoint>> {
        self.endpoint.get()
    }

    /// The isolation layers environments get on this machine (probed at start).
    pub fn isolation(&self) -> &kumo_sandbox::Isolation {
        &self.isolation
    }

    /// The unpacked package of code `sha256` (unpacking `zip` if it is not yet).
    pub fn package_dir(&self, sha256: &str) -> PathBuf {
        self.packages.join(sha256)
    }

    /// Unpacks a package and checks it can run under `runtime`.
    pub fn prepare(
        &self,
        sha256: &str,
        zip: &[u8],
        runtime: kumo_core::LambdaRuntimeName,
    ) -> Result<PathBuf, package::PackageError> {
        let dir = self.package_dir(sha256);
        package::unpack(zip, &dir)?;
        self.check(&dir, runtime)?;
        Ok(dir)
    }

    /// The unpacked package of code `sha256` for a load: unpacked again from the zip at
    /// `code_path` only when its folder is gone (the zip is not read otherwise).
    pub fn load(
        &self,
        sha256: &str,
        code_path: &Path,
        runtime: kumo_core::LambdaRuntimeName,
    ) -> Result<PathBuf, package::PackageError> {
        let dir = self.package_dir(sha256);
        if !dir.is_dir() {
            return self.prepare(sha256, &std::fs::read(code_path)?, runtime);
        }
        self.check(&dir, runtime)?;
        Ok(dir)
    }

    /// Whether the package in `dir` can run under `runtime` here.
    fn check(
        &self,
        dir: &Path,
        runtime: kumo_core::LambdaRuntimeName,
    ) -> Result<(), package::PackageError> {
        match runtime {
            kumo_core::LambdaRuntimeName::Provided => package::check_bootstrap(dir)?,
            kumo_core::LambdaRuntimeName::Python3 => {
                if !self.python_dir().join("awslambdaric").is_dir() {
                    return Err(package::PackageError::Invalid(format!(
                        "the python3 runtime is not installed on this server (run scripts/lambda-runtimes.sh DIR and start kumo with --lambda-runtimes DIR; looked in {})",
                        self.runtimes.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

impl LambdaRuntime {
    /// Where kumo's Python runtime interface client (awslambdaric) is installed.
    pub fn python_dir(&self) -> PathBuf {
        self.runtimes.join("python3")
    }
}
