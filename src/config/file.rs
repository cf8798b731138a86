//! Reading the YAML file into loosely typed values, with `${VAR}` expansion, and the small
//! field readers that turn them into typed values while collecting every problem with its path.
//!
//! We do not derive `Deserialize` for the schema: serde stops at the first error, and an
//! operator fixing a config wants every problem at once, each naming its field path.

use serde_json::{Map, Value};

/// Every problem found while loading, one line each (`path: problem`).
#[derive(Debug, Default)]
pub struct Problems {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Problems {
    pub fn error(&mut self, path: &str, message: impl std::fmt::Display) {
        self.errors.push(format!("{path}: {message}"));
    }
}

/// Parses YAML text into a JSON-like tree. An empty document is an empty mapping.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_saphyr::from_str::<Value>(text) {
        Ok(Value::Null) => Ok(Value::Object(Map::new())),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("invalid YAML: {}", first_line(&e.to_string()))),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Expands `${VAR}` and `${VAR:-default}` in every string of the tree.
///
/// A string that is exactly one reference to an unset variable (with no default) becomes
/// `null`, i.e. "not configured": `api_key: "${OPENAI_API_KEY}"` with the variable unset means
/// no gateway key rather than an empty one. The paths of such fields are returned.
pub fn expand_env(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    path: &str,
) -> Vec<String> {
    let mut unset = Vec::new();
    expand_inner(value, env, path, &mut unset);
    unset
}

fn expand_inner(
    value: &mut Value,
    env: &dyn Fn(&str) -> Option<String>,
    path: &str,
    unset: &mut Vec<String>,
) {
    match value {
        Value::String(s) if s.contains("${") => {
            let (expanded, missing) = expand_str(s, env);
            if missing && is_single_reference(s) {
                unset.push(path.to_string());
                *value = Value::Null;
            } else {
                *s = expanded;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_inner(item, env, &format!("{path}[{i}]"), unset);
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expand_inner(v, env, &child, unset);
            }
        }
        _ => {}
    }
}

fn is_single_reference(s: &str) -> bool {
    let t = s.trim();
    t.starts_with("${")
        && t.ends_with('}')
        && t[2..].find('}') == Some(t.len() - 3)
        && !t.contains(":-")
}

/// Returns the expanded string and whether any variable without a default was unset.
pub fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, bool) {
    let mut out = String::with_capacity(s.len());
    let mut missing = false;
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return (out, missing);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => missing = true,
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    (out, missing)
}

/// How a value is named in an error: by its kind only, never by its content.
///
/// A value in the wrong field is often a secret in the wrong place (a key pasted under
/// `timeout`, a `${VAR}` that expanded into the neighbouring field), and config errors reach
/// terminals, CI logs and log collectors. The field path and the expected type are enough
/// to fix the file.
pub fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Joins a parent path and a key.
pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A mapping section: `None` when absent or null; unknown keys are reported.
pub fn section<'a>(
    v: Option<&'a Value>,
    path: &str,
    allowed: &[&str],
    p: &mut Problems,
) -> Option<&'a Map<String, Value>> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            for key in map.keys() {
                if !allowed.contains(&key.as_str()) {
                    p.error(
                        &join(path, key),
                        format!("unknown field (expected one of: {})", allowed.join(", ")),
                    );
                }
            }
            Some(map)
        }
        Some(other) => {
            p.error(path, format!("expected a mapping, got {}", describe(other)));
            None
        }
    }
}

/// Reads typed fields of one mapping, reporting problems under `path`.
pub struct Fields<'a> {
    pub map: Option<&'a Map<String, Value>>,
    pub path: String,
}

impl<'a> Fields<'a> {
    pub fn new(map: Option<&'a Map<String, Value>>, path: &str) -> Self {
        Fields {
            map,
            path: path.to_string(),
        }
    }

