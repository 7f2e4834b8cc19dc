//! The storage contract, generic over the backend: what the server relies on from every
//! trait of `kumo_store::prelude`, whatever the engine. SQLite and PostgreSQL (against the
//! private server scripts/test.sh starts) each run all of it.

use kumo_core::{
    Canary, CounterError, EventError, EventErrorCode, EventResult, EventStatus, Expect,
    FunctionConfig, FunctionKind, FunctionRecord, InvocationRecord, KvWrite, ObjectInfo, Outcome,
    OutputLine, Trigger, UsageBy,
};
use kumo_store::prelude::*;
use kumo_store::{
    AliasSet, Completion, LogQuery, NewEvent, Published, Store, StoredToken, VersionDeleted,
};
use std::future::Future;

/// Everything a backend implements.
trait Backend:
    FunctionStore
    + VersionStore
    + KvStore
    + EventQueue
    + ScheduleStore
    + RecordStore
    + LogStore
    + UsageStore
    + ObjectInfoStore
    + TokenStore
    + AuditStore
    + SecretStore
    + NamespaceStore
    + WorkflowStore
    + Sync
{
}
impl<T> Backend for T where
    T: FunctionStore
        + VersionStore
        + KvStore
        + EventQueue
        + ScheduleStore
        + RecordStore
        + LogStore
        + UsageStore
        + ObjectInfoStore
        + TokenStore
        + AuditStore
        + SecretStore
        + NamespaceStore
        + WorkflowStore
        + Sync
{
}

/// Records and log lines reach a backend through its own batching writer.
type Batch = Vec<(InvocationRecord, Vec<OutputLine>)>;

