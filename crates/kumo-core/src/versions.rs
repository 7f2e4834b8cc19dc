//! Versions and aliases: `kumo publish` freezes `$LATEST` into an immutable numbered version;
//! an alias (`prod`) points at one version, or at two with a weight on the second (a canary).
//! A target's qualifier (`NAME:3`, `NAME:prod`, `NAME:$LATEST`) names one of them.

use crate::{FunctionConfig, FunctionKind, FunctionRecord};
use serde::{Deserialize, Serialize};

/// The mutable head of a function, as a qualifier and in records.
pub const LATEST: &str = "$LATEST";

/// The code an invocation ran: `$LATEST` or a published version. Text on the wire and in the
/// store (`$LATEST`, `3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RanVersion {
    Latest,
    Published(u32),
}

impl RanVersion {
    pub fn of(version: Option<u32>) -> Self {
        version.map_or(Self::Latest, Self::Published)
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            LATEST => Some(Self::Latest),
            n => n.parse().ok().filter(|n| *n > 0).map(Self::Published),
        }
    }
}

impl std::fmt::Display for RanVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.pad(LATEST),
            Self::Published(n) => std::fmt::Display::fmt(n, f),
        }
    }
}

impl PartialEq<&str> for RanVersion {
    fn eq(&self, other: &&str) -> bool {
        Self::parse(other) == Some(*self)
    }
}

impl serde::Serialize for RanVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RanVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a version: {text:?}")))
    }
}

/// A published version: the code and config of `$LATEST` when it was published. Never changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionRecord {
    pub function: String,
    pub version: u32,
    #[serde(default)]
    pub description: String,
    pub kind: FunctionKind,
    pub code_sha256: String,
    pub code_size: u64,
    pub config: FunctionConfig,
    /// Unix epoch milliseconds.
    pub created_at: i64,
}

impl VersionRecord {
    /// The version as a function to load and run. Provisioned concurrency belongs to
    /// `$LATEST` only (it reserves server slots under the function's name), so a version
    /// loads lazily like any function.
    pub fn as_function(&self) -> FunctionRecord {
        let mut config = self.config.clone();
        config.provisioned_concurrency = None;
        FunctionRecord {
            name: self.function.clone(),
            kind: self.kind,
            code_sha256: self.code_sha256.clone(),
            code_size: self.code_size,
            config,
            created_at: self.created_at,
            updated_at: self.created_at,
            reuse_fell_back: false,
        }
    }
}

/// The second version of a weighted alias and the share of requests it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Canary {
    pub version: u32,
    /// Percent of the alias's requests, 1 to 99.
    pub weight: u8,
}

/// A named pointer to a version, optionally splitting traffic with a canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AliasRecord {
    pub function: String,
    pub name: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Unix epoch milliseconds.
    pub updated_at: i64,
}

impl AliasRecord {
    /// The version one request runs, given `roll` drawn uniformly from [0, 100).
    pub fn pick(&self, roll: f64) -> u32 {
        match self.canary {
            Some(canary) if roll < f64::from(canary.weight) => canary.version,
            _ => self.version,
        }
    }

    /// Whether the alias sends any request to `version`.
    pub fn points_at(&self, version: u32) -> bool {
        self.version == version || self.canary.is_some_and(|c| c.version == version)
    }
}

/// What follows the `:` of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Qualifier {
    Latest,
    Version(u32),
    Alias(String),
}

impl Qualifier {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == LATEST {
            return Ok(Self::Latest);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Self::Version(n)),
                _ => Err(format!("{s:?} is not a version number (1 or more)")),
            };
        }
        validate_alias(s)?;
        Ok(Self::Alias(s.to_string()))
    }
}

/// An alias name: like a function name, but starting with a letter, so it can never be read
/// as a version number.
pub fn validate_alias(name: &str) -> Result<(), String> {
    crate::validate_name(name).map_err(|e| format!("invalid alias {name:?}: {}", e.why))?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("invalid alias {name:?}: must start with a letter"));
    }
    Ok(())
}

/// Checks a canary against its alias's main version.
pub fn validate_canary(version: u32, canary: &Canary) -> Result<(), String> {
    if !(1..=99).contains(&canary.weight) {
        return Err(format!(
            "a canary's weight is a percentage from 1 to 99, not {}",
            canary.weight
        ));
    }
    if canary.version == version {
        return Err(format!("the canary must be another version than {version}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ran_version_is_latest_or_a_number_as_text() {
        for (version, text) in [
            (RanVersion::Latest, "$LATEST"),
            (RanVersion::Published(3), "3"),
        ] {
            assert_eq!(version.to_string(), text);
            assert_eq!(RanVersion::parse(text), Some(version));
            assert_eq!(
                serde_json::to_string(&version).unwrap(),
                format!("\"{text}\"")
            );
        }
        for bad in ["0", "-1", "prod", ""] {
            assert_eq!(RanVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn qualifiers_parse() {
        assert_eq!(Qualifier::parse("$LATEST"), Ok(Qualifier::Latest));
        assert_eq!(Qualifier::parse("3"), Ok(Qualifier::Version(3)));
        assert_eq!(
            Qualifier::parse("prod"),
            Ok(Qualifier::Alias("prod".into()))
        );
        for bad in ["0", "", "Prod", "1a", "-x", "99999999999"] {
            assert!(Qualifier::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_canary_takes_its_weight_of_the_rolls() {
        let alias = AliasRecord {
            function: "f".into(),
            name: "prod".into(),
            version: 3,
            canary: Some(Canary {
                version: 4,
                weight: 10,
            }),
            updated_at: 0,
        };
        assert_eq!(alias.pick(0.0), 4);
        assert_eq!(alias.pick(9.99), 4);
        assert_eq!(alias.pick(10.0), 3);
        assert_eq!(alias.pick(99.9), 3);
        assert!(alias.points_at(4) && alias.points_at(3) && !alias.points_at(5));
        let bad = Canary {
            version: 3,
            weight: 10,
        };
        assert!(validate_canary(3, &bad).is_err());
        let heavy = Canary {
            version: 4,
            weight: 100,
        };
        assert!(validate_canary(3, &heavy).is_err());
    }
}
