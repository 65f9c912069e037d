//! Paths into the repository, reading deploy/ files, and walking their YAML and flags.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml_ng::Value;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

pub(crate) fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Every document of a YAML file (`---`-separated), empty ones left out.
pub(crate) fn yaml_docs(p: &Path) -> Vec<Value> {
    let text = read(p);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", p.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// The value at a path of mapping keys, if every step exists.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

pub(crate) fn seq_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or(&[])
}

pub(crate) fn strings(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => panic!("expected a string, got {other:?}"),
        })
        .collect()
}

pub(crate) fn mapping_keys(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `--flag` names in arguments or shell text (`--flag value`, `--flag=value`, `(--flag)`).
pub(crate) fn flags_in<'a>(args: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    args.into_iter()
        .flat_map(|a| a.split(|c: char| c.is_whitespace() || matches!(c, '(' | '"' | '\'')))
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| {
            a.chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect::<String>()
        })
        .filter(|a| !a.is_empty())
        .map(|a| format!("--{a}"))
        .collect()
}

/// The value of `--flag` in an argument list.
pub(crate) fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let eq = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&eq) {
            Some(v.to_string())
        } else if a == flag {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}
