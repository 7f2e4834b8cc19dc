//! A wasi:http guest whose behaviour is chosen by the request path, so that one compiled
//! component can exercise every limit and error path of the platform.

use std::sync::atomic::{AtomicU32, Ordering};
use wstd::http::{Body, Error, Request, Response, StatusCode};

/// Requests this instance has served: 1 on every request of a fresh instance, counting up in a
/// reused one.
static SERVED: AtomicU32 = AtomicU32::new(0);

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let text = |s: String| Response::builder().status(StatusCode::OK).body(Body::from(s));
    let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
    match path.as_str() {
        "/counter" => Ok(text(served.to_string())?),
        // Echoes method, path, query, one header (`x-probe`, or the one `?header=NAME` names)
        // and the body.
        "/echo" | "/" => {
            let payload = body.bytes_contents().await?;
            let name = query.strip_prefix("header=").unwrap_or("x-probe");
            let header = parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header("x-probe-method", parts.method.as_str())
                .header("x-probe-path", path.as_str())
                .header("x-probe-query", query.as_str())
                .header("x-probe-header", header.as_str())
                .body(Body::from(payload))?)
        }
        p if p.starts_with("/env/") => {
            let value = std::env::var(&p[5..]).unwrap_or_else(|_| "<unset>".to_string());
            Ok(text(value)?)
        }
        "/status" => Ok(Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body(Body::from("teapot"))?),
        // A response body of `?bytes=N` bytes.
        "/big" => {
            let n: usize = query.trim_start_matches("bytes=").parse().unwrap_or(0);
            Ok(text("x".repeat(n))?)
        }
        // `?lines=N` one-byte lines to stderr, in one write (a log flood).
        "/flood" => {
            use std::io::Write as _;
            let n: usize = query.trim_start_matches("lines=").parse().unwrap_or(0);
            let _ = std::io::stderr().write_all("x\n".repeat(n).as_bytes());
            Ok(text(format!("wrote {n} lines"))?)
        }
        "/log" => {
            println!("to stdout");
            eprintln!("to stderr 1");
            eprintln!("to stderr 2");
            Ok(text("logged".to_string())?)
        }
        "/panic" => {
            eprintln!("about to panic");
            panic!("guest panicked on purpose");
        }
        "/loop" => {
            eprintln!("looping forever");
            #[allow(clippy::empty_loop)]
            loop {}
        }
        "/oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        // The host filesystem must be invisible: no preopened directories.
        "/fs" => {
            let result = match std::fs::read_to_string("/etc/passwd") {
                Ok(_) => "read /etc/passwd".to_string(),
                Err(e) => format!("denied: {e}"),
            };
            Ok(text(result)?)
        }
        // Sockets must be denied unless granted.
        "/socket" => {
            let result = match wstd::net::TcpStream::connect("127.0.0.1:9").await {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("denied: {e}"),
            };
            Ok(text(result)?)
        }
        "/outbound" => {
            let request = Request::get("http://127.0.0.1:9/").body(Body::empty())?;
            let result = match wstd::http::Client::new().send(request).await {
                Ok(_) => "sent".to_string(),
                Err(e) => format!("denied: {e}"),
            };
            Ok(text(result)?)
        }
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from(format!("no probe at {path}")))?),
    }
}
