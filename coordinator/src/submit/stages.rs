//! A funnel's stages, read from SubmitJob's `stages`: each one's settings over the job's,
//! checked as the job's own are, plus what only a plan can get wrong (a keep rule on the
//! first stage, a rescoring stage with no poses before it, a rank key its engine lacks).

use std::collections::BTreeSet;
use std::path::Path;

use dockyard_common::artifact::ArtifactStore;
use dockyard_common::error::DockyardError;
use dockyard_common::ids::OrgId;
use dockyard_common::spec::{validate_stage_name, CnnScoring, JobSpec, Keep, RankKey, StagePlan};
use dockyard_proto::v1 as pb;

use super::{library, scalars, SubmitLimits};
use crate::api::convert::dock_box;

/// Gives a stage's error the stage's field name: `params.exhaustiveness` becomes
/// `stages[1].params.exhaustiveness`.
fn in_stage(i: usize, e: DockyardError) -> DockyardError {
    match e {
        DockyardError::InvalidArgument { field, reason } => DockyardError::invalid(format!("stages[{i}].{field}"), reason),
        other => other,
    }
}

/// The job-level settings with stage `i`'s over them, as a request of its own, so each
/// stage is checked by the same code as a one-stage job.
pub(super) fn stage_request(req: &pb::SubmitJobRequest, i: usize) -> pb::SubmitJobRequest {
    let s = &req.stages[i];
    let mut params = req.params.clone().unwrap_or_default();
    if let Some(p) = &s.params {
        let text = |mine: &String, theirs: &mut String| {
            if !mine.is_empty() {
                theirs.clone_from(mine);
            }
        };
        if p.exhaustiveness != 0 {
            params.exhaustiveness = p.exhaustiveness;
        }
        if p.num_modes != 0 {
            params.num_modes = p.num_modes;
        }
        if p.seed != 0 {
            params.seed = p.seed;
        }
        if p.energy_range != 0.0 {
            params.energy_range = p.energy_range;
        }
        if p.sleep_ms != 0 {
            params.sleep_ms = p.sleep_ms;
        }
        text(&p.scoring, &mut params.scoring);
        text(&p.mode, &mut params.mode);
        text(&p.cnn_scoring, &mut params.cnn_scoring);
        text(&p.cnn_model, &mut params.cnn_model);
        text(&p.search_mode, &mut params.search_mode);
        params.no_gpu |= p.no_gpu;
    }
    // Options a different engine does not take are dropped, not refused: a plan that
    // prescreens with rustina (search_mode) and re-docks with vina is the point of stages.
    let engine = if s.engine.is_empty() {
        req.engine.clone()
    } else {
        s.engine.clone()
    };
    if !s.engine.is_empty() && s.engine != req.engine {
        params = carry_over(s.params.as_ref(), params);
    }
    pb::SubmitJobRequest {
        name: req.name.clone(),
        engine,
        params: Some(params),
        priority: req.priority,
        batch_size: if s.batch_size == 0 { req.batch_size } else { s.batch_size },
        max_attempts: req.max_attempts,
        gpus_per_task: s.gpus_per_task.unwrap_or(req.gpus_per_task),
        timeout_s: if s.timeout_s == 0 { req.timeout_s } else { s.timeout_s },
        labels: req.labels.clone(),
        fresh: req.fresh,
        cpus_per_task: s.cpus_per_task.or(req.cpus_per_task),
        prepare: req.prepare.clone(),
        protonate: req.protonate,
        ..Default::default()
    }
}

/// A stage naming its own engine takes the job's numeric settings but only the engine
/// options (scoring, mode, CNN, search mode) it names itself.
fn carry_over(own: Option<&pb::EngineParams>, merged: pb::EngineParams) -> pb::EngineParams {
    let own = own.cloned().unwrap_or_default();
    pb::EngineParams {
        scoring: own.scoring,
        mode: own.mode,
        cnn_scoring: own.cnn_scoring,
        cnn_model: own.cnn_model,
        search_mode: own.search_mode,
        no_gpu: own.no_gpu,
        ..merged
    }
}

