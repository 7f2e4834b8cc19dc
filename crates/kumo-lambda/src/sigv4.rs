//! AWS Signature Version 4, as the Lambda API verifies it: the `Authorization` header's
//! parts, the canonical request and the signature a secret gives it. Pure; the server finds
//! the secret of the access key and checks the clock.
//!
//! Path canonicalisation is the one of every service but S3: the path as sent, encoded once
//! more (what botocore, the AWS CLI and the other SDKs sign).

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

/// Requests signed longer ago (or later) than this are refused, as AWS does.
pub const MAX_SKEW_MS: i64 = 15 * 60 * 1000;

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/
/// aws4_request, SignedHeaders=a;b, Signature=hex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential's scope.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower case, as listed.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Result<Authorization, String> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("the Authorization header is not AWS4-HMAC-SHA256")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {
                return Err(format!(
                    "unexpected part {part:?} in the Authorization header"
                ));
            }
        }
    }
    let missing = |what: &str| format!("the Authorization header has no {what}");
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(format!(
            "the credential {credential:?} is not KEY/DATE/REGION/SERVICE/aws4_request"
        ));
    };
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the signature is not 64 hex digits".into());
    }
    Ok(Authorization {
        access_key_id: access_key_id.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed
            .ok_or_else(|| missing("SignedHeaders"))?
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

/// A request as it came, for its canonical form.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The query as sent, without `?`.
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// What AWS's URI encoding leaves as it is: `A-Z a-z 0-9 - _ . ~`.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The same, and `/` (a path's separators).
const UNRESERVED_AND_SLASH: &percent_encoding::AsciiSet = &UNRESERVED.remove(b'/');

/// AWS's URI encoding: every byte but the unreserved ones (and `/` when `keep_slash`).
fn uri_encode(text: &[u8], keep_slash: bool) -> String {
    let set = match keep_slash {
        true => UNRESERVED_AND_SLASH,
        false => UNRESERVED,
    };
    percent_encoding::percent_encode(text, set).to_string()
}

fn canonical_query(query: &str) -> String {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&decode(k), false), uri_encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    joined.join("&")
}

/// `name:value` lines of the signed headers (values trimmed, inner spaces folded, repeated
/// headers joined by commas); a signed header the request lacks is an error.
fn canonical_headers(auth: &Authorization, headers: &http::HeaderMap) -> Result<String, String> {
    let mut out = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(format!("the signed header {name:?} is not in the request"));
        }
        out.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(out)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The signature `secret` gives `request` under `auth`'s scope at `amz_date`
/// (`YYYYMMDDTHHMMSSZ`).
pub fn signature(
    secret: &str,
    auth: &Authorization,
    amz_date: &str,
    request: &SignedRequest<'_>,
) -> Result<String, String> {
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        uri_encode(path.as_bytes(), true),
        canonical_query(request.query),
        canonical_headers(auth, request.headers)?,
        auth.signed_headers.join(";"),
        hex::encode(Sha256::digest(request.body)),
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    for part in [&auth.region, &auth.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    Ok(hex::encode(hmac(&key, to_sign.as_bytes())))
}

/// Why a signed request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The signature does not match, or the request is malformed as a signed one.
    Signature(String),
    /// Signed too long ago or too far ahead.
    Expired,
}

/// Checks `request`, signed under `auth`, with `secret`, at `now_ms`.
pub fn verify(
    secret: &str,
    auth: &Authorization,
    request: &SignedRequest<'_>,
    now_ms: i64,
) -> Result<(), Refused> {
    let amz_date = request
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Refused::Signature("the request has no X-Amz-Date".into()))?;
    if !auth.signed_headers.iter().any(|h| h == "host")
        || !auth.signed_headers.iter().any(|h| h == "x-amz-date")
    {
        return Err(Refused::Signature(
            "the signature must cover the host and x-amz-date headers".into(),
        ));
    }
    let signed_at = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            Refused::Signature(format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ"))
        })?
        .and_utc()
        .timestamp_millis();
    if !amz_date.starts_with(&auth.date) {
        return Err(Refused::Signature(
            "the credential's date is not the day of X-Amz-Date".into(),
        ));
    }
    if (now_ms - signed_at).abs() > MAX_SKEW_MS {
        return Err(Refused::Expired);
    }
    if let Some(claimed) = request
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        && claimed != hex::encode(Sha256::digest(request.body))
    {
        return Err(Refused::Signature(
            "x-amz-content-sha256 is not the body's sha256".into(),
        ));
    }
    let expected = signature(secret, auth, amz_date, request).map_err(Refused::Signature)?;
    // Constant time: a timing difference must not tell how much of a guess was right.
    let same = expected.len() == auth.signature.len()
        && expected
            .bytes()
            .zip(auth.signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    match same {
        true => Ok(()),
        false => Err(Refused::Signature(
            "the request signature does not match (check the secret access key)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signed by botocore 1.43 (SigV4Auth, service lambda, us-east-1) at 2026-12-07 05:00 UTC
    /// with AWS's documentation example key.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-invocation-type, Signature=2dd9fc61830f1aaaa2714e6e3e2e34f00b0c8acebcd281d1523ad66ab5efa7fe";
    const SIGNED_AT_MS: i64 = 1_796_619_600_000;

    fn headers() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("x-amz-date", "20261207T050000Z".parse().unwrap());
        headers.insert("x-amz-invocation-type", "RequestResponse".parse().unwrap());
        headers
    }

    fn request<'a>(headers: &'a http::HeaderMap, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest {
            method: "POST",
            path: "/2015-03-31/functions/my%3Afn/invocations",
            query: "Qualifier=live&b=a%20b",
            headers,
            body,
        }
    }

    #[test]
    fn parses_the_authorization_header() {
        let auth = parse_authorization(AUTHORIZATION).unwrap();
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        assert_eq!(auth.date, "20261207");
        assert_eq!(auth.service, "lambda");
        assert_eq!(auth.signed_headers.len(), 4);
        for bad in [
            "Bearer x",
            "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AK/20261207/us-east-1/lambda/aws4_request, SignedHeaders=host",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verifies_what_botocore_signed() {
        let auth = parse_authorization(AUTHORIZATION).unwrap();
        let headers = headers();
        let body = br#"{"k": 1}"#;
        assert_eq!(
            verify(SECRET, &auth, &request(&headers, body), SIGNED_AT_MS + 1000),
            Ok(())
        );
        // Another body, secret, header value or time is refused.
        let other_body = request(&headers, b"{}");
        assert!(matches!(
            verify(SECRET, &auth, &other_body, SIGNED_AT_MS),
            Err(Refused::Signature(_))
        ));
        let good = request(&headers, body);
        assert!(verify("another secret", &auth, &good, SIGNED_AT_MS).is_err());
        let mut changed = headers.clone();
        changed.insert("x-amz-invocation-type", "Event".parse().unwrap());
        assert!(verify(SECRET, &auth, &request(&changed, body), SIGNED_AT_MS).is_err());
        assert_eq!(
            verify(SECRET, &auth, &good, SIGNED_AT_MS + MAX_SKEW_MS + 1),
            Err(Refused::Expired)
        );
        let mut other_path = request(&headers, body);
        other_path.path = "/2015-03-31/functions/other/invocations";
        assert!(verify(SECRET, &auth, &other_path, SIGNED_AT_MS).is_err());
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_query("b=2&a=x%2Fy&a=1&c"), "a=1&a=x%2Fy&b=2&c=");
        assert_eq!(uri_encode(b"/a b/%3A~", true), "/a%20b/%253A~");
    }
}
