//! The egress HTTP proxy of a Lambda function with `allow_outbound`: served inside its
//! network namespace (which has nothing but loopback), it is the function's only way out. The
//! function's runtime and SDKs find it through `HTTP_PROXY` / `HTTPS_PROXY`. `CONNECT` (TLS)
//! and absolute-form HTTP requests go to granted hosts only, through the same per-destination
//! circuit breakers as WebAssembly functions' outbound HTTP; kumo resolves the names.
//!
//! A plain-HTTP request is forwarded with `Connection: close`, one per connection. A tunnel's
//! breaker outcome is whether the connection was made (what passes inside is TLS).

use kumo_runtime::{Breakers, OutboundGrants};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The proxy's port on the environment's loopback.
pub(crate) const EGRESS_PORT: u16 = 3128;
/// The largest request head the proxy reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a function may connect, and the breakers its connections count in.
#[derive(Clone)]
pub struct Egress {
    pub grants: OutboundGrants,
    pub breakers: Breakers,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Egress")
    }
}

/// What the proxy was asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ask {
    /// `CONNECT host:port`.
    Tunnel { host: String, port: u16 },
    /// An absolute-form request: where it goes and the head to send there (origin-form,
    /// without proxy headers, with `Connection: close`).
    Forward {
        host: String,
        port: u16,
        head: Vec<u8>,
    },
}

/// Reads a request head (through the blank line) from what the client sent, or why not.
pub(crate) fn parse_head(head: &[u8]) -> Result<Ask, String> {
    let text = std::str::from_utf8(head).map_err(|_| "the request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("not an HTTP request line: {request_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported version {version:?}"));
    }
    if method == "CONNECT" {
        let uri: http::Uri = format!("https://{target}/")
            .parse()
            .map_err(|_| format!("not host:port: {target:?}"))?;
        let (host, port) = (uri.host().unwrap_or_default(), uri.port_u16());
        let port = port.ok_or_else(|| format!("CONNECT {target:?} has no port"))?;
        return Ok(Ask::Tunnel {
            host: host.to_string(),
            port,
        });
    }
    let uri: http::Uri = target
        .parse()
        .map_err(|_| format!("not a URL: {target:?}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "the proxy forwards http:// URLs and tunnels the rest (CONNECT), not {target:?}"
        ));
    }
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = format!("{method} {path} {version}\r\n");
    for line in lines.take_while(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name.starts_with("proxy-") || name == "connection" || name == "keep-alive" {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    Ok(Ask::Forward {
        host,
        port,
        head: out.into_bytes(),
    })
}

/// Serves the proxy on `listener` until the environment drops the task.
pub(crate) async fn serve(listener: TcpListener, egress: Egress) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let egress = egress.clone();
        tokio::spawn(async move {
            let _ = handle(client, &egress).await;
        });
    }
}

async fn handle(mut client: TcpStream, egress: &Egress) -> std::io::Result<()> {
    // The head, and whatever of the body came with it.
    let mut buffer = Vec::with_capacity(1024);
    let end = loop {
        let mut chunk = [0u8; 2048];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return refuse(&mut client, 431, "the request head is too large").await;
        }
    };
    let ask = match parse_head(&buffer[..end]) {
        Ok(ask) => ask,
        Err(why) => return refuse(&mut client, 400, &why).await,
    };
    let (host, port) = match &ask {
        Ask::Tunnel { host, port } | Ask::Forward { host, port, .. } => (host.clone(), *port),
    };
    let uri: http::Uri = match format!("http://{host}:{port}/").parse() {
        Ok(uri) => uri,
        Err(_) => return refuse(&mut client, 400, "not a host name").await,
    };
    let destination = format!("{}:{port}", host.to_ascii_lowercase());
    if !egress.grants.allows(&uri) {
        let why = format!("{destination} is not in the function's allow_outbound");
        return refuse(&mut client, 403, &why).await;
    }
    let Some(call) = egress.breakers.call(&destination) else {
        let why = format!("{destination} is failing: its circuit is open; try later");
        return refuse(&mut client, 503, &why).await;
    };
    let connected =
        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await;
    let mut upstream = match connected {
        Ok(Ok(stream)) => {
            call.record(true);
            stream
        }
        _ => {
            call.record(false);
            let why = format!("{destination} cannot be reached");
            return refuse(&mut client, 502, &why).await;
        }
    };
    match ask {
        Ask::Tunnel { .. } => {
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
            // Bytes the client sent after the head (it may not wait) go first.
            upstream.write_all(&buffer[end..]).await?;
        }
        Ask::Forward { head, .. } => {
            upstream.write_all(&head).await?;
            upstream.write_all(&buffer[end..]).await?;
        }
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn refuse(client: &mut TcpStream, status: u16, why: &str) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Service Unavailable",
    };
    let body = format!("kumo egress: {why}\n");
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(answer.as_bytes()).await?;
    client.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_asks_for_a_tunnel() {
        assert_eq!(
            parse_head(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            Ok(Ask::Tunnel {
                host: "example.com".into(),
                port: 443
            })
        );
        assert!(parse_head(b"CONNECT example.com HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn an_absolute_url_is_forwarded_in_origin_form_without_proxy_headers() {
        let head = b"POST http://api.example.com:8080/v1/x?q=1 HTTP/1.1\r\nHost: api.example.com:8080\r\nProxy-Authorization: secret\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n";
        let Ok(Ask::Forward { host, port, head }) = parse_head(head) else {
            panic!("a forward");
        };
        assert_eq!((host.as_str(), port), ("api.example.com", 8080));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /v1/x?q=1 HTTP/1.1\r\nHost: api.example.com:8080\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        );
        let Ok(Ask::Forward { port, .. }) = parse_head(b"GET http://h/ HTTP/1.1\r\n\r\n") else {
            panic!("a forward");
        };
        assert_eq!(port, 80);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b"GET /relative HTTP/1.1\r\n\r\n"[..],
            b"GET https://h/ HTTP/1.1\r\n\r\n",
            b"GET http://h/ HTTP/2\r\n\r\n",
            b"nonsense\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// What the proxy answers a client, through a real socket.
    async fn answer(egress: Egress, request: &[u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, egress));
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(request).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn refusals_name_what_is_wrong() {
        let egress = Egress {
            grants: OutboundGrants::new(vec!["allowed.example".to_string()].into()),
            breakers: Breakers::new(kumo_runtime::BreakerConfig::default()),
        };
        let cases: [(&[u8], &str, &str); 3] = [
            (
                b"CONNECT other.example:443 HTTP/1.1\r\n\r\n",
                "403 Forbidden",
                "other.example:443 is not in the function's allow_outbound",
            ),
            (
                b"GET /relative HTTP/1.1\r\n\r\n",
                "400 Bad Request",
                "forwards http:// URLs",
            ),
            (
                &[b'x'; 20 * 1024],
                "431 Request Header Fields Too Large",
                "the request head is too large",
            ),
        ];
        for (request, status, why) in cases {
            let answer = answer(egress.clone(), request).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{answer}"
            );
            assert!(answer.contains(why), "{answer}");
        }
    }
}
