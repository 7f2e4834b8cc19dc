//! A database written by the last release before numbered migrations (made by
//! `fixtures/make-release-db.sh`) opens, is migrated to the current schema, and keeps every
//! kind of data it held.

use kumo_core::{EventStatus, KvEntry};
use kumo_store::prelude::*;
use kumo_store::{LogQuery, Objects, SCHEMA_VERSION, Store};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/release-db.sqlite"
);
/// The asynchronous event the script submitted, and the request id of its one attempt.
const EVENT: &str = "01a22d1c-fb7d-7766-8adf-c35ac9f29505";
const ATTEMPT: &str = "01a22d1c-fb7f-7399-b1ee-0811cca555f6";

#[tokio::test]
async fn a_database_of_the_last_release_opens_with_all_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kumo.db");
    std::fs::copy(FIXTURE, &path).unwrap();
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);

    let worker = store.get_function("worker").await.unwrap().expect("worker");
    assert_eq!(worker.config.env["WHO"], "fixture");
    assert_eq!(worker.config.routes, ["/worker"]);
    assert_eq!(worker.config.max_retries, 1);
    let versions = store.list_versions("worker").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].version, 1);
    assert_eq!(versions[0].description, "first");
    let aliases = store.list_aliases(Some("worker")).await.unwrap();
    assert_eq!((aliases[0].name.as_str(), aliases[0].version), ("live", 1));

    let event = store.get_event(EVENT).await.unwrap().expect("the event");
    assert_eq!(event.status, EventStatus::Succeeded);
    assert_eq!(event.request_id.as_deref(), Some(ATTEMPT));
    let records = store
        .list_invocations(Some("worker"), None, 10)
        .await
        .unwrap();
    assert_eq!(records.len(), 2, "the sync request and the event's attempt");
    let attempt = store
        .get_invocation(ATTEMPT)
        .await
        .unwrap()
        .expect("record");
    assert_eq!((attempt.function.as_str(), attempt.status), ("worker", 200));
    let logs = store
        .list_logs(&LogQuery {
            function: "worker".into(),
            request_id: Some(ATTEMPT.into()),
            limit: 10,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(logs[0].line, format!("event {EVENT} attempt 1"));

    let KvEntry { value, .. } = store.kv_get("notes", "greeting").await.unwrap().unwrap();
    assert_eq!(value, b"hi");
    let objects = Objects::open(store.clone(), &dir.path().join("objects")).unwrap();
    let object = objects
        .head("uploads", "a.txt")
        .await
        .unwrap()
        .expect("a.txt");
    assert_eq!(object.size, 13);

    // Opening again applies nothing more and the data is still there.
    store.close().await;
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert!(store.get_function("worker").await.unwrap().is_some());
}

#[tokio::test]
async fn a_database_of_a_newer_kumo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kumo.db");
    Store::open(&path).await.unwrap().close().await;
    let newer = SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'future', 0)",
            [newer],
        )
        .unwrap();
    let error = Store::open(&path).await.err().expect("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("schema version {newer}")) && message.contains("newer kumo"),
        "{message}"
    );
}
