//! A wasi:http function: greets the last segment of the path (`/fn/hello/Ada` and the custom
//! route `/hello/Ada` both answer "hi, Ada!") with the greeting from the `GREETING`
//! environment variable (set in kumo.toml).

use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".to_string());
    // On /fn/hello/... the guest sees the rest of the path; on a custom route, the whole path.
    let name = match request.uri().path().trim_matches('/').rsplit('/').next() {
        None | Some("") | Some("hello") => "world",
        Some(name) => name,
    };
    // Goes to the function's logs, tagged with the request id.
    eprintln!("greeting {name}");
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; charset=utf-8")
        .body(format!("{greeting}, {name}!\n").into())?)
}
