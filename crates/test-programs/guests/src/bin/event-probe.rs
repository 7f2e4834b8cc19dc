//! A wasi:http guest for asynchronous invocations. The payload says what to do:
//! - `fail`: answer 500 every time;
//! - `fail-until:N`: answer 500 on attempts before N, then 200;
//! - `sleep:MS`: wait, then 200;
//! - `report:URL`: POST this event's id to URL (an outbound request), then 200;
//! - anything else: 200 with a JSON echo of what the platform passed in.

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, mut body) = request.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let event_id = header("x-kumo-event-id");
    let attempt: u32 = header("x-kumo-attempt").parse().unwrap_or(0);
    let payload = String::from_utf8_lossy(&body.bytes_contents().await?).into_owned();
    let status = |code: StatusCode, text: String| {
        Response::builder().status(code).body(Body::from(text))
    };
    println!("event {event_id} attempt {attempt}");
    if payload == "fail" {
        return Ok(status(StatusCode::INTERNAL_SERVER_ERROR, "failing on purpose".into())?);
    }
    if let Some(n) = payload.strip_prefix("fail-until:") {
        let n: u32 = n.trim().parse().unwrap_or(1);
        if attempt < n {
            return Ok(status(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("attempt {attempt} fails"),
            )?);
        }
        return Ok(status(StatusCode::OK, format!("succeeded on attempt {attempt}"))?);
    }
    if let Some(ms) = payload.strip_prefix("sleep:") {
        let ms: u64 = ms.trim().parse().unwrap_or(0);
        wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
        return Ok(status(StatusCode::OK, format!("slept {ms} ms"))?);
    }
    if let Some(url) = payload.strip_prefix("report:") {
        let report = Request::post(url.trim()).body(Body::from(event_id.clone()))?;
        return match Client::new().send(report).await {
            Ok(r) if r.status().is_success() => Ok(status(StatusCode::OK, "reported".into())?),
            Ok(r) => Ok(status(
                StatusCode::BAD_GATEWAY,
                format!("report refused: {}", r.status()),
            )?),
            Err(e) => Ok(status(StatusCode::BAD_GATEWAY, format!("report failed: {e}"))?),
        };
    }
    // What the environment says, to check per-invocation values never stick in an instance.
    let env_event_id = std::env::var("KUMO_EVENT_ID").unwrap_or_default();
    let echo = format!(
        "{{\"event_id\":{:?},\"env_event_id\":{:?},\"attempt\":{attempt},\"content_type\":{:?},\"traceparent\":{:?},\"body\":{:?}}}",
        event_id,
        env_event_id,
        header("content-type"),
        header("traceparent"),
        payload
    );
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(echo))?)
}