/// Resolves every stage of `req` against the job `base` (whose own settings are stage 1's).
pub(super) async fn resolve(
    req: &pb::SubmitJobRequest,
    base: &JobSpec,
    org: &OrgId,
    store: &dyn ArtifactStore,
    dir: &Path,
    limits: &SubmitLimits,
) -> Result<Vec<StagePlan>, DockyardError> {
    let mut plans: Vec<StagePlan> = Vec::with_capacity(req.stages.len());
    let mut names = BTreeSet::new();
    for (i, s) in req.stages.iter().enumerate() {
        let one = scalars(&stage_request(req, i), org, 0).map_err(|e| in_stage(i, e))?;
        let name = if s.name.is_empty() { format!("s{}", i + 1) } else { s.name.clone() };
        validate_stage_name(i, &name)?;
        if !names.insert(name.clone()) {
            return Err(DockyardError::invalid(
                format!("stages[{i}].name"),
                format!("'{name}' names two stages; stage names must differ"),
            ));
        }
        let rank = RankKey::parse(&s.rank_by).map_err(|e| in_stage(i, e))?;
        if let Some(k) = rank.filter(|k| *k != RankKey::Score) {
            let t = one.engine.traits();
            let cnn_on = !t.cnn_scorings.is_empty() && one.params.extra.cnn_scoring != Some(CnnScoring::None);
            if !cnn_on {
                return Err(DockyardError::invalid(
                    format!("stages[{i}].rank_by"),
                    format!("{} is not computed by {} with these options; rank by score", k.name(), one.engine),
                ));
            }
        }
        let keep = Keep::from_proto(i, s)?;
        let receptor = match &s.receptor {
            Some(f) => {
                let r = library::read_receptor(f, org, store, dir, limits)
                    .await
                    .map_err(|e| in_stage(i, e))?;
                Some(library::store_receptor(r, org, store).await?)
            }
            None => None,
        };
        let dock_box = match &s.r#box {
            Some(b) => Some(dock_box(Some(b)).map_err(|e| in_stage(i, e))?),
            None => None,
        };
        let plan = StagePlan {
            name,
            engine: one.engine,
            params: one.params,
            gpus_per_task: one.gpus_per_task,
            cpus_per_task: one.cpus_per_task,
            batch_size: one.batch_size,
            timeout_s: one.timeout_s,
            rank_by: rank.unwrap_or(one.engine.traits().rank_key).name().to_string(),
            receptor,
            dock_box,
            keep,
        };
        if plan.rescores() {
            let before = i.checked_sub(1).map(|p| &plans[p]);
            match before {
                None => {
                    return Err(DockyardError::invalid(
                        format!("stages[{i}].params.mode"),
                        "the first stage has no poses to rescore: it docks the library (mode dock)",
                    ))
                }
                Some(p) if !p.writes_poses() => {
                    return Err(DockyardError::invalid(
                        format!("stages[{i}].params.mode"),
                        format!("stage '{}' before it writes no poses (mode score_only): nothing to rescore", p.name),
                    ))
                }
                Some(_) => {}
            }
        }
        if let (Some(Keep::MaxScore(_)), Some(p)) = (keep, i.checked_sub(1).map(|p| &plans[p])) {
            if p.rank_key() != RankKey::Score {
                return Err(DockyardError::invalid(
                    format!("stages[{i}].max_score"),
                    format!(
                        "compares scores, but stage '{}' ranks by {}: use keep_top or keep_percent",
                        p.name, p.rank_by
                    ),
                ));
            }
        }
        plans.push(plan);
    }
    if let Some(first) = plans.first() {
        debug_assert_eq!(first.engine, base.engine);
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(stages: Vec<pb::Stage>) -> pb::SubmitJobRequest {
        pb::SubmitJobRequest {
            engine: "vina".into(),
            params: Some(pb::EngineParams {
                exhaustiveness: 4,
                ..Default::default()
            }),
            stages,
            ..Default::default()
        }
    }

    #[test]
    fn a_stage_takes_the_jobs_settings_unless_it_sets_its_own() {
        let r = req(vec![
            pb::Stage::default(),
            pb::Stage {
                params: Some(pb::EngineParams {
                    exhaustiveness: 32,
                    num_modes: 20,
                    ..Default::default()
                }),
                keep_percent: 5.0,
                ..Default::default()
            },
            pb::Stage {
                engine: "smina".into(),
                params: Some(pb::EngineParams {
                    mode: "score_only".into(),
                    ..Default::default()
                }),
                keep_top: 10,
                ..Default::default()
            },
        ]);
        let s0 = stage_request(&r, 0);
        assert_eq!(
            (s0.engine.as_str(), s0.params.as_ref().map(|p| p.exhaustiveness)),
            ("vina", Some(4))
        );
        let s1 = stage_request(&r, 1).params.expect("params");
        assert_eq!((s1.exhaustiveness, s1.num_modes), (32, 20));
        let s2 = stage_request(&r, 2);
        assert_eq!(s2.engine, "smina");
        assert_eq!(
            s2.params.as_ref().map(|p| (p.exhaustiveness, p.mode.as_str())),
            Some((4, "score_only"))
        );
    }

    #[tokio::test]
    async fn impossible_plans_are_refused_with_the_stage_and_the_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = dockyard_common::artifact::LocalStore::open(dir.path().join("a")).expect("store");
        let base = scalars(&req(Vec::new()), &OrgId::default_org(), 0).expect("base");
        let rescore = |keep: u32| pb::Stage {
            engine: "smina".into(),
            params: Some(pb::EngineParams {
                mode: "score_only".into(),
                ..Default::default()
            }),
            keep_top: keep,
            ..Default::default()
        };
        let cases: Vec<(Vec<pb::Stage>, &str, &str)> = vec![
            (vec![rescore(0)], "stages[0].params.mode", "no poses to rescore"),
            (
                vec![pb::Stage::default(), rescore(5), rescore(5)],
                "stages[2].params.mode",
                "writes no poses",
            ),
            (vec![pb::Stage::default(), pb::Stage::default()], "stages[1].keep", "missing"),
            (
                vec![
                    pb::Stage::default(),
                    pb::Stage {
                        keep_top: 1,
                        rank_by: "cnn_score".into(),
                        ..Default::default()
                    },
                ],
                "stages[1].rank_by",
                "not computed by vina",
            ),
            (
                vec![
                    pb::Stage {
                        name: "a".into(),
                        ..Default::default()
                    },
                    pb::Stage {
                        name: "a".into(),
                        keep_top: 1,
                        ..Default::default()
                    },
                ],
                "stages[1].name",
                "names two stages",
            ),
            (
                vec![
                    pb::Stage::default(),
                    pb::Stage {
                        keep_top: 1,
                        params: Some(pb::EngineParams {
                            exhaustiveness: 10_000,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ],
                "stages[1].params.exhaustiveness",
                "1-512",
            ),
            (
                vec![
                    pb::Stage {
                        engine: "rustina".into(),
                        rank_by: "cnn_score".into(),
                        ..Default::default()
                    },
                    pb::Stage {
                        max_score: Some(-8.0),
                        ..Default::default()
                    },
                ],
                "stages[1].max_score",
                "ranks by cnn_score",
            ),
        ];
        for (stages, field, says) in cases {
            let r = req(stages);
            let e = resolve(&r, &base, &OrgId::default_org(), &store, dir.path(), &SubmitLimits::default())
                .await
                .expect_err("refused");
            let DockyardError::InvalidArgument { field: f, reason } = &e else {
                panic!("not an invalid argument: {e}");
            };
            assert_eq!(f, field, "{reason}");
            assert!(reason.contains(says), "{field}: {reason}");
        }
    }
}
