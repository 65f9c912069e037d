//! Reading the Kubernetes manifests: objects by kind and name, pod templates, resolved args.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

use crate::support::{at, deploy, mapping_keys, seq_at, str_at, strings, yaml_docs};

pub(crate) struct K8s {
    /// (kind, name) → object.
    pub(crate) objects: BTreeMap<(String, String), Value>,
}

impl K8s {
    pub(crate) fn load() -> K8s {
        let dir = deploy("k8s");
        let kust = yaml_docs(&dir.join("kustomization.yaml"))
            .into_iter()
            .next()
            .expect("kustomization");
        let listed: BTreeSet<String> = strings(seq_at(&kust, &["resources"])).into_iter().collect();
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .expect("deploy/k8s")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        assert_eq!(
            listed, on_disk,
            "kustomization.yaml resources must list exactly the manifests in deploy/k8s"
        );
        let ns = str_at(&kust, &["namespace"]).expect("kustomization namespace").to_string();
        let mut objects = BTreeMap::new();
        for f in &listed {
            let docs = yaml_docs(&dir.join(f));
            assert!(!docs.is_empty(), "{f} has no documents");
            for d in docs {
                let kind = str_at(&d, &["kind"])
                    .unwrap_or_else(|| panic!("{f}: a document without kind"))
                    .to_string();
                let name = str_at(&d, &["metadata", "name"])
                    .unwrap_or_else(|| panic!("{f}: {kind} without a name"))
                    .to_string();
                assert!(str_at(&d, &["apiVersion"]).is_some(), "{f}: {kind}/{name} has no apiVersion");
                if kind == "Namespace" {
                    assert_eq!(name, ns, "{f}: the Namespace differs from kustomization's namespace");
                } else {
                    assert_eq!(
                        str_at(&d, &["metadata", "namespace"]),
                        Some(ns.as_str()),
                        "{f}: {kind}/{name} must be in namespace {ns}"
                    );
                }
                assert!(
                    objects.insert((kind.clone(), name.clone()), d).is_none(),
                    "{kind}/{name} defined twice"
                );
            }
        }
        K8s { objects }
    }

    pub(crate) fn of_kind(&self, kind: &str) -> Vec<(&str, &Value)> {
        self.objects
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, n), v)| (n.as_str(), v))
            .collect()
    }

    pub(crate) fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind.to_string(), name.to_string()))
    }

    /// Keys of a ConfigMap's data or a Secret's data/stringData.
    pub(crate) fn keys(&self, kind: &str, name: &str) -> BTreeSet<String> {
        let o = self
            .get(kind, name)
            .unwrap_or_else(|| panic!("{kind} {name} is referenced but not defined in deploy/k8s"));
        let mut k = mapping_keys(o.get("data"));
        k.extend(mapping_keys(o.get("stringData")));
        k
    }
}

/// Checks one workload's pod template: selector matches labels; every ConfigMap/Secret it
/// references exists with the keys it names; every $(VAR) in args is a declared env var.
/// Returns the containers.
pub(crate) fn check_pod_template<'a>(k: &K8s, what: &str, w: &'a Value) -> &'a [Value] {
    let labels = at(w, &["spec", "template", "metadata", "labels"])
        .and_then(Value::as_mapping)
        .expect("pod labels");
    let sel = at(w, &["spec", "selector", "matchLabels"])
        .and_then(Value::as_mapping)
        .expect("selector");
    for (key, val) in sel {
        assert_eq!(labels.get(key), Some(val), "{what}: selector {key:?} does not match the pod labels");
    }
    let containers = seq_at(w, &["spec", "template", "spec", "containers"]);
    assert!(!containers.is_empty(), "{what} has no containers");
    for c in containers {
        let cname = str_at(c, &["name"]).unwrap_or("?");
        let mut env_names = BTreeSet::new();
        for e in seq_at(c, &["env"]) {
            let n = str_at(e, &["name"]).expect("env name");
            env_names.insert(n.to_string());
            if let Some(r) = at(e, &["valueFrom", "configMapKeyRef"]) {
                let (m, key) = (str_at(r, &["name"]).expect("name"), str_at(r, &["key"]).expect("key"));
                assert!(
                    k.keys("ConfigMap", m).contains(key),
                    "{what}/{cname}: ConfigMap {m} has no key {key}"
                );
            }
            if let Some(r) = at(e, &["valueFrom", "secretKeyRef"]) {
                let (s, key) = (str_at(r, &["name"]).expect("name"), str_at(r, &["key"]).expect("key"));
                assert!(k.keys("Secret", s).contains(key), "{what}/{cname}: Secret {s} has no key {key}");
            }
        }
        for e in seq_at(c, &["envFrom"]) {
            if let Some(m) = str_at(e, &["configMapRef", "name"]) {
                k.keys("ConfigMap", m);
            }
            if let Some(s) = str_at(e, &["secretRef", "name"]) {
                k.keys("Secret", s);
            }
        }
        for a in strings(seq_at(c, &["args"])).iter().chain(strings(seq_at(c, &["command"])).iter()) {
            for part in a.split("$(").skip(1) {
                let var = part.split(')').next().unwrap_or_default();
                assert!(
                    env_names.contains(var),
                    "{what}/{cname}: arg {a} uses $({var}), which is not in env"
                );
            }
        }
    }
    containers
}

