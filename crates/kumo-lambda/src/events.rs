//! What a Lambda function receives and returns, as AWS shapes it. No I/O.
//!
//! An HTTP request arrives as an API Gateway HTTP API event (payload format 2.0, which Lambda
//! function URLs send too), and the function's answer is mapped back to a response.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The parts of an HTTP request the event is made from.
pub struct HttpRequest<'a> {
    pub method: &'a http::Method,
    /// Path and query, as the function's route sees it.
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    pub source_ip: Option<std::net::IpAddr>,
    pub request_id: &'a str,
    /// When it arrived, in milliseconds since the epoch.
    pub time_ms: i64,
}

/// The API Gateway HTTP API (2.0) event for `request`.
pub fn http_event(request: &HttpRequest<'_>) -> Value {
    let (path, query) = request
        .path_and_query
        .split_once('?')
        .unwrap_or((request.path_and_query, ""));
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for name in request.headers.keys() {
        let values: Vec<&str> = request
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if name == http::header::COOKIE {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        headers.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    let (body, base64) = match std::str::from_utf8(request.body) {
        _ if request.body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_string()), false),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(request.body)),
            true,
        ),
    };
    let user_agent = request
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = request
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let time = chrono::DateTime::from_timestamp_millis(request.time_ms)
        .map(|t| t.format("%d/%b/%Y:%H:%M:%S +0000").to_string())
        .unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "kumo",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": request.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "userAgent": user_agent,
            },
            "requestId": request.request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time,
            "timeEpoch": request.time_ms,
        },
        "body": body,
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    let parameters = query_parameters(query);
    if !parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(parameters);
    }
    event
}

/// `a=1&a=2&b=x%20y` → `{"a": "1,2", "b": "x y"}`, as API Gateway joins repeated keys.
fn query_parameters(query: &str) -> Map<String, Value> {
    let mut parameters: Map<String, Value> = Map::new();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode(key), decode(value));
        match parameters.get_mut(&key) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                parameters.insert(key, Value::String(value));
            }
        }
    }
    parameters
}

/// An HTTP response made from a function's answer.
#[derive(Debug, PartialEq)]
pub struct HttpResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Maps a function's answer to a response as API Gateway (2.0) does: an object with
/// `statusCode` gives the status, `headers`, `cookies` and `body` (base64 when
/// `isBase64Encoded`); any other JSON value is a 200 `application/json` body as it is.
/// Returns the reason when the answer claims to be a response but is malformed.
pub fn http_response(answer: &[u8]) -> Result<HttpResponse, String> {
    let value: Value = match serde_json::from_slice(answer) {
        Ok(value) => value,
        // Not JSON: passed through as it is.
        Err(_) => return Ok(plain(answer, "text/plain; charset=utf-8")),
    };
    let Some(object) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        return Ok(plain(answer, "application/json"));
    };
    let status = object["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| http::StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("statusCode {} is not an HTTP status", object["statusCode"]))?;
    let mut headers = http::HeaderMap::new();
    if let Some(given) = object.get("headers").and_then(Value::as_object) {
        for (name, value) in given {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            let value = http::HeaderValue::from_str(&text)
                .map_err(|_| format!("the value of header {name} is not valid"))?;
            headers.append(name, value);
        }
    }
    for cookie in object
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let value = http::HeaderValue::from_str(cookie)
            .map_err(|_| "a cookie is not a valid header value".to_string())?;
        headers.append(http::header::SET_COOKIE, value);
    }
    let body = match object.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if object.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("body is not base64 although isBase64Encoded: {e}"))?
                .into()
        }
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn plain(answer: &[u8], content_type: &'static str) -> HttpResponse {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    HttpResponse {
        status: http::StatusCode::OK,
        headers,
        body: Bytes::copy_from_slice(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        method: &'a http::Method,
        path: &'a str,
        headers: &'a http::HeaderMap,
        body: &'a [u8],
    ) -> HttpRequest<'a> {
        HttpRequest {
            method,
            path_and_query: path,
            headers,
            body,
            source_ip: Some("10.1.2.3".parse().unwrap()),
            request_id: "r1",
            time_ms: 1_583_348_638_390,
        }
    }

    #[test]
    fn an_http_request_becomes_an_api_gateway_v2_event() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "shop.example.com".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        headers.insert("cookie", "c1=x; c2=y".parse().unwrap());
        let method = http::Method::POST;
        let event = http_event(&request(
            &method,
            "/my/path?p=1&p=2&q=a%20b",
            &headers,
            b"hello",
        ));
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["rawPath"], "/my/path");
        assert_eq!(event["rawQueryString"], "p=1&p=2&q=a%20b");
        assert_eq!(
            event["queryStringParameters"],
            json!({"p": "1,2", "q": "a b"})
        );
        assert_eq!(event["headers"]["x-multi"], "a,b");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["cookies"], json!(["c1=x", "c2=y"]));
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["requestContext"]["http"]["sourceIp"], "10.1.2.3");
        assert_eq!(event["requestContext"]["domainName"], "shop.example.com");
        assert_eq!(
            event["requestContext"]["time"],
            "04/Mar/2020:19:03:58 +0000"
        );
        assert_eq!(event["body"], "hello");
        assert_eq!(event["isBase64Encoded"], false);

        let binary = http_event(&request(&method, "/", &headers, &[0xff, 0x00]));
        assert_eq!(binary["body"], "/wA=");
        assert_eq!(binary["isBase64Encoded"], true);
        let empty = http_event(&request(
            &http::Method::GET,
            "/",
            &http::HeaderMap::new(),
            b"",
        ));
        assert_eq!(empty["body"], Value::Null);
        assert!(empty.get("queryStringParameters").is_none());
    }

    #[test]
    fn answers_map_back_to_responses() {
        let full = http_response(
            br#"{"statusCode": 201, "headers": {"x-a": "1", "content-type": "text/plain"},
                "cookies": ["s=1; Path=/"], "body": "made"}"#,
        )
        .unwrap();
        assert_eq!(full.status, 201);
        assert_eq!(full.headers["x-a"], "1");
        assert_eq!(full.headers["set-cookie"], "s=1; Path=/");
        assert_eq!(full.body, "made");

        let binary =
            http_response(br#"{"statusCode": 200, "body": "/wA=", "isBase64Encoded": true}"#)
                .unwrap();
        assert_eq!(&binary.body[..], &[0xff, 0x00]);

        // A bare value is a 200 JSON body.
        let bare = http_response(br#"{"message": "hi"}"#).unwrap();
        assert_eq!(bare.status, 200);
        assert_eq!(bare.headers["content-type"], "application/json");
        assert_eq!(bare.body, r#"{"message": "hi"}"#);
        assert_eq!(http_response(b"\"text\"").unwrap().body, "\"text\"");

        assert!(http_response(br#"{"statusCode": 99}"#).is_err());
        assert!(
            http_response(br#"{"statusCode": 200, "body": "!", "isBase64Encoded": true}"#).is_err()
        );
    }
}