    /// The raw value of a key, `None` when absent or null.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn boolean(&self, key: &str, default: bool, p: &mut Problems) -> bool {
        match self.raw(key) {
            None => default,
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                p.error(
                    &self.path_of(key),
                    format!("expected true or false, got {}", describe(v)),
                );
                default
            }),
        }
    }

    /// A non-negative integer; `what` names the unit in the error ("a number of milliseconds").
    pub fn integer(&self, key: &str, what: &str, default: u64, p: &mut Problems) -> u64 {
        match self.raw(key) {
            None => default,
            Some(v) => parse_u64(v).unwrap_or_else(|| {
                let got = match v {
                    Value::Number(_) => "a negative or fractional number",
                    other => describe(other),
                };
                p.error(&self.path_of(key), format!("expected {what}, got {got}"));
                default
            }),
        }
    }

    pub fn float(&self, key: &str, what: &str, default: f64, p: &mut Problems) -> f64 {
        match self.raw(key) {
            None => default,
            Some(v) => parse_f64(v).unwrap_or_else(|| {
                let got = match v {
                    Value::Number(_) => "a negative number",
                    other => describe(other),
                };
                p.error(&self.path_of(key), format!("expected {what}, got {got}"));
                default
            }),
        }
    }

    pub fn string(&self, key: &str, p: &mut Problems) -> Option<String> {
        match self.raw(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            Some(v) => {
                p.error(
                    &self.path_of(key),
                    format!("expected a string, got {}", describe(v)),
                );
                None
            }
        }
    }

    /// A string whose value is kept as given: empty means "not configured", and a scalar
    /// YAML read as a number or boolean is refused rather than turned into a key.
    pub fn secret(&self, key: &str, p: &mut Problems) -> Option<String> {
        match self.raw(key) {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                let kind = match v {
                    Value::Array(_) | Value::Object(_) => describe(v),
                    _ => "a scalar that is not a string (quote it)",
                };
                p.error(&self.path_of(key), format!("expected a string, got {kind}"));
                None
            }
        }
    }

    pub fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        default: T,
        p: &mut Problems,
    ) -> T {
        match self.raw(key) {
            None => default,
            Some(v) => {
                let found = v.as_str().and_then(|s| {
                    choices
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
                });
                match found {
                    Some((_, t)) => *t,
                    None => {
                        p.error(&self.path_of(key), one_of(choices, v));
                        default
                    }
                }
            }
        }
    }

    pub fn string_list(&self, key: &str, p: &mut Problems) -> Option<Vec<String>> {
        match self.raw(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => p.error(
                            &format!("{}[{i}]", self.path_of(key)),
                            format!("expected a string, got {}", describe(other)),
                        ),
                    }
                }
                Some(out)
            }
            Value::String(s) => Some(
                s.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect(),
            ),
            other => {
                p.error(
                    &self.path_of(key),
                    format!("expected a list of strings, got {}", describe(other)),
                );
                None
            }
        }
    }
}

/// "expected one of a, b, c": the allowed values are safe to list, the given one is not
/// shown (see [`describe`]).
pub fn expected_one_of<T>(choices: &[(&str, T)]) -> String {
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    format!("expected one of {}", names.join(", "))
}

/// [`expected_one_of`], naming a value of another kind than a string by its kind.
pub fn one_of<T>(choices: &[(&str, T)], given: &Value) -> String {
    match given {
        Value::String(_) => expected_one_of(choices),
        other => format!("{}, got {}", expected_one_of(choices), describe(other)),
    }
}

pub fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool_str(s),
        _ => None,
    }
}

/// Accepts the spellings operators use in environment variables.
pub fn parse_bool_str(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub fn parse_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn parse_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite() && *f >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(expand_str("a-${SET}-b", &env), ("a-value-b".into(), false));
        assert_eq!(expand_str("${UNSET:-dflt}", &env), ("dflt".into(), false));
        assert_eq!(expand_str("${EMPTY:-dflt}", &env), ("dflt".into(), false));
        assert_eq!(expand_str("x${UNSET}y", &env), ("xy".into(), true));
        assert_eq!(expand_str("no vars", &env), ("no vars".into(), false));
        assert_eq!(expand_str("${broken", &env), ("${broken".into(), false));
    }

    #[test]
    fn a_lone_unset_reference_becomes_null() {
        let mut v = serde_json::json!({"p": {"api_key": "${UNSET}", "url": "http://${UNSET}:1", "d": "${UNSET:-x}"}});
        let unset = expand_env(&mut v, &env, "");
        assert_eq!(unset, vec!["p.api_key".to_string()]);
        assert_eq!(v["p"]["api_key"], Value::Null);
        assert_eq!(v["p"]["url"], "http://:1");
        assert_eq!(v["p"]["d"], "x");
    }
}
