//! Reading deploy/compose: the services and what each runs.

use serde_yaml_ng::Value;

use crate::support::{deploy, seq_at, str_at, strings, yaml_docs};

pub(crate) fn compose() -> Value {
    let docs = yaml_docs(&deploy("compose/compose.yaml"));
    assert_eq!(docs.len(), 1, "compose.yaml must be one YAML document");
    docs.into_iter().next().expect("one document")
}

pub(crate) fn service_command(svc: &Value) -> Vec<String> {
    strings(seq_at(svc, &["command"]))
}

/// Which binary a compose service runs, from the Dockerfile it builds or the image it names.
pub(crate) fn compose_binary(svc: &Value) -> Option<&'static str> {
    let dockerfile = str_at(svc, &["build", "dockerfile"]).unwrap_or_default();
    let image = str_at(svc, &["image"]).unwrap_or_default();
    if dockerfile.ends_with("Dockerfile.coordinator") || image.starts_with("dockyard-coordinator") {
        Some("dockyard-coordinator")
    } else if dockerfile.ends_with("Dockerfile.agent") || image.starts_with("dockyard-agent") {
        Some("dockyard-agent")
    } else {
        None
    }
}

/// A service's `volumes:` entry in short syntax: `SOURCE:TARGET[:MODE]`.
pub(crate) struct Mount {
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) read_only: bool,
}

impl Mount {
    /// A named volume, not a bind mount of a host path.
    pub(crate) fn is_named(&self) -> bool {
        !self.source.starts_with('.') && !self.source.starts_with('/')
    }
}

pub(crate) fn mounts(svc: &Value) -> Vec<Mount> {
    strings(seq_at(svc, &["volumes"]))
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            assert!(parts.len() >= 2, "volume {v} is not SOURCE:TARGET[:MODE]");
            Mount {
                source: parts[0].to_string(),
                target: parts[1].trim_end_matches('/').to_string(),
                read_only: parts.get(2).is_some_and(|m| m.split(',').any(|o| o == "ro")),
            }
        })
        .collect()
}

/// The mount a path inside the container lies on (the deepest one).
pub(crate) fn mount_holding(svc: &Value, path: &str) -> Option<Mount> {
    mounts(svc)
        .into_iter()
        .filter(|m| path.strip_prefix(m.target.as_str()).is_some_and(|rest| rest.starts_with('/')))
        .max_by_key(|m| m.target.len())
}

/// What a service runs, entrypoint and command together, as one string.
pub(crate) fn service_script(svc: &Value) -> String {
    let mut parts = strings(seq_at(svc, &["entrypoint"]));
    parts.extend(service_command(svc));
    parts.join(" ")
}
