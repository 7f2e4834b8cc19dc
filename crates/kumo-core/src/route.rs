//! Custom data-plane routes: `/hello` matches exactly, `/hello/*` matches `/hello` and anything below.

use thiserror::Error;

/// Paths the platform itself serves; a function cannot claim them.
const RESERVED_PREFIXES: [&str; 5] = ["/fn", "/api", "/healthz", "/metrics", "/2015-03-31"];

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid route {route:?}: {why}")]
pub struct RouteError {
    pub route: String,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The path without the trailing `/*`.
    base: String,
    wildcard: bool,
}

impl Route {
    pub fn parse(route: &str) -> Result<Self, RouteError> {
        let fail = |why| {
            Err(RouteError {
                route: route.to_string(),
                why,
            })
        };
        if !route.starts_with('/') {
            return fail("must start with '/'");
        }
        let (base, wildcard) = match route.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (route, false),
        };
        if base.contains('*') {
            return fail("'*' is only allowed as the last segment, as in /path/*");
        }
        if base.contains(['?', '#', ' ']) || base.contains("//") {
            return fail("must be a plain path without '?', '#', spaces or empty segments");
        }
        if base.len() > 1 && base.ends_with('/') {
            return fail("must not end with '/' (use /path or /path/*)");
        }
        let base = if base.is_empty() { "/" } else { base };
        if RESERVED_PREFIXES
            .iter()
            .any(|p| base == *p || base.starts_with(&format!("{p}/")))
        {
            return fail("is reserved by kumo (/fn, /api, /healthz, /metrics, /2015-03-31)");
        }
        Ok(Self {
            base: base.to_string(),
            wildcard,
        })
    }

    /// Does this route serve `path`? A wildcard route `/a/*` serves `/a`, `/a/` and `/a/b/c`.
    pub fn matches(&self, path: &str) -> bool {
        if !self.wildcard {
            return path == self.base;
        }
        if self.base == "/" {
            return true;
        }
        match path.strip_prefix(self.base.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// Longer, exact routes win over shorter and wildcard ones.
    pub fn specificity(&self) -> (usize, bool) {
        (self.base.len(), !self.wildcard)
    }
}

impl crate::ParseText for Route {
    const WHAT: &'static str = "route";
    fn parse_text(text: &str) -> Result<Self, String> {
        Self::parse(text).map_err(|e| e.to_string())
    }
}

/// A route's host: a DNS name (lowercase labels of `a-z`, `0-9`, `-`, joined by `.`), at
/// most 253 long, without a port.
pub fn validate_host(host: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match host.len() <= 253 && host.split('.').all(label_ok) {
        true => Ok(()),
        false => Err(format!(
            "{host:?} is not a host name (lowercase a-z, 0-9, '-' labels joined by '.', no port)"
        )),
    }
}

/// The host a request names (`Host`, or the URI's authority under HTTP/2), lowercased and
/// without its port.
pub fn request_host(authority: &str) -> String {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether two routes' hosts can receive the same request (none: any host).
pub fn hosts_overlap(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard() {
        let exact = Route::parse("/hello").unwrap();
        assert!(exact.matches("/hello"));
        assert!(!exact.matches("/hello/x"));
        let wild = Route::parse("/hello/*").unwrap();
        for p in ["/hello", "/hello/", "/hello/a/b"] {
            assert!(wild.matches(p), "{p}");
        }
        assert!(!wild.matches("/helloworld"));
        assert!(Route::parse("/*").unwrap().matches("/anything"));
    }

    #[test]
    fn rejects_bad_and_reserved() {
        for bad in [
            "hello", "/a*", "/a/*/b", "/a/", "/fn/x", "/api", "/healthz", "/a//b", "/a?b",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_are_dns_names_and_requests_name_theirs() {
        assert!(validate_host("shop.example.com").is_ok());
        assert!(validate_host("localhost").is_ok());
        for bad in ["", "Shop.com", "a..b", "-a.com", "a.com:80", "a_b.com"] {
            assert!(validate_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(request_host("Shop.Example.com:8080"), "shop.example.com");
        assert_eq!(request_host("shop.example.com."), "shop.example.com");
        assert!(hosts_overlap(None, Some("a.com")));
        assert!(hosts_overlap(Some("a.com"), Some("a.com")));
        assert!(!hosts_overlap(Some("a.com"), Some("b.com")));
    }
}
