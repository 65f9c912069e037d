//! Request builders and predicates on the replies.

use crate::fixtures::{read_shared, receptor_1iep};
use crate::pb;

/// `msg` in a request carrying `authorization: Bearer TOKEN`.
pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let v = format!("Bearer {token}").parse().expect("a token is printable ASCII");
    r.metadata_mut().insert("authorization", v);
    r
}

/// A sleep-engine SubmitJob request.
pub fn sleep_request(count: u32, sleep_ms: u32, priority: i32) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        name: format!("sleep-{count}x{sleep_ms}ms-p{priority}"),
        engine: "sleep".into(),
        priority,
        sleep_task_count: count,
        params: Some(pb::EngineParams {
            sleep_ms,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A sleep-engine job that writes real artifacts (a pose file and an engine log per
/// ligand) for `n` made-up ligands: the sleep engine takes ligands only in a funnel, so it
/// is one of two stages, the second keeping every ligand.
pub fn sleep_docking_request(n: usize) -> pb::SubmitJobRequest {
    sleep_funnel_request(
        n,
        n as u32,
        10,
        vec![crate::stage("dock", |_| {}), crate::stage("keep", |s| s.keep_top = n as u32)],
    )
}

/// A funnel of sleep-engine stages over `ligands` made-up SMILES named L0, L1, ...
/// (`batch_size` ligands per task, `sleep_ms` per task). The sleep engine scores ligand `i`
/// of a stage -1.00 - i/100, so a test knows which ligands each stage keeps.
pub fn sleep_funnel_request(ligands: usize, batch_size: u32, sleep_ms: u32, stages: Vec<pb::Stage>) -> pb::SubmitJobRequest {
    let library: String = (0..ligands).map(|i| format!("{} L{i}\n", "C".repeat(i % 5 + 1))).collect();
    pb::SubmitJobRequest {
        name: "funnel".into(),
        engine: "sleep".into(),
        receptor: Some(input("1iep_receptor.pdbqt", read_shared(&receptor_1iep()))),
        ligands: vec![input("library.smi", library.into_bytes())],
        r#box: Some(pb::DockingBox {
            center: Some(vec3(15.190, 53.903, 16.917)),
            size: Some(vec3(20.0, 20.0, 20.0)),
        }),
        params: Some(pb::EngineParams {
            sleep_ms,
            ..Default::default()
        }),
        batch_size,
        stages,
        ..Default::default()
    }
}

/// A funnel stage named `name`, as `f` sets it.
pub fn stage(name: &str, f: impl FnOnce(&mut pb::Stage)) -> pb::Stage {
    let mut s = pb::Stage {
        name: name.into(),
        ..Default::default()
    };
    f(&mut s);
    s
}

/// An inline input file.
pub fn input(name: &str, content: impl Into<Vec<u8>>) -> pb::InputFile {
    pb::InputFile {
        name: name.to_string(),
        source: Some(pb::input_file::Source::Content(content.into())),
    }
}

pub fn vec3(x: f64, y: f64, z: f64) -> pb::Vec3 {
    pb::Vec3 { x, y, z }
}

/// A vina request docking `ligands` into the 1iep receptor with the example box.
pub fn vina_1iep_request(ligands: Vec<pb::InputFile>) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        name: "vina-1iep".into(),
        engine: "vina".into(),
        receptor: Some(input("1iep_receptor.pdbqt", read_shared(&receptor_1iep()))),
        ligands,
        r#box: Some(pb::DockingBox {
            center: Some(vec3(15.190, 53.903, 16.917)),
            size: Some(vec3(20.0, 20.0, 20.0)),
        }),
        params: Some(pb::EngineParams {
            exhaustiveness: 1,
            seed: 42,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn state(j: &pb::Job) -> pb::JobState {
    pb::JobState::try_from(j.state).unwrap_or(pb::JobState::Unspecified)
}

pub fn counts(j: &pb::Job) -> pb::TaskCounts {
    j.tasks.unwrap_or_default()
}

pub fn is_final(j: &pb::Job) -> bool {
    matches!(
        state(j),
        pb::JobState::Succeeded | pb::JobState::Partial | pb::JobState::Failed | pb::JobState::Cancelled
    )
}

pub fn node_state(n: &pb::Node) -> pb::NodeState {
    pb::NodeState::try_from(n.state).unwrap_or(pb::NodeState::Unspecified)
}

/// One line: state, counts, reason, error.
pub fn describe_job(j: &pb::Job) -> String {
    let c = counts(j);
    format!(
        "job {} {:?} tasks total={} queued={} running={} succeeded={} failed={} cancelled={} unschedulable={:?} error={:?}",
        j.job_id,
        state(j),
        c.total,
        c.queued,
        c.running,
        c.succeeded,
        c.failed,
        c.cancelled,
        j.unschedulable_reason,
        j.error
    )
}
