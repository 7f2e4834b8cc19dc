//! Builds every guest program for wasm32-wasip2 and generates one constant per program with the
//! path of its .wasm, so tests name a guest, never a path; and the Rust Lambda function (on
//! `lambda_runtime`) natively, as `LAMBDA_RUST_BOOTSTRAP`. Nothing compiled is committed.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// (guest workspace, relative to the repository root; binaries it builds)
const GUESTS: &[(&str, &[&str])] = &[
    (
        "crates/test-programs/guests",
        &[
            "http-probe",
            "command-probe",
            "no-response",
            "http-wasi-0-2-0",
            "event-probe",
            "kv-probe",
            "call-probe",
            "objects-probe",
            "serve-once",
            "step-probe",
        ],
    ),
    (
        "examples",
        &["hello", "wordcount", "orders", "thumbnail", "trip"],
    ),
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().expect("the repository root exists");
    // Outside OUT_DIR so the guests' own incremental state survives `cargo clean -p`, and
    // distinct from the host's target dir so the nested cargo never waits on the outer one's lock.
    let target_dir = root.join("target").join("guests");
    ensure_target_installed();

    let mut consts = String::new();
    for (workspace, bins) in GUESTS {
        let dir = root.join(workspace);
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.toml").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.lock").display()
        );
        for src in source_dirs(&dir) {
            println!("cargo:rerun-if-changed={}", src.display());
        }
        build(&dir.join("Cargo.toml"), &target_dir, Some(TARGET));
        for bin in *bins {
            let wasm = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{bin}.wasm"));
            assert!(wasm.exists(), "{} was not built", wasm.display());
            let name = bin.to_uppercase().replace('-', "_");
            writeln!(
                consts,
                "pub const {name}: &str = {:?};",
                wasm.display().to_string()
            )
            .expect("writing to a String cannot fail");
        }
    }
    let lambda = root.join("crates/test-programs/lambda/rust");
    println!(
        "cargo:rerun-if-changed={}",
        lambda.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-changed={}", lambda.join("src").display());
    let lambda_target = root.join("target").join("lambda-rust");
    build(&lambda.join("Cargo.toml"), &lambda_target, None);
    let bootstrap = lambda_target.join("release").join("bootstrap");
    assert!(bootstrap.exists(), "{} was not built", bootstrap.display());
    writeln!(
        consts,
        "pub const LAMBDA_RUST_BOOTSTRAP: &str = {:?};",
        bootstrap.display().to_string()
    )
    .expect("writing to a String cannot fail");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("guests.rs"), consts).expect("OUT_DIR is writable");
}

/// `cargo build --release` of `manifest` for `target` (none: the host).
fn build(manifest: &Path, target_dir: &Path, target: Option<&str>) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command.args(["build", "--release"]);
    if let Some(target) = target {
        command.args(["--target", target]);
    }
    let status = command
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .status()
        .expect("cargo can be started");
    assert!(
        status.success(),
        "building guests in {} failed",
        manifest.display()
    );
}

/// A fresh machine has only the host target; add the wasm one through rustup when it is missing.
fn ensure_target_installed() {
    let installed = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.exists());
    if installed {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        added,
        "the {TARGET} target is missing and `rustup target add {TARGET}` failed; run it by hand"
    );
}

fn source_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && entry.file_name() != "target" {
            dirs.push(path);
        }
    }
    dirs
}
