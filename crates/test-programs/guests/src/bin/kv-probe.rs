//! A wasi:http guest that exercises `wasi:keyvalue` (store, atomics, batch). The path says what
//! to do: `/{op}/{bucket}[/{key}]`, values in the body:
//! - `open/B`: 200 if the bucket opens, else the store error;
//! - `set/B/K` (body), `get/B/K` (404 if absent), `exists/B/K`, `delete/B/K`;
//! - `list/B`: every key, following the cursor page by page; `x-pages` says how many pages;
//! - `incr/B/K?D`: add D (may be negative), answer the new value;
//! - `cas/B/K` (body): compare-and-swap; with `?race`, another write lands between reading and
//!   swapping, so the first swap fails and the retry (on the cas it returns) succeeds;
//! - `batch/B`: set-many a=1 b=2, get-many a b c, delete-many a, get-many a b (`-`: absent).

mod bindings {
    wit_bindgen::generate!({
        path: "../../kumo-runtime/wit/keyvalue",
        world: "wasi:keyvalue/imports",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};
use wstd::http::{Body, Error, Request, Response, StatusCode};

fn reply(code: StatusCode, text: impl Into<String>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(code)
        .body(Body::from(text.into()))?)
}

fn failed(e: store::Error) -> Result<Response<Body>, Error> {
    match e {
        store::Error::AccessDenied => reply(StatusCode::FORBIDDEN, "access-denied"),
        store::Error::NoSuchStore => reply(StatusCode::NOT_FOUND, "no-such-store"),
        store::Error::Other(m) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("other: {m}")),
    }
}

macro_rules! try_kv {
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
    let (op, name, key) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("").to_string(),
    );
    let value = request.into_body().bytes_contents().await?.to_vec();
    let bucket = try_kv!(store::open(name));
    match op {
        "open" => reply(StatusCode::OK, "opened"),
        "set" => {
            try_kv!(bucket.set(&key, &value));
            reply(StatusCode::NO_CONTENT, "")
        }
        "get" => match try_kv!(bucket.get(&key)) {
            Some(v) => reply(StatusCode::OK, String::from_utf8_lossy(&v)),
            None => reply(StatusCode::NOT_FOUND, "absent"),
        },
        "exists" => reply(StatusCode::OK, try_kv!(bucket.exists(&key)).to_string()),
        "delete" => {
            try_kv!(bucket.delete(&key));
            reply(StatusCode::NO_CONTENT, "")
        }
        "list" => {
            let (mut keys, mut cursor, mut pages) = (Vec::new(), None, 0);
            loop {
                let page = try_kv!(bucket.list_keys(cursor.as_deref()));
                pages += 1;
                keys.extend(page.keys);
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            Ok(Response::builder()
                .header("x-pages", pages.to_string())
                .body(Body::from(keys.join("\n")))?)
        }
        "incr" => {
            let delta: i64 = query.parse().unwrap_or(1);
            reply(StatusCode::OK, try_kv!(atomics::increment(&bucket, &key, delta)).to_string())
        }
        "cas" => {
            let mut cas = try_kv!(atomics::Cas::new(&bucket, &key));
            if query == "race" {
                try_kv!(bucket.set(&key, b"raced"));
            }
            for tries in 1..=5 {
                match atomics::swap(cas, &value) {
                    Ok(()) => return reply(StatusCode::OK, format!("swapped on try {tries}")),
                    Err(atomics::CasError::CasFailed(retry)) => {
                        let seen = try_kv!(retry.current()).unwrap_or_default();
                        println!("cas failed; the key now holds {:?}", String::from_utf8_lossy(&seen));
                        cas = retry;
                    }
                    Err(atomics::CasError::StoreError(e)) => return failed(e),
                }
            }
            reply(StatusCode::CONFLICT, "no swap after 5 tries")
        }
        "batch" => {
            try_kv!(batch::set_many(&bucket, &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]));
            let show = |found: Vec<(String, Option<Vec<u8>>)>| {
                found
                    .into_iter()
                    .map(|(k, v)| format!("{k}={}", v.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or("-".into())))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let before = show(try_kv!(batch::get_many(&bucket, &["a".into(), "b".into(), "c".into()])));
            try_kv!(batch::delete_many(&bucket, &["a".into()]));
            let after = show(try_kv!(batch::get_many(&bucket, &["a".into(), "b".into()])));
            reply(StatusCode::OK, format!("{before} {after}"))
        }
        _ => reply(StatusCode::BAD_REQUEST, format!("unknown op {op:?}")),
    }
}
