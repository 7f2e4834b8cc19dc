//! Each isolation property of an environment, checked from inside it with a shell script as
//! the program. Needs root (CI runs as root); without it every test says why and returns.

use kumo_sandbox::{Cgroups, Exit, Limits, Sandbox, Spec, StartError};
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

const HELPER: &str = env!("CARGO_BIN_EXE_kumo-sandbox");
const MB: u64 = 1024 * 1024;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: sandboxes need root");
    false
}

fn cgroups() -> Cgroups {
    // Groups are named `t{pid}-{n}`; those of earlier test runs (whose last processes were
    // still exiting when the run ended) are removed here.
    for controller in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let parent = controller.path().join("kumo-sandbox-tests");
        for group in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let name = group.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix('t').and_then(|n| n.split('-').next());
            if pid.is_some_and(|p| !Path::new("/proc").join(p).exists()) {
                let _ = std::fs::remove_dir(group.path());
            }
        }
    }
    Cgroups::open("kumo-sandbox-tests").expect("this machine has cgroups")
}

struct Env {
    _code: tempfile::TempDir,
    _scratch: tempfile::TempDir,
    spec: Spec,
}

/// An environment whose program is `script` (run by /bin/sh as /var/task/bootstrap).
fn env_with(script: &str) -> Env {
    let code = tempfile::tempdir().unwrap();
    std::fs::set_permissions(code.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bootstrap = code.path().join("bootstrap");
    std::fs::write(&bootstrap, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let spec = Spec {
        program: "/var/task/bootstrap".into(),
        args: Vec::new(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        code_dir: code.path().to_path_buf(),
        runtime_root: Spec::host_runtime_root(),
        binds: Vec::new(),
        scratch: scratch.path().to_path_buf(),
        tmp_bytes: 4 * MB,
        uid: 993,
        gid: 990,
        listen: Vec::new(),
        hostname: "kumo-test".into(),
        // As kumo runs environments where the kernel allows it (here it does).
        user_namespace: true,
    };
    Env {
        _code: code,
        _scratch: scratch,
        spec,
    }
}

const LIMITS: Limits = Limits {
    memory_bytes: 64 * MB,
    pids: 32,
    cpu_weight: 100,
};

/// Starts `env`'s program in an environment of its own.
async fn start(env: &Env, limits: &Limits) -> Result<Sandbox, StartError> {
    Sandbox::start(
        Path::new(HELPER),
        &env.spec,
        limits,
        Some(&cgroups()),
        &uuid_like(),
    )
    .await
}

/// Runs the program to its end: its exit and output (standard output and error).
async fn run(env: &Env, limits: &Limits) -> (Exit, String) {
    let mut sandbox = start(env, limits)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let mut output = String::new();
    let exit = tokio::time::timeout(Duration::from_secs(30), async {
        let mut pipe = sandbox.output.take().unwrap();
        pipe.read_to_string(&mut output).await.unwrap();
        sandbox.exited().await
    })
    .await
    .expect("the program ended");
    (exit, output)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn this_machine_has_every_layer() {
    if !is_root() {
        return;
    }
    let isolation = kumo_sandbox::probe(Path::new(HELPER), &Cgroups::open("kumo-sandbox-tests"));
    let missing: Vec<_> = isolation.missing().collect();
    assert!(missing.is_empty(), "missing layers: {missing:?}");
    assert!(isolation.cgroup.is_some());
}

#[tokio::test]
async fn the_program_is_pid_1_of_its_own_namespaces_and_unprivileged() {
    if !is_root() {
        return;
    }
    let env = env_with(
        r#"echo "pid=$$"
echo "procs=$(ls /proc | grep -c '^[0-9]')"
echo "uid=$(id -u) gid=$(id -g)"
echo "uid_map=$(tr -s ' ' < /proc/self/uid_map)"
echo "host=$(hostname)"
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
echo "ifaces=$(ls /sys/class/net 2>/dev/null | tr '\n' ' ')"
cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '
echo "cwd=$(pwd)"
echo "env=$(env | sort | tr '\n' ' ')""#,
    );
    let (exit, out) = run(&env, &LIMITS).await;
    assert_eq!(exit.code, Some(0), "{out}");
    assert!(out.contains("pid=1\n"), "{out}");
    // sh, and the ls of the pipeline: nothing of the host.
    let procs: u32 = out
        .split("procs=")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "{out}");
    assert!(out.contains("uid=993 gid=990"), "{out}");
    // Its users are an unprivileged range of the host's: its 993 is 0x70000000 + 993 there.
    assert!(out.contains("uid_map= 0 1879048192 65536"), "{out}");
    assert!(out.contains("host=kumo-test"), "{out}");
    for line in [
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(out.contains(line), "{line} in {out}");
    }
    // Only the loopback interface.
    let interfaces: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains('=') && !l.contains(':'))
        .collect();
    assert_eq!(interfaces, ["lo"], "{out}");
    assert!(out.contains("cwd=/var/task"), "{out}");
    assert!(
        out.contains("env=PATH=/usr/bin:/bin PWD=/var/task"),
        "only its own environment: {out}"
    );
}

#[tokio::test]
async fn only_tmp_is_writable_and_it_is_bounded() {
    if !is_root() {
        return;
    }
    let env = env_with(
        r#"for f in /var/task/x /x /usr/x /etc/x /dev/x; do
  if touch $f 2>/dev/null; then echo "wrote $f"; else echo "refused $f"; fi
done
echo hi > /tmp/small && echo "tmp ok"
if head -c 8000000 /dev/zero > /tmp/big 2>/dev/null; then echo "8MB fit"; else echo "tmp full"; fi
cat /etc/shadow >/dev/null 2>&1 && echo "read shadow" || echo "no shadow""#,
    );
    let (exit, out) = run(&env, &LIMITS).await;
    assert_eq!(exit.code, Some(0), "{out}");
    for path in ["/var/task/x", "/x", "/usr/x", "/etc/x", "/dev/x"] {
        assert!(out.contains(&format!("refused {path}")), "{out}");
    }
    assert!(out.contains("tmp ok"), "{out}");
    assert!(out.contains("tmp full"), "4 MB of /tmp: {out}");
    assert!(out.contains("no shadow"), "{out}");
}

#[tokio::test]
async fn the_network_is_only_its_own_loopback_and_the_listeners_come_back() {
    if !is_root() {
        return;
    }
    // A server on the host's loopback, which the environment must not reach.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    let mut env = env_with(&format!(
        r#"curl -s -m 2 http://127.0.0.1:{host_port}/ >/dev/null 2>&1 && echo "reached host" || echo "host unreachable"
curl -s -m 2 http://10.0.2.2/ >/dev/null 2>&1 && echo "reached outside" || echo "outside unreachable"
curl -s -m 5 -d hello http://127.0.0.1:9001/inside"#
    ));
    env.spec.listen = vec![9001];
    let mut sandbox = start(&env, &LIMITS).await.unwrap();
    let listener = sandbox.take_listeners().pop().unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut request = vec![0u8; 4096];
    let n = stream.read(&mut request).unwrap();
    let request = String::from_utf8_lossy(&request[..n]);
    assert!(request.starts_with("POST /inside"), "{request}");
    use std::io::Write as _;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .unwrap();
    let mut out = String::new();
    sandbox
        .output
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert_eq!(sandbox.exited().await.code, Some(0));
    assert!(out.contains("host unreachable"), "{out}");
    assert!(out.contains("outside unreachable"), "{out}");
    assert!(out.ends_with("ok"), "{out}");
}

