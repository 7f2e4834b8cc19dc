//! The intrinsic functions (`States.Format('{}', $.a)` and the others) in the `.$` fields of
//! payload templates: a parser of the call syntax and an evaluator. A failure is
//! `States.IntrinsicFailure`, naming the function.

use crate::AslError;
use crate::path::Path;
use base64::Engine as _;
use serde_json::{Map, Value, json};

/// A parsed argument or call.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    Path(Path),
    Call { name: String, args: Vec<Expr> },
}

/// Whether a `.$` field's text is an intrinsic call rather than a path.
pub fn is_call(text: &str) -> bool {
    text.starts_with("States.")
}

/// Parses `States.Name(args)`.
pub fn parse(text: &str) -> Result<Expr, AslError> {
    let mut parser = Parser { text, at: 0 };
    let expr = parser.call()?;
    parser.skip_spaces();
    if parser.at != text.len() {
        return Err(parser.fail("unexpected text after the call"));
    }
    Ok(expr)
}

/// Evaluates a parsed call with `input` as `$` and `context` as `$$`.
pub fn evaluate(expr: &Expr, input: &Value, context: &Value) -> Result<Value, AslError> {
    match expr {
        Expr::Literal(value) => Ok(value.clone()),
        Expr::Path(path) => path.select(input, context),
        Expr::Call { name, args } => {
            let args = args
                .iter()
                .map(|a| evaluate(a, input, context))
                .collect::<Result<Vec<_>, _>>()?;
            call(name, &args).map_err(|why| AslError::intrinsic(format!("{name}: {why}")))
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn fail(&self, why: &str) -> AslError {
        AslError::intrinsic(format!("{why} at {} in {:?}", self.at, self.text))
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: char) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(token) {
            self.at += token.len_utf8();
            true
        } else {
            false
        }
    }

    fn call(&mut self) -> Result<Expr, AslError> {
        self.skip_spaces();
        let end = self
            .rest()
            .find('(')
            .ok_or_else(|| self.fail("expected States.Name("))?;
        let name = self.rest()[..end].trim().to_string();
        if !name.starts_with("States.") || name.len() == "States.".len() {
            return Err(self.fail("expected States.Name("));
        }
        self.at += end + 1;
        let mut args = Vec::new();
        if !self.eat(')') {
            loop {
                args.push(self.arg()?);
                if self.eat(')') {
                    break;
                }
                if !self.eat(',') {
                    return Err(self.fail("expected ',' or ')'"));
                }
            }
        }
        Ok(Expr::Call { name, args })
    }

    fn arg(&mut self) -> Result<Expr, AslError> {
        self.skip_spaces();
        let rest = self.rest();
        if rest.starts_with('\'') {
            return self.string();
        }
        if rest.starts_with("States.") {
            return self.call();
        }
        // A path, number, boolean or null runs to the next ',' or ')' at this level.
        let end = rest.find([',', ')']).unwrap_or(rest.len());
        let token = rest[..end].trim().to_string();
        let token = token.as_str();
        self.at += end;
        if token.starts_with('$') {
            return Path::parse(token)
                .map(Expr::Path)
                .map_err(AslError::intrinsic);
        }
        match token {
            "true" => Ok(Expr::Literal(json!(true))),
            "false" => Ok(Expr::Literal(json!(false))),
            "null" => Ok(Expr::Literal(Value::Null)),
            number => serde_json::from_str::<serde_json::Number>(number)
                .map(|n| Expr::Literal(Value::Number(n)))
                .map_err(|_| self.fail(&format!("{number:?} is not an argument"))),
        }
    }

    /// `'...'` with `\'`, `\{`, `\}` and `\\` escapes (`\{` stays escaped for Format).
    fn string(&mut self) -> Result<Expr, AslError> {
        self.at += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => {
                    self.at += i + 1;
                    return Ok(Expr::Literal(Value::String(out)));
                }
                '\\' => match chars.next() {
                    Some((_, '\'')) => out.push('\''),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, e @ ('{' | '}'))) => {
                        out.push('\\');
                        out.push(e);
                    }
                    _ => return Err(self.fail("a bad escape in a string")),
                },
                c => out.push(c),
            }
        }
        Err(self.fail("an unclosed string"))
    }
}

fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    let count = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("takes {n} arguments, got {}", args.len()))
        }
    };
    match name {
        "States.Format" => format(args),
        "States.StringToJson" => {
            count(1)?;
            serde_json::from_str(string(&args[0])?).map_err(|e| format!("not JSON: {e}"))
        }
        "States.JsonToString" => {
            count(1)?;
            Ok(Value::String(args[0].to_string()))
        }
        "States.Array" => Ok(Value::Array(args.to_vec())),
        "States.ArrayPartition" => {
            count(2)?;
            let size = positive(&args[1])?;
            let items = array(&args[0])?;
            Ok(Value::Array(
                items
                    .chunks(size)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        "States.ArrayContains" => {
            count(2)?;
            Ok(Value::Bool(array(&args[0])?.contains(&args[1])))
        }
        "States.ArrayRange" => {
            count(3)?;
            let (start, end, step) = (integer(&args[0])?, integer(&args[1])?, integer(&args[2])?);
            if step == 0 {
                return Err("the step must not be 0".into());
            }
            let mut items = Vec::new();
            let mut at = start;
            while (step > 0 && at <= end) || (step < 0 && at >= end) {
                if items.len() == 1000 {
                    return Err("makes more than 1000 items".into());
                }
                items.push(json!(at));
                at += step;
            }
            Ok(Value::Array(items))
        }
        "States.ArrayGetItem" => {
            count(2)?;
            let index = usize::try_from(integer(&args[1])?).map_err(|_| "a negative index")?;
            array(&args[0])?
                .get(index)
                .cloned()
                .ok_or_else(|| format!("no item at {index}"))
        }
        "States.ArrayLength" => {
            count(1)?;
            Ok(json!(array(&args[0])?.len()))
        }
        "States.ArrayUnique" => {
            count(1)?;
            let mut unique: Vec<Value> = Vec::new();
            for item in array(&args[0])? {
                if !unique.contains(item) {
                    unique.push(item.clone());
                }
            }
            Ok(Value::Array(unique))
        }
        "States.Base64Encode" => {
            count(1)?;
            let text = string(&args[0])?;
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(text),
            ))
        }
        "States.Base64Decode" => {
            count(1)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(string(&args[0])?)
                .map_err(|e| format!("not base64: {e}"))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| "not UTF-8 once decoded".into())
        }
        "States.Hash" => {
            count(2)?;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            hash(data.as_bytes(), string(&args[1])?).map(Value::String)
        }
        "States.JsonMerge" => {
            count(3)?;
            if args[2] != Value::Bool(false) {
                return Err(
                    "only a shallow merge (false) is supported, as in Step Functions".into(),
                );
            }
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return Err("merges two objects".into());
            };
            let mut merged: Map<String, Value> = a.clone();
            merged.extend(b.clone());
            Ok(Value::Object(merged))
        }
        "States.MathRandom" => {
            if !(2..=3).contains(&args.len()) {
                return Err(format!("takes 2 or 3 arguments, got {}", args.len()));
            }
            let (start, end) = (integer(&args[0])?, integer(&args[1])?);
            if start >= end {
                return Err("the start must be below the end".into());
            }
            let mut rng = match args.get(2) {
                Some(seed) => fastrand::Rng::with_seed(integer(seed)? as u64),
                None => fastrand::Rng::new(),
            };
            Ok(json!(rng.i64(start..end)))
        }
        "States.MathAdd" => {
            count(2)?;
            integer(&args[0])?
                .checked_add(integer(&args[1])?)
                .map(|n| json!(n))
                .ok_or_else(|| "the sum overflows".into())
        }
        "States.StringSplit" => {
            count(2)?;
            let delimiters: Vec<char> = string(&args[1])?.chars().collect();
            Ok(Value::Array(
                string(&args[0])?
                    .split(delimiters.as_slice())
                    .filter(|part| !part.is_empty())
                    .map(|part| Value::String(part.to_string()))
                    .collect(),
            ))
        }
        "States.UUID" => {
            count(0)?;
            Ok(Value::String(uuid::Uuid::new_v4().to_string()))
        }
        _ => Err("no such intrinsic function".into()),
    }
}

/// `{}` in the template takes the next argument: a string as it is, anything else as JSON.
fn format(args: &[Value]) -> Result<Value, String> {
    let (template, values) = args.split_first().ok_or("takes a template")?;
    let template = string(template)?;
    let mut out = String::new();
    let mut values = values.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('{' | '}' | '\\')) => out.push(escaped),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let value = values.next().ok_or("more {} than arguments")?;
                match value {
                    Value::String(s) => out.push_str(s),
                    Value::Array(_) | Value::Object(_) => {
                        return Err("an argument must be a string, number, boolean or null".into());
                    }
                    other => out.push_str(&other.to_string()),
                }
            }
            c => out.push(c),
        }
    }
    if values.next().is_some() {
        return Err("more arguments than {}".into());
    }
    Ok(Value::String(out))
}

fn hash(data: &[u8], algorithm: &str) -> Result<String, String> {
    use sha2::Digest as _;
    Ok(match algorithm {
        "MD5" => hex::encode(md5::Md5::digest(data)),
        "SHA-1" => hex::encode(sha1::Sha1::digest(data)),
        "SHA-256" => hex::encode(sha2::Sha256::digest(data)),
        "SHA-384" => hex::encode(sha2::Sha384::digest(data)),
        "SHA-512" => hex::encode(sha2::Sha512::digest(data)),
        other => {
            return Err(format!(
                "no hash algorithm {other:?} (MD5, SHA-1, SHA-256, SHA-384, SHA-512)"
            ));
        }
    })
}

fn string(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{value} is not a string"))
}

fn array(value: &Value) -> Result<&Vec<Value>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{value} is not an array"))
}

