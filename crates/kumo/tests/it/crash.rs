//! The queue survives a crash: 2,000 asynchronous events to a function that reports each
//! event id to a host-visible endpoint; the server is killed with SIGKILL midway and
//! restarted on the same data directory. Every event must complete at least once, and only
//! attempts that were running at the kill may have run twice (at most one per worker).

use crate::harness::{Receiver, TestServer, config};
use kumo_api::{EventStatus, FunctionConfig};
use std::time::{Duration, Instant};

const EVENTS: usize = 2_000;
const WORKERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_when_the_server_is_killed_midway() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--async-workers", "16"];
    let server = TestServer::start_in(dir.path(), &args);
    server
        .deploy(
            "reporter",
            test_programs::EVENT_PROBE,
            FunctionConfig {
                allow_outbound: vec![receiver.host_port().to_string()],
                ..config()
            },
        )
        .await;
    let payload = format!("report:{}/", receiver.url);
    let mut ids = Vec::with_capacity(EVENTS);
    for chunk in 0..EVENTS / 100 {
        let submits = (0..100).map(|_| {
            server
                .client
                .invoke_async("reporter", payload.clone().into_bytes(), None)
        });
        for submitted in futures::future::join_all(submits).await {
            ids.push(
                submitted
                    .unwrap_or_else(|e| panic!("submit in chunk {chunk}: {e}"))
                    .0,
            );
        }
    }

    // Midway: kill -9.
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.bodies().len() < EVENTS / 4 {
        assert!(Instant::now() < deadline, "the events do not drain");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let at_kill = receiver.bodies().len();
    assert!(
        at_kill < EVENTS,
        "the kill came after the drain ({at_kill})"
    );

    let server = TestServer::start_in(dir.path(), &args);
    let seen = receiver
        .counts_when_all(&ids, Duration::from_secs(90))
        .await;
    let lost: Vec<&String> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} events never ran: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= WORKERS,
        "{} events ran twice; at most {WORKERS} were running at the kill",
        twice.len()
    );
    assert!(twice.iter().all(|(_, n)| **n == 2), "{twice:?}");
    for (id, _) in &twice {
        let event = server.client.event(id, Some("10s")).await.unwrap();
        assert!(
            event.attempts >= 2,
            "a repeated event shows its second attempt"
        );
    }
    for id in &ids {
        let event = server.client.event(id, Some("10s")).await.unwrap();
        assert_eq!(event.status, EventStatus::Succeeded, "{id}");
    }
    eprintln!(
        "crash test: {EVENTS} events, {at_kill} reported at the kill, {} ran twice",
        twice.len()
    );
}

/// The files in `dir` and below, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn leftovers_of_a_crash_are_swept_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    server.deploy("hello", test_programs::HELLO, config()).await;
    // Code of a deleted function: its blob and compiled artifact are no longer needed.
    server
        .deploy("gone", test_programs::WORDCOUNT, config())
        .await;
    server.client.delete("gone").await.unwrap();
    let code_files = |dir: &std::path::Path| {
        let mut n = files_under(&dir.join("blobs"));
        n.extend(files_under(&dir.join("cache")));
        n.len()
    };
    assert_eq!(code_files(dir.path()), 4, "{:?}", files_under(dir.path()));
    let kept = server
        .http
        .put(format!("{}/api/v1/objects/b/kept", server.url))
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 201);
    // An upload under way when the server is killed: its file is written, never committed.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(vec![b'x'; 3 << 20])).unwrap();
    let upload = server
        .http
        .put(format!("{}/api/v1/objects/b/cut", server.url))
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    let upload = tokio::spawn(upload);
    let objects = dir.path().join("objects");
    for _ in 0..100 {
        if files_under(&objects).len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    let _ = upload.await;
    drop(tx);
    // And temporary files whose rename never came.
    std::fs::write(dir.path().join("cache").join("abc.cwasm.tmp-1-2"), b"").unwrap();
    std::fs::write(dir.path().join("blobs").join(".abc.1-2.tmp"), b"").unwrap();
    let before = files_under(dir.path());
    assert!(
        files_under(&objects).len() > 1,
        "the cut upload left a file: {before:?}"
    );

    let server = TestServer::start_in(dir.path(), &[]);
    let after = files_under(dir.path());
    assert_eq!(
        files_under(&objects).len(),
        1,
        "only the kept object's file: {after:?}"
    );
    assert!(!after.iter().any(|f| f.contains(".tmp")), "{after:?}");
    assert_eq!(
        code_files(dir.path()),
        2,
        "only hello's blob and artifact: {after:?}"
    );
    let read = server.get("/api/v1/objects/b/kept").send().await.unwrap();
    assert_eq!(read.text().await.unwrap(), "kept");
    assert_eq!(server.get("/fn/hello/").send().await.unwrap().status(), 200);
    assert_eq!(
        server.metric("kumo_compilations_total").await,
        0,
        "hello's artifact was kept"
    );
}