#[tokio::test]
async fn memory_over_the_limit_is_killed_as_out_of_memory() {
    if !is_root() {
        return;
    }
    let env = env_with(r#"x=$(head -c 100000000 /dev/zero | tr '\0' a); echo "survived ${#x}""#);
    let (exit, out) = run(
        &env,
        &Limits {
            memory_bytes: 32 * MB,
            ..LIMITS
        },
    )
    .await;
    assert!(exit.oom_killed, "{exit:?} {out}");
    assert!(!out.contains("survived"), "{out}");
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    if !is_root() {
        return;
    }
    let env = env_with(r#"for i in $(seq 60); do sleep 30 & echo "started $i"; done"#);
    let (_, out) = run(&env, &Limits { pids: 16, ..LIMITS }).await;
    // The shell stops at the first fork the limit refuses.
    let started = out.lines().filter(|l| l.starts_with("started")).count();
    assert!((8..16).contains(&started), "{out}");
    assert!(out.to_lowercase().contains("fork"), "{out}");
}

#[tokio::test]
async fn kill_ends_every_process_of_the_environment_even_a_forked_grandchild() {
    if !is_root() {
        return;
    }
    let marker = format!("{}.25", std::process::id() % 1000 + 1000);
    let env = env_with(&format!("sh -c 'sleep {marker}' &\nsleep {marker}"));
    let sandbox = start(&env, &LIMITS).await.unwrap();
    let sleeping = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|p| {
                std::fs::read(p.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
            })
            .count()
    };
    for _ in 0..100 {
        if sleeping() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sleeping() >= 3, "the grandchild started");
    sandbox.kill();
    let exit = sandbox.exited().await;
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    for _ in 0..100 {
        if sleeping() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sleeping(), 0, "every process of the environment is gone");
}

#[tokio::test]
async fn a_program_that_cannot_run_is_the_programs_error() {
    if !is_root() {
        return;
    }
    let mut env = env_with("true");
    env.spec.program = "/var/task/missing".into();
    match start(&env, &LIMITS).await {
        Err(StartError::Program(e)) => assert!(e.contains("/var/task/missing"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("started"),
    }
}
