//! `deploy/`: the compose file, the Kubernetes manifests, the systemd units and the local
//! cluster script agree with each other and with the flags the binaries really have; and
//! `deploy/local/cluster.sh` starts a working cluster and stops all of it.

// Helpers live in tests/tests/deploy/ (a folder, so cargo makes no test binary of them);
// a crate root's `mod x;` would look for them beside this file, hence the paths.
#[path = "deploy/cluster.rs"]
mod cluster;
#[path = "deploy/compose.rs"]
mod compose;
#[path = "deploy/flags.rs"]
mod flags;
#[path = "deploy/k8s.rs"]
mod k8s;
#[path = "deploy/support.rs"]
mod support;
#[path = "deploy/systemd.rs"]
mod systemd;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dockyard_tests::{bin_dir, binary, processes_mentioning};
use serde_yaml_ng::Value;

use crate::cluster::{free_base_port, run, text, StopOnDrop, CLUSTER_PROCESSES};
use crate::compose::{compose, compose_binary, mount_holding, mounts, service_command, service_script};
use crate::flags::{deploy_usages, help_of};
use crate::k8s::{check_pod_template, container_args, resolved_args, secret_holding, workload_binary, K8s};
use crate::support::{at, deploy, flag_value, mapping_keys, read, seq_at, str_at, strings};
use crate::systemd::{env_file, parse_unit, UNITS};

/// Flags that would give an agent etcd access: the deploy files give agents none.
const NO_ETCD_FOR_AGENTS: [&str; 7] = [
    "--etcd",
    "--cluster",
    "--etcd-user",
    "--etcd-password-file",
    "--etcd-ca",
    "--etcd-cert",
    "--etcd-key",
];

// ----- compose -----