async fn conformance<S: Backend, W: Future<Output = ()>>(
    store: &S,
    write_records: impl FnOnce(Batch) -> W,
) {
    functions(store).await;
    versions_and_aliases(store).await;
    concurrent_publishes(store).await;
    key_value(store).await;
    concurrent_increments(store).await;
    event_queue(store).await;
    schedules(store).await;
    object_infos(store).await;
    tokens(store).await;
    audit(store).await;
    secrets(store).await;
    namespaces(store).await;
    workflows(store).await;
    records_logs_and_usage(store, write_records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kumo.db");
    let store = Store::open(&path).await.unwrap();
    let mut writer = kumo_store::RecordWriter::open(&path).unwrap();
    conformance(&store, |batch| {
        writer.write(&batch).unwrap();
        std::future::ready(())
    })
    .await;
}

fn function(name: &str, memory_mb: u32, at: i64) -> FunctionRecord {
    FunctionRecord {
        name: name.into(),
        kind: FunctionKind::WasiHttp,
        code_sha256: "ab".into(),
        code_size: 3,
        config: FunctionConfig {
            memory_mb,
            ..FunctionConfig::default()
        },
        created_at: at,
        updated_at: at,
        reuse_fell_back: false,
    }
}

/// The PostgreSQL backend, in a database of its own on the server scripts/test.sh starts
/// (`KUMO_TEST_POSTGRES`); without one the test says so and passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Ok(server) = std::env::var("KUMO_TEST_POSTGRES") else {
        eprintln!("skipped: no KUMO_TEST_POSTGRES (scripts/test.sh starts a PostgreSQL)");
        return;
    };
    let admin = sqlx::PgPool::connect(&server).await.unwrap();
    let database = format!("kumo_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = server.rsplit_once('/').unwrap();
    let url = format!("{base}/{database}");
    let store = kumo_store::PgStore::open(&url, "node-1").await.unwrap();
    let writer = &store;
    conformance(&store, |batch| async move {
        writer.write_records(&batch).await.unwrap();
    })
    .await;
    // A second open (another node starting) finds the schema up to date and the same data.
    let again = kumo_store::PgStore::open(&url, "node-2").await.unwrap();
    assert!(again.get_function("b").await.unwrap().is_some());
    // A node releases only the attempts it claimed, never another live node's.
    let now = kumo_core::now_ms();
    store.claim_events(now, now + 60_000, 1000).await.unwrap();
    let events = [event("e-a", "z", now), event("e-b", "z", now)];
    store.submit_events(&events).await.unwrap();
    let theirs = store.claim_events(now, now + 60_000, 1).await.unwrap();
    let ours = again.claim_events(now, now + 60_000, 1).await.unwrap();
    assert_eq!(again.release_interrupted_events(now).await.unwrap(), 1);
    let status = |e: &[kumo_store::ClaimedEvent]| {
        let id = e[0].id.clone();
        let store = &store;
        async move { store.get_event(&id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(&ours).await, EventStatus::Failed);
    assert_eq!(status(&theirs).await, EventStatus::Running);
    cluster(&store, &again).await;
    store.close().await;
    again.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {database}")))
        .execute(&admin)
        .await
        .unwrap();
}

/// Two nodes on one database: the registry lists both, and a change through one reaches
/// the other's feed.
async fn cluster(one: &kumo_store::PgStore, two: &kumo_store::PgStore) {
    let node = |id: &str, at: i64| kumo_core::NodeRecord {
        id: id.into(),
        address: "127.0.0.1:1".into(),
        version: "test".into(),
        started_at: at,
        heartbeat_at: at,
        running: 2,
        loaded: vec!["f".into()],
    };
    let now = kumo_core::now_ms();
    one.heartbeat(&node("node-1", now)).await.unwrap();
    two.heartbeat(&node("node-2", now - 7_200_000))
        .await
        .unwrap();
    two.heartbeat(&node("node-2", now)).await.unwrap();
    // A node down for over an hour is forgotten.
    one.heartbeat(&node("node-3", now - 7_200_000))
        .await
        .unwrap();
    let nodes = two.list_nodes(now).await.unwrap();
    assert_eq!(nodes, [node("node-1", now), node("node-2", now)]);
    one.remove_node("node-1").await.unwrap();
    assert_eq!(two.list_nodes(now).await.unwrap().len(), 1);

    // A function's asynchronous attempts are admitted up to its cap across both nodes; a
    // finished one makes room.
    let events = [
        event("c-1", "capped", now),
        event("c-2", "capped:live", now),
    ];
    one.submit_events(&events).await.unwrap();
    let claimed = one.claim_events(now, now + 60_000, 100).await.unwrap();
    assert!(claimed.iter().any(|e| e.id == "c-1") && claimed.iter().any(|e| e.id == "c-2"));
    assert!(one.admit_attempt("c-1", 1, "capped", 1, now).await.unwrap());
    assert!(!two.admit_attempt("c-2", 1, "capped", 1, now).await.unwrap());
    assert!(two.admit_attempt("c-2", 1, "capped", 2, now).await.unwrap());
    let done = Completion::Dead {
        request_id: None,
        error: EventError {
            code: EventErrorCode::TooOld,
            message: String::new(),
        },
    };
    for id in ["c-1", "c-2"] {
        assert!(one.complete_event(id, 1, &done, now, None).await.unwrap());
    }
    let third = [event("c-3", "capped", now)];
    one.submit_events(&third).await.unwrap();
    one.claim_events(now, now + 60_000, 1).await.unwrap();
    assert!(one.admit_attempt("c-3", 1, "capped", 1, now).await.unwrap());

    let mut feed = two.changes().await.unwrap();
    one.upsert_function(&function("changed", 64, now))
        .await
        .unwrap();
    let change = tokio::time::timeout(std::time::Duration::from_secs(5), feed.next())
        .await
        .expect("a change within 5 s")
        .unwrap();
    assert_eq!(change, kumo_store::Change::Table("functions".into()));
    // A token's use is not a change.
    one.token_used("nobody", now).await.unwrap();
    one.publish_version("changed", "", now).await.unwrap();
    one.set_alias("changed", "live", 1, None, now)
        .await
        .unwrap();
    let change = tokio::time::timeout(std::time::Duration::from_secs(5), feed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change, kumo_store::Change::Table("aliases".into()));
}

/// What the function and version stores do, the part of a backend this checks.
trait Registry: FunctionStore + VersionStore + Sync {}
impl<T: FunctionStore + VersionStore + Sync> Registry for T {}

async fn functions(store: &impl Registry) {
    assert!(store.upsert_function(&function("b", 64, 1)).await.unwrap());
    assert!(store.upsert_function(&function("a", 64, 1)).await.unwrap());
    assert!(!store.upsert_function(&function("b", 128, 2)).await.unwrap());
    let b = store.get_function("b").await.unwrap().unwrap();
    assert_eq!(
        (b.config.memory_mb, b.created_at, b.updated_at),
        (128, 1, 2)
    );
    let names: Vec<_> = store.list_functions().await.unwrap();
    let names: Vec<_> = names.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(store.delete_function("a").await.unwrap());
    assert!(!store.delete_function("a").await.unwrap());
    assert!(store.get_function("a").await.unwrap().is_none());
}

async fn versions_and_aliases(store: &impl Registry) {
    store.upsert_function(&function("v", 64, 1)).await.unwrap();
    let Published::Created(one) = store.publish_version("v", "one", 10).await.unwrap() else {
        panic!("version 1 is created");
    };
    assert_eq!((one.version, one.config.memory_mb), (1, 64));
    assert!(matches!(
        store.publish_version("v", "again", 11).await.unwrap(),
        Published::Unchanged(v) if v.version == 1
    ));
    assert!(matches!(
        store.publish_version("nobody", "", 11).await.unwrap(),
        Published::NoFunction
    ));
    store.upsert_function(&function("v", 256, 2)).await.unwrap();
    assert!(
        matches!(store.publish_version("v", "two", 12).await.unwrap(), Published::Created(v) if v.version == 2)
    );
    assert!(matches!(
        store.delete_version("v", 2).await.unwrap(),
        VersionDeleted::Deleted
    ));
    // A deleted number is never handed out again.
    store.upsert_function(&function("v", 512, 3)).await.unwrap();
    assert!(
        matches!(store.publish_version("v", "three", 13).await.unwrap(), Published::Created(v) if v.version == 3)
    );
    let numbers: Vec<_> = store.list_versions("v").await.unwrap();
    let numbers: Vec<_> = numbers.iter().map(|v| v.version).collect();
    assert_eq!(numbers, [1, 3]);
    assert_eq!(
        store
            .get_version("v", 1)
            .await
            .unwrap()
            .unwrap()
            .config
            .memory_mb,
        64,
        "a version never changes"
    );

    let canary = Canary {
        version: 3,
        weight: 10,
    };
    assert!(matches!(
        store
            .set_alias("v", "live", 1, Some(canary), 14)
            .await
            .unwrap(),
        AliasSet::Created(_)
    ));
    assert!(matches!(
        store.set_alias("v", "live", 9, None, 15).await.unwrap(),
        AliasSet::NoVersion(9)
    ));
    assert!(matches!(
        store.delete_version("v", 3).await.unwrap(),
        VersionDeleted::InUse(aliases) if aliases == ["live"]
    ));
    assert!(matches!(
        store.set_alias("v", "live", 3, None, 16).await.unwrap(),
        AliasSet::Updated(a) if a.version == 3 && a.canary.is_none()
    ));
    let aliases = store.list_aliases(Some("v")).await.unwrap();
    assert_eq!(aliases.len(), 1);
    assert!(store.delete_alias("v", "live").await.unwrap());
    assert!(!store.delete_alias("v", "live").await.unwrap());

    // Deleting the function takes its versions and aliases with it.
    store.set_alias("v", "live", 1, None, 17).await.unwrap();
    assert!(store.delete_function("v").await.unwrap());
    assert!(store.list_versions("v").await.unwrap().is_empty());
    assert!(store.list_aliases(Some("v")).await.unwrap().is_empty());
}

/// Writers publishing the same function at once (as nodes of a cluster do) never get the
/// same number, and every number is in the list once.
async fn concurrent_publishes(store: &impl Registry) {
    store
        .upsert_function(&function("race", 64, 1))
        .await
        .unwrap();
    let publishes = (0..8u32).map(|i| async move {
        store
            .upsert_function(&function("race", 64 + i, 2 + i64::from(i)))
            .await
            .unwrap();
        match store.publish_version("race", "", 100).await.unwrap() {
            Published::Created(v) => Some(v.version),
            _ => None,
        }
    });
    let mut created: Vec<u32> = futures::future::join_all(publishes)
        .await
        .into_iter()
        .flatten()
        .collect();
    created.sort_unstable();
    let listed: Vec<u32> = store
        .list_versions("race")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert!(!created.is_empty());
    assert_eq!(
        created, listed,
        "each created number once, all of them listed"
    );
    assert!(created.windows(2).all(|w| w[0] < w[1]));
    assert!(store.delete_function("race").await.unwrap());
}

/// Increments from many writers at once (nodes of a cluster) are all counted, on a counter
/// that did not exist before.
async fn concurrent_increments(store: &(impl KvStore + Sync)) {
    let increments = (0..16).map(|_| store.kv_increment("race", "hits", 1));
    for result in futures::future::join_all(increments).await {
        result.unwrap().unwrap();
    }
    let total = store.kv_get("race", "hits").await.unwrap().unwrap();
    assert_eq!(total.value, b"16");
    assert!(
        store
            .kv_delete("race", "hits", Expect::Anything)
            .await
            .unwrap()
    );
}

async fn key_value(store: &(impl KvStore + Sync)) {
    let KvWrite::Written {
        etag: first,
        created: true,
    } = store.kv_put("b", "k", b"1", Expect::Absent).await.unwrap()
    else {
        panic!("created");
    };
    assert_eq!(
        store.kv_put("b", "k", b"x", Expect::Absent).await.unwrap(),
        KvWrite::Conflict
    );
    let KvWrite::Written { etag: second, .. } = store
        .kv_put("b", "k", b"2", Expect::Etag(&first))
        .await
        .unwrap()
    else {
        panic!("the etag matched");
    };
    assert_ne!(first, second, "every write has a new etag");
    assert_eq!(
        store
            .kv_put("b", "k", b"x", Expect::Etag(&first))
            .await
            .unwrap(),
        KvWrite::Conflict
    );
    assert_eq!(
        store
            .kv_put("b", "none", b"x", Expect::Present)
            .await
            .unwrap(),
        KvWrite::Conflict
    );
    let entry = store.kv_get("b", "k").await.unwrap().unwrap();
    assert_eq!(
        (entry.value.as_slice(), entry.etag.as_str()),
        (&b"2"[..], second.as_str())
    );
    assert!(
        !store
            .kv_delete("b", "k", Expect::Etag(&first))
            .await
            .unwrap()
    );
    assert!(
        store
            .kv_delete("b", "k", Expect::Etag(&second))
            .await
            .unwrap()
    );
    assert!(!store.kv_exists("b", "k").await.unwrap());
    // Re-created after a delete: a new etag, so an old one never matches again.
    store
        .kv_put("b", "k", b"3", Expect::Anything)
        .await
        .unwrap();
    assert_eq!(
        store
            .kv_put("b", "k", b"x", Expect::Etag(&second))
            .await
            .unwrap(),
        KvWrite::Conflict
    );
    assert_eq!(
        store.kv_get("other", "k").await.unwrap(),
        None,
        "buckets are apart"
    );

    // Keys list in byte order, by prefix, in pages.
    for key in ["é", "b", "B", "a/2", "a/1", "a"] {
        store
            .kv_put("l", key, b"v", Expect::Anything)
            .await
            .unwrap();
    }
    store
        .kv_put("other", "a/0", b"v", Expect::Anything)
        .await
        .unwrap();
    let all = store.kv_list("l", "", None, 100).await.unwrap();
    assert_eq!(all.keys, ["B", "a", "a/1", "a/2", "b", "é"]);
    assert_eq!(all.cursor, None);
    let page = store.kv_list("l", "a/", None, 1).await.unwrap();
    assert_eq!(page.keys, ["a/1"]);
    let rest = store
        .kv_list("l", "a/", page.cursor.as_deref(), 10)
        .await
        .unwrap();
    assert_eq!(rest.keys, ["a/2"]);

    assert_eq!(store.kv_increment("c", "n", 5).await.unwrap(), Ok(5));
    assert_eq!(store.kv_increment("c", "n", -7).await.unwrap(), Ok(-2));
    assert!(matches!(
        store.kv_increment("l", "a", 1).await.unwrap(),
        Err(CounterError::NotACounter(_))
    ));
    assert_eq!(store.kv_get("l", "a").await.unwrap().unwrap().value, b"v");
    let max = i64::MAX.to_string();
    store
        .kv_put("c", "max", max.as_bytes(), Expect::Anything)
        .await
        .unwrap();
    assert_eq!(
        store.kv_increment("c", "max", 1).await.unwrap(),
        Err(CounterError::Overflow)
    );
}

fn event<'a>(id: &'a str, function: &'a str, now: i64) -> NewEvent<'a> {
    NewEvent {
        id,
        function,
        trigger: Trigger::Async,
        payload: b"payload",
        content_type: Some("text/plain"),
        traceparent: None,
        now,
    }
}

async fn event_queue(store: &impl Backend) {
    let now = 1_000_000;
    // An idempotency key maps to its first event.
    let (id, replayed) = store
        .submit_event(&event("e1", "q", now), Some("key"))
        .await
        .unwrap();
    assert_eq!((id.as_str(), replayed), ("e1", false));
    let (id, replayed) = store
        .submit_event(&event("e2", "q", now), Some("key"))
        .await
        .unwrap();
    assert_eq!((id.as_str(), replayed), ("e1", true));
    assert!(store.get_event("e2").await.unwrap().is_none());
    let ids: Vec<String> = (0..20).map(|i| format!("n{i:02}")).collect();
    let many: Vec<_> = ids.iter().map(|id| event(id, "q", now)).collect();
    store.submit_events(&many).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(now));
    let depths = store.queue_depths().await.unwrap();
    assert_eq!(depths[0].depth, 21);

    // Two claimers at once never get the same event.
    let (a, b) = tokio::join!(
        store.claim_events(now, now + 60_000, 15),
        store.claim_events(now, now + 60_000, 15)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 21);
    let mut claimed: Vec<_> = a.iter().chain(&b).map(|e| e.id.clone()).collect();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), 21);
    assert!(a.iter().chain(&b).all(|e| e.attempt == 1));
    assert!(
        store
            .claim_events(now, now + 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Only the attempt holding the lease records its end.
    let done = Completion::Succeeded {
        request_id: "r1".into(),
        result: EventResult {
            status: 200,
            body: "ok".into(),
            truncated: false,
        },
    };
    assert!(
        !store
            .complete_event("e1", 2, &done, now, None)
            .await
            .unwrap()
    );
    let follow_up = event("f1", "q2", now);
    assert!(
        store
            .complete_event("e1", 1, &done, now, Some(&follow_up))
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete_event("e1", 1, &done, now, None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_event("e1").await.unwrap().unwrap().status,
        EventStatus::Succeeded
    );
    assert!(
        store.get_event("f1").await.unwrap().is_some(),
        "stored with the completion"
    );

    let error = || EventError {
        code: kumo_core::EventErrorCode::ErrorStatus,
        message: "500".into(),
    };
    let retry = Completion::Retry {
        request_id: Some("r2".into()),
        error: error(),
        due_at: now + 5000,
    };
    assert!(
        store
            .complete_event("n00", 1, &retry, now, None)
            .await
            .unwrap()
    );
    let failed = store.get_event("n00").await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.next_attempt_at),
        (EventStatus::Failed, Some(now + 5000))
    );
    let dead = Completion::Dead {
        request_id: Some("r3".into()),
        error: error(),
    };
    assert!(
        store
            .complete_event("n01", 1, &dead, now, None)
            .await
            .unwrap()
    );
    let letters = store.list_dead_events("q", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id, "n01");
    assert_eq!(store.redrive("q", None, now).await.unwrap(), ["n01"]);
    let redriven = store.get_event("n01").await.unwrap().unwrap();
    assert_eq!(
        (redriven.status, redriven.attempts),
        (EventStatus::Queued, 0)
    );

    // Attempts cut short by a stop become failed attempts, due again.
    let released = store.release_interrupted_events(now + 1).await.unwrap();
    assert_eq!(released, 18, "every claimed event still running");
    let interrupted = store.get_event("n02").await.unwrap().unwrap();
    assert_eq!(interrupted.status, EventStatus::Failed);
    assert_eq!(interrupted.error.unwrap().code, EventErrorCode::Interrupted);
    let again = store
        .claim_events(now + 1, now + 60_000, 100)
        .await
        .unwrap();
    assert!(again.iter().any(|e| e.id == "n02" && e.attempt == 2));

    // A lease that runs out lets the next claim take the event over; the old attempt's end
    // is then ignored.
    let taken = store
        .claim_events(now + 60_000, now + 120_000, 100)
        .await
        .unwrap();
    assert!(taken.iter().any(|e| e.id == "n02" && e.attempt == 3));
    assert!(
        !store
            .complete_event("n02", 2, &done, now, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .complete_event("n02", 3, &done, now, None)
            .await
            .unwrap()
    );
    let kept = store
        .get_event("n02")
        .await
        .unwrap()
        .unwrap()
        .result
        .unwrap();
    assert_eq!(kept.body, "ok");

    // A renewed lease keeps the event from the next claimer; a stale attempt renews nothing.
    let n03 = taken.iter().find(|e| e.id == "n03").unwrap().attempt;
    let renewals = [("n03".to_string(), n03), ("n04".to_string(), 1)];
    let renewed = store.extend_leases(&renewals, now + 300_000).await.unwrap();
    assert_eq!(renewed, 1);
    let next = store
        .claim_events(now + 200_000, now + 260_000, 100)
        .await
        .unwrap();
    assert!(!next.iter().any(|e| e.id == "n03"));
    assert!(next.iter().any(|e| e.id == "n04"));

    // An idempotency key maps to its event only within the window.
    let later = now + kumo_store::IDEMPOTENCY_WINDOW_MS + 1;
    let (id, replayed) = store
        .submit_event(&event("e3", "q", later), Some("key"))
        .await
        .unwrap();
    assert_eq!((id.as_str(), replayed), ("e3", false));
}

async fn schedules(store: &impl Backend) {
    assert_eq!(store.last_tick("s").await.unwrap(), None);
    let tick = event("t1", "s", 60_000);
    assert!(store.fire_tick("s", 60_000, Some(&tick)).await.unwrap());
    // A tick fires once, and never one older than the last.
    let again = event("t2", "s", 60_000);
    assert!(!store.fire_tick("s", 60_000, Some(&again)).await.unwrap());
    assert!(!store.fire_tick("s", 0, None).await.unwrap());
    assert!(store.get_event("t2").await.unwrap().is_none());
    assert_eq!(store.last_tick("s").await.unwrap(), Some(60_000));
    store.forget_schedule("s").await.unwrap();
    assert_eq!(store.last_tick("s").await.unwrap(), None);
}

fn object(key: &str, etag: &str) -> ObjectInfo {
    ObjectInfo {
        bucket: "up".into(),
        key: key.into(),
        size: 3,
        etag: etag.into(),
        content_type: "text/plain".into(),
        updated_at: 1,
    }
}

async fn object_infos(store: &impl Backend) {
    let put = event("o1", "thumbs", 1);
    assert_eq!(
        store
            .put_object_info(&object("a", "e1"), &[put])
            .await
            .unwrap(),
        None
    );
    assert!(
        store.get_event("o1").await.unwrap().is_some(),
        "stored with the object"
    );
    assert_eq!(
        store
            .put_object_info(&object("a", "e2"), &[])
            .await
            .unwrap()
            .as_deref(),
        Some("e1"),
        "the etag it replaced"
    );
    assert_eq!(
        store.object_info("up", "a").await.unwrap().unwrap().etag,
        "e2"
    );
    for key in ["é", "b", "B", "a/1"] {
        store.put_object_info(&object(key, "e"), &[]).await.unwrap();
    }
    let (all, cursor) = store.list_object_infos("up", "", None, 100).await.unwrap();
    let keys: Vec<_> = all.iter().map(|o| o.key.as_str()).collect();
    assert_eq!((keys, cursor), (vec!["B", "a", "a/1", "b", "é"], None));
    let (page, cursor) = store.list_object_infos("up", "", None, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let (rest, _) = store
        .list_object_infos("up", "", cursor.as_deref(), 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);

    // A delete stores its events only when there was something to delete.
    let gone = event("o2", "thumbs", 1);
    assert_eq!(
        store
            .delete_object_info("up", "a", &[gone])
            .await
            .unwrap()
            .as_deref(),
        Some("e2")
    );
    let nothing = event("o3", "thumbs", 1);
    assert_eq!(
        store
            .delete_object_info("up", "a", &[nothing])
            .await
            .unwrap(),
        None
    );
    assert!(store.get_event("o2").await.unwrap().is_some());
    assert!(store.get_event("o3").await.unwrap().is_none());
    assert!(store.object_info("up", "a").await.unwrap().is_none());
}

fn record(function: &str, started_at: i64, outcome: Outcome) -> InvocationRecord {
    let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        (started_at / 1000) as u64,
        ((started_at % 1000) * 1_000_000) as u32,
    ));
    InvocationRecord {
        request_id: id.to_string(),
        function: function.into(),
        started_at,
        duration_ms: 2.0,
        billed_ms: 2,
        memory_mb: 128,
        outcome,
        error_code: None,
        error_message: None,
        status: 200,
        cold: false,
        init_ms: None,
        version: kumo_core::RanVersion::Latest,
        trigger: kumo_core::Source::Http,
        gb_seconds: 0.00025,
        trace_id: "t".repeat(32),
    }
}

