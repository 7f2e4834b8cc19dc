//! kumo as a cluster, through real processes: three nodes sharing one PostgreSQL (the private
//! server scripts/test.sh starts, `KUMO_TEST_POSTGRES`) and one data folder. A change through
//! any node reaches every node; a node killed under load loses no accepted event; counters and
//! conditional writes from all nodes at once stay exact; a schedule fires once per tick.

use crate::harness::{Receiver, TestServer, authorized, config};
use kumo_api::{FunctionConfig, KvCondition};
use kumo_core::{EventStatus, Role};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A database of its own on the tests' PostgreSQL; None (and the test passes, saying so)
/// without one.
pub(crate) async fn fresh_database() -> Option<String> {
    let Ok(server) = std::env::var("KUMO_TEST_POSTGRES") else {
        eprintln!("skipped: no KUMO_TEST_POSTGRES (scripts/test.sh starts a PostgreSQL)");
        return None;
    };
    let admin = sqlx::PgPool::connect(&server).await.unwrap();
    let database = format!("kumo_it_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = server.rsplit_once('/').unwrap();
    Some(format!("{base}/{database}"))
}

/// A node of the cluster on `database`, sharing `dir` with the others.
pub(crate) fn node(dir: &Path, database: &str, extra: &[&str]) -> TestServer {
    let mut args = vec!["--database", database];
    args.extend_from_slice(extra);
    TestServer::start_in(dir, &args)
}

/// Three nodes, started one after the other (the first creates the admin token).
async fn three_nodes(dir: &Path, database: &str, extra: &[&str]) -> Vec<TestServer> {
    (0..3).map(|_| node(dir, database, extra)).collect()
}

/// Polls `path` on `server` until its body is `want`, for up to 5 s; the time it took.
async fn eventually(server: &TestServer, path: &str, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let body = server.get_text(path).await;
        if body == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} answered {body:?} to {path}, not {want:?}",
            server.url
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn with_env(value: &str) -> FunctionConfig {
    FunctionConfig {
        env: BTreeMap::from([("V".to_string(), value.to_string())]),
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_any_node_reaches_every_node() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path(), &database, &[]).await;
    let (one, two, three) = (&nodes[0], &nodes[1], &nodes[2]);

    // A deploy through node 1 is served by the others; a redeploy through node 2 replaces
    // what nodes 1 and 3 had loaded.
    one.deploy("hello", test_programs::HTTP_PROBE, with_env("1"))
        .await;
    for node in &nodes {
        eventually(node, "/fn/hello/env/V", "1").await;
    }
    two.deploy("hello", test_programs::HTTP_PROBE, with_env("2"))
        .await;
    let mut slowest = Duration::ZERO;
    for node in &nodes {
        slowest = slowest.max(eventually(node, "/fn/hello/env/V", "2").await);
    }

    // Versions and aliases: published through node 1, pointed through node 2, rolled back
    // through node 3; every node follows.
    one.client.publish_version("hello", "").await.unwrap();
    one.deploy("hello", test_programs::HTTP_PROBE, with_env("3"))
        .await;
    one.client.publish_version("hello", "").await.unwrap();
    two.client
        .set_alias("hello", "live", 2, None)
        .await
        .unwrap();
    for node in &nodes {
        slowest = slowest.max(eventually(node, "/fn/hello:live/env/V", "3").await);
    }
    three
        .client
        .set_alias("hello", "live", 1, None)
        .await
        .unwrap();
    for node in &nodes {
        slowest = slowest.max(eventually(node, "/fn/hello:live/env/V", "2").await);
    }

    // A token made through one node works on another at once; revoked through a third, it
    // stops working everywhere.
    let token = one
        .client
        .create_token("ci", Role::Developer, Some("default"), None)
        .await
        .unwrap();
    let ci = authorized(&token.secret);
    let functions = |node: &TestServer| ci.get(format!("{}/api/v1/functions", node.url));
    let deadline = Instant::now() + Duration::from_secs(5);
    while functions(two).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "node 2 never took the new token");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    three.client.revoke_token("ci").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while functions(one).send().await.unwrap().status() != 401 {
        assert!(
            Instant::now() < deadline,
            "node 1 still takes the revoked token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // `kumo cluster status` lists the three nodes, up.
    let out = one.cli(&["cluster", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("store postgres"), "{text}");
    let up: Vec<&str> = text.lines().filter(|l| l.contains(" up ")).collect();
    assert_eq!(up.len(), 3, "{text}");
    for node in &nodes {
        let address = node.url.trim_start_matches("http://");
        assert!(text.contains(address), "{address} missing from {text}");
    }

    // An async invocation submitted to node 1, waited for on node 3 (whichever node runs it);
    // a log line printed on node 1, read on node 2.
    one.deploy("worker", test_programs::EVENT_PROBE, config())
        .await;
    let (id, _) = one
        .client
        .invoke_async("worker", b"sleep:300".to_vec(), None)
        .await
        .unwrap();
    let event = three.client.event(&id, Some("20s")).await.unwrap();
    assert_eq!(event.status, EventStatus::Succeeded);
    one.get("/fn/hello/log").send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !two
        .get_text("/api/v1/functions/hello/logs")
        .await
        .contains("to stderr 2")
    {
        assert!(
            Instant::now() < deadline,
            "node 2 never saw node 1's log lines"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An event stream on node 2 follows an event another node runs, to its end.
    let (id, _) = one
        .client
        .invoke_async("worker", b"sleep:300".to_vec(), None)
        .await
        .unwrap();
    let stream = two
        .get(&format!("/api/v1/invocations/{id}/events"))
        .send()
        .await
        .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(20), stream.text())
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(text.contains("\"status\":\"succeeded\""), "{text}");
    // `logs --follow` on node 3 sees a line printed on node 1.
    let mut follow = three
        .get("/api/v1/functions/hello/logs?follow=true")
        .send()
        .await
        .unwrap();
    let marker = "/fn/hello/log";
    one.get(marker).send().await.unwrap();
    let followed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = String::new();
        while !seen.matches("to stderr 2").count().ge(&2) {
            let chunk = follow.chunk().await.unwrap().expect("the stream goes on");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(followed.is_ok(), "node 3 never streamed node 1's new line");
    // A topic message published on any node reaches each subscriber once.
    let receiver = Receiver::start().await;
    for name in ["sub-a", "sub-b"] {
        let config = FunctionConfig {
            topics: vec!["news".into()],
            on_success: Some(receiver.url.parse().unwrap()),
            ..config()
        };
        one.deploy(name, test_programs::EVENT_PROBE, config).await;
    }
    let mut expected = 0;
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let published = node
                .post("/api/v1/topics/news")
                .body("hi")
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = published.json().await.unwrap();
            let events = body["events"].as_array().map_or(0, Vec::len);
            expected += events;
            // Until the node has seen both subscriptions (the change feed), again.
            if events == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} lacks the subscribers: {body}",
                node.url
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    receiver.json_when(expected, Duration::from_secs(20)).await;
    // A duplicate would come soon after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = receiver.json_when(expected, Duration::ZERO).await;
    let mut deliveries: Vec<(String, String)> = outcomes
        .iter()
        .map(|o| {
            let message = crate::triggers::received_event(o);
            (o["data"]["function"].to_string(), message["id"].to_string())
        })
        .collect();
    deliveries.sort();
    deliveries.dedup();
    assert_eq!(
        (outcomes.len(), deliveries.len()),
        (expected, expected),
        "{outcomes:?}"
    );

    // Deleted through node 3: gone everywhere.
    three.client.delete("hello").await.unwrap();
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(5);
        while node.get("/fn/hello/env/V").send().await.unwrap().status() != 404 {
            assert!(Instant::now() < deadline, "{} still serves hello", node.url);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("cluster: a change reached every node within {slowest:?}");
}

const EVENTS: usize = 600;
const SLOW: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_event_is_lost_when_a_node_is_killed() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(dir.path(), &database, &["--async-workers", "8"]).await;
    nodes[0]
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

    // Submitted round-robin to the three nodes: first slow events (each node is still
    // running some when node 2 dies), then quick ones that report to the receiver. Node 2 is
    // killed (SIGKILL) early on, and started again.
    let mut slow = Vec::new();
    let submits = (0..SLOW).map(|i| {
        nodes[i % 3]
            .client
            .invoke_async("reporter", b"sleep:1500".to_vec(), None)
    });
    for submitted in futures::future::join_all(submits).await {
        slow.push(submitted.unwrap().0);
    }
    let mut ids = Vec::with_capacity(EVENTS);
    for chunk in 0..EVENTS / 60 {
        let submits = (0..60).map(|i| {
            nodes[i % 3]
                .client
                .invoke_async("reporter", payload.clone().into_bytes(), None)
        });
        for submitted in futures::future::join_all(submits).await {
            let (id, _) = submitted.unwrap_or_else(|e| panic!("submit in chunk {chunk}: {e}"));
            ids.push(id);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.bodies().len() < EVENTS / 10 {
        assert!(Instant::now() < deadline, "the events do not drain");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    nodes.remove(1).kill();
    let at_kill = receiver.bodies().len();
    nodes.push(node(dir.path(), &database, &["--async-workers", "8"]));

    // Every event that got its 202 runs: the killed node's leases run out and the others
    // take its events over.
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
    // At least once: an event the killed node was running may run again, never more.
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.len() <= 8, "{} events ran twice", twice.len());
    assert!(twice.iter().all(|(_, n)| **n == 2), "{twice:?}");
    let mut taken_over = 0;
    for id in ids.iter().chain(&slow) {
        let event = nodes[0].client.event(id, Some("30s")).await.unwrap();
        assert_eq!(event.status, EventStatus::Succeeded, "{id}");
        taken_over += usize::from(event.attempts > 1);
    }
    // The slow events node 2 was running when it died ran again elsewhere.
    assert!(
        taken_over >= 1,
        "no event was taken over from the killed node"
    );
    eprintln!(
        "cluster kill test: {EVENTS} quick and {SLOW} slow events over 3 nodes, {at_kill} \
         reported at the kill, {} ran twice, {taken_over} taken over from the killed node",
        twice.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_hands_back_what_it_runs() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let leaving = node(dir.path(), &database, &[]);
    leaving
        .deploy("slow", test_programs::EVENT_PROBE, config())
        .await;
    // Longer than the 10 s a stopping node gives its attempts.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (id, _) = leaving
            .client
            .invoke_async("slow", b"sleep:12000".to_vec(), None)
            .await
            .unwrap();
        ids.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in &ids {
        while leaving.client.event(id, None).await.unwrap().status != EventStatus::Running {
            assert!(Instant::now() < deadline, "{id} never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let staying = node(dir.path(), &database, &[]);
    // SIGTERM: the attempts still running after the grace are handed back, and the node
    // leaves the registry; the other node runs them (a second attempt each).
    leaving.stop();
    for id in &ids {
        let event = staying.client.event(id, Some("60s")).await.unwrap();
        assert_eq!(
            (event.status, event.attempts),
            (EventStatus::Succeeded, 2),
            "{id}"
        );
    }
    let status = staying.client.cluster_status().await.unwrap();
    assert_eq!(status["nodes"].as_array().unwrap().len(), 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_conditional_writes_and_schedules_hold_across_nodes() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = three_nodes(dir.path(), &database, &[]).await;
    nodes[0]
        .deploy(
            "kv",
            test_programs::KV_PROBE,
            FunctionConfig {
                kv: vec!["counts".into()],
                ..config()
            },
        )
        .await;

    // 3 nodes x 40 increments at once add up exactly.
    let increments = (0..120).map(|i| nodes[i % 3].post("/fn/kv/incr/counts/n?1").send());
    for response in futures::future::join_all(increments).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(nodes[2].get_text("/fn/kv/get/counts/n").await, "120");

    // Create-if-absent from every node at once: exactly one wins.
    let writes = (0..30).map(|i| {
        nodes[i % 3].client.kv_put(
            "claims",
            "leader",
            format!("node-{}", i % 3).into_bytes(),
            KvCondition::IfAbsent,
        )
    });
    let won = futures::future::join_all(writes)
        .await
        .iter()
        .filter(|w| w.is_ok())
        .count();
    assert_eq!(won, 1);

    // max_concurrency 4 leaves asynchronous attempts 3 (20% is kept for sync requests):
    // across the three nodes, not 3 on each. The invocation records show what ran when.
    nodes[0]
        .deploy(
            "capped",
            test_programs::EVENT_PROBE,
            FunctionConfig {
                max_concurrency: Some(4),
                ..config()
            },
        )
        .await;
    let submits = (0..24).map(|i| {
        nodes[i % 3]
            .client
            .invoke_async("capped", b"sleep:200".to_vec(), None)
    });
    let mut ids = Vec::new();
    for submitted in futures::future::join_all(submits).await {
        ids.push(submitted.unwrap().0);
    }
    for id in &ids {
        let event = nodes[0].client.event(id, Some("60s")).await.unwrap();
        assert_eq!(event.status, EventStatus::Succeeded, "{id}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let records = nodes[1]
            .client
            .invocations(Some("capped"), 100)
            .await
            .unwrap();
        if records.len() == 24 {
            break records;
        }
        assert!(Instant::now() < deadline, "{} records of 24", records.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The most invocations running at one instant: +1 at each start, -1 at each end.
    let mut edges: Vec<(f64, i32)> = records
        .iter()
        .flat_map(|r| {
            let start = r.started_at as f64;
            [(start, 1), (start + r.duration_ms, -1)]
        })
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let most = edges
        .iter()
        .scan(0, |running, (_, step)| {
            *running += step;
            Some(*running)
        })
        .max()
        .unwrap();
    assert!(
        (2..=3).contains(&most),
        "{most} attempts of capped ran at once"
    );

    // Two functions claiming one route, deployed through two nodes at the same instant: the
    // route check sees the other deploy (the registry lock is the cluster's), one wins.
    let claiming = |node: &TestServer, name: String| {
        let code = std::fs::read(test_programs::HTTP_PROBE).unwrap();
        let config = FunctionConfig {
            routes: vec!["/shared/*".parse().unwrap()],
            ..config()
        };
        let client = node.client.clone();
        async move { client.deploy(&name, code, &config).await }
    };
    for round in 0..5 {
        let (a, b) = (format!("route-a{round}"), format!("route-b{round}"));
        let (first, second) = tokio::join!(
            claiming(&nodes[0], a.clone()),
            claiming(&nodes[1], b.clone())
        );
        assert_eq!(
            usize::from(first.is_ok()) + usize::from(second.is_ok()),
            1,
            "round {round}: {first:?} / {second:?}"
        );
        for name in [a, b] {
            let _ = nodes[2].client.delete(&name).await;
        }
    }

    // A schedule every 2 seconds, deployed on one node and seen by all three schedulers,
    // fires each tick once.
    nodes[1]
        .deploy(
            "ticker",
            test_programs::EVENT_PROBE,
            FunctionConfig {
                schedule: Some("*/2 * * * * *".parse().unwrap()),
                on_success: Some(receiver.url.parse().unwrap()),
                ..config()
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    nodes[1].client.delete("ticker").await.unwrap();
    let ticks: Vec<String> = receiver
        .json_when(0, Duration::ZERO)
        .await
        .iter()
        .map(|outcome| {
            crate::triggers::received_event(outcome)["data"]["scheduled_time"].to_string()
        })
        .collect();
    let mut unique = ticks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert!((3..=5).contains(&ticks.len()), "{ticks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_moves_into_a_cluster() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let single = TestServer::start_in(dir.path(), &[]);
    single
        .deploy("hello", test_programs::HTTP_PROBE, with_env("1"))
        .await;
    single.client.publish_version("hello", "").await.unwrap();
    single
        .deploy("hello", test_programs::HTTP_PROBE, with_env("2"))
        .await;
    single
        .client
        .set_alias("hello", "live", 1, None)
        .await
        .unwrap();
    single
        .client
        .kv_put("data", "k", b"kept".to_vec(), KvCondition::Always)
        .await
        .unwrap();
    let put = single
        .http
        .put(format!("{}/api/v1/objects/pics/a.txt", single.url))
        .body("object bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let logged = single.get("/fn/hello/log").send().await.unwrap();
    let request_id = crate::harness::request_id(&logged);
    let token = single
        .client
        .create_token("ci", Role::Developer, Some("default"), None)
        .await
        .unwrap();
    single.stop();

    let migrate = |what: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
            .args(["migrate", "--from"])
            .arg(dir.path())
            .args(["--to", what])
            .output()
            .unwrap()
    };
    let out = migrate(&database);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["functions", "1"])),
        "{text}"
    );
    // Into a database that holds a kumo already: refused, nothing changed.
    let again = migrate(&database);
    assert!(!again.status.success());
    let error = String::from_utf8_lossy(&again.stderr);
    assert!(error.contains("migrate into an empty one"), "{error}");

    // A node on the database and the same folder serves what the single node had.
    let node = node(dir.path(), &database, &[]);
    assert_eq!(node.get_text("/fn/hello/env/V").await, "2");
    assert_eq!(node.get_text("/fn/hello:live/env/V").await, "1");
    let value = node.client.kv_get("data", "k").await.unwrap();
    assert_eq!(value.value.as_ref(), b"kept");
    assert_eq!(
        node.get_text("/api/v1/objects/pics/a.txt").await,
        "object bytes"
    );
    let record = node
        .get_text(&format!("/api/v1/invocations/{request_id}"))
        .await;
    assert!(record.contains("\"function\":\"hello\""), "{record}");
    let logs = node.get_text("/api/v1/functions/hello/logs").await;
    assert!(logs.contains("to stderr 2"), "{logs}");
    let ci = authorized(&token.secret);
    let listed = ci
        .get(format!("{}/api/v1/functions", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    // New log lines follow the copied ones (their ids keep growing).
    node.get("/fn/hello/log").send().await.unwrap();
    let logs = node.get_text("/api/v1/functions/hello/logs").await;
    assert_eq!(logs.matches("to stderr 2").count(), 2, "{logs}");

    // Ready while the database answers; alive but not ready once it is gone.
    assert_eq!(node.get_text("/readyz").await, "ready\n");
    let server = std::env::var("KUMO_TEST_POSTGRES").unwrap();
    let admin = sqlx::PgPool::connect(&server).await.unwrap();
    let name = database.rsplit_once('/').unwrap().1;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.get("/readyz").send().await.unwrap().status() != 503 {
        assert!(
            Instant::now() < deadline,
            "still ready without its database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node.get_text("/healthz").await, "ok\n");
}

/// moto's S3 server on a free loopback port, stopped on drop; None (the test says so) when
/// moto is not installed (scripts/test.sh installs it).
struct S3Server {
    url: String,
    child: std::process::Child,
}

impl S3Server {
    async fn start() -> Option<Self> {
        let installed = std::process::Command::new("python3")
            .args(["-c", "import moto.server"])
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            eprintln!("skipped: moto is not installed (scripts/test.sh installs it)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(&server.url).await.is_err() {
            assert!(Instant::now() < deadline, "moto's server does not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(server)
    }

    /// What a kumo node needs to reach it.
    fn env(&self) -> [(&str, &str); 5] {
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// The keys in `bucket` (its ListObjectsV2 answer, as text).
    async fn listing(&self, bucket: &str) -> String {
        let url = format!("{}/{bucket}?list-type=2", self.url);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_live_in_an_s3_bucket_every_node_reads() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let created = reqwest::Client::new()
        .put(format!("{}/kumo-objects", s3.url))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    // A single node moves into a cluster that keeps object bytes and code in S3, so its
    // nodes need not share a folder.
    let dir = tempfile::tempdir().unwrap();
    let single = TestServer::start_in(dir.path(), &[]);
    single
        .deploy("hello", test_programs::HTTP_PROBE, with_env("1"))
        .await;
    let put = single
        .http
        .put(format!("{}/api/v1/objects/pics/old.txt", single.url))
        .body("from the single node")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    single.stop();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kumo"))
        .args(["migrate", "--from"])
        .arg(dir.path())
        .args(["--to", &database, "--objects", "s3://kumo-objects/cluster"])
        .envs(s3.env())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |words: [&str; 3]| text.lines().any(|l| l.split_whitespace().eq(words));
    assert!(
        line(["object", "files", "1"]) && line(["code", "files", "1"]),
        "{text}"
    );
    std::fs::remove_dir_all(dir.path().join("objects")).unwrap();

    // Node 1 on the single node's folder; node 2 on a folder of its own, with the same key
    // for secrets (and, for this test's client, the admin token).
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("admin-token"),
        other.path().join("admin-token"),
    )
    .unwrap();
    let key = std::fs::read_to_string(dir.path().join("secret-key")).unwrap();
    let args = [
        "--database",
        database.as_str(),
        "--objects",
        "s3://kumo-objects/cluster",
    ];
    let mut env = s3.env().to_vec();
    env.push(("KUMO_SECRET_KEY", key.trim()));
    let nodes = [
        TestServer::start_in_with(dir.path(), &args, &env),
        TestServer::start_in_with(other.path(), &args, &env),
    ];
    // Code deployed on one node runs on the other, fetched from the bucket.
    assert_eq!(nodes[1].get_text("/fn/hello/env/V").await, "1");
    nodes[0]
        .deploy("hello", test_programs::HELLO, config())
        .await;
    eventually(&nodes[1], "/fn/hello/Ada", "hello, Ada!\n").await;
    assert_eq!(
        nodes[1].get_text("/api/v1/objects/pics/old.txt").await,
        "from the single node"
    );
    let put = nodes[0]
        .http
        .put(format!("{}/api/v1/objects/pics/new.txt", nodes[0].url))
        .body("written through node 1")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(
        nodes[1].get_text("/api/v1/objects/pics/new.txt").await,
        "written through node 1"
    );
    // The bytes are in the bucket, under the prefix; none in the data folders.
    let listing = s3.listing("kumo-objects").await;
    assert_eq!(
        listing.matches("<Key>cluster/objects/pics/").count(),
        2,
        "{listing}"
    );
    assert_eq!(
        listing.matches("<Key>cluster/code/").count(),
        2,
        "{listing}"
    );
    assert!(!dir.path().join("objects").exists());
    assert!(!other.path().join("objects").exists());
    // Deleted through node 2: gone from the bucket too.
    let deleted = nodes[1]
        .http
        .delete(format!("{}/api/v1/objects/pics/new.txt", nodes[1].url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        nodes[0]
            .get("/api/v1/objects/pics/new.txt")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let listing = s3.listing("kumo-objects").await;
    assert_eq!(
        listing.matches("<Key>cluster/objects/pics/").count(),
        1,
        "{listing}"
    );
}
