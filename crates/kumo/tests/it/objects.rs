//! Object storage through the real server: streamed upload and download with content type and
//! etag, HEAD, listing, deletes, the size limit, durability across a restart, and storage
//! events (a function invoked asynchronously for each new object).

use crate::harness::{Receiver, TestServer, config, error_code};
use kumo_api::FunctionConfig;
use kumo_core::{ObjectEvent, ObjectTrigger};
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_stored_streamed_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &["--max-object-bytes", "8000000"]);
    let base = server.url.clone();
    let url = |key: &str| format!("{base}/api/v1/objects/photos/{key}");

    // 5 MiB, sent as a stream of chunks (no Content-Length): written part by part.
    let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let created = server
        .http
        .put(url("2026/cat.png"))
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let etag = created.headers()["etag"].to_str().unwrap().to_string();
    let info: serde_json::Value = created.json().await.unwrap();
    assert_eq!(info["size"], big.len());
    assert_eq!(info["content_type"], "image/png");

    let read = server.http.get(url("2026/cat.png")).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["content-type"], "image/png");
    assert_eq!(read.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(read.bytes().await.unwrap(), big);
    let head = server.http.head(url("2026/cat.png")).send().await.unwrap();
    assert_eq!(
        head.headers()["content-length"],
        big.len().to_string().as_str()
    );
    let cached = server
        .http
        .get(url("2026/cat.png"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    // Replacing gives a new etag; listing pages by prefix.
    let replaced = server
        .http
        .put(url("2026/cat.png"))
        .body("small")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    assert_ne!(replaced.headers()["etag"].to_str().unwrap(), etag);
    for key in ["2026/dog.png", "2025/old.png"] {
        server.http.put(url(key)).body(key).send().await.unwrap();
    }
    let list = |query: &str| {
        let request = server
            .http
            .get(format!("{}/api/v1/objects/photos?{query}", server.url));
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let page = list("prefix=2026/&limit=1").await;
    assert_eq!(page["objects"][0]["key"], "2026/cat.png");
    assert_eq!(page["objects"][0]["size"], 5);
    let cursor = page["cursor"].as_str().unwrap().to_string();
    let rest = list(&format!("prefix=2026/&cursor={cursor}")).await;
    assert_eq!(rest["objects"][0]["key"], "2026/dog.png");
    assert!(rest["cursor"].is_null());

    // Over the limit: 413, and nothing is stored.
    let too_big = server
        .http
        .put(url("huge"))
        .body(vec![0u8; 8_000_001])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(too_big).await, "payload_too_large");
    assert_eq!(
        server.http.head(url("huge")).send().await.unwrap().status(),
        404
    );

    // Delete: 204 (twice), then 404 object_not_found.
    for _ in 0..2 {
        let deleted = server
            .http
            .delete(url("2026/dog.png"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    }
    let gone = server.http.get(url("2026/dog.png")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(gone).await, "object_not_found");

    // Durable, and the replaced and deleted objects' files are gone from disk.
    server.stop();
    let server = TestServer::start_in(dir.path(), &[]);
    let url = format!("{}/api/v1/objects/photos/2026/cat.png", server.url);
    let again = server.http.get(url).send().await.unwrap();
    assert_eq!(again.text().await.unwrap(), "small");
    let files = std::fs::read_dir(dir.path().join("objects/photos"))
        .unwrap()
        .count();
    assert_eq!(files, 2, "one file per stored object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_object_invokes_the_subscribed_function_with_a_cloud_event() {
    let receiver = Receiver::start().await;
    let server = TestServer::start().await;
    let on = |events: Vec<ObjectEvent>| FunctionConfig {
        on_object: Some(ObjectTrigger {
            bucket: "uploads".into(),
            events,
        }),
        on_success: Some(receiver.url.clone()),
        ..config()
    };
    server
        .deploy(
            "on-put",
            test_programs::EVENT_PROBE,
            on(vec![ObjectEvent::Put]),
        )
        .await;
    server
        .deploy(
            "on-delete",
            test_programs::EVENT_PROBE,
            on(vec![ObjectEvent::Delete]),
        )
        .await;
    let url = format!("{}/api/v1/objects/uploads/in/a.txt", server.url);
    server
        .http
        .put(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    server.http.delete(&url).send().await.unwrap();
    // Another bucket triggers nothing.
    server
        .http
        .put(format!("{}/api/v1/objects/other/x", server.url))
        .body("x")
        .send()
        .await
        .unwrap();

    let outcomes = receiver.json_when(2, Duration::from_secs(10)).await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    let received = |function: &str| {
        let outcome = outcomes
            .iter()
            .find(|o| o["data"]["function"] == function)
            .unwrap_or_else(|| panic!("an outcome of {function}: {outcomes:?}"));
        let body = outcome["data"]["result"]["body"].as_str().unwrap();
        let echo: serde_json::Value = serde_json::from_str(body).unwrap();
        serde_json::from_str::<serde_json::Value>(echo["body"].as_str().unwrap()).unwrap()
    };
    let created = received("on-put");
    assert_eq!(created["type"], "dev.kumo.object.created");
    assert_eq!(created["source"], "kumo/objects/uploads");
    assert_eq!(created["subject"], "in/a.txt");
    assert_eq!(created["data"]["size"], 5);
    assert_eq!(created["data"]["content_type"], "text/plain");
    let deleted = received("on-delete");
    assert_eq!(deleted["type"], "dev.kumo.object.deleted");
    assert_eq!(deleted["data"]["key"], "in/a.txt");

    let triggers = String::from_utf8(server.cli(&["triggers"]).stdout).unwrap();
    assert!(triggers.contains("uploads (put)"), "{triggers}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.bodies().len(), 2, "nothing else ran");
}