#[test]
fn compose_file_is_coherent() {
    let c = compose();
    let services = at(&c, &["services"]).and_then(Value::as_mapping).expect("compose has services");
    let names: BTreeSet<String> = services.keys().filter_map(|k| k.as_str().map(str::to_string)).collect();
    for want in ["etcd", "minio", "coordinator-1", "coordinator-2", "agent"] {
        assert!(names.contains(want), "compose.yaml has no `{want}` service (has {names:?})");
    }
    let svc = |n: &str| services.get(n).unwrap_or_else(|| panic!("no service {n}"));

    // Scaling: `--scale agent=N` needs no fixed container name and no fixed host port.
    let agent = svc("agent");
    assert!(
        agent.get("container_name").is_none(),
        "the agent service must not set container_name"
    );
    assert!(agent.get("ports").is_none(), "the agent service must not publish host ports");
    assert_eq!(compose_binary(agent), Some("dockyard-agent"));

    // One-shot jobs (another service waits for them to complete) need no healthcheck.
    let mut one_shot = BTreeSet::new();
    for (_, s) in services {
        if let Some(deps) = s.get("depends_on").and_then(Value::as_mapping) {
            for (dep, cond) in deps {
                if str_at(cond, &["condition"]) == Some("service_completed_successfully") {
                    one_shot.insert(dep.as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    let declared_volumes = mapping_keys(c.get("volumes"));
    let compose_dir = deploy("compose");
    for (name, s) in services {
        let name = name.as_str().expect("service names are strings");
        if one_shot.contains(name) {
            assert_eq!(str_at(s, &["restart"]), Some("no"), "one-shot service {name} must not restart");
        } else {
            let test = seq_at(s, &["healthcheck", "test"]);
            assert!(
                test.len() >= 2 && matches!(test[0].as_str(), Some("CMD" | "CMD-SHELL")),
                "service {name} needs a healthcheck with a CMD/CMD-SHELL test, has {:?}",
                s.get("healthcheck")
            );
        }
        // depends_on names real services.
        let deps: BTreeSet<String> = match s.get("depends_on") {
            Some(Value::Sequence(v)) => strings(v).into_iter().collect(),
            other => mapping_keys(other),
        };
        for d in deps {
            assert!(names.contains(&d), "service {name} depends on unknown service {d}");
        }
        // Named volumes are declared; files bind-mounted from the repository exist.
        for m in mounts(s) {
            if m.is_named() {
                assert!(
                    declared_volumes.contains(&m.source),
                    "service {name} mounts undeclared volume {}",
                    m.source
                );
            } else if m.source.starts_with('.') {
                let src = compose_dir.join(&m.source);
                assert!(src.exists(), "service {name} bind-mounts {}, which does not exist", src.display());
            }
        }
        // Every Dockerfile named exists, relative to the build context.
        if let Some(b) = s.get("build") {
            let ctx = compose_dir.join(str_at(b, &["context"]).unwrap_or("."));
            let df = ctx.join(str_at(b, &["dockerfile"]).unwrap_or("Dockerfile"));
            assert!(df.is_file(), "service {name} builds {} which does not exist", df.display());
            assert!(
                ctx.join("Cargo.toml").is_file(),
                "service {name}: build context {} is not the repository root",
                ctx.display()
            );
        }
    }

    // etcd runs with authentication on, so its healthcheck cannot be an anonymous
    // `etcdctl endpoint health` (a quorum read etcd refuses without a user).
    let etcd_health = strings(seq_at(svc("etcd"), &["healthcheck", "test"])).join(" ");
    assert!(
        !etcd_health.contains("endpoint health") || etcd_health.contains("--user"),
        "etcd's healthcheck `{etcd_health}` fails once auth is on ('user name is empty')"
    );

    // Coordinators: cluster mode, advertising the name other containers reach them by.
    let coordinators: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| compose_binary(svc(n)) == Some("dockyard-coordinator"))
        .collect();
    assert_eq!(coordinators, ["coordinator-1", "coordinator-2"], "coordinator services");
    let mut data_volumes = BTreeSet::new();
    let mut artifacts = BTreeSet::new();
    let mut clusters = BTreeSet::new();
    let mut advertised = BTreeSet::new();
    let mut secret_volumes = BTreeSet::new();
    for n in &coordinators {
        let s = svc(n);
        let cmd = service_command(s);
        let etcd = flag_value(&cmd, "--etcd").unwrap_or_else(|| panic!("{n} has no --etcd: {cmd:?}"));
        assert!(etcd.contains("etcd:2379"), "{n} --etcd {etcd} does not name the etcd service");
        let adv = flag_value(&cmd, "--advertise").unwrap_or_else(|| panic!("{n} has no --advertise: {cmd:?}"));
        let listen = flag_value(&cmd, "--listen").unwrap_or_else(|| panic!("{n} has no --listen"));
        let port = listen.rsplit(':').next().unwrap_or_default();
        assert_eq!(
            adv,
            format!("http://{n}:{port}"),
            "{n} must advertise its service name and listen port"
        );
        advertised.insert(adv);
        // Its own etcd user, the password on a read-only volume that the one-shot
        // etcd-auth writes after `setup-auth.sh init` made the users.
        assert_eq!(
            flag_value(&cmd, "--etcd-user").as_deref(),
            Some("dockyard-coordinator"),
            "{n}: --etcd-user"
        );
        let pw = flag_value(&cmd, "--etcd-password-file").unwrap_or_else(|| panic!("{n} has no --etcd-password-file"));
        let m = mount_holding(s, &pw).unwrap_or_else(|| panic!("{n}: no volume mounted where {pw} lies"));
        assert!(m.is_named() && m.read_only, "{n}: {pw} must be on a named volume mounted :ro");
        let file = pw.rsplit('/').next().unwrap_or_default();
        let writer = one_shot
            .iter()
            .find(|w| {
                let ws = svc(w);
                service_script(ws).contains(&format!("/{file}")) && mounts(ws).iter().any(|wm| wm.source == m.source && !wm.read_only)
            })
            .unwrap_or_else(|| panic!("{n}: no one-shot service writes {file} into volume {}", m.source));
        assert_eq!(
            str_at(svc(n), &["depends_on", writer.as_str(), "condition"]),
            Some("service_completed_successfully"),
            "{n} must wait for {writer}"
        );
        secret_volumes.insert((writer.clone(), m.source.clone()));
        let data = flag_value(&cmd, "--data-dir").unwrap_or_else(|| panic!("{n} has no --data-dir"));
        let vol = strings(seq_at(s, &["volumes"]))
            .into_iter()
            .find(|v| v.split(':').nth(1) == Some(data.as_str()))
            .unwrap_or_else(|| panic!("{n}: no volume mounted at its --data-dir {data}"));
        assert!(
            data_volumes.insert(vol.split(':').next().unwrap_or_default().to_string()),
            "{n} shares a data volume"
        );
        artifacts.insert(flag_value(&cmd, "--artifacts").unwrap_or_else(|| panic!("{n} has no --artifacts")));
        clusters.insert(flag_value(&cmd, "--cluster").unwrap_or_default());
        let env = mapping_keys(s.get("environment"));
        for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
            assert!(env.contains(k), "{n} lacks {k} for the S3 store");
        }
    }
    assert_eq!(clusters.len(), 1, "coordinators must name one cluster: {clusters:?}");
    let cluster = clusters.into_iter().next().unwrap_or_default();

    // The one-shot that hands out the password made the users with setup-auth.sh (the file
    // in the repository, bind-mounted), for the coordinators' cluster, and keeps root's
    // password on a volume no Dockyard service mounts.
    for (writer, _) in &secret_volumes {
        let w = svc(writer);
        let script = service_script(w);
        let mount = mounts(w)
            .into_iter()
            .find(|m| m.target.ends_with("setup-auth.sh"))
            .unwrap_or_else(|| panic!("{writer} does not mount setup-auth.sh"));
        assert!(
            compose_dir.join(&mount.source).canonicalize().ok() == deploy("etcd/setup-auth.sh").canonicalize().ok(),
            "{writer} mounts {} instead of deploy/etcd/setup-auth.sh",
            mount.source
        );
        let init = format!("{} init {cluster} ", mount.target);
        let root_dir = script
            .split(&init)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{writer} does not run `setup-auth.sh init {cluster} DIR`: {script}"));
        let holder = mount_holding(w, &format!("{root_dir}/root")).unwrap_or_else(|| panic!("{writer}: {root_dir} is on no volume"));
        assert!(holder.is_named(), "{writer}: {root_dir} must be a named volume");
        for (other, o) in services {
            if compose_binary(o).is_some() {
                assert!(
                    mounts(o).iter().all(|m| m.source != holder.source),
                    "{}: mounts {}, which holds etcd's root password",
                    other.as_str().unwrap_or_default(),
                    holder.source
                );
            }
        }
        assert!(
            str_at(w, &["environment", "ETCDCTL_ENDPOINTS"]).is_some_and(|e| e.contains("etcd:2379")),
            "{writer}: ETCDCTL_ENDPOINTS must name the etcd service"
        );
        assert_eq!(
            str_at(w, &["depends_on", "etcd", "condition"]),
            Some("service_healthy"),
            "{writer} must wait for etcd"
        );
    }
    assert!(!secret_volumes.is_empty(), "no coordinators");

    // Agents: no etcd access at all; they ask every coordinator who leads. Same store.
    let cmd = service_command(agent);
    for f in NO_ETCD_FOR_AGENTS {
        assert!(
            flag_value(&cmd, f).is_none(),
            "the agent must not use {f} (no etcd access): {cmd:?}"
        );
    }
    let named: BTreeSet<String> = flag_value(&cmd, "--coordinator")
        .unwrap_or_else(|| panic!("agent has no --coordinator: {cmd:?}"))
        .split(',')
        .map(|u| u.trim().to_string())
        .collect();
    assert_eq!(named, advertised, "the agent's --coordinator must name every coordinator");
    for m in mounts(agent) {
        assert!(
            secret_volumes.iter().all(|(_, v)| *v != m.source),
            "the agent mounts {}, the coordinators' etcd password",
            m.source
        );
    }
    assert!(
        !mapping_keys(agent.get("depends_on")).contains("etcd"),
        "the agent does not use etcd; it need not wait for it"
    );
    artifacts.insert(flag_value(&cmd, "--artifacts").unwrap_or_else(|| panic!("agent has no --artifacts")));
    assert_eq!(artifacts.len(), 1, "coordinators and agents must share one store: {artifacts:?}");
    let store = artifacts.into_iter().next().unwrap_or_default();
    let bucket = store
        .strip_prefix("s3://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("artifacts {store} is not an s3:// URI"));
    assert!(
        store.contains("endpoint=http://minio:9000"),
        "artifacts {store} must point at the minio service"
    );
    // The one-shot bucket job creates that bucket.
    let creates_bucket = one_shot.iter().any(|n| {
        let s = svc(n);
        let text = strings(seq_at(s, &["entrypoint"])).join(" ") + &strings(seq_at(s, &["command"])).join(" ");
        text.contains("mc mb") && text.contains(&format!("/{bucket}"))
    });
    assert!(creates_bucket, "no one-shot service runs `mc mb .../{bucket}`");

    // Every ${VAR} compose reads is in .env.example.
    let text = read(&deploy("compose/compose.yaml"));
    let env_example = read(&deploy("compose/.env.example"));
    let defined: BTreeSet<&str> = env_example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    for part in text.split("${").skip(1) {
        let var: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        assert!(
            defined.contains(var.as_str()),
            "compose.yaml uses ${{{var}}} which .env.example does not set"
        );
    }
}

#[test]
fn dockerfiles_build_non_root_images_with_the_probe() {
    for (file, bin) in [
        ("Dockerfile.coordinator", "dockyard-coordinator"),
        ("Dockerfile.agent", "dockyard-agent"),
    ] {
        let text = read(&deploy(&format!("compose/{file}")));
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
        let froms: Vec<&str> = lines.iter().filter(|l| l.starts_with("FROM ")).copied().collect();
        assert!(froms.len() >= 2, "{file}: multi-stage build expected, FROM lines {froms:?}");
        assert!(
            froms[0].contains("rust:1.95-bookworm"),
            "{file}: builder must be rust:1.95-bookworm"
        );
        assert!(
            froms.last().is_some_and(|f| f.contains("debian:bookworm-slim")),
            "{file}: runtime must be debian:bookworm-slim"
        );
        assert!(
            text.contains("protobuf-compiler"),
            "{file}: the builder needs protoc for etcd-client"
        );
        assert!(text.contains("--locked"), "{file}: build with the committed Cargo.lock");
        assert!(text.contains("grpc_health_probe"), "{file}: the healthchecks use grpc_health_probe");
        let user = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{file}: no USER"));
        assert!(!user.starts_with("root") && !user.starts_with('0'), "{file}: runs as root ({user})");
        let entry = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("ENTRYPOINT "))
            .unwrap_or_else(|| panic!("{file}: no ENTRYPOINT"));
        assert!(entry.contains(&format!("\"{bin}\"")), "{file}: ENTRYPOINT {entry} is not {bin}");
        assert!(
            text.contains(&format!("target/release/{bin}")),
            "{file}: does not copy target/release/{bin}"
        );
        // A dockerignore beside the Dockerfile keeps target/ out of the build context.
        let ignore = read(&deploy(&format!("compose/{file}.dockerignore")));
        assert!(
            ignore.lines().any(|l| l.trim() == "target/" || l.trim() == "target"),
            "{file}.dockerignore"
        );
    }
    let agent = read(&deploy("compose/Dockerfile.agent"));
    for pkg in ["autodock-vina", "openbabel"] {
        assert!(agent.contains(pkg), "Dockerfile.agent must install {pkg}");
    }
}

// ----- Kubernetes -----

#[test]
fn kubernetes_manifests_are_coherent() {
    let k = K8s::load();
    assert_eq!(k.of_kind("Namespace").len(), 1, "one Namespace");
    assert!(!k.of_kind("ConfigMap").is_empty(), "a ConfigMap with the cluster settings");
    assert!(!k.of_kind("Secret").is_empty(), "an example Secret with the S3 credentials");

    // Coordinators: a StatefulSet with its own volumes, readiness = leadership.
    let sts = k.of_kind("StatefulSet");
    assert_eq!(sts.len(), 1, "one StatefulSet (the coordinators)");
    let (sname, s) = sts[0];
    assert_eq!(at(s, &["spec", "replicas"]).and_then(Value::as_u64), Some(2), "{sname}: 2 replicas");
    let containers = check_pod_template(&k, sname, s);
    let c = &containers[0];
    assert_eq!(
        workload_binary(c),
        Some("dockyard-coordinator"),
        "{sname} runs the coordinator image"
    );
    let vcts: Vec<&str> = seq_at(s, &["spec", "volumeClaimTemplates"])
        .iter()
        .filter_map(|v| str_at(v, &["metadata", "name"]))
        .collect();
    assert!(!vcts.is_empty(), "{sname} needs volumeClaimTemplates");
    let args = container_args(c);
    let data_dir = flag_value(&args, "--data-dir").expect("--data-dir");
    let mount = seq_at(c, &["volumeMounts"])
        .iter()
        .find(|m| str_at(m, &["mountPath"]) == Some(data_dir.as_str()))
        .unwrap_or_else(|| panic!("{sname}: nothing mounted at --data-dir {data_dir}"));
    assert!(
        vcts.contains(&str_at(mount, &["name"]).unwrap_or_default()),
        "{sname}: the data dir must be a volumeClaimTemplate"
    );
    let ready = at(c, &["readinessProbe", "grpc"]).expect("readiness probe must be a native grpc probe");
    assert_eq!(
        str_at(ready, &["service"]),
        Some("dockyard.v1.JobService"),
        "readiness = leader only"
    );
    let live = at(c, &["livenessProbe", "grpc"]).expect("liveness probe must be a native grpc probe");
    assert_eq!(str_at(live, &["service"]).unwrap_or(""), "", "liveness = overall health");
    // A standby is never Ready: ordered start would never create the second pod.
    assert_eq!(
        str_at(s, &["spec", "podManagementPolicy"]),
        Some("Parallel"),
        "{sname}: podManagementPolicy"
    );
    assert!(flag_value(&args, "--etcd").is_some(), "{sname}: --etcd");
    assert!(flag_value(&args, "--cluster").is_some(), "{sname}: --cluster");
    // Its own etcd user from a Secret, the password a file on that Secret's read-only volume.
    let user = flag_value(&resolved_args(&k, c), "--etcd-user").unwrap_or_else(|| panic!("{sname}: no --etcd-user"));
    let pw = flag_value(&args, "--etcd-password-file").unwrap_or_else(|| panic!("{sname}: no --etcd-password-file"));
    let etcd_secret = secret_holding(&k, sname, s, c, &pw);
    if let Some(var) =
        flag_value(&args, "--etcd-user").and_then(|u| u.strip_prefix("$(").and_then(|v| v.strip_suffix(')')).map(str::to_string))
    {
        let e = seq_at(c, &["env"])
            .iter()
            .find(|e| str_at(e, &["name"]) == Some(var.as_str()))
            .expect("env of --etcd-user");
        assert_eq!(
            str_at(e, &["valueFrom", "secretKeyRef", "name"]),
            Some(etcd_secret.as_str()),
            "{sname}: --etcd-user comes from the Secret with the password"
        );
    } else {
        assert_eq!(user, "dockyard-coordinator", "{sname}: --etcd-user");
    }
    let coord_port = seq_at(c, &["ports"])
        .iter()
        .find_map(|p| at(p, &["containerPort"]).and_then(Value::as_u64))
        .expect("coordinator containerPort");
    // --advertise is the pod's DNS name under the headless Service.
    let svc_name = str_at(s, &["spec", "serviceName"]).expect("serviceName");
    let headless = k
        .get("Service", svc_name)
        .unwrap_or_else(|| panic!("{sname}: serviceName {svc_name} is not a Service"));
    assert_eq!(
        str_at(headless, &["spec", "clusterIP"]),
        Some("None"),
        "{svc_name} must be headless"
    );
    let adv = flag_value(&args, "--advertise").expect("--advertise");
    assert!(
        adv.starts_with(&format!("http://$(POD_NAME).{svc_name}.")),
        "--advertise {adv} must be the pod's name under {svc_name}"
    );
    let pod_name = seq_at(c, &["env"])
        .iter()
        .find(|e| str_at(e, &["name"]) == Some("POD_NAME"))
        .expect("POD_NAME env");
    assert_eq!(str_at(pod_name, &["valueFrom", "fieldRef", "fieldPath"]), Some("metadata.name"));
    // Services that select the coordinators: the headless one and a client one.
    let pod_labels = at(s, &["spec", "template", "metadata", "labels"])
        .and_then(Value::as_mapping)
        .expect("labels");
    let port_names: BTreeSet<&str> = seq_at(c, &["ports"]).iter().filter_map(|p| str_at(p, &["name"])).collect();
    let mut client_services = 0;
    for (n, svc) in k.of_kind("Service") {
        let sel = at(svc, &["spec", "selector"])
            .and_then(Value::as_mapping)
            .expect("service selector");
        assert!(
            sel.iter().all(|(kk, vv)| pod_labels.get(kk) == Some(vv)),
            "Service {n} selects no coordinator pod"
        );
        for p in seq_at(svc, &["spec", "ports"]) {
            if let Some(t) = str_at(p, &["targetPort"]) {
                assert!(port_names.contains(t), "Service {n}: targetPort {t} is not a container port");
            }
        }
        if str_at(svc, &["spec", "clusterIP"]) != Some("None") {
            client_services += 1;
        }
    }
    assert_eq!(client_services, 1, "one client Service for the coordinators");

    // Agents: a Deployment with resource requests and limits, finding the leader in etcd.
    let deps = k.of_kind("Deployment");
    let (dname, d) = deps
        .iter()
        .find(|(_, d)| {
            seq_at(d, &["spec", "template", "spec", "containers"])
                .iter()
                .any(|c| workload_binary(c) == Some("dockyard-agent"))
        })
        .copied()
        .expect("a Deployment running the agent image");
    let containers = check_pod_template(&k, dname, d);
    let c = &containers[0];
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(at(c, &["resources", kind, res]).is_some(), "{dname}: resources.{kind}.{res}");
        }
    }
    let args = container_args(c);
    // No etcd access: the agents ask each coordinator pod who leads.
    for f in NO_ETCD_FOR_AGENTS {
        assert!(flag_value(&args, f).is_none(), "{dname}: agents use no etcd, yet it has {f}");
    }
    let text = serde_yaml_ng::to_string(d).expect("yaml");
    assert!(
        !text.contains(&etcd_secret),
        "{dname} must not see the coordinators' etcd Secret {etcd_secret}"
    );
    let urls: Vec<String> = flag_value(&args, "--coordinator")
        .unwrap_or_else(|| panic!("{dname}: no --coordinator"))
        .split(',')
        .map(str::to_string)
        .collect();
    let replicas = at(s, &["spec", "replicas"]).and_then(Value::as_u64).unwrap_or(1);
    let want: Vec<String> = (0..replicas)
        .map(|i| format!("http://{sname}-{i}.{svc_name}.$(POD_NAMESPACE).svc:{coord_port}"))
        .collect();
    assert_eq!(urls, want, "{dname}: --coordinator must name every coordinator pod");
    let ns = seq_at(c, &["env"])
        .iter()
        .find(|e| str_at(e, &["name"]) == Some("POD_NAMESPACE"))
        .unwrap_or_else(|| panic!("{dname}: no POD_NAMESPACE env"));
    assert_eq!(str_at(ns, &["valueFrom", "fieldRef", "fieldPath"]), Some("metadata.namespace"));
    assert!(flag_value(&args, "--artifacts").is_some(), "{dname}: --artifacts");
}

#[test]
fn artifact_uris_parse_with_the_real_parser() {
    use dockyard_common::artifact::{S3Options, S3Preset};
    let mut uris: Vec<(String, String)> = Vec::new();
    let c = compose();
    if let Some(services) = at(&c, &["services"]).and_then(Value::as_mapping) {
        for (name, s) in services {
            if let Some(u) = flag_value(&service_command(s), "--artifacts") {
                uris.push((format!("compose {}", name.as_str().unwrap_or_default()), u));
            }
        }
    }
    let k = K8s::load();
    for ((kind, name), o) in &k.objects {
        for c in seq_at(o, &["spec", "template", "spec", "containers"]) {
            if let Some(u) = flag_value(&resolved_args(&k, c), "--artifacts") {
                uris.push((format!("k8s {kind}/{name}"), u));
            }
        }
    }
    for (_, _, example) in UNITS {
        if let Some(u) = env_file(&deploy(&format!("systemd/{example}"))).get("DOCKYARD_ARTIFACTS") {
            uris.push((format!("systemd {example}"), u.clone()));
        }
    }
    assert!(uris.len() >= 5, "artifact URIs found: {uris:?}");
    for (place, uri) in uris {
        let o = S3Options::from_uri(&uri).unwrap_or_else(|e| panic!("{place}: --artifacts {uri} does not parse: {e}"));
        assert!(!o.bucket.is_empty(), "{place}: {uri} names no bucket");
        // MinIO and other self-hosted servers need an endpoint and path-style addressing.
        assert!(o.endpoint.is_some(), "{place}: {uri} has no endpoint");
        assert!(
            o.path_style || o.preset == S3Preset::Minio,
            "{place}: {uri} needs preset=minio or path_style=true"
        );
    }
}

// ----- systemd -----

#[test]
fn systemd_units_are_coherent() {
    for (bin, unit, example) in UNITS {
        let u = parse_unit(&deploy(&format!("systemd/{unit}")));
        for s in ["Unit", "Service", "Install"] {
            assert!(u.contains_key(s), "{unit}: no [{s}] section");
        }
        let svc = &u["Service"];
        let one = |k: &str| -> &str {
            let v = svc.get(k).unwrap_or_else(|| panic!("{unit}: no {k}="));
            assert_eq!(v.len(), 1, "{unit}: {k}= given more than once");
            &v[0]
        };
        let exec = one("ExecStart");
        let program = exec.split_whitespace().next().unwrap_or_default();
        assert!(program.starts_with('/'), "{unit}: ExecStart needs an absolute path");
        assert_eq!(
            Path::new(program).file_name().and_then(|f| f.to_str()),
            Some(bin),
            "{unit}: ExecStart {exec}"
        );
        assert_eq!(one("Restart"), "always", "{unit}");
        assert_eq!(one("NoNewPrivileges"), "yes", "{unit}");
        assert_eq!(one("ProtectSystem"), "strict", "{unit}");
        assert!(one("LimitNOFILE").parse::<u64>().is_ok_and(|n| n >= 4096), "{unit}: LimitNOFILE");
        assert_ne!(one("User"), "root", "{unit}: runs as root");
        let env_file_path = one("EnvironmentFile");
        assert!(
            env_file_path.starts_with("/etc/dockyard/") && env_file_path.ends_with(".env"),
            "{unit}: EnvironmentFile={env_file_path}"
        );
        // The example is the file to install there.
        let installed_name = Path::new(env_file_path).file_name().and_then(|f| f.to_str()).unwrap_or_default();
        assert_eq!(format!("{installed_name}.example"), example, "{unit}: example env file name");
        let env = env_file(&deploy(&format!("systemd/{example}")));
        // The folder the binary writes is the one left writable.
        let dir_key = if bin == "dockyard-agent" {
            "DOCKYARD_WORK_DIR"
        } else {
            "DOCKYARD_DATA_DIR"
        };
        let dir = env.get(dir_key).unwrap_or_else(|| panic!("{example}: no {dir_key}"));
        let rw = one("ReadWritePaths");
        assert!(
            rw.split_whitespace().any(|p| p == dir),
            "{unit}: ReadWritePaths={rw} does not cover {dir}"
        );
        if bin == "dockyard-coordinator" {
            assert!(env.contains_key("DOCKYARD_ETCD"), "{example}: cluster mode needs DOCKYARD_ETCD");
            assert!(env.contains_key("DOCKYARD_ADVERTISE"), "{example}: DOCKYARD_ADVERTISE");
            // Its own etcd user; the password file where the unit can read it.
            assert_eq!(
                env.get("DOCKYARD_ETCD_USER").map(String::as_str),
                Some("dockyard-coordinator"),
                "{example}: DOCKYARD_ETCD_USER"
            );
            let pw = env
                .get("DOCKYARD_ETCD_PASSWORD_FILE")
                .unwrap_or_else(|| panic!("{example}: no DOCKYARD_ETCD_PASSWORD_FILE"));
            assert!(pw.starts_with("/etc/dockyard/"), "{example}: DOCKYARD_ETCD_PASSWORD_FILE={pw}");
        } else {
            // Agents hold no etcd credentials: they ask every coordinator who leads.
            let etcd: Vec<&String> = env
                .keys()
                .filter(|k| k.starts_with("DOCKYARD_ETCD") || *k == "DOCKYARD_CLUSTER")
                .collect();
            assert!(etcd.is_empty(), "{example}: agents use no etcd, yet it sets {etcd:?}");
            let coordinators = env
                .get("DOCKYARD_COORDINATOR")
                .unwrap_or_else(|| panic!("{example}: no DOCKYARD_COORDINATOR"));
            assert!(
                coordinators.split(',').filter(|u| u.starts_with("http")).count() >= 2,
                "{example}: DOCKYARD_COORDINATOR={coordinators} must name every coordinator"
            );
        }
    }
}

// ----- flags against the binaries -----

#[test]
fn every_flag_used_in_deploy_exists_in_the_binaries() {
    let mut missing = Vec::new();
    for bin in ["dockyard-coordinator", "dockyard-agent"] {
        let (flags, envs) = help_of(bin);
        let uses = deploy_usages(bin);
        assert!(
            uses.iter().any(|(w, _)| w.starts_with("compose")) && uses.iter().any(|(w, _)| w.starts_with("k8s")),
            "{bin}: found no flags in compose or k8s; is the binary detection broken? {uses:?}"
        );
        assert!(
            uses.iter().any(|(w, _)| w.contains("cluster.sh")),
            "{bin}: no flags found in cluster.sh"
        );
        for (place, name) in uses {
            let ok = if name.starts_with("--") {
                flags.contains(&name)
            } else {
                envs.contains(&name)
            };
            if !ok {
                missing.push(format!("{bin} {name} (used in {place})"));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "flags/variables that deploy/ uses but --help does not list:\n  {}",
        missing.join("\n  ")
    );
}

// ----- the local cluster script, for real -----

#[tokio::test]
async fn local_cluster_script_starts_and_stops() {
    let tmp = tempfile::Builder::new().prefix("dockyard-local-").tempdir().expect("tempdir");
    let dir = tmp.path().join("cluster");
    let dir_s = dir.to_str().expect("utf-8 temp path").to_string();
    let script = deploy("local/cluster.sh");
    let bash = PathBuf::from("bash");
    let bins = bin_dir();
    let bins_s = bins.to_str().expect("utf-8 bin dir").to_string();
    let env = [("DOCKYARD_BIN_DIR", bins_s.as_str())];
    let guard = StopOnDrop {
        script: script.clone(),
        dir: dir.clone(),
    };
    let script_s = script.to_str().expect("utf-8 path").to_string();

    let base = free_base_port().to_string();
    let o = run(
        &bash,
        &[
            &script_s,
            "start",
            "--agents",
            "2",
            "--dir",
            &dir_s,
            "--sleep-engine",
            "--base-port",
            &base,
        ],
        &env,
        Duration::from_secs(240),
    )
    .await;
    assert!(
        o.status.success(),
        "cluster.sh start failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    let out = text(&o.stdout);
    let endpoints = out
        .lines()
        .find_map(|l| l.strip_prefix("export DOCKYARD_COORDINATOR="))
        .unwrap_or_else(|| panic!("start printed no `export DOCKYARD_COORDINATOR=` line:\n{out}"))
        .trim()
        .to_string();
    assert_eq!(endpoints.split(',').count(), 2, "two coordinator endpoints: {endpoints}");
    for n in CLUSTER_PROCESSES {
        assert!(!processes_mentioning(n, &dir).is_empty(), "no {n} process is running from {dir_s}");
    }
    assert_eq!(processes_mentioning("dockyard-coordinator", &dir).len(), 2, "two coordinators");
    assert_eq!(processes_mentioning("dockyard-agent", &dir).len(), 2, "two agents");

    // status: everything alive, exactly one leader.
    let o = run(&bash, &[&script_s, "status", "--dir", &dir_s], &env, Duration::from_secs(60)).await;
    let status = text(&o.stdout);
    assert!(
        o.status.success(),
        "cluster.sh status failed ({}):\n{status}\n{}",
        o.status,
        text(&o.stderr)
    );
    let leaders = status
        .lines()
        .filter(|l| l.starts_with("coordinator-") && l.trim_end().ends_with("leader"))
        .count();
    assert_eq!(leaders, 1, "status must show one leader:\n{status}");

    // The CLI, given both coordinators, reaches the leader; a sleep job succeeds.
    let cli = binary("dockyard");
    let o = run(
        &cli,
        &[
            "--coordinator",
            &endpoints,
            "submit",
            "--engine",
            "sleep",
            "--count",
            "4",
            "--sleep-ms",
            "50",
            "--wait",
        ],
        &[],
        Duration::from_secs(120),
    )
    .await;
    assert!(
        o.status.success(),
        "dockyard --coordinator {endpoints} submit --wait failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    let job = text(&o.stdout).lines().next().unwrap_or_default().trim().to_string();
    assert_eq!(job.len(), 20, "the first stdout line is the job id: {:?}", text(&o.stdout));
    let o = run(
        &cli,
        &["--coordinator", &endpoints, "jobs", "--format", "json"],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert!(o.status.success(), "jobs failed: {}", text(&o.stderr));
    let jobs: serde_json::Value = serde_json::from_slice(&o.stdout).expect("jobs --format json");
    let row = jobs
        .as_array()
        .and_then(|a| a.iter().find(|j| j["job_id"] == job.as_str()))
        .unwrap_or_else(|| panic!("job {job} not listed: {jobs}"));
    assert_eq!(row["state"], "succeeded", "{row}");
    let o = run(
        &cli,
        &["--coordinator", &endpoints, "nodes", "--format", "json"],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert!(o.status.success(), "nodes failed: {}", text(&o.stderr));
    let nodes: serde_json::Value = serde_json::from_slice(&o.stdout).expect("nodes --format json");
    for id in ["local-agent-1", "local-agent-2"] {
        let n = nodes
            .as_array()
            .and_then(|a| a.iter().find(|n| n["node_id"] == id))
            .unwrap_or_else(|| panic!("{id} not listed: {nodes}"));
        assert_eq!(n["state"], "ready", "{n}");
    }

    // stop: everything it started is gone, and the pid files with it.
    let o = run(&bash, &[&script_s, "stop", "--dir", &dir_s], &env, Duration::from_secs(180)).await;
    assert!(o.status.success(), "cluster.sh stop failed ({}): {}", o.status, text(&o.stderr));
    for n in CLUSTER_PROCESSES {
        let left = processes_mentioning(n, &dir);
        assert!(left.is_empty(), "{n} still running after stop: pids {left:?}");
    }
    let pids = dockyard_tests::files_under(&dir.join("pids"));
    assert!(pids.is_empty(), "pid files left after stop: {pids:?}");
    // A second stop has nothing to do and says so.
    let o = run(&bash, &[&script_s, "stop", "--dir", &dir_s], &env, Duration::from_secs(30)).await;
    assert!(o.status.success(), "a second stop failed: {}", text(&o.stderr));
    drop(guard);
}

/// The KEDA ScaledObject (deploy/k8s/keda) scales the agent Deployment of the manifests,
/// in their namespace, on series a real coordinator exports.
#[tokio::test]
async fn keda_scales_the_agent_deployment_on_series_the_coordinator_exports() {
    let path = deploy("k8s/keda/scaledobject.yaml");
    let docs = crate::support::yaml_docs(&path);
    assert_eq!(docs.len(), 1, "{}: one ScaledObject", path.display());
    let so = &docs[0];
    assert_eq!(str_at(so, &["kind"]), Some("ScaledObject"));
    let k8s = K8s::load();
    let target = str_at(so, &["spec", "scaleTargetRef", "name"]).expect("scaleTargetRef.name");
    let deployment = k8s
        .objects
        .get(&("Deployment".to_string(), target.to_string()))
        .unwrap_or_else(|| panic!("no Deployment {target} in deploy/k8s"));
    assert_eq!(
        str_at(so, &["metadata", "namespace"]),
        str_at(deployment, &["metadata", "namespace"])
    );
    let min = at(so, &["spec", "minReplicaCount"])
        .and_then(Value::as_u64)
        .expect("minReplicaCount");
    let max = at(so, &["spec", "maxReplicaCount"])
        .and_then(Value::as_u64)
        .expect("maxReplicaCount");
    assert!(min <= max && max > 0, "replica bounds {min}..{max}");

    let triggers = seq_at(so, &["spec", "triggers"]);
    assert!(!triggers.is_empty(), "no trigger");
    let addr = dockyard_tests::metrics_scrape::free_addr();
    let c = dockyard_tests::TestCluster::builder()
        .coordinator_arg("--metrics-listen")
        .coordinator_arg(&addr)
        .agent(dockyard_tests::AgentOptions::sleep(1))
        .start()
        .await;
    // The queue's series exist from the first job queued (the query copes without them).
    let job = c.submit_sleep(2, 2000, 0).await;
    c.wait_job(&job, |j| dockyard_tests::counts(j).running == 1, dockyard_tests::WAIT)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = dockyard_tests::metrics_scrape::scrape(&addr).await;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for t in triggers {
        assert_eq!(str_at(t, &["type"]), Some("prometheus"));
        let query = str_at(t, &["metadata", "query"]).expect("query");
        let series: Vec<&str> = query
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .filter(|w| w.starts_with("dockyard_"))
            .collect();
        assert!(!series.is_empty(), "the query names no Dockyard series: {query}");
        for s in series {
            assert!(exported.contains(s), "the query's {s} is not exported by the coordinator:\n{text}");
        }
        let threshold: f64 = str_at(t, &["metadata", "threshold"])
            .and_then(|v| v.parse().ok())
            .expect("threshold");
        assert!(threshold > 0.0);
    }
    drop(c);
}