async fn records_logs_and_usage<S: Backend, W: Future<Output = ()>>(
    store: &S,
    write_records: impl FnOnce(Batch) -> W,
) {
    let now = kumo_core::now_ms();
    let line = |text: &str| OutputLine {
        stream: kumo_core::LogStream::Stderr,
        line: text.into(),
    };
    let old = record("r", now - 3_600_000, Outcome::Ok);
    let first = record("r", now - 2000, Outcome::Ok);
    let second = record("r", now - 1000, Outcome::Error);
    let other = record("s", now - 500, Outcome::Ok);
    let shop = record("shop/s", now - 400, Outcome::Ok);
    write_records(vec![
        (shop.clone(), vec![]),
        (old.clone(), vec![line("old")]),
        (first.clone(), vec![line("one"), line("two")]),
        (second.clone(), vec![line("three")]),
        (other.clone(), vec![]),
    ])
    .await;

    assert_eq!(
        store.get_invocation(&second.request_id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(store.get_invocation("not-an-id").await.unwrap(), None);
    let listed = store.list_invocations(Some("r"), None, 2).await.unwrap();
    assert_eq!(listed, [second.clone(), first.clone()], "newest first");
    assert_eq!(
        store.list_invocations(None, None, 10).await.unwrap().len(),
        5
    );
    let default = store.list_invocations(None, Some("default"), 10);
    assert_eq!(default.await.unwrap().len(), 4, "namespace default only");
    let in_shop = store
        .list_invocations(None, Some("shop"), 10)
        .await
        .unwrap();
    assert_eq!(in_shop, std::slice::from_ref(&shop));

    let logs = store
        .list_logs(&LogQuery {
            function: "r".into(),
            request_id: Some(first.request_id.clone()),
            limit: 10,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    let lines: Vec<_> = logs.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines, ["one", "two"], "oldest first");
    let newer = store
        .list_logs(&LogQuery {
            function: "r".into(),
            after_id: Some(logs[0].id),
            limit: 10,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    let lines: Vec<_> = newer.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines, ["two", "three"], "after the cursor");

    let since = now - 10_000;
    let usage = store.usage(since, Some("default"), UsageBy::Function);
    let (rows, total) = usage.await.unwrap();
    let keys: Vec<_> = rows
        .iter()
        .map(|r| (r.key.as_str(), r.requests, r.errors))
        .collect();
    assert_eq!(keys, [("r", 2, 1), ("s", 1, 0)]);
    assert_eq!(total.requests, 3);
    let (rows, _) = store.usage(since, None, UsageBy::Namespace).await.unwrap();
    let keys: Vec<_> = rows.iter().map(|r| (r.key.as_str(), r.requests)).collect();
    assert_eq!(keys, [("default", 3), ("shop", 1)], "chargeback");

    // Retention deletes what is older than the cutoff and keeps the rest.
    let swept = store.sweep(now - 60_000).await.unwrap();
    // Log lines are as old as their writing (just now), whatever the record's start.
    assert_eq!((swept.invocations, swept.logs), (1, 0));
    assert_eq!(store.get_invocation(&old.request_id).await.unwrap(), None);
    assert!(
        store
            .get_invocation(&first.request_id)
            .await
            .unwrap()
            .is_some()
    );
}

async fn tokens(store: &(impl TokenStore + Sync)) {
    let token = |name: &str, role: kumo_core::Role, hash: &str| StoredToken {
        record: kumo_core::TokenRecord {
            name: name.to_string(),
            role,
            namespace: (role != kumo_core::Role::Admin).then(|| "default".to_string()),
            created_at: 1_000,
            expires_at: Some(9_000),
            last_used_at: None,
            access_key_id: (name == "board").then(|| format!("AK{hash}")),
        },
        secret_hash: hash.to_string(),
        sealed_secret: (name == "board").then(|| kumo_store::SealedSecret {
            nonce: vec![1; 12],
            ciphertext: vec![2; 40],
        }),
    };
    let ci = token("ci", kumo_core::Role::Developer, "aa");
    assert!(store.create_token(&ci).await.unwrap());
    // A name is taken once; the first token stays.
    let again = token("ci", kumo_core::Role::Admin, "bb");
    assert!(!store.create_token(&again).await.unwrap());
    let view = token("board", kumo_core::Role::Viewer, "cc");
    assert!(store.create_token(&view).await.unwrap());
    assert_eq!(
        store.list_tokens().await.unwrap(),
        vec![view.clone(), ci.clone()]
    );
    // Uses move the last use forward only.
    store.token_used("ci", 5_000).await.unwrap();
    store.token_used("ci", 4_000).await.unwrap();
    let listed = store.list_tokens().await.unwrap();
    assert_eq!(listed[1].record.last_used_at, Some(5_000));
    assert!(store.revoke_token("ci").await.unwrap());
    assert!(!store.revoke_token("ci").await.unwrap());
    assert_eq!(store.list_tokens().await.unwrap(), vec![view]);
    assert!(store.revoke_token("board").await.unwrap());
}

async fn audit(store: &(impl AuditStore + Sync)) {
    let entry = |at: i64, status: u16| kumo_core::AuditEntry {
        at,
        token: Some("ci".to_string()),
        method: "PUT".to_string(),
        target: format!("/functions/f{at}"),
        namespace: Some(if at == 2_000 { "shop" } else { "default" }.to_string()),
        source: Some("127.0.0.1".to_string()),
        status,
    };
    for (at, status) in [(1_000, 201), (2_000, 403), (3_000, 204)] {
        store.append_audit(&entry(at, status)).await.unwrap();
    }
    // The newest `limit` since a time, oldest first.
    let listed = store.list_audit(1_500, None, 10).await.unwrap();
    assert_eq!(listed, vec![entry(2_000, 403), entry(3_000, 204)]);
    assert_eq!(
        store.list_audit(0, None, 1).await.unwrap(),
        vec![entry(3_000, 204)]
    );
    let in_shop = store.list_audit(0, Some("shop"), 10).await.unwrap();
    assert_eq!(in_shop, vec![entry(2_000, 403)]);
}

async fn secrets(store: &(impl SecretStore + Sync)) {
    let sealed = |n: u8| kumo_store::SealedSecret {
        nonce: vec![n; 12],
        ciphertext: vec![n; 20],
    };
    assert!(store.put_secret("DB_URL", &sealed(1), 1_000).await.unwrap());
    assert!(!store.put_secret("DB_URL", &sealed(2), 2_000).await.unwrap());
    assert!(
        store
            .put_secret("API_KEY", &sealed(3), 3_000)
            .await
            .unwrap()
    );
    assert_eq!(store.get_secret("DB_URL").await.unwrap(), Some(sealed(2)));
    assert_eq!(store.get_secret("NOPE").await.unwrap(), None);
    let listed = store.list_secrets().await.unwrap();
    let names: Vec<(&str, i64, i64)> = listed
        .iter()
        .map(|s| (s.name.as_str(), s.created_at, s.updated_at))
        .collect();
    assert_eq!(
        names,
        vec![("API_KEY", 3_000, 3_000), ("DB_URL", 1_000, 2_000)]
    );
    assert!(store.delete_secret("DB_URL").await.unwrap());
    assert!(!store.delete_secret("DB_URL").await.unwrap());
    assert!(store.delete_secret("API_KEY").await.unwrap());
}

async fn namespaces(store: &impl Backend) {
    use kumo_core::{NamespaceRecord, Quotas};
    let listed = store.list_namespaces().await.unwrap();
    let names: Vec<_> = listed.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["default"], "default always exists");
    let shop = NamespaceRecord {
        name: "shop".into(),
        created_at: 1_000,
        quotas: Quotas {
            max_functions: Some(3),
            ..Quotas::default()
        },
    };
    assert!(store.create_namespace(&shop).await.unwrap());
    assert!(!store.create_namespace(&shop).await.unwrap());
    let quotas = Quotas {
        max_kv_bytes: Some(10),
        ..Quotas::default()
    };
    assert!(store.set_quotas("shop", &quotas).await.unwrap());
    assert!(!store.set_quotas("nope", &quotas).await.unwrap());
    let listed = store.list_namespaces().await.unwrap();
    assert_eq!(listed[1].quotas, quotas);

    // What a namespace holds is found by its keys, never another's.
    assert!(!store.namespace_in_use("shop").await.unwrap());
    store
        .upsert_function(&function("shop/f", 64, 1))
        .await
        .unwrap();
    store
        .kv_put("shop/b", "key", b"12345", Expect::Anything)
        .await
        .unwrap();
    store
        .kv_put("shopping/b", "k", b"1", Expect::Anything)
        .await
        .unwrap();
    let used = store.namespace_use("shop").await.unwrap();
    assert_eq!((used.functions, used.kv_bytes), (1, 8));
    let used = store.namespace_use("shopping").await.unwrap();
    assert_eq!((used.functions, used.kv_bytes), (0, 2));
    assert!(store.namespace_in_use("shop").await.unwrap());
    assert!(store.delete_function("shop/f").await.unwrap());
    assert!(
        store
            .kv_delete("shop/b", "key", Expect::Anything)
            .await
            .unwrap()
    );
    assert!(
        store
            .kv_delete("shopping/b", "k", Expect::Anything)
            .await
            .unwrap()
    );
    assert!(!store.namespace_in_use("shop").await.unwrap());
    assert!(store.delete_namespace("shop").await.unwrap());
    assert!(!store.delete_namespace("shop").await.unwrap());
}

fn execution(id: &str, name: &str, at: i64) -> kumo_store::ExecutionRecord {
    kumo_store::ExecutionRecord {
        id: id.into(),
        workflow: "orders".into(),
        name: name.into(),
        definition: "{}".into(),
        status: "running".into(),
        input: "{\"n\":1}".into(),
        output: None,
        error: None,
        cause: None,
        trace_id: "t".into(),
        started_at: at,
        stopped_at: None,
        deadline: None,
        transitions: 0,
        redrives: 0,
    }
}

/// Workflows; executions change only under their lease, one transition at a time, and wake
/// on signals.
async fn workflows(store: &impl Backend) {
    use kumo_store::{ExecutionEnd, ExecutionSave};
    assert!(
        store
            .put_workflow("orders", "{\"a\":1}", "{}", 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_workflow("orders", "{\"a\":2}", "{\"topics\":[\"t\"]}", 2)
            .await
            .unwrap()
    );
    let w = store.get_workflow("orders").await.unwrap().unwrap();
    assert_eq!(
        (w.definition.as_str(), w.created_at, w.updated_at),
        ("{\"a\":2}", 1, 2)
    );
    assert_eq!(w.triggers, "{\"topics\":[\"t\"]}");
    assert_eq!(store.list_workflows().await.unwrap().len(), 1);

    let history = |kind: &str| {
        (
            10,
            kind.to_string(),
            String::new(),
            "A".to_string(),
            "{}".to_string(),
        )
    };
    let first = ExecutionSave {
        threads: vec![(String::new(), Some("root-1".into()))],
        history: vec![history("ExecutionStarted"), history("StateEntered")],
        transitions: 1,
        due_at: None,
        ..Default::default()
    };
    assert!(
        store
            .create_execution(&execution("x1", "first", 10), &first, "n1", 100)
            .await
            .unwrap()
    );
    // A name is taken once per workflow.
    assert!(
        !store
            .create_execution(&execution("x2", "first", 11), &first, "n1", 100)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .find_execution("orders", "first")
            .await
            .unwrap()
            .unwrap()
            .id,
        "x1"
    );
    // Only the lease holder saves.
    let next = ExecutionSave {
        threads: vec![
            (String::new(), Some("root-2".into())),
            ("/0".into(), Some("child".into())),
        ],
        history: vec![history("TaskScheduled")],
        transitions: 2,
        due_at: Some(50),
        release: true,
        ..Default::default()
    };
    assert!(!store.save_execution("x1", "n2", &next).await.unwrap());
    assert!(store.save_execution("x1", "n1", &next).await.unwrap());
    let mut threads = store.execution_threads("x1").await.unwrap();
    threads.sort();
    assert_eq!(
        threads,
        [
            (String::new(), "root-2".into()),
            ("/0".into(), "child".into())
        ]
    );
    let entries = store.execution_history("x1", 0, 10).await.unwrap();
    let kinds: Vec<(i64, &str)> = entries.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (1, "ExecutionStarted"),
            (2, "StateEntered"),
            (3, "TaskScheduled")
        ]
    );
    assert_eq!(store.execution_history("x1", 2, 10).await.unwrap().len(), 1);
    assert_eq!(
        store
            .get_execution("x1")
            .await
            .unwrap()
            .unwrap()
            .transitions,
        3
    );
    // Released, it is claimed once it is due, by one node only.
    assert_eq!(store.next_execution_due().await.unwrap(), Some(50));
    assert!(
        store
            .claim_executions("n2", 49, 200, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = store.claim_executions("n2", 50, 200, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        store
            .claim_executions("n3", 60, 200, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_execution_due().await.unwrap(),
        Some(200),
        "claimable when its lease ends"
    );
    assert_eq!(
        store
            .extend_execution_leases("n2", &["x1".into()], 300)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .extend_execution_leases("n3", &["x1".into()], 400)
            .await
            .unwrap(),
        0
    );
    // An expired lease is anyone's.
    assert_eq!(
        store
            .claim_executions("n3", 301, 400, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(!store.save_execution("x1", "n2", &next).await.unwrap());
    // Signals wake it, wait in order, and go once handled.
    let idle = ExecutionSave {
        threads: vec![("/0".into(), None)],
        due_at: None,
        release: true,
        ..Default::default()
    };
    assert!(store.save_execution("x1", "n3", &idle).await.unwrap());
    assert_eq!(store.execution_threads("x1").await.unwrap().len(), 1);
    assert!(
        store
            .claim_executions("n3", 1_000, 2_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .signal_execution("x1", "/0", "success", "{}", 500)
            .await
            .unwrap()
    );
    assert!(
        store
            .signal_execution("x1", "", "stop", "{}", 600)
            .await
            .unwrap()
    );
    let signals = store.execution_signals("x1").await.unwrap();
    assert_eq!(
        signals.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>(),
        ["success", "stop"]
    );
    // A release that did not see the signals (they came after it read them) leaves it due.
    assert_eq!(
        store
            .claim_executions("n1", 900, 950, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let blind = ExecutionSave {
        due_at: None,
        release: true,
        ..Default::default()
    };
    assert!(store.save_execution("x1", "n1", &blind).await.unwrap());
    assert_eq!(
        store
            .claim_executions("n1", 1_000, 2_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let ended = ExecutionSave {
        end: Some(ExecutionEnd {
            status: "failed".into(),
            output: None,
            error: Some("Boom".into()),
            cause: Some("why".into()),
            at: 1_100,
        }),
        signals_done: Some(signals[0].id),
        ..Default::default()
    };
    assert!(store.save_execution("x1", "n1", &ended).await.unwrap());
    assert_eq!(store.execution_signals("x1").await.unwrap().len(), 1);
    let done = store.get_execution("x1").await.unwrap().unwrap();
    assert_eq!(
        (done.status.as_str(), done.error.as_deref(), done.stopped_at),
        ("failed", Some("Boom"), Some(1_100))
    );
    assert!(
        !store
            .signal_execution("x1", "", "stop", "{}", 1_200)
            .await
            .unwrap(),
        "it is not running"
    );
    assert_eq!(
        store.execution_threads("x1").await.unwrap().len(),
        1,
        "kept for a redrive"
    );
    // A redrive runs it again, once.
    let again = ExecutionSave {
        due_at: Some(1_300),
        ..Default::default()
    };
    assert!(
        store
            .redrive_execution("x1", "n1", 2_000, Some(9_000), &again)
            .await
            .unwrap()
    );
    assert!(
        !store
            .redrive_execution("x1", "n1", 2_000, Some(9_000), &again)
            .await
            .unwrap()
    );
    let redriven = store.get_execution("x1").await.unwrap().unwrap();
    assert_eq!(
        redriven.deadline,
        Some(9_000),
        "its timeout counts from the redrive"
    );
    assert_eq!(
        (redriven.status.as_str(), redriven.redrives, redriven.error),
        ("running", 1, None)
    );
    // A node's restart gives up what it held.
    assert_eq!(store.release_executions("n1").await.unwrap(), 1);
    assert_eq!(
        store
            .claim_executions("n2", 1_300, 3_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.workflow_usage(0, None).await.unwrap(), (1, 3));
    assert_eq!(
        store.workflow_usage(0, Some("default")).await.unwrap(),
        (1, 3)
    );
    assert_eq!(store.workflow_usage(0, Some("shop")).await.unwrap(), (0, 0));
    assert_eq!(store.workflow_usage(11, None).await.unwrap(), (0, 0));
    // Listing: newest first, by status.
    assert!(
        store
            .create_execution(&execution("x3", "third", 20), &first, "n1", 100)
            .await
            .unwrap()
    );
    // Several executions in one transaction: each only under its own lease, a new one only
    // under a free name.
    use kumo_store::ExecutionWrite;
    let step = ExecutionSave {
        transitions: 1,
        due_at: Some(5),
        ..Default::default()
    };
    let (fourth, taken) = (execution("x4", "fourth", 30), execution("x5", "third", 31));
    let batch = [
        ExecutionWrite::Save {
            id: "x3",
            owner: "n1",
            save: &step,
        },
        ExecutionWrite::Save {
            id: "x1",
            owner: "nobody",
            save: &step,
        },
        ExecutionWrite::Create {
            execution: &fourth,
            save: &step,
            owner: "n1",
            lease_until: 100,
        },
        ExecutionWrite::Create {
            execution: &taken,
            save: &step,
            owner: "n1",
            lease_until: 100,
        },
    ];
    assert_eq!(
        store.write_executions(&batch).await.unwrap(),
        [true, false, true, false]
    );
    assert_eq!(
        store
            .get_execution("x3")
            .await
            .unwrap()
            .unwrap()
            .transitions,
        2
    );
    assert_eq!(
        store
            .get_execution("x4")
            .await
            .unwrap()
            .unwrap()
            .transitions,
        1
    );
    assert!(store.get_execution("x5").await.unwrap().is_none());
    let all = store.list_executions("orders", None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["x4", "x3", "x1"]
    );
    assert_eq!(
        store
            .list_executions("orders", Some("succeeded"), 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        store
            .list_executions("other", None, 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert!(store.delete_workflow("orders").await.unwrap());
    assert!(!store.delete_workflow("orders").await.unwrap());
    assert!(
        store.get_execution("x3").await.unwrap().is_some(),
        "executions outlive it"
    );
}
