//! A `Choice` state's rules: a comparison of the value at `Variable` with a literal (or with
//! the value at another path, for the `...Path` forms), a type test, or `And`/`Or`/`Not` of
//! rules. Parsed once (a definition's errors name the rule), evaluated per input.
//!
//! Semantics as Step Functions has them: a comparison of values of the wrong type is false
//! (`StringEquals` on a number); a `Variable` that matches nothing fails the state with
//! `States.Runtime`, except for `IsPresent`; timestamps are RFC 3339 and compared as instants.

use crate::AslError;
use crate::path::Path;
use chrono::{DateTime, FixedOffset};
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Compare {
        variable: Path,
        kind: Kind,
        op: Op,
        against: Against,
    },
    /// `IsNull`, `IsPresent`, `IsNumeric`, `IsString`, `IsBoolean`, `IsTimestamp`.
    Is {
        variable: Path,
        test: Test,
        expected: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
    /// `StringMatches`: `*` matches any run of characters (`\*` a star, `\\` a backslash).
    Matches,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Against {
    Value(Value),
    Path(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Null,
    Present,
    Numeric,
    String,
    Boolean,
    Timestamp,
}

const KINDS: [(&str, Kind); 4] = [
    ("String", Kind::String),
    ("Numeric", Kind::Numeric),
    ("Boolean", Kind::Boolean),
    ("Timestamp", Kind::Timestamp),
];

const OPS: [(&str, Op); 6] = [
    ("LessThanEquals", Op::LessThanEquals),
    ("GreaterThanEquals", Op::GreaterThanEquals),
    ("Equals", Op::Equals),
    ("LessThan", Op::LessThan),
    ("GreaterThan", Op::GreaterThan),
    ("Matches", Op::Matches),
];

const TESTS: [(&str, Test); 6] = [
    ("IsNull", Test::Null),
    ("IsPresent", Test::Present),
    ("IsNumeric", Test::Numeric),
    ("IsString", Test::String),
    ("IsBoolean", Test::Boolean),
    ("IsTimestamp", Test::Timestamp),
];

impl Rule {
    /// A rule from its JSON (a choice, or a rule inside `And`/`Or`/`Not`); `Next` and
    /// `Comment` are the caller's.
    pub fn parse(rule: &Value) -> Result<Self, String> {
        let fields = rule.as_object().ok_or("a choice rule must be an object")?;
        let combinators: Vec<&str> = ["And", "Or", "Not"]
            .into_iter()
            .filter(|c| fields.contains_key(*c))
            .collect();
        if let [combinator] = combinators.as_slice() {
            let inner = &fields[*combinator];
            return match *combinator {
                "Not" => Ok(Self::Not(Box::new(Self::parse(inner)?))),
                _ => {
                    let rules = inner
                        .as_array()
                        .filter(|r| !r.is_empty())
                        .ok_or_else(|| format!("{combinator} must be a non-empty array of rules"))?
                        .iter()
                        .map(Self::parse)
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(if *combinator == "And" {
                        Self::And(rules)
                    } else {
                        Self::Or(rules)
                    })
                }
            };
        }
        if combinators.len() > 1 {
            return Err("a rule has one of And, Or, Not".into());
        }
        let variable = fields
            .get("Variable")
            .and_then(Value::as_str)
            .ok_or("a comparison needs a Variable (a path)")?;
        let variable = Path::parse(variable).map_err(|e| format!("Variable: {e}"))?;
        let operators: Vec<(&String, &Value)> = fields
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "Variable" | "Next" | "Comment"))
            .collect();
        let [(name, operand)] = operators.as_slice() else {
            return Err("a comparison has exactly one operator".into());
        };
        if let Some((_, test)) = TESTS.iter().find(|(n, _)| n == name) {
            let expected = operand
                .as_bool()
                .ok_or_else(|| format!("{name} takes true or false"))?;
            return Ok(Self::Is {
                variable,
                test: *test,
                expected,
            });
        }
        let (kind, rest) = KINDS
            .iter()
            .find_map(|(prefix, kind)| Some((*kind, name.strip_prefix(prefix)?)))
            .ok_or_else(|| format!("{name} is not a comparison operator"))?;
        let (op_name, by_path) = match rest.strip_suffix("Path") {
            Some(op) => (op, true),
            None => (rest, false),
        };
        let op = OPS
            .iter()
            .find(|(n, _)| *n == op_name)
            .map(|(_, op)| *op)
            .ok_or_else(|| format!("{name} is not a comparison operator"))?;
        if op == Op::Matches && (kind != Kind::String || by_path)
            || kind == Kind::Boolean && op != Op::Equals
        {
            return Err(format!("{name} is not a comparison operator"));
        }
        let against = if by_path {
            let text = operand
                .as_str()
                .ok_or_else(|| format!("{name} takes a path"))?;
            Against::Path(Path::parse(text).map_err(|e| format!("{name}: {e}"))?)
        } else {
            let fits = match kind {
                Kind::String => operand.is_string(),
                Kind::Numeric => operand.is_number(),
                Kind::Boolean => operand.is_boolean(),
                Kind::Timestamp => operand.as_str().and_then(timestamp).is_some(),
            };
            if !fits {
                return Err(format!("{name} takes a {}", kind_name(kind)));
            }
            Against::Value((*operand).clone())
        };
        Ok(Self::Compare {
            variable,
            kind,
            op,
            against,
        })
    }

    /// Whether `input` (with `context` as `$$`) matches the rule.
    pub fn matches(&self, input: &Value, context: &Value) -> Result<bool, AslError> {
        match self {
            Self::And(rules) => {
                for rule in rules {
                    if !rule.matches(input, context)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Self::Or(rules) => {
                for rule in rules {
                    if rule.matches(input, context)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Self::Not(rule) => Ok(!rule.matches(input, context)?),
            Self::Is {
                variable,
                test,
                expected,
            } => {
                let root = if variable.context { context } else { input };
                let found = variable.find(root);
                let is = match (test, found) {
                    (Test::Present, found) => found.is_some(),
                    (_, None) => return Err(missing(variable)),
                    (Test::Null, Some(v)) => v.is_null(),
                    (Test::Numeric, Some(v)) => v.is_number(),
                    (Test::String, Some(v)) => v.is_string(),
                    (Test::Boolean, Some(v)) => v.is_boolean(),
                    (Test::Timestamp, Some(v)) => v.as_str().and_then(timestamp).is_some(),
                };
                Ok(is == *expected)
            }
            Self::Compare {
                variable,
                kind,
                op,
                against,
            } => {
                let root = if variable.context { context } else { input };
                let value = variable.find(root).ok_or_else(|| missing(variable))?;
                let other = match against {
                    Against::Value(v) => v.clone(),
                    Against::Path(path) => path.select(input, context)?,
                };
                Ok(compare(*kind, *op, value, &other))
            }
        }
    }
}

fn missing(variable: &Path) -> AslError {
    AslError::runtime(format!(
        "the choice's Variable {variable} matches nothing in the input"
    ))
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::String => "string",
        Kind::Numeric => "number",
        Kind::Boolean => "boolean",
        Kind::Timestamp => "timestamp (RFC 3339)",
    }
}

fn timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text).ok()
}

/// A comparison of values of the wrong type is false.
fn compare(kind: Kind, op: Op, value: &Value, other: &Value) -> bool {
    if op == Op::Matches {
        return matches!((value, other), (Value::String(v), Value::String(p)) if wildcard(p, v));
    }
    let order = match kind {
        Kind::String => match (value.as_str(), other.as_str()) {
            (Some(a), Some(b)) => a.cmp(b),
            _ => return false,
        },
        Kind::Numeric => match (value.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) if value.is_number() && other.is_number() => {
                match a.partial_cmp(&b) {
                    Some(order) => order,
                    None => return false,
                }
            }
            _ => return false,
        },
        Kind::Boolean => match (value.as_bool(), other.as_bool()) {
            (Some(a), Some(b)) => return a == b,
            _ => return false,
        },
        Kind::Timestamp => match (
            value.as_str().and_then(timestamp),
            other.as_str().and_then(timestamp),
        ) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => return false,
        },
    };
    match op {
        Op::Equals => order == Ordering::Equal,
        Op::LessThan => order == Ordering::Less,
        Op::GreaterThan => order == Ordering::Greater,
        Op::LessThanEquals => order != Ordering::Greater,
        Op::GreaterThanEquals => order != Ordering::Less,
        Op::Matches => false,
    }
}