pub(crate) fn container_args(c: &Value) -> Vec<String> {
    strings(seq_at(c, &["args"]))
}

pub(crate) fn workload_binary(c: &Value) -> Option<&'static str> {
    let image = str_at(c, &["image"]).unwrap_or_default();
    let base = image.rsplit('/').next().unwrap_or_default();
    if base.starts_with("dockyard-coordinator") {
        Some("dockyard-coordinator")
    } else if base.starts_with("dockyard-agent") {
        Some("dockyard-agent")
    } else {
        None
    }
}

/// A container's args with every $(VAR) replaced by its value (ConfigMap keys and literal
/// values; pod fields become a placeholder).
pub(crate) fn resolved_args(k: &K8s, c: &Value) -> Vec<String> {
    let mut vars = BTreeMap::new();
    for e in seq_at(c, &["env"]) {
        let n = str_at(e, &["name"]).unwrap_or_default().to_string();
        let v = if let Some(v) = str_at(e, &["value"]) {
            v.to_string()
        } else if let Some(r) = at(e, &["valueFrom", "configMapKeyRef"]) {
            let m = k.get("ConfigMap", str_at(r, &["name"]).unwrap_or_default()).expect("ConfigMap");
            str_at(m, &["data", str_at(r, &["key"]).unwrap_or_default()])
                .unwrap_or_default()
                .to_string()
        } else {
            format!("pod-{}", n.to_lowercase().replace('_', "-"))
        };
        vars.insert(n, v);
    }
    container_args(c)
        .into_iter()
        .map(|a| vars.iter().fold(a, |a, (n, v)| a.replace(&format!("$({n})"), v)))
        .collect()
}

/// The Secret a file inside a container comes from: the file must lie directly in a mount
/// (read-only) of a `secret` volume of the pod, under a key (or `items` path) that the Secret
/// has. Returns the Secret's name.
pub(crate) fn secret_holding(k: &K8s, what: &str, w: &Value, c: &Value, file: &str) -> String {
    let (dir, name) = file
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{what}: {file} is not an absolute path"));
    let mount = seq_at(c, &["volumeMounts"])
        .iter()
        .find(|m| str_at(m, &["mountPath"]).map(|p| p.trim_end_matches('/')) == Some(dir))
        .unwrap_or_else(|| panic!("{what}: nothing is mounted at {dir}, where {file} should be"));
    assert_eq!(
        at(mount, &["readOnly"]).and_then(Value::as_bool),
        Some(true),
        "{what}: the mount at {dir} must be readOnly"
    );
    let vname = str_at(mount, &["name"]).expect("volumeMount name");
    let vol = seq_at(w, &["spec", "template", "spec", "volumes"])
        .iter()
        .find(|v| str_at(v, &["name"]) == Some(vname))
        .unwrap_or_else(|| panic!("{what}: volumeMount {vname} names no volume"));
    let secret =
        str_at(vol, &["secret", "secretName"]).unwrap_or_else(|| panic!("{what}: volume {vname} (holding {file}) is not a Secret"));
    let keys = k.keys("Secret", secret);
    let items = seq_at(vol, &["secret", "items"]);
    let key = if items.is_empty() {
        name.to_string()
    } else {
        let item = items
            .iter()
            .find(|i| str_at(i, &["path"]) == Some(name))
            .unwrap_or_else(|| panic!("{what}: Secret volume {vname} has no item with path {name}"));
        str_at(item, &["key"]).expect("item key").to_string()
    };
    assert!(keys.contains(&key), "{what}: Secret {secret} has no key {key} for {file}");
    secret.to_string()
}
