//! The job report: failures grouped by reason, read from the durable records.

use std::collections::BTreeMap;

use dockyard_common::error::DockyardError;
use dockyard_common::ids::JobId;
use dockyard_proto::v1 as pb;

use crate::model::TaskState;
use crate::store::Store;

const EXAMPLES: usize = 5;

/// Engines print long, multi-line errors; group on their first line, bounded.
fn normalise(reason: &str) -> String {
    let first = reason.lines().next().unwrap_or("").trim();
    first.chars().take(200).collect()
}

pub fn failure_groups(store: &Store, job: &JobId) -> Result<Vec<pb::FailureGroup>, DockyardError> {
    let mut groups: BTreeMap<(String, String), (u32, Vec<String>)> = BTreeMap::new();
    for (tid, rec) in store.job_task_records(job)? {
        if let TaskState::Failed { reason } = rec.state {
            let g = groups.entry(("task".into(), normalise(&reason))).or_default();
            g.0 += 1;
            if g.1.len() < EXAMPLES {
                g.1.push(tid.to_string());
            }
        }
    }
    for (name, reason) in store.ligand_errors(job)? {
        let g = groups.entry(("ligand".into(), normalise(&reason))).or_default();
        g.0 += 1;
        if g.1.len() < EXAMPLES {
            g.1.push(name);
        }
    }
    let mut out: Vec<pb::FailureGroup> = groups
        .into_iter()
        .map(|((kind, reason), (count, examples))| pb::FailureGroup {
            kind,
            reason,
            count,
            examples,
            stage: String::new(),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_on_their_first_line() {
        assert_eq!(normalise("PDBQT parsing error\n > ATOM 1"), "PDBQT parsing error");
        assert_eq!(normalise(&"x".repeat(500)).len(), 200);
    }
}
