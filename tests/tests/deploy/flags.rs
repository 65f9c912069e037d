//! The flags and variables the binaries accept, and every place deploy/ uses one.

use std::collections::BTreeSet;
use std::process::Stdio;

use dockyard_tests::binary;
use serde_yaml_ng::Value;

use crate::compose::{compose, compose_binary, service_command};
use crate::k8s::{container_args, workload_binary, K8s};
use crate::support::{at, deploy, flags_in, mapping_keys, read, seq_at, str_at};
use crate::systemd::{env_file, parse_unit, UNITS};

/// The `--flags` and `DOCKYARD_*` variables a binary's `--help` lists.
pub(crate) fn help_of(bin: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let out = std::process::Command::new(binary(bin))
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} --help: {e}"));
    assert!(
        out.status.success(),
        "{bin} --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = BTreeSet::new();
    for l in text.lines() {
        let t = l.trim_start();
        // Option lines: `--flag <X>` or `-h, --help`.
        let t = if t.len() > 4 && t.starts_with('-') && t.as_bytes()[2] == b',' {
            t[3..].trim_start()
        } else {
            t
        };
        if let Some(f) = t.strip_prefix("--") {
            let name: String = f.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            flags.insert(format!("--{name}"));
        }
    }
    let envs = text
        .split("[env: ")
        .skip(1)
        .map(|p| p.split(['=', ']']).next().unwrap_or_default().to_string())
        .collect();
    (flags, envs)
}

/// Logical lines of a shell script (backslash continuations joined).
pub(crate) fn shell_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in text.lines() {
        let t = l.trim();
        if let Some(s) = t.strip_suffix('\\') {
            cur.push_str(s);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// Every place deploy/ passes a flag or a DOCKYARD_* variable to `bin`: (where, flag-or-var).
pub(crate) fn deploy_usages(bin: &str) -> Vec<(String, String)> {
    let mut uses = Vec::new();
    // compose
    let c = compose();
    if let Some(services) = at(&c, &["services"]).and_then(Value::as_mapping) {
        for (name, s) in services {
            if compose_binary(s) == Some(bin) {
                let name = name.as_str().unwrap_or_default();
                let cmd = service_command(s);
                for f in flags_in(cmd.iter().map(String::as_str)) {
                    uses.push((format!("compose {name}"), f));
                }
                for k in mapping_keys(s.get("environment"))
                    .into_iter()
                    .filter(|k| k.starts_with("DOCKYARD_"))
                {
                    uses.push((format!("compose {name}"), k));
                }
            }
        }
    }
    // Kubernetes
    let k = K8s::load();
    for ((kind, name), o) in &k.objects {
        for c in seq_at(o, &["spec", "template", "spec", "containers"]) {
            if workload_binary(c) == Some(bin) {
                let args = container_args(c);
                for f in flags_in(args.iter().map(String::as_str)) {
                    uses.push((format!("k8s {kind}/{name}"), f));
                }
                for e in seq_at(c, &["env"]) {
                    if let Some(n) = str_at(e, &["name"]).filter(|n| n.starts_with("DOCKYARD_")) {
                        uses.push((format!("k8s {kind}/{name}"), n.to_string()));
                    }
                }
            }
        }
    }
    // systemd
    for (b, unit, example) in UNITS {
        if b == bin {
            let u = parse_unit(&deploy(&format!("systemd/{unit}")));
            let exec = u["Service"]["ExecStart"].join(" ");
            for f in flags_in([exec.as_str()]) {
                uses.push((format!("systemd {unit}"), f));
            }
            for key in env_file(&deploy(&format!("systemd/{example}"))).into_keys() {
                if key.starts_with("DOCKYARD_") {
                    uses.push((format!("systemd {example}"), key));
                }
            }
            // Commented-out settings are suggestions to uncomment: they must exist too.
            for l in read(&deploy(&format!("systemd/{example}"))).lines() {
                if let Some(key) = l.trim_start_matches(['#', ' ']).split_once('=').map(|(k, _)| k) {
                    if key.starts_with("DOCKYARD_") && !key.contains(' ') {
                        uses.push((format!("systemd {example}"), key.to_string()));
                    }
                }
            }
        }
    }
    // The local script: the statement that starts the binary, plus the extra agent flags.
    let script = read(&deploy("local/cluster.sh"));
    for st in shell_statements(&script) {
        let starts_bin = st.starts_with("spawn ") && st.contains(&format!("/{bin}\""));
        let agent_extra = bin == "dockyard-agent" && st.contains("extra+=(");
        if starts_bin || agent_extra {
            for f in flags_in([st.as_str()]) {
                uses.push(("deploy/local/cluster.sh".into(), f));
            }
        }
    }
    uses
}
