//! A wasi:http guest for workflow tasks: its JSON input says what to do, and its answer is
//! the input with `"step"` (the `STEP` environment variable) and the counts it made added:
//! - `"count": KEY`: add 1 to KEY in the `steps` key-value bucket (how often it ran);
//! - `"fail": NAME` (with `"cause"`): fail as a Lambda function does, `{"errorType": NAME,
//!   "errorMessage": CAUSE}` with status 500;
//! - `"fail_until": N` with `"count"`: fail (`Flaky`) while the count is at most N;
//! - `"sleep_ms": N`: wait (after counting).

mod bindings {
    wit_bindgen::generate!({
        path: "../../kumo-runtime/wit/keyvalue",
        world: "wasi:keyvalue/imports",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, store};
use serde_json::{Value, json};
use wstd::http::{Body, Error, Request, Response, StatusCode};

fn answer(status: StatusCode, value: &Value) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))?)
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let body = request.into_body().bytes_contents().await?;
    let mut input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut count = None;
    if let Some(key) = input.get("count").and_then(Value::as_str) {
        let bucket = store::open("steps").map_err(|e| Error::msg(format!("{e:?}")))?;
        let n = atomics::increment(&bucket, key, 1).map_err(|e| Error::msg(format!("{e:?}")))?;
        count = Some(n);
    }
    if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
        wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
    }
    if let (Some(limit), Some(n)) = (input.get("fail_until").and_then(Value::as_i64), count)
        && n <= limit
    {
        let error = json!({"errorType": "Flaky", "errorMessage": format!("run {n} fails")});
        return answer(StatusCode::INTERNAL_SERVER_ERROR, &error);
    }
    if let Some(name) = input.get("fail").and_then(Value::as_str) {
        let cause = input.get("cause").and_then(Value::as_str).unwrap_or("");
        let error = json!({"errorType": name, "errorMessage": cause});
        return answer(StatusCode::INTERNAL_SERVER_ERROR, &error);
    }
    if let Value::Object(fields) = &mut input {
        fields.insert("step".into(), json!(std::env::var("STEP").unwrap_or_default()));
        if let Some(n) = count {
            fields.insert("runs".into(), json!(n));
        }
    }
    answer(StatusCode::OK, &input)
}
