//! A wasi:http guest that exercises `kumo:objects`. The path says what to do:
//! `/{op}/{bucket}[/{key}]`:
//! - `put/B/K`: store the request body with the request's content type; answers the etag;
//! - `get/B/K`: the object with its content type and `x-etag` (404 if absent);
//! - `head/B/K`: `size etag content-type` (404 if absent);
//! - `delete/B/K`: `true` or `false`;
//! - `list/B?PREFIX`: every key under the prefix, page by page; `x-pages` says how many pages.
//!
//! Errors: access-denied → 403, invalid-name → 400, too-large → 413, other → 500, each with
//! the variant's name and text in the body.

mod bindings {
    wit_bindgen::generate!({
        path: "../../kumo-runtime/wit/objects",
        world: "kumo:objects/imports",
        generate_all,
    });
}

use bindings::kumo::objects::objects::{self, Error as ObjectsError};
use wstd::http::{Body, Error, Request, Response, StatusCode};

fn reply(code: StatusCode, text: impl Into<String>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(code)
        .body(Body::from(text.into()))?)
}

fn failed(e: ObjectsError) -> Result<Response<Body>, Error> {
    match e {
        ObjectsError::AccessDenied => reply(StatusCode::FORBIDDEN, "access-denied"),
        ObjectsError::InvalidName(m) => reply(StatusCode::BAD_REQUEST, format!("invalid-name: {m}")),
        ObjectsError::TooLarge(m) => reply(StatusCode::PAYLOAD_TOO_LARGE, format!("too-large: {m}")),
        ObjectsError::Other(m) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("other: {m}")),
    }
}

macro_rules! try_objects {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return failed(e),
        }
    };
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let query = request.uri().query().unwrap_or("").to_string();
    let path = request.uri().path().trim_start_matches('/').to_string();
    let mut parts = path.splitn(3, '/');
    let (op, bucket, key) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let data = request.into_body().bytes_contents().await?.to_vec();
    match op {
        "put" => {
            let info = try_objects!(objects::put(&bucket, &key, &content_type, &data));
            reply(StatusCode::OK, info.etag)
        }
        "get" => match try_objects!(objects::get(&bucket, &key)) {
            Some(found) => Ok(Response::builder()
                .header("content-type", found.info.content_type)
                .header("x-etag", found.info.etag)
                .body(Body::from(found.data))?),
            None => reply(StatusCode::NOT_FOUND, "absent"),
        },
        "head" => match try_objects!(objects::head(&bucket, &key)) {
            Some(info) => reply(
                StatusCode::OK,
                format!("{} {} {}", info.size, info.etag, info.content_type),
            ),
            None => reply(StatusCode::NOT_FOUND, "absent"),
        },
        "delete" => reply(StatusCode::OK, try_objects!(objects::delete(&bucket, &key)).to_string()),
        "list" => {
            let (mut keys, mut cursor, mut pages) = (Vec::new(), None, 0);
            loop {
                let page = try_objects!(objects::list_objects(&bucket, &query, cursor.as_deref()));
                pages += 1;
                keys.extend(page.objects.into_iter().map(|o| o.key));
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            Ok(Response::builder()
                .header("x-pages", pages.to_string())
                .body(Body::from(keys.join("\n")))?)
        }
        _ => reply(StatusCode::BAD_REQUEST, format!("unknown op {op:?}")),
    }
}
