//! A setting written as text (a route, a schedule, a destination), parsed once where it enters
//! kumo (a deploy's config, a manifest, a stored record) and kept with its text, which is what
//! is stored and shown. Code that uses it reads the parsed value: nothing parses it again or
//! skips it later for being invalid, as an invalid one never exists.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// How a [`Spec`]'s value is read from its text.
pub trait ParseText: Sized {
    /// What it is, for errors (`schedule`, ...).
    const WHAT: &'static str;
    fn parse_text(text: &str) -> Result<Self, String>;
}

#[derive(Clone)]
pub struct Spec<T> {
    text: String,
    value: T,
}

impl<T: ParseText> Spec<T> {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self {
            value: T::parse_text(text)?,
            text: text.to_string(),
        })
    }
}

impl<T> Spec<T> {
    /// The text it was written as.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the text means.
    pub fn value(&self) -> &T {
        &self.value
    }
}

impl<T: ParseText> FromStr for Spec<T> {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

/// Two specs are equal when they are written alike.
impl<T> PartialEq for Spec<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<T> Eq for Spec<T> {}

impl<T> PartialEq<&str> for Spec<T> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl<T> fmt::Debug for Spec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl<T> fmt::Display for Spec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.text)
    }
}

impl<T> Serialize for Spec<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de, T: ParseText> Deserialize<'de> for Spec<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(format!("{}: {e}", T::WHAT)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Destination, Route, Schedule};

    #[test]
    fn specs_keep_their_text_and_refuse_what_does_not_parse() {
        let route: Spec<Route> = "/a/*".parse().unwrap();
        assert!(route.value().matches("/a/b"));
        assert_eq!(serde_json::to_string(&route).unwrap(), "\"/a/*\"");
        assert_eq!(route, "/a/*");
        let err = serde_json::from_str::<Spec<Route>>("\"/fn/x\"").unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        assert!(serde_json::from_str::<Spec<Schedule>>("\"rate(5 minutes)\"").is_ok());
        assert!(serde_json::from_str::<Spec<Schedule>>("\"rate(0 minutes)\"").is_err());
        assert!(serde_json::from_str::<Spec<Destination>>("\"ftp://x\"").is_err());
    }
}
