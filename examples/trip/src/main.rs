//! The saga of `trip.asl.json`: books and cancels a trip's hotel, flight and car. A booking
//! is a key `trip/{TRIP}/{KIND}` in the `trips` bucket, so what is booked can be seen (and a
//! compensation shown to have undone it).
//!
//! Its input is `{"action": "book" | "cancel", "kind": "hotel" | "flight" | "car",
//! "order": {"trip": ID, "fail": KIND?}}`: booking the kind named by `fail` fails with a
//! Lambda-style error (`BookingFailed`), as a sold-out flight would.

mod bindings {
    wit_bindgen::generate!({
        path: "../../crates/kumo-runtime/wit/keyvalue",
        world: "wasi:keyvalue/imports",
        generate_all,
    });
}

use bindings::wasi::keyvalue::store;
use serde_json::{Value, json};
use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let body = request.into_body().bytes_contents().await?;
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let (action, kind) = (text(&input["action"]), text(&input["kind"]));
    let trip = text(&input["order"]["trip"]);
    if trip.is_empty() || kind.is_empty() {
        return failed("BadRequest", "the input needs order.trip and kind");
    }
    let bucket = match store::open("trips") {
        Ok(bucket) => bucket,
        Err(e) => return failed("StoreUnavailable", &format!("{e:?}")),
    };
    let key = format!("trip/{trip}/{kind}");
    match action.as_str() {
        "book" if input["order"]["fail"] == kind.as_str() => {
            failed("BookingFailed", &format!("no {kind} is free for trip {trip}"))
        }
        "book" => {
            let booking = format!("{kind}-{trip}");
            if let Err(e) = bucket.set(&key, booking.as_bytes()) {
                return failed("StoreUnavailable", &format!("{e:?}"));
            }
            println!("booked {booking}");
            reply(StatusCode::OK, &json!({"kind": kind, "booking": booking}))
        }
        "cancel" => {
            if let Err(e) = bucket.delete(&key) {
                return failed("StoreUnavailable", &format!("{e:?}"));
            }
            println!("cancelled the {kind} of trip {trip}");
            reply(StatusCode::OK, &json!({"cancelled": kind}))
        }
        other => failed("BadRequest", &format!("unknown action {other:?}")),
    }
}

/// An error as a Lambda function reports it: the workflow sees `errorType`.
fn failed(error: &str, message: &str) -> Result<Response<Body>, Error> {
    let document = json!({"errorType": error, "errorMessage": message});
    reply(StatusCode::INTERNAL_SERVER_ERROR, &document)
}

fn reply(status: StatusCode, value: &Value) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))?)
}
