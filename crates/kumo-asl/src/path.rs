//! JSONPath as ASL uses it. A *reference path* (`ResultPath`, the `...Path` of choice rules)
//! names one node: `$`, `.name`, `['name']`, `[index]`. A *path* (`InputPath`, `OutputPath`,
//! `.$` fields) may also select many: `[*]` and `.*`, whose result is an array. `$$` starts a
//! path in the context object instead of the input.

use crate::AslError;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
    /// `[*]` or `.*`: every element or member.
    All,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Starts at the context object (`$$`) rather than the input (`$`).
    pub context: bool,
    steps: Vec<Step>,
}

impl Path {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (context, mut rest) = if let Some(rest) = text.strip_prefix("$$") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix('$') {
            (false, rest)
        } else {
            return Err(format!("{text:?} is not a path: it must start with $"));
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(".*") {
                steps.push(Step::All);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() {
                    return Err(format!("{text:?}: a '.' must be followed by a field name"));
                }
                steps.push(Step::Field(name.to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix("[*]") {
                steps.push(Step::All);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("['") {
                let end = after
                    .find("']")
                    .ok_or_else(|| format!("{text:?}: an unclosed ['...']"))?;
                steps.push(Step::Field(after[..end].to_string()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("{text:?}: an unclosed [...]"))?;
                let index = after[..end]
                    .parse()
                    .map_err(|_| format!("{text:?}: [{}] is not an index", &after[..end]))?;
                steps.push(Step::Index(index));
                rest = &after[end + 1..];
            } else {
                return Err(format!("{text:?}: unexpected {rest:?}"));
            }
        }
        Ok(Self { context, steps })
    }

    /// Whether the path names one node (no `*`), as a reference path must.
    pub fn is_reference(&self) -> bool {
        !self.steps.contains(&Step::All)
    }

    /// What the path selects in `input` (or `context`, for `$$`): the node, or for a path
    /// with `*` the array of every match. A reference path that matches nothing is an error
    /// (`States.Runtime`), as in Step Functions.
    pub fn select(&self, input: &Value, context: &Value) -> Result<Value, AslError> {
        let root = if self.context { context } else { input };
        if self.is_reference() {
            return self.find(root).cloned().ok_or_else(|| {
                AslError::runtime(format!("the path {self} matches nothing in the input"))
            });
        }
        let mut found = vec![root];
        for step in &self.steps {
            found = found
                .into_iter()
                .flat_map(|node| children(node, step))
                .collect();
        }
        Ok(Value::Array(found.into_iter().cloned().collect()))
    }

    /// The node a reference path names, if there is one.
    pub fn find<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.steps.iter().try_fold(root, |node, step| match step {
            Step::Field(name) => node.get(name),
            Step::Index(i) => node.get(i),
            Step::All => None,
        })
    }

    /// Puts `value` at this reference path in `target`, making the objects on the way
    /// (`ResultPath`); `$` replaces the whole. Refused when the way crosses something that is
    /// not an object, or uses an index or `*`.
    pub fn put(&self, target: Value, value: Value) -> Result<Value, AslError> {
        let Some((last, way)) = self.steps.split_last() else {
            return Ok(value);
        };
        let mut root = target;
        let mut node = &mut root;
        for step in way.iter().chain(std::iter::once(last)) {
            let Step::Field(name) = step else {
                return Err(AslError::runtime(format!(
                    "the result path {self} may only name fields"
                )));
            };
            let Value::Object(map) = node else {
                return Err(AslError::runtime(format!(
                    "the result path {self} crosses a value that is not an object"
                )));
            };
            node = map
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        *node = value;
        Ok(root)
    }
}

fn children<'a>(node: &'a Value, step: &Step) -> Vec<&'a Value> {
    match (step, node) {
        (Step::Field(name), _) => node.get(name).into_iter().collect(),
        (Step::Index(i), _) => node.get(i).into_iter().collect(),
        (Step::All, Value::Array(items)) => items.iter().collect(),
        (Step::All, Value::Object(map)) => map.values().collect(),
        (Step::All, _) => Vec::new(),
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.context { "$$" } else { "$" })?;
        for step in &self.steps {
            match step {
                Step::Field(name) if name.contains(['.', '[', ' ']) => write!(f, "['{name}']")?,
                Step::Field(name) => write!(f, ".{name}")?,
                Step::Index(i) => write!(f, "[{i}]")?,
                Step::All => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn select(path: &str, input: &Value) -> Result<Value, AslError> {
        Path::parse(path)
            .unwrap()
            .select(input, &json!({"Execution": {"Id": "e-1"}}))
    }

    #[test]
    fn reference_paths_name_one_node() {
        let input = json!({"a": {"b": [10, {"c d": 3}]}, "x": null});
        assert_eq!(select("$", &input).unwrap(), input);
        assert_eq!(select("$.a.b[0]", &input).unwrap(), json!(10));
        assert_eq!(select("$.a.b[1]['c d']", &input).unwrap(), json!(3));
        assert_eq!(select("$.x", &input).unwrap(), Value::Null);
        assert_eq!(select("$$.Execution.Id", &input).unwrap(), json!("e-1"));
        let missing = select("$.a.nope", &input).unwrap_err();
        assert_eq!(missing.error, "States.Runtime");
        assert!(missing.cause.contains("$.a.nope"), "{missing}");
    }

    #[test]
    fn wildcards_select_arrays() {
        let input = json!({"items": [{"id": 1}, {"id": 2}], "m": {"k": 5}});
        assert_eq!(select("$.items[*].id", &input).unwrap(), json!([1, 2]));
        assert_eq!(select("$.m.*", &input).unwrap(), json!([5]));
        assert_eq!(select("$.nope[*]", &input).unwrap(), json!([]));
        assert!(!Path::parse("$.items[*]").unwrap().is_reference());
    }

    #[test]
    fn malformed_paths_say_why() {
        for bad in ["a.b", "$.", "$[x]", "$['a'", "$.a[1", "$a"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn results_go_where_the_result_path_says() {
        let put = |path: &str, target: Value| Path::parse(path).unwrap().put(target, json!(7));
        assert_eq!(put("$", json!({"a": 1})).unwrap(), json!(7));
        assert_eq!(
            put("$.r", json!({"a": 1})).unwrap(),
            json!({"a": 1, "r": 7})
        );
        assert_eq!(
            put("$.x.y", json!({"a": 1})).unwrap(),
            json!({"a": 1, "x": {"y": 7}})
        );
        assert_eq!(
            put("$.a.b", json!({"a": 1})).unwrap_err().error,
            "States.Runtime"
        );
        assert!(put("$.a[0]", json!({"a": [1]})).is_err());
    }

    #[test]
    fn paths_print_as_written() {
        for text in ["$", "$.a.b[2]", "$$.Map.Item.Value", "$['a b'].c", "$.a[*]"] {
            assert_eq!(Path::parse(text).unwrap().to_string(), text);
        }
    }
}
