//! A full disk (issue 21's fault-injection suite): the data directory on a small tmpfs the
//! test mounts (CI runs as root), filled through the API. New data is refused with 507,
//! reads, deletes and invocations go on, no invocation record is lost, and everything works
//! again once space returns, without a restart.

use crate::harness::{TestServer, config, error_code};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// None when not root: mounting needs it (CI runs as root, so there the test runs).
    fn mount(size: &str) -> Option<Self> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir.path(),
        );
        Some(Self { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Grows (or shrinks) the filesystem in place, as an operator freeing space would.
    fn resize(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], self.dir.path());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn mount(args: &[&str], at: &Path) {
    let status = Command::new("mount").args(args).arg(at).status().unwrap();
    assert!(status.success(), "mount {args:?} failed");
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Uploads 1 MiB objects until one is refused; returns how many were stored and the refusal.
async fn fill(server: &TestServer) -> (usize, reqwest::Response) {
    let chunk = vec![b'x'; 1 << 20];
    for i in 0..200 {
        let response = server
            .http
            .put(format!("{}/api/v1/objects/fill/{i}", server.url))
            .body(chunk.clone())
            .send()
            .await
            .unwrap();
        if !response.status().is_success() {
            return (i, response);
        }
    }
    panic!("200 MiB fit on the small filesystem");
}

async fn invoke_n(server: &TestServer, n: usize) {
    for _ in 0..n {
        let response = server.get("/fn/hello/").send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// Records of the function's HTTP invocations (not of events that ran meanwhile).
async fn records_of(server: &TestServer, function: &str) -> usize {
    let list = server
        .client
        .invocations(Some(function), 1000)
        .await
        .unwrap();
    list.iter().filter(|r| r.trigger.as_str() == "http").count()
}

#[tokio::test]
async fn below_min_free_disk_new_data_is_refused_while_invocations_and_deletes_go_on() {
    let Some(fs) = Tmpfs::mount("48m") else {
        return;
    };
    let server = TestServer::start_in(&fs.path(), &["--min-free-disk", "16MiB"]);
    server.deploy("hello", test_programs::HELLO, config()).await;

    let (stored, refused) = fill(&server).await;
    assert!(stored > 0);
    assert_eq!(refused.status(), 507);
    assert!(refused.headers()["content-type"] == "application/json");
    assert_eq!(error_code(refused).await, "insufficient_storage");
    assert_eq!(server.metric("kumo_disk_low").await, 1);
    // Every kind of new data is refused...
    let kv = server
        .http
        .put(format!("{}/api/v1/kv/b/k", server.url))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(kv).await, "insufficient_storage");
    let submitted = server
        .post("/api/v1/functions/hello/invoke?mode=async")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(submitted).await, "insufficient_storage");
    // ...while invocations run and are recorded, and reads work.
    invoke_n(&server, 20).await;
    let object = server.get("/api/v1/objects/fill/0").send().await.unwrap();
    assert_eq!(object.status(), 200);
    // Deletes free space, and new data is taken again.
    for i in 0..stored {
        let deleted = server
            .http
            .delete(format!("{}/api/v1/objects/fill/{i}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kv = server
        .http
        .put(format!("{}/api/v1/kv/b/k", server.url))
        .body("v")
        .send()
        .await
        .unwrap();
    assert!(kv.status().is_success(), "{}", kv.status());
    assert_eq!(server.metric("kumo_disk_low").await, 0);
    assert_eq!(records_of(&server, "hello").await, 20);
}

#[tokio::test]
async fn a_disk_full_to_the_last_byte_loses_no_record_and_heals_without_a_restart() {
    let Some(fs) = Tmpfs::mount("40m") else {
        return;
    };
    // No threshold: the writes run into ENOSPC and SQLITE_FULL themselves.
    let args = ["--min-free-disk", "0", "--max-pending-records", "20"];
    let server = TestServer::start_in(&fs.path(), &args);
    server.deploy("hello", test_programs::HELLO, config()).await;
    server.deploy("sub", test_programs::HELLO, config()).await;

    let (_, refused) = fill(&server).await;
    assert_eq!(error_code(refused).await, "insufficient_storage");
    // Fill what is left to the last page with small keys (the database's own writes).
    for i in 0..10_000 {
        let put = server
            .http
            .put(format!("{}/api/v1/kv/fill/{i}", server.url))
            .body(vec![b'k'; 4000])
            .send()
            .await
            .unwrap();
        if !put.status().is_success() {
            assert_eq!(error_code(put).await, "insufficient_storage");
            break;
        }
    }
    // Writes that run transactions fail at their commit now (SQLite may still find room in
    // its own files for a few): each is a 507, never a 500, and none may leave its pooled
    // connection unusable for later.
    let mut refusals = 0;
    for i in 0..2000 {
        let submitted = server
            .post("/api/v1/functions/hello/invoke?mode=async")
            .body(vec![b'e'; 2000])
            .send()
            .await
            .unwrap();
        let put = server
            .http
            .put(format!("{}/api/v1/objects/small/{i}", server.url))
            .body(vec![b'o'; 2000])
            .send()
            .await
            .unwrap();
        for response in [submitted, put] {
            if !response.status().is_success() {
                assert_eq!(error_code(response).await, "insufficient_storage");
                refusals += 1;
            }
        }
        if refusals >= 16 {
            break;
        }
    }
    assert!(refusals >= 16, "the full disk refused writes");
    // Invocations answer while their records wait in memory, up to the bound; past it they
    // are refused rather than run unrecorded.
    let mut served = 0;
    let refused = loop {
        let response = server.get("/fn/hello/").send().await.unwrap();
        if response.status() != 200 {
            break response;
        }
        served += 1;
        assert!(served <= 20, "more invocations ran than records can wait");
    };
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(error_code(refused).await, "unavailable");
    assert!(served > 0);
    assert_eq!(server.metric("kumo_unrecorded_refusals_total").await, 1);
    let pending = server.metric("kumo_records_pending").await;
    assert!(
        pending >= served,
        "records wait while the disk is full: {pending}"
    );

    // Space returns: everything works again, without a restart.
    fs.resize("120m");
    let pending = server.metric_eventually("kumo_records_pending", 0).await;
    assert_eq!(pending, 0);
    assert_eq!(records_of(&server, "hello").await, served as usize);
    assert_eq!(server.get("/fn/hello/").send().await.unwrap().status(), 200);
    for i in 0..8 {
        let put = server
            .http
            .put(format!("{}/api/v1/objects/after/{i}", server.url))
            .body("again")
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "object write {i} after space returned");
        let submitted = server
            .post("/api/v1/functions/hello/invoke?mode=async")
            .send()
            .await
            .unwrap();
        assert_eq!(
            submitted.status(),
            202,
            "async submit {i} after space returned"
        );
        let published = server
            .post(&format!("/api/v1/topics/t{i}"))
            .body("m")
            .send()
            .await
            .unwrap();
        assert!(
            published.status().is_success(),
            "publish {i} after space returned: {}",
            published.status()
        );
    }
    assert_eq!(server.get("/healthz").send().await.unwrap().status(), 200);
}
