//! A wasi:http function: greets the name in the path (`/fn/hello/Ada` → "hi, Ada!") with the
//! greeting from the `GREETING` environment variable (set in kumo.toml).

use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".to_string());
    let name = request.uri().path().trim_matches('/');
    let name = if name.is_empty() { "world" } else { name };
    // Goes to the function's logs, tagged with the request id.
    eprintln!("greeting {name}");
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; charset=utf-8")
        .body(format!("{greeting}, {name}!\n").into())?)
}
