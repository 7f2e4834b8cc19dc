//! Custom data-plane routes: `/hello` matches exactly, `/hello/*` matches `/hello` and anything below.

use thiserror::Error;

/// Paths the platform itself serves; a function cannot claim them.
const RESERVED_PREFIXES: [&str; 4] = ["/fn", "/api", "/healthz", "/metrics"];

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
            return fail("is reserved by kumo (/fn, /api, /healthz, /metrics)");
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
}
