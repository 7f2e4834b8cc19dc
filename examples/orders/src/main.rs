//! Records each order exactly once, although kumo delivers events at least once.
//!
//! Send orders asynchronously (`kumo invoke orders --async -d '{"amount": 1250}'`): a delivery
//! that runs twice (a retry after a failure, a restart mid-event) carries the same event id, so
//! the order is stored under `order/{event id}` with a compare-and-swap that only succeeds while
//! the key is absent. The second delivery finds it there and changes nothing.
//! `GET /fn/orders/summary` sums what was recorded.
//!
//! The key-value interface is `wasi:keyvalue@0.2.0-draft2`; the function needs the grant
//! `kv = ["orders"]` (see kumo.toml).

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/kumo-runtime/wit/keyvalue",
        world: "wasi:keyvalue/imports",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, store};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let bucket = match store::open("orders") {
        Ok(bucket) => bucket,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, format!("open: {e:?}")),
    };
    if request.method() == Method::GET && request.uri().path() == "/summary" {
        return summary(&bucket);
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (event_id, attempt) = (header("x-kumo-event-id"), header("x-kumo-attempt"));
    if event_id.is_empty() {
        return reply(StatusCode::BAD_REQUEST, "send orders with --async (they need an event id)");
    }
    let order = request.into_body().bytes_contents().await?.to_vec();
    let Ok(fields) = serde_json::from_slice::<serde_json::Value>(&order) else {
        return reply(StatusCode::BAD_REQUEST, "an order is JSON: {\"amount\": cents}");
    };
    // Every delivery is counted, duplicates included: the difference to the orders is the
    // deliveries that at-least-once made twice.
    if let Err(e) = atomics::increment(&bucket, "deliveries", 1) {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, format!("count: {e:?}"));
    }

    let recorded = record_once(&bucket, &format!("order/{event_id}"), &order);
    // For the demo and the tests: fail the first attempt after the order is stored, as a
    // crash would, so the retry shows that the second delivery changes nothing.
    if fields["fail_after_record"] == true && attempt == "1" {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "failing after recording, on purpose");
    }
    match recorded {
        Ok(true) => reply(StatusCode::OK, format!("recorded order {event_id}")),
        Ok(false) => reply(StatusCode::OK, format!("order {event_id} was already recorded")),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("record: {e:?}")),
    }
}

/// Stores `value` at `key` unless the key exists: true if this call stored it.
fn record_once(bucket: &store::Bucket, key: &str, value: &[u8]) -> Result<bool, store::Error> {
    let cas = atomics::Cas::new(bucket, key)?;
    if cas.current()?.is_some() {
        return Ok(false);
    }
    match atomics::swap(cas, value) {
        Ok(()) => Ok(true),
        // Another delivery of the same event stored it between our read and our write.
        Err(atomics::CasError::CasFailed(_)) => Ok(false),
        Err(atomics::CasError::StoreError(e)) => Err(e),
    }
}

fn summary(bucket: &store::Bucket) -> Result<Response<Body>, Error> {
    let (mut orders, mut total, mut cursor) = (0u64, 0i64, None);
    loop {
        let page = match bucket.list_keys(cursor.as_deref()) {
            Ok(page) => page,
            Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, format!("list: {e:?}")),
        };
        for key in page.keys.iter().filter(|k| k.starts_with("order/")) {
            let Ok(Some(order)) = bucket.get(key) else { continue };
            let amount = serde_json::from_slice::<serde_json::Value>(&order)
                .ok()
                .and_then(|o| o["amount"].as_i64())
                .unwrap_or(0);
            orders += 1;
            total += amount;
        }
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    let deliveries = match bucket.get("deliveries") {
        Ok(Some(v)) => String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0),
        _ => 0,
    };
    let body = serde_json::json!({ "orders": orders, "total": total, "deliveries": deliveries });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))?)
}

fn reply(code: StatusCode, text: impl Into<String>) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(code).body(Body::from(text.into()))?)
}