fn integer(value: &Value) -> Result<i64, String> {
    value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0)
                .map(|f| f as i64)
        })
        .ok_or_else(|| format!("{value} is not an integer"))
}

fn positive(value: &Value) -> Result<usize, String> {
    usize::try_from(integer(value)?)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{value} is not a positive integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<Value, AslError> {
        let input = json!({"name": "Ada", "n": 3, "list": [1, 2, 2, 3], "obj": {"a": 1}});
        let expr = parse(text)?;
        evaluate(&expr, &input, &json!({"Execution": {"Name": "run-1"}}))
    }

    #[test]
    fn format_fills_placeholders_in_order() {
        assert_eq!(
            run("States.Format('Hi {}, {} of {}', $.name, $.n, $$.Execution.Name)").unwrap(),
            json!("Hi Ada, 3 of run-1")
        );
        assert_eq!(
            run(r"States.Format('\{\} {} it\'s', true)").unwrap(),
            json!("{} true it's")
        );
        assert!(run("States.Format('{} {}', 1)").is_err());
        assert!(run("States.Format('{}', 1, 2)").is_err());
        assert!(run("States.Format('{}', $.obj)").is_err());
    }

    #[test]
    fn json_strings_and_arrays() {
        assert_eq!(
            run("States.StringToJson('{\"a\": [1]}')").unwrap(),
            json!({"a": [1]})
        );
        assert_eq!(
            run("States.JsonToString($.obj)").unwrap(),
            json!("{\"a\":1}")
        );
        assert_eq!(
            run("States.Array('a', 1, $.n, null)").unwrap(),
            json!(["a", 1, 3, null])
        );
        assert_eq!(
            run("States.ArrayPartition($.list, 3)").unwrap(),
            json!([[1, 2, 2], [3]])
        );
        assert_eq!(run("States.ArrayContains($.list, 2)").unwrap(), json!(true));
        assert_eq!(run("States.ArrayRange(1, 9, 3)").unwrap(), json!([1, 4, 7]));
        assert_eq!(
            run("States.ArrayRange(3, 1, -1)").unwrap(),
            json!([3, 2, 1])
        );
        assert!(run("States.ArrayRange(0, 5000, 1)").is_err());
        assert_eq!(run("States.ArrayGetItem($.list, 3)").unwrap(), json!(3));
        assert!(run("States.ArrayGetItem($.list, 9)").is_err());
        assert_eq!(run("States.ArrayLength($.list)").unwrap(), json!(4));
        assert_eq!(run("States.ArrayUnique($.list)").unwrap(), json!([1, 2, 3]));
        assert_eq!(
            run("States.ArrayLength(States.Array(1, States.Array(2, 3)))").unwrap(),
            json!(2)
        );
    }

    #[test]
    fn encodings_hashes_and_math() {
        assert_eq!(run("States.Base64Encode('Ada')").unwrap(), json!("QWRh"));
        assert_eq!(run("States.Base64Decode('QWRh')").unwrap(), json!("Ada"));
        assert_eq!(
            run("States.Hash('abc', 'SHA-256')").unwrap(),
            json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            run("States.Hash('abc', 'MD5')").unwrap(),
            json!("900150983cd24fb0d6963f7d28e17f72")
        );
        assert!(run("States.Hash('abc', 'CRC32')").is_err());
        assert_eq!(
            run("States.JsonMerge($.obj, States.StringToJson('{\"b\":2}'), false)").unwrap(),
            json!({"a": 1, "b": 2})
        );
        assert!(run("States.JsonMerge($.obj, $.obj, true)").is_err());
        assert_eq!(run("States.MathAdd($.n, -5)").unwrap(), json!(-2));
        let seeded = run("States.MathRandom(1, 1000, 7)").unwrap();
        assert_eq!(seeded, run("States.MathRandom(1, 1000, 7)").unwrap());
        let n = seeded.as_i64().unwrap();
        assert!((1..1000).contains(&n));
        assert_eq!(
            run("States.StringSplit('a,b;;c', ',;')").unwrap(),
            json!(["a", "b", "c"])
        );
        let id = run("States.UUID()").unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(id.as_str().unwrap())
                .unwrap()
                .get_version_num(),
            4
        );
    }

    #[test]
    fn failures_name_the_function_and_the_cause() {
        let unknown = run("States.Nope(1)").unwrap_err();
        assert_eq!(unknown.error, "States.IntrinsicFailure");
        assert!(unknown.cause.contains("States.Nope"), "{unknown}");
        let wrong = run("States.ArrayLength($.name)").unwrap_err();
        assert!(wrong.cause.contains("States.ArrayLength"), "{wrong}");
        for bad in [
            "States.Format('x'",
            "States.Format('x) ",
            "Format('x')",
            "States.Array(1) x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // A path argument that matches nothing is the path's error.
        assert_eq!(
            run("States.ArrayLength($.missing)").unwrap_err().error,
            "States.Runtime"
        );
    }
}
