//! One cgroup per environment, under a parent group the caller names: memory (no swap), pids
//! and CPU weight limits, freezing, killing everything inside, and reading peak memory and OOM
//! kills. cgroup v1 when its memory controller is mounted (each controller its own
//! hierarchy), else v2 with the controllers enabled down the tree.

use crate::Limits;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "freezer"];
const V2_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// The parent group environments' cgroups are made in.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub version: CgroupVersion,
    /// v1: the parent group in each controller's hierarchy; v2: the one parent group.
    parents: Vec<(&'static str, PathBuf)>,
}

impl Cgroups {
    /// Finds the machine's cgroup hierarchy and makes the parent group `name` in it. Fails,
    /// saying why, when there is none this process may use.
    pub fn open(name: &str) -> io::Result<Self> {
        let mounts = std::fs::read_to_string("/proc/self/mounts")?;
        let v1: Vec<(&'static str, PathBuf)> = V1_CONTROLLERS
            .iter()
            .filter_map(|controller| {
                mounts.lines().find_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    (fields.get(2) == Some(&"cgroup")
                        && fields.get(3)?.split(',').any(|o| o == *controller))
                    .then(|| (*controller, PathBuf::from(fields[1]).join(name)))
                })
            })
            .collect();
        if v1.iter().any(|(c, _)| *c == "memory") {
            for (_, dir) in &v1 {
                std::fs::create_dir_all(dir)?;
            }
            return Ok(Self {
                version: CgroupVersion::V1,
                parents: v1,
            });
        }
        let root = Path::new(ROOT);
        let available = std::fs::read_to_string(root.join("cgroup.controllers")).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("no cgroup v1 memory controller and no cgroup v2 at {ROOT}: {e}"),
            )
        })?;
        let missing: Vec<&str> = V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| !available.split_whitespace().any(|a| a == *c))
            .collect();
        if !missing.is_empty() {
            return Err(io::Error::other(format!(
                "cgroup v2 lacks the {} controller(s)",
                missing.join(", ")
            )));
        }
        let parent = root.join(name);
        std::fs::create_dir_all(&parent)?;
        let enable = V2_CONTROLLERS.map(|c| format!("+{c}")).join(" ");
        std::fs::write(root.join("cgroup.subtree_control"), &enable)?;
        std::fs::write(parent.join("cgroup.subtree_control"), &enable)?;
        Ok(Self {
            version: CgroupVersion::V2,
            parents: vec![("", parent)],
        })
    }

    /// Makes environment `id`'s cgroup with these limits.
    pub fn create(&self, id: &str, limits: &Limits) -> io::Result<Cgroup> {
        let group = Cgroup {
            version: self.version,
            dirs: self
                .parents
                .iter()
                .map(|(controller, parent)| (*controller, parent.join(id)))
                .collect(),
        };
        for (_, dir) in &group.dirs {
            std::fs::create_dir_all(dir)?;
        }
        let memory = limits.memory_bytes.to_string();
        match self.version {
            CgroupVersion::V1 => {
                group.write("memory", "memory.limit_in_bytes", &memory)?;
                // Without swap accounting the file is absent; then there is no swap to limit.
                let _ = group.write("memory", "memory.memsw.limit_in_bytes", &memory);
                group.write("pids", "pids.max", &limits.pids.to_string())?;
                // v1 shares: 1024 is the default, as weight 100 is in v2.
                let shares = (u64::from(limits.cpu_weight) * 1024 / 100).max(2);
                group.write("cpu", "cpu.shares", &shares.to_string())?;
            }
            CgroupVersion::V2 => {
                group.write("", "memory.max", &memory)?;
                let _ = group.write("", "memory.swap.max", "0");
                group.write("", "pids.max", &limits.pids.to_string())?;
                group.write(
                    "",
                    "cpu.weight",
                    &limits.cpu_weight.clamp(1, 10_000).to_string(),
                )?;
            }
        }
        Ok(group)
    }

    /// Kills what is left in environments' cgroups from an earlier run and removes them.
    pub fn sweep(&self) {
        for (controller, parent) in &self.parents {
            let Ok(children) = std::fs::read_dir(parent) else {
                continue;
            };
            for child in children.flatten().filter(|c| c.path().is_dir()) {
                let group = Cgroup {
                    version: self.version,
                    dirs: vec![(controller, child.path())],
                };
                group.kill_all();
                group.remove();
            }
        }
    }
}

/// One environment's cgroup.
#[derive(Debug)]
pub struct Cgroup {
    version: CgroupVersion,
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Cgroup {
    fn dir(&self, controller: &str) -> Option<&Path> {
        match self.version {
            CgroupVersion::V2 => self.dirs.first().map(|(_, d)| d.as_path()),
            CgroupVersion::V1 => self
                .dirs
                .iter()
                .find(|(c, _)| *c == controller)
                .map(|(_, d)| d.as_path()),
        }
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> io::Result<()> {
        let dir = self
            .dir(controller)
            .ok_or_else(|| io::Error::other(format!("no {controller} cgroup controller")))?;
        std::fs::write(dir.join(file), value).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing {}: {e}", dir.join(file).display()),
            )
        })
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(controller)?.join(file)).ok()
    }

    /// Puts process `pid` (and so its future children) in every hierarchy of this group.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        for (_, dir) in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    fn pids(&self) -> Vec<i32> {
        self.dirs
            .iter()
            .filter_map(|(_, dir)| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Stops every process in the group until [`Self::thaw`]: an idle environment uses no CPU.
    pub fn freeze(&self) -> io::Result<()> {
        match self.version {
            CgroupVersion::V1 => self.write("freezer", "freezer.state", "FROZEN"),
            CgroupVersion::V2 => self.write("", "cgroup.freeze", "1"),
        }
    }

    pub fn thaw(&self) -> io::Result<()> {
        match self.version {
            CgroupVersion::V1 => self.write("freezer", "freezer.state", "THAWED"),
            CgroupVersion::V2 => self.write("", "cgroup.freeze", "0"),
        }
    }

    /// Kills every process in the group, however deep it forked.
    pub fn kill_all(&self) {
        if self.version == CgroupVersion::V2 && self.write("", "cgroup.kill", "1").is_ok() {
            return;
        }
        // Frozen first, so nothing forks between the listing and the kill.
        let _ = self.freeze();
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.thaw();
    }

    /// The most memory the group used at once, in bytes.
    pub fn memory_peak(&self) -> Option<u64> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.max_usage_in_bytes",
            CgroupVersion::V2 => "memory.peak",
        };
        self.read("memory", file)?.trim().parse().ok()
    }

    /// How many processes the kernel killed for exceeding the memory limit.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.version {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        self.read("memory", file)
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Removes the group if no process is left in it; false if some are.
    pub(crate) fn try_remove(&self) -> bool {
        let mut left = false;
        for (_, dir) in &self.dirs {
            if dir.exists() && std::fs::remove_dir(dir).is_err() {
                left = true;
            }
        }
        !left
    }

    /// Removes the group once its processes are gone (waits up to a second for them to exit).
    pub fn remove(&self) {
        for _ in 0..100 {
            if self.try_remove() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(
            "cgroup {:?} could not be removed",
            self.dirs.first().map(|(_, d)| d)
        );
    }
}