/// `StringMatches`: `*` is any run of characters; `\*` and `\\` are a star and a backslash.
fn wildcard(pattern: &str, text: &str) -> bool {
    #[derive(PartialEq)]
    enum Token {
        Any,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            '*' => Token::Any,
            c => Token::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Classic two-pointer match with backtracking to the last star.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Token::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| *t == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(rule: Value, input: &Value) -> Result<bool, AslError> {
        Rule::parse(&rule)
            .unwrap_or_else(|e| panic!("{rule}: {e}"))
            .matches(input, &json!({"State": {"Name": "pick"}}))
    }

    fn input() -> Value {
        json!({
            "s": "beta", "n": 10, "f": 2.5, "b": true, "nul": null,
            "t": "2026-12-07T10:00:00Z", "t2": "2026-12-07T11:00:00+01:00",
            "other": "gamma", "limit": 10
        })
    }

    #[test]
    fn every_comparison_operator() {
        let i = input();
        let cases = [
            (json!({"Variable": "$.s", "StringEquals": "beta"}), true),
            (json!({"Variable": "$.s", "StringLessThan": "gamma"}), true),
            (
                json!({"Variable": "$.s", "StringGreaterThan": "alpha"}),
                true,
            ),
            (
                json!({"Variable": "$.s", "StringLessThanEquals": "beta"}),
                true,
            ),
            (
                json!({"Variable": "$.s", "StringGreaterThanEquals": "zeta"}),
                false,
            ),
            (
                json!({"Variable": "$.s", "StringEqualsPath": "$.other"}),
                false,
            ),
            (
                json!({"Variable": "$.s", "StringLessThanPath": "$.other"}),
                true,
            ),
            (json!({"Variable": "$.s", "StringMatches": "b*a"}), true),
            (json!({"Variable": "$.s", "StringMatches": "*x*"}), false),
            (json!({"Variable": "$.n", "NumericEquals": 10}), true),
            (json!({"Variable": "$.n", "NumericEquals": 10.0}), true),
            (json!({"Variable": "$.f", "NumericLessThan": 3}), true),
            (json!({"Variable": "$.f", "NumericGreaterThan": 3}), false),
            (
                json!({"Variable": "$.n", "NumericLessThanEquals": 10}),
                true,
            ),
            (
                json!({"Variable": "$.n", "NumericGreaterThanEquals": 11}),
                false,
            ),
            (
                json!({"Variable": "$.n", "NumericEqualsPath": "$.limit"}),
                true,
            ),
            (
                json!({"Variable": "$.f", "NumericGreaterThanPath": "$.limit"}),
                false,
            ),
            (json!({"Variable": "$.b", "BooleanEquals": true}), true),
            (json!({"Variable": "$.b", "BooleanEqualsPath": "$.b"}), true),
            (
                json!({"Variable": "$.t", "TimestampEquals": "2026-12-07T10:00:00Z"}),
                true,
            ),
            (
                json!({"Variable": "$.t", "TimestampEqualsPath": "$.t2"}),
                true,
            ),
            (
                json!({"Variable": "$.t", "TimestampLessThan": "2026-12-07T10:00:01Z"}),
                true,
            ),
            (
                json!({"Variable": "$.t", "TimestampGreaterThan": "2027-01-01T00:00:00Z"}),
                false,
            ),
            (
                json!({"Variable": "$.t", "TimestampLessThanEqualsPath": "$.t2"}),
                true,
            ),
            (
                json!({"Variable": "$.t", "TimestampGreaterThanEquals": "2026-12-07T10:00:00Z"}),
                true,
            ),
            (
                json!({"Variable": "$$.State.Name", "StringEquals": "pick"}),
                true,
            ),
        ];
        for (rule, expected) in cases {
            assert_eq!(check(rule.clone(), &i).unwrap(), expected, "{rule}");
        }
    }

    #[test]
    fn a_comparison_of_the_wrong_type_is_false() {
        let i = input();
        for rule in [
            json!({"Variable": "$.n", "StringEquals": "10"}),
            json!({"Variable": "$.s", "NumericEquals": 10}),
            json!({"Variable": "$.s", "BooleanEquals": true}),
            json!({"Variable": "$.s", "TimestampEquals": "2026-12-07T10:00:00Z"}),
            json!({"Variable": "$.n", "StringMatches": "*"}),
        ] {
            assert!(!check(rule.clone(), &i).unwrap(), "{rule}");
        }
    }

    #[test]
    fn type_tests_and_presence() {
        let i = input();
        let cases = [
            (json!({"Variable": "$.nul", "IsNull": true}), true),
            (json!({"Variable": "$.s", "IsNull": true}), false),
            (json!({"Variable": "$.missing", "IsPresent": false}), true),
            (json!({"Variable": "$.s", "IsPresent": true}), true),
            (json!({"Variable": "$.f", "IsNumeric": true}), true),
            (json!({"Variable": "$.s", "IsString": true}), true),
            (json!({"Variable": "$.b", "IsBoolean": false}), false),
            (json!({"Variable": "$.t", "IsTimestamp": true}), true),
            (json!({"Variable": "$.s", "IsTimestamp": true}), false),
        ];
        for (rule, expected) in cases {
            assert_eq!(check(rule.clone(), &i).unwrap(), expected, "{rule}");
        }
        // Any other rule on a missing Variable fails the state.
        let missing = check(json!({"Variable": "$.missing", "StringEquals": "x"}), &i);
        assert_eq!(missing.unwrap_err().error, "States.Runtime");
        let missing = check(json!({"Variable": "$.missing", "IsNull": true}), &i);
        assert_eq!(missing.unwrap_err().error, "States.Runtime");
    }

    #[test]
    fn and_or_not() {
        let i = input();
        let both = json!({"And": [
            {"Variable": "$.n", "NumericGreaterThan": 5},
            {"Not": {"Variable": "$.s", "StringEquals": "alpha"}}
        ]});
        assert!(check(both, &i).unwrap());
        let either = json!({"Or": [
            {"Variable": "$.n", "NumericLessThan": 5},
            {"Variable": "$.b", "BooleanEquals": false}
        ]});
        assert!(!check(either, &i).unwrap());
        // Or stops at the first match: the missing path after it is never read.
        let short = json!({"Or": [
            {"Variable": "$.b", "BooleanEquals": true},
            {"Variable": "$.missing", "StringEquals": "x"}
        ]});
        assert!(check(short, &i).unwrap());
    }

    #[test]
    fn wildcards_and_their_escapes() {
        assert!(wildcard("*.log", "app.log"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
        assert!(wildcard(r"a\*b", "a*b"));
        assert!(!wildcard(r"a\*b", "aXb"));
        assert!(wildcard(r"c:\\*", r"c:\dir"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("", "x"));
    }

    #[test]
    fn malformed_rules_say_what_is_wrong() {
        for (rule, why) in [
            (json!({"Variable": "$.s"}), "exactly one operator"),
            (
                json!({"Variable": "$.s", "StringEquals": 3}),
                "takes a string",
            ),
            (
                json!({"Variable": "$.s", "NumericEquals": "3"}),
                "takes a number",
            ),
            (
                json!({"Variable": "$.s", "TimestampEquals": "yesterday"}),
                "timestamp",
            ),
            (
                json!({"Variable": "$.s", "StringMatchesPath": "$.x"}),
                "not a comparison",
            ),
            (
                json!({"Variable": "$.s", "BooleanLessThan": true}),
                "not a comparison",
            ),
            (
                json!({"Variable": "$.s", "Frobnicate": 1}),
                "not a comparison",
            ),
            (json!({"Variable": "s", "StringEquals": "x"}), "Variable"),
            (json!({"StringEquals": "x"}), "needs a Variable"),
            (json!({"And": []}), "non-empty"),
            (json!({"Variable": "$.s", "IsNull": "yes"}), "true or false"),
        ] {
            let error = Rule::parse(&rule).unwrap_err();
            assert!(error.contains(why), "{rule}: {error}");
        }
    }
}
