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
