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
        on_success: Some(receiver.url.parse().unwrap()),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_use_their_granted_object_buckets() {
    let receiver = Receiver::start().await;
    let server = TestServer::start().await;
    let grants = |buckets: &[&str], memory_mb| FunctionConfig {
        objects: buckets.iter().map(|b| b.to_string()).collect(),
        memory_mb,
        ..config()
    };
    server
        .deploy(
            "probe",
            test_programs::OBJECTS_PROBE,
            grants(&["photos"], 64),
        )
        .await;
    server
        .deploy(
            "small",
            test_programs::OBJECTS_PROBE,
            grants(&["photos"], 16),
        )
        .await;
    // A guest's write fires storage events like the API's.
    let watcher = FunctionConfig {
        on_object: Some(ObjectTrigger {
            bucket: "photos".into(),
            events: vec![ObjectEvent::Put, ObjectEvent::Delete],
        }),
        on_success: Some(receiver.url.parse().unwrap()),
        ..config()
    };
    server
        .deploy("watcher", test_programs::EVENT_PROBE, watcher)
        .await;
    let api = |key: &str| format!("{}/api/v1/objects/photos/{key}", server.url);

    // Guest put → the API sees it, with its content type and etag.
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let put = server
        .post("/fn/probe/put/photos/a/1.txt")
        .header("content-type", "text/plain")
        .header("traceparent", trace)
        .body("from the guest")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let etag = put.text().await.unwrap();
    let read = server.http.get(api("a/1.txt")).send().await.unwrap();
    assert_eq!(read.headers()["content-type"], "text/plain");
    assert_eq!(
        read.headers()["etag"].to_str().unwrap(),
        format!("\"{etag}\"")
    );
    assert_eq!(read.text().await.unwrap(), "from the guest");

    // API put → the guest sees it; head; list with a prefix.
    server
        .http
        .put(api("a/2.bin"))
        .header("content-type", "application/x-test")
        .body(vec![7u8; 3000])
        .send()
        .await
        .unwrap();
    let got = server
        .get("/fn/probe/get/photos/a/2.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], "application/x-test");
    assert_eq!(got.bytes().await.unwrap(), vec![7u8; 3000]);
    let head = server.get_text("/fn/probe/head/photos/a/2.bin").await;
    assert!(
        head.starts_with("3000 ") && head.ends_with(" application/x-test"),
        "{head}"
    );
    server.http.put(api("b/3")).body("x").send().await.unwrap();
    assert_eq!(
        server.get_text("/fn/probe/list/photos?a/").await,
        "a/1.txt\na/2.bin"
    );
    let missing = server
        .get("/fn/probe/get/photos/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Delete: true, then false; the API no longer has it.
    assert_eq!(server.get_text("/fn/probe/delete/photos/b/3").await, "true");
    assert_eq!(
        server.get_text("/fn/probe/delete/photos/b/3").await,
        "false"
    );
    assert_eq!(
        server.http.get(api("b/3")).send().await.unwrap().status(),
        404
    );

    // Grants and names are enforced, never silent.
    let denied = server
        .post("/fn/probe/put/secrets/k")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(denied.text().await.unwrap(), "access-denied");
    let listed = server.get("/fn/probe/list/secrets").send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::FORBIDDEN);
    // The guest sees the path undecoded, so a bad key is one too long (1 to 1024 bytes).
    let bad_key = server
        .post(&format!("/fn/probe/get/photos/{}", "k".repeat(1025)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad_key.status(),
        StatusCode::BAD_REQUEST,
        "{:?}",
        bad_key.text().await
    );
    assert_eq!(
        server
            .http
            .get(format!("{}/api/v1/objects/secrets/k", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // An object larger than the function's memory is refused before it is read.
    server
        .http
        .put(api("big"))
        .body(vec![1u8; 16 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    let too_large = server.get("/fn/small/get/photos/big").send().await.unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let why = too_large.text().await.unwrap();
    assert!(
        why.starts_with("too-large: the object has 16777217 bytes"),
        "{why}"
    );

    // The watcher saw the guest's put (with the caller's trace) and delete, and the API's puts.
    let outcomes = receiver.json_when(5, Duration::from_secs(10)).await;
    let events: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let echo: serde_json::Value =
                serde_json::from_str(o["data"]["result"]["body"].as_str().unwrap()).unwrap();
            serde_json::from_str(echo["body"].as_str().unwrap()).unwrap()
        })
        .collect();
    let guest_put = events
        .iter()
        .find(|e| e["subject"] == "a/1.txt")
        .unwrap_or_else(|| panic!("the guest's put: {events:?}"));
    assert_eq!(guest_put["type"], "dev.kumo.object.created");
    let traced = guest_put["traceparent"].as_str().unwrap();
    assert!(
        traced.contains("0af7651916cd43dd8448eb211c80319c"),
        "{traced}"
    );
    let deletes: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "dev.kumo.object.deleted")
        .collect();
    assert_eq!(deletes.len(), 1, "{events:?}");
    assert_eq!(deletes[0]["subject"], "b/3");
}

/// A PNG of `width`×`height` with a colour gradient.
fn png_image(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    let pixels: Vec<u8> = (0..width * height)
        .flat_map(|i| [(i % width) as u8, (i / width) as u8, 128])
        .collect();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_image_gets_a_thumbnail() {
    let server = TestServer::start().await;
    let thumbnail = FunctionConfig {
        objects: vec!["uploads".into(), "thumbnails".into()],
        on_object: Some(ObjectTrigger {
            bucket: "uploads".into(),
            events: vec![ObjectEvent::Put],
        }),
        memory_mb: 256,
        ..config()
    };
    server
        .deploy("thumbnail", test_programs::THUMBNAIL, thumbnail)
        .await;
    let upload = |key: &str, body: Vec<u8>| {
        let request = server
            .http
            .put(format!("{}/api/v1/objects/uploads/{key}", server.url))
            .body(body);
        async move { assert!(request.send().await.unwrap().status().is_success()) }
    };
    upload("notes.txt", b"not an image".to_vec()).await;
    upload("2026/cat.png", png_image(640, 480)).await;

    let url = format!("{}/api/v1/objects/thumbnails/2026/cat.png.png", server.url);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let made = loop {
        let response = server.http.get(&url).send().await.unwrap();
        if response.status() == StatusCode::OK {
            break response;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no thumbnail after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(made.headers()["content-type"], "image/png");
    let bytes = made.bytes().await.unwrap();
    let reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let (width, height) = (reader.info().width, reader.info().height);
    assert_eq!(
        (width, height),
        (128, 96),
        "fits 128×128, aspect ratio kept"
    );

    // The text file made no thumbnail: its event ended handled (422), with a log line why.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logs = String::from_utf8(server.cli(&["logs", "thumbnail"]).stdout).unwrap();
        if logs.contains("uploads/notes.txt is not an image") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = server.get_text("/api/v1/objects/thumbnails").await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["objects"].as_array().unwrap().len(), 1, "{listed}");
}
