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

/// What kumo queued for an event (a structured-mode CloudEvent) as the event AWS's service
/// would send a Lambda function: a schedule tick as an EventBridge "Scheduled Event", a topic
/// message as an SNS notification, an object change as an S3 event notification. None when
/// the payload is not such a CloudEvent (then the function gets it as it is).
pub fn aws_event(cloud_event: &[u8]) -> Option<Value> {
    let event: Value = serde_json::from_slice(cloud_event).ok()?;
    let text = |field: &str| event.get(field).and_then(Value::as_str);
    let (id, source, time) = (text("id")?, text("source")?, text("time")?);
    let data = event.get("data").cloned().unwrap_or(Value::Null);
    let region = crate::api::REGION;
    let account = crate::api::ACCOUNT;
    match text("type")? {
        "dev.kumo.schedule.tick" => {
            let function = source.strip_prefix("kumo/schedules/")?;
            let rule = function.replace('/', "-");
            // EventBridge times have no fraction of a second.
            let time = data
                .get("scheduled_time")
                .and_then(Value::as_str)
                .unwrap_or(time);
            Some(json!({
                "version": "0",
                "id": id,
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": account,
                "time": whole_seconds(time),
                "region": region,
                "resources": [format!("arn:aws:events:{region}:{account}:rule/{rule}")],
                "detail": {},
            }))
        }
        "dev.kumo.topic.message" => {
            let topic = source.strip_prefix("kumo/topics/")?;
            // A namespace's topic: SNS names have no `/`.
            let topic = topic.rsplit('/').next().unwrap_or(topic);
            let topic_arn = format!("arn:aws:sns:{region}:{account}:{topic}");
            // SNS carries the message as text: JSON stays the JSON text it was sent as.
            let message = match (&data, event.get("data_base64")) {
                (Value::String(text), _) => text.clone(),
                (Value::Null, Some(Value::String(b64))) => b64.clone(),
                (Value::Null, _) => String::new(),
                (json, _) => json.to_string(),
            };
            Some(json!({"Records": [{
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": format!("{topic_arn}:kumo"),
                "Sns": {
                    "Type": "Notification",
                    "MessageId": id,
                    "TopicArn": topic_arn,
                    "Subject": null,
                    "Message": message,
                    "Timestamp": time,
                    "SignatureVersion": "1",
                    "Signature": "",
                    "SigningCertUrl": "",
                    "UnsubscribeUrl": "",
                    "MessageAttributes": {},
                },
            }]}))
        }
        kind @ ("dev.kumo.object.created" | "dev.kumo.object.deleted") => {
            let bucket = data.get("bucket").and_then(Value::as_str)?;
            let bucket = bucket.rsplit('/').next().unwrap_or(bucket);
            let key = data.get("key").and_then(Value::as_str)?;
            let created = kind == "dev.kumo.object.created";
            let mut object = json!({
                // S3 URL-encodes keys in notifications (a space is `+`).
                "key": s3_key(key),
                "sequencer": format!("{:016X}", data.get("updated_at").and_then(Value::as_i64).unwrap_or(0)),
            });
            if created {
                object["size"] = data.get("size").cloned().unwrap_or(json!(0));
                object["eTag"] = data.get("etag").cloned().unwrap_or(json!(""));
            }
            Some(json!({"Records": [{
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": time,
                "eventName": if created { "ObjectCreated:Put" } else { "ObjectRemoved:Delete" },
                "userIdentity": {"principalId": "kumo"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": id},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "kumo-on-object",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "kumo"},
                        "arn": format!("arn:aws:s3:::{bucket}"),
                    },
                    "object": object,
                },
            }]}))
        }
        _ => None,
    }
}

/// `2024-05-01T12:00:00.123Z` → `2024-05-01T12:00:00Z`.
fn whole_seconds(time: &str) -> String {
    match (time.find('.'), time.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &time[..dot]),
        _ => time.to_string(),
    }
}

/// A key as S3 notifications write it: form-URL-encoded (a space is `+`), `/` kept.
fn s3_key(key: &str) -> String {
    const KEPT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'*')
        .remove(b' ');
    percent_encoding::utf8_percent_encode(key, KEPT)
        .to_string()
        .replace(' ', "+")
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

    fn cloud_event(kind: &str, source: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "specversion": "1.0", "id": "e1", "source": source, "type": kind,
            "time": "2026-12-07T05:00:00.250Z", "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn a_schedule_tick_is_an_eventbridge_scheduled_event() {
        let tick = cloud_event(
            "dev.kumo.schedule.tick",
            "kumo/schedules/shop/report",
            json!({"schedule": "rate(1 minute)", "scheduled_time": "2026-12-07T05:00:00.000Z"}),
        );
        let event = aws_event(&tick).unwrap();
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert_eq!(event["source"], "aws.events");
        assert_eq!(event["time"], "2026-12-07T05:00:00Z");
        assert_eq!(
            event["resources"][0],
            "arn:aws:events:us-east-1:000000000000:rule/shop-report"
        );
    }

    #[test]
    fn a_topic_message_is_an_sns_notification() {
        let message = cloud_event(
            "dev.kumo.topic.message",
            "kumo/topics/orders",
            json!({"id": 7}),
        );
        let event = aws_event(&message).unwrap();
        let sns = &event["Records"][0]["Sns"];
        assert_eq!(event["Records"][0]["EventSource"], "aws:sns");
        assert_eq!(sns["TopicArn"], "arn:aws:sns:us-east-1:000000000000:orders");
        assert_eq!(sns["Message"], r#"{"id":7}"#);
        assert_eq!(sns["MessageId"], "e1");
        let text = cloud_event("dev.kumo.topic.message", "kumo/topics/t", json!("plain"));
        assert_eq!(
            aws_event(&text).unwrap()["Records"][0]["Sns"]["Message"],
            "plain"
        );
    }

    #[test]
    fn an_object_change_is_an_s3_notification() {
        let put = cloud_event(
            "dev.kumo.object.created",
            "kumo/objects/uploads",
            json!({"bucket": "shop/uploads", "key": "a b/ü.txt", "size": 3, "etag": "abc",
                   "content_type": "text/plain", "updated_at": 255}),
        );
        let record = &aws_event(&put).unwrap()["Records"][0];
        assert_eq!(record["eventSource"], "aws:s3");
        assert_eq!(record["eventName"], "ObjectCreated:Put");
        assert_eq!(record["s3"]["bucket"]["name"], "uploads");
        assert_eq!(record["s3"]["object"]["key"], "a+b/%C3%BC.txt");
        assert_eq!(record["s3"]["object"]["size"], 3);
        let delete = cloud_event(
            "dev.kumo.object.deleted",
            "kumo/objects/uploads",
            json!({"bucket": "uploads", "key": "k"}),
        );
        let record = &aws_event(&delete).unwrap()["Records"][0];
        assert_eq!(record["eventName"], "ObjectRemoved:Delete");
        assert!(record["s3"]["object"].get("size").is_none());
    }

    #[test]
    fn other_payloads_pass_as_they_are() {
        assert_eq!(aws_event(b"{\"a\": 1}"), None);
        assert_eq!(aws_event(b"not json"), None);
        assert_eq!(aws_event(&cloud_event("other.type", "x", json!(1))), None);
    }
}
