//! The request headers kumo reads itself, each parsed in one place and strictly (RFC 9110):
//! `Content-Length` and the entity-tag conditions (`If-Match`, `If-None-Match`).

use crate::error::{ApiError, ApiResult};
use http::HeaderMap;
use http::header::{self, HeaderName};

/// The declared `Content-Length`, if any: one or more ASCII digits and nothing else (no sign,
/// no spaces, no list). Anything else is a bad request.
pub(crate) fn content_length(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    parse_content_length(value.as_bytes())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("Content-Length must be a decimal number of bytes"))
}

fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// An `If-Match` / `If-None-Match` value: `*`, or a list of entity tags.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    Any,
    /// The opaque tags (weak or strong: kumo compares them weakly, as `If-None-Match` does,
    /// and its own etags are all strong).
    Tags(Vec<String>),
}

impl Condition {
    /// Does the current etag satisfy a match against this condition?
    pub(crate) fn matches(&self, etag: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| t == etag),
        }
    }
}

/// The condition in header `name`, if the request has one; a malformed one is a bad request.
pub(crate) fn condition(headers: &HeaderMap, name: &HeaderName) -> ApiResult<Option<Condition>> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let parsed = value.to_str().ok().and_then(parse_condition);
    match parsed {
        Some(condition) => Ok(Some(condition)),
        None => Err(ApiError::bad_request(format!(
            "{name} must be * or a list of quoted entity tags (\"tag\" or W/\"tag\"), got {:?}",
            String::from_utf8_lossy(value.as_bytes())
        ))),
    }
}

/// `*` or `#entity-tag` (`entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`, comma-separated with
/// optional spaces). Empty lists and tags, bare words and stray quotes are refused.
fn parse_condition(value: &str) -> Option<Condition> {
    let value = value.trim_matches([' ', '\t']);
    if value == "*" {
        return Some(Condition::Any);
    }
    let mut tags = Vec::new();
    for item in value.split(',') {
        let item = item.trim_matches([' ', '\t']);
        let quoted = item.strip_prefix("W/").unwrap_or(item);
        let tag = quoted.strip_prefix('"')?.strip_suffix('"')?;
        let etagc = |c: char| c == '!' || ('#'..='~').contains(&c) || !c.is_ascii();
        if tag.is_empty() || !tag.chars().all(etagc) {
            return None;
        }
        tags.push(tag.to_string());
    }
    Some(Condition::Tags(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"17"), Some(17));
        assert_eq!(parse_content_length(b"007"), Some(7));
        for bad in [
            &b"+5"[..],
            b"-5",
            b"",
            b" 5",
            b"5 ",
            b"5,5",
            b"0x10",
            b"1e3",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn content_length_header_absent_or_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_length(&headers).unwrap(), None);
        headers.insert(header::CONTENT_LENGTH, "+5".parse().unwrap());
        let e = content_length(&headers).unwrap_err();
        assert_eq!(e.kind, kumo_core::ErrorKind::InvalidRequest);
    }

    #[test]
    fn conditions_are_star_or_quoted_tags() {
        let tags = |t: &[&str]| Some(Condition::Tags(t.iter().map(|s| s.to_string()).collect()));
        assert_eq!(parse_condition("*"), Some(Condition::Any));
        assert_eq!(parse_condition(" * "), Some(Condition::Any));
        assert_eq!(parse_condition("\"abc\""), tags(&["abc"]));
        assert_eq!(parse_condition("W/\"abc\""), tags(&["abc"]));
        assert_eq!(
            parse_condition("\"a\", W/\"b\",\"c\""),
            tags(&["a", "b", "c"])
        );
        for bad in [
            "", "abc", "\"abc", "abc\"", "\"\"", "\"a\"b\"", "\"a\",", "*, \"a\"", "w/\"a\"",
            "\"a b\"",
        ] {
            assert_eq!(parse_condition(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_condition_matches_any_of_its_tags() {
        assert!(Condition::Any.matches("x"));
        let c = parse_condition("\"a\", \"b\"").unwrap();
        assert!(c.matches("b"));
        assert!(!c.matches("c"));
    }
}
