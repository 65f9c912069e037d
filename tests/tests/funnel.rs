//! Funnel screens: one job whose stages each take the best ligands of the one before.
//!
//! The test-only sleep engine scores ligand `i` of a stage -1.00 - i/100 (made up, but
//! known), so which ligands survive each stage is computed here from that rule alone.

use std::time::Duration;

use dockyard_tests::{pb, sleep_funnel_request, stage, AgentOptions, TestCluster};

fn funnel_request(ligands: usize, stages: Vec<pb::Stage>) -> pb::SubmitJobRequest {
    sleep_funnel_request(ligands, 2, 50, stages)
}

fn three_stages() -> Vec<pb::Stage> {
    vec![
        stage("pre", |_| {}),
        stage("redock", |s| s.keep_top = 5),
        stage("final", |s| s.keep_percent = 40.0),
    ]
}

/// The sleep engine's score of the ligand at `index` in its stage.
fn fake(index: usize) -> f64 {
    -1.0 - (index % 100) as f64 / 100.0
}

#[tokio::test]
async fn a_funnel_docks_everything_then_the_best_of_each_stage() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    c.wait_for_nodes(1).await;
    let job = c.submit(funnel_request(20, three_stages())).await;
    let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
    assert_eq!(j.state, pb::JobState::Succeeded as i32, "{j:?}");

    // Stage 1 ranks L19 (-1.19) .. L0; keep 5: L19, L18, L17, L16, L15, in that order.
    // Stage 2 scores them by position: L19 -1.00 .. L15 -1.04; 40% of 5 is 2: L15, L16.
    // Stage 3: L15 -1.00, L16 -1.01, so L16 ranks first.
    let s = &j.stages;
    assert_eq!(s.len(), 3, "{s:?}");
    let flow: Vec<(u32, u32, u32, bool)> = s
        .iter()
        .map(|s| (s.ligands_in, s.ligands_docked, s.survivors, s.survivors_chosen))
        .collect();
    assert_eq!(flow, [(20, 20, 5, true), (5, 5, 2, true), (2, 2, 0, false)]);
    assert!(s.iter().all(|s| s.state == pb::JobState::Succeeded as i32), "{s:?}");
    assert_eq!(s[0].job_id, job, "stage 1 is the funnel's own job");
    let tasks = j.tasks.expect("tasks");
    // batch_size 2: 10 + 3 + 1 tasks.
    assert_eq!((tasks.total, tasks.succeeded), (14, 14), "{tasks:?}");

    let r = c.results(&job).await;
    assert_eq!(r.rank_by, "score");
    assert_eq!(r.stage_columns, ["pre.score", "redock.score"]);
    let got: Vec<(&str, f64, f64, f64)> = r
        .results
        .iter()
        .map(|x| (x.ligand.as_str(), x.score, x.fields["pre.score"], x.fields["redock.score"]))
        .collect();
    let want = [("L16", fake(1), fake(16), fake(3)), ("L15", fake(0), fake(15), fake(4))];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "{got:?}");
        for (a, b) in [(g.1, w.1), (g.2, w.2), (g.3, w.3)] {
            assert!((a - b).abs() < 1e-6, "{got:?} against {want:?}");
        }
    }

    // Each stage's own results, by its own key: stage 1 has all 20, L19 first.
    let stage_results = |stage: u32| {
        let job = job.clone();
        let c = &c;
        async move {
            c.jobs()
                .await
                .list_results(pb::ListResultsRequest {
                    job_id: job,
                    page_size: 100,
                    stage,
                    ..Default::default()
                })
                .await
        }
    };
    let first = stage_results(1).await.expect("stage 1").into_inner();
    assert_eq!((first.results.len(), first.results[0].ligand.as_str()), (20, "L19"));
    assert!(first.stage_columns.is_empty());
    let second = stage_results(2).await.expect("stage 2").into_inner();
    assert_eq!(
        (second.results.len(), second.stage_columns.as_slice()),
        (5, &["pre.score".to_string()][..])
    );
    let e = stage_results(4).await.expect_err("a funnel of 3 stages");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // The stages' own jobs are inside the funnel, not listed beside it.
    let listed: Vec<String> = c.list_jobs().await.into_iter().map(|j| j.job_id).collect();
    assert_eq!(listed, std::slice::from_ref(&job));
    let inner = c.get_job(&s[1].job_id).await;
    assert_eq!(inner.funnel_job_id, job);

    let report = c.report(&job).await;
    assert_eq!(report.stage_columns, ["pre.score", "redock.score"]);
    assert_eq!(report.top_hits.first().map(|h| h.ligand.as_str()), Some("L16"));
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    // The CLI shows each stage's score as its own column.
    let out = c.cli(&["results", &job, "--format", "csv"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("rank,ligand,score,cnn_score,cnn_affinity,poses,pose_key,pre.score,redock.score,smiles,"),
        "{text}"
    );
    let first: Vec<&str> = lines.next().expect("a row").split(',').collect();
    assert_eq!((first[1], first[7], first[8]), ("L16", "-1.160", "-1.030"), "{text}");
    let out = c.cli(&["report", &job]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().find(|l| l.contains(" redock ")).unwrap_or_default().to_string();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.get(3..9), Some(&["keep=5", "succeeded", "5", "5", "0", "2"][..]), "{text}");
}

#[tokio::test]
async fn an_impossible_plan_is_refused_before_anything_runs() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    c.wait_for_nodes(1).await;
    let cases: Vec<(Vec<pb::Stage>, &str)> = vec![
        // No agent here offers vina.
        (
            vec![
                stage("pre", |_| {}),
                stage("redock", |s| {
                    s.engine = "gnina".into();
                    s.keep_top = 5;
                }),
            ],
            "stages[1].engine",
        ),
        (vec![stage("pre", |_| {}), stage("redock", |_| {})], "stages[1].keep"),
        (vec![stage("pre", |s| s.keep_percent = 5.0)], "stages[0].keep"),
        (
            vec![stage("pre", |s| {
                s.engine = "smina".into();
                s.params = Some(pb::EngineParams {
                    mode: "score_only".into(),
                    ..Default::default()
                });
            })],
            "stages[0].params.mode",
        ),
    ];
    for (stages, field) in cases {
        let e = c
            .jobs()
            .await
            .submit_job(funnel_request(4, stages))
            .await
            .expect_err("an impossible plan");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    assert!(c.list_jobs().await.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn a_coordinator_killed_at_a_stage_boundary_makes_exactly_one_next_stage() {
    let mut c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    c.wait_for_nodes(1).await;
    let mut req = funnel_request(12, vec![stage("pre", |_| {}), stage("redock", |s| s.keep_top = 4)]);
    req.params = Some(pb::EngineParams {
        sleep_ms: 300,
        ..Default::default()
    });
    let job = c.submit(req).await;
    // Killed the moment stage 1 is seen complete: before or just after stage 2 was created.
    c.wait_job(
        &job,
        |j| {
            j.stages
                .first()
                .and_then(|s| s.tasks)
                .is_some_and(|t| t.succeeded == t.total && t.total > 0)
        },
        Duration::from_secs(60),
    )
    .await;
    c.kill_coordinator();
    c.start_coordinator_again().await;
    let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
    assert_eq!(j.state, pb::JobState::Succeeded as i32, "{j:?}");
    let s = &j.stages;
    assert_eq!((s[0].survivors, s[1].ligands_in, s[1].ligands_docked), (4, 4, 4), "{s:?}");
    let t = s[1].tasks.expect("tasks");
    assert_eq!((t.total, t.succeeded), (2, 2), "one stage 2, each task committed once: {t:?}");
    let names: Vec<String> = c.results(&job).await.results.into_iter().map(|r| r.ligand).collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["L10", "L11", "L8", "L9"], "the best 4 of stage 1");
}

#[tokio::test]
async fn cancelling_a_funnel_cancels_its_current_stage_and_starts_no_other() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(1)).start().await;
    c.wait_for_nodes(1).await;
    let mut req = funnel_request(6, three_stages());
    req.stages[1].keep_top = 6;
    req.stages[1].params = Some(pb::EngineParams {
        sleep_ms: 2000,
        ..Default::default()
    });
    let job = c.submit(req).await;
    let j = c
        .wait_job(
            &job,
            |j| j.stages.get(1).is_some_and(|s| !s.job_id.is_empty()),
            Duration::from_secs(60),
        )
        .await;
    let stage2 = j.stages[1].job_id.clone();
    c.cancel(&job).await;
    let j = c.wait_job_final(&job, Duration::from_secs(30)).await;
    assert_eq!(j.state, pb::JobState::Cancelled as i32, "{j:?}");
    let inner = c.wait_job_final(&stage2, Duration::from_secs(30)).await;
    assert_eq!(inner.state, pb::JobState::Cancelled as i32, "{inner:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let j = c.get_job(&job).await;
    assert!(j.stages[2].job_id.is_empty(), "no third stage after a cancel: {:?}", j.stages);
}

/// Real engines in a funnel: every ligand through stage 1 (sleep), real rustina re-docks
/// them and refuses one (a torsion tree it cannot read), and real smina rescores the one
/// rustina docked from rustina's own pose file (`score_only`), not the library's molecule.
/// The refused ligand does not go on and the report names the stage it failed in.
#[tokio::test]
async fn a_ligand_that_fails_a_stage_stops_there_and_real_engines_rescore_the_rest() {
    let smina = dockyard_tests::require_smina();
    let c = TestCluster::builder()
        .agent(
            AgentOptions::sleep(1)
                .arg("--rustina-python")
                .arg("python3")
                .arg("--smina")
                .arg(smina.display().to_string()),
        )
        .start()
        .await;
    c.wait_for_nodes(1).await;
    let data = |name: &str| dockyard_tests::read_shared(&dockyard_tests::shared_data(&format!("vina-examples/5x72/{name}")));
    let good = String::from_utf8(data("5x72_ligand_p59.pdbqt")).expect("text");
    // As in the rustina engine test: a BRANCH hanging off an atom of a closed branch.
    let bad = good.replace("BRANCH  11  20", "BRANCH  13  20");
    let req = pb::SubmitJobRequest {
        name: "real-funnel".into(),
        engine: "sleep".into(),
        receptor: Some(dockyard_tests::input("5x72_receptor.pdbqt", data("5x72_receptor.pdbqt"))),
        ligands: vec![
            dockyard_tests::input("bad_tree.pdbqt", bad),
            dockyard_tests::input("p59.pdbqt", good),
        ],
        r#box: Some(pb::DockingBox {
            center: Some(dockyard_tests::vec3(-15.0, 15.0, 129.0)),
            size: Some(dockyard_tests::vec3(20.0, 20.0, 20.0)),
        }),
        params: Some(pb::EngineParams {
            exhaustiveness: 1,
            num_modes: 3,
            seed: 42,
            ..Default::default()
        }),
        fresh: true,
        stages: vec![
            stage("pre", |_| {}),
            stage("redock", |s| {
                s.engine = "rustina".into();
                s.keep_percent = 100.0;
                s.params = Some(pb::EngineParams {
                    search_mode: "qvina2".into(),
                    ..Default::default()
                });
            }),
            stage("rescore", |s| {
                s.engine = "smina".into();
                s.keep_top = 10;
                s.params = Some(pb::EngineParams {
                    mode: "score_only".into(),
                    ..Default::default()
                });
            }),
        ],
        ..Default::default()
    };
    let job = c.submit(req).await;
    let j = c.wait_job_final(&job, Duration::from_secs(180)).await;
    assert_eq!(j.state, pb::JobState::Partial as i32, "a ligand failed on the way: {j:?}");
    let flow: Vec<(u32, u32, u32, u32)> = j
        .stages
        .iter()
        .map(|s| (s.ligands_in, s.ligands_docked, s.ligands_failed, s.survivors))
        .collect();
    assert_eq!(flow, [(2, 2, 0, 2), (2, 1, 1, 1), (1, 1, 0, 0)], "{:?}", j.stages);

    let report = c.report(&job).await;
    let failed = report
        .failures
        .iter()
        .find(|f| f.kind == "ligand")
        .unwrap_or_else(|| panic!("{report:?}"));
    assert_eq!(failed.stage, "redock", "{failed:?}");
    assert!(failed.reason.contains("rustina refused the ligand"), "{failed:?}");
    assert_eq!(failed.examples, ["bad_tree"], "{failed:?}");

    let r = c.results(&job).await;
    assert_eq!(r.results.len(), 1, "{r:?}");
    let row = &r.results[0];
    assert_eq!(row.ligand, "p59");
    let redock = row.fields.get("redock.score").copied().expect("rustina's score carried");
    assert!(
        row.fields.contains_key("redock.cnn_score") && row.fields.contains_key("pre.score"),
        "{row:?}"
    );
    // smina scored rustina's pose file (SDF, three poses), not the library's PDBQT molecule.
    assert_eq!(row.preparation, "none (sdf given to smina)", "{row:?}");
    assert_eq!(row.poses.len(), 3, "one score per rustina pose: {row:?}");
    assert_eq!(row.fields.get("minimizedAffinity"), Some(&row.score), "{row:?}");
    assert!(
        (row.score - redock).abs() > 1e-6,
        "smina's vina scoring, not rustina's vinardo: {row:?}"
    );
    let stage3 = c.get_job(&j.stages[2].job_id).await;
    assert_eq!(stage3.engine, "smina");

    // The SD export carries each earlier stage's values as data fields on every pose.
    let out = c.dir().join("hits.sdf");
    let path = out.display().to_string();
    let done = c.cli(&["results", &job, "--format", "sdf", "--out", &path]).await;
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let sdf = std::fs::read_to_string(&out).expect("sdf");
    assert_eq!(sdf.matches(">  <redock.score>").count(), 3, "{sdf}");
    assert!(sdf.contains(&format!(">  <redock.score>\n{redock}\n")), "{sdf}");
    assert_eq!(sdf.matches(">  <pre.score>").count(), 3, "{sdf}");
}

/// A stage that keeps by `max_score` is fed while the stage before still runs: it opens as
/// soon as a batch of survivors waits, and closes with the last one once that stage ends.
fn streaming_request(stage1_ms: u32) -> pb::SubmitJobRequest {
    // 21 ligands in 11 tasks: on two slots, stage 1's last task runs alone, beside stage 2.
    let mut req = funnel_request(
        21,
        vec![
            stage("pre", |_| {}),
            stage("redock", |s| {
                // Ligands 5..20 score -1.05 .. -1.20 in stage 1.
                s.max_score = Some(-1.045);
                s.params = Some(pb::EngineParams {
                    sleep_ms: 1000,
                    ..Default::default()
                });
            }),
        ],
    );
    req.params = Some(pb::EngineParams {
        sleep_ms: stage1_ms,
        ..Default::default()
    });
    req
}

/// Stage 2's results: each survivor of stage 1 exactly once.
async fn assert_streamed_once(c: &TestCluster, job: &str) {
    let j = c.wait_job_final(job, Duration::from_secs(90)).await;
    assert_eq!(j.state, pb::JobState::Succeeded as i32, "{j:?}");
    let s = &j.stages[1];
    let t = s.tasks.expect("tasks");
    assert_eq!((s.ligands_in, s.ligands_docked, t.total, t.succeeded), (16, 16, 8, 8), "{s:?}");
    assert!(j.stages[0].survivors_chosen && !s.streaming, "{:?}", j.stages);
    let mut names: Vec<u32> = c
        .results(job)
        .await
        .results
        .iter()
        .map(|r| r.ligand.trim_start_matches('L').parse().expect("L<n>"))
        .collect();
    names.sort();
    assert_eq!(names, (5..21).collect::<Vec<u32>>(), "each survivor of stage 1, once");
}

#[tokio::test]
async fn a_max_score_stage_starts_while_the_stage_before_runs() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    c.wait_for_nodes(1).await;
    let job = c.submit(streaming_request(500)).await;
    let mut stream = c
        .jobs()
        .await
        .watch_job(pb::WatchJobRequest { job_id: job.clone() })
        .await
        .expect("WatchJob")
        .into_inner();
    let mut overlapped = None;
    let mut opened_early = false;
    let until = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(ev) = stream.message().await.expect("watch") {
            let Some(j) = ev.job else { continue };
            let (s1, s2) = (j.stages[0].tasks.unwrap_or_default(), j.stages[1].clone());
            let stage1_running = s1.succeeded < s1.total;
            if stage1_running && !s2.job_id.is_empty() {
                opened_early = true;
                assert!(s2.streaming, "an early stage 2 is still fed: {s2:?}");
                let t2 = s2.tasks.unwrap_or_default();
                if t2.running + t2.succeeded > 0 {
                    overlapped = Some((s1, t2));
                }
            }
            if ev.r#final {
                break;
            }
        }
    })
    .await;
    assert!(until.is_ok(), "the funnel did not finish in 90 s");
    assert!(opened_early, "stage 2 was only created after stage 1 ended");
    assert!(overlapped.is_some(), "no snapshot showed stage 2 running beside stage 1");
    assert_streamed_once(&c, &job).await;
}

#[tokio::test]
async fn a_coordinator_killed_while_a_stage_is_fed_feeds_each_survivor_once() {
    let mut c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    c.wait_for_nodes(1).await;
    let job = c.submit(streaming_request(400)).await;
    c.wait_job(
        &job,
        |j| j.stages.get(1).is_some_and(|s| s.streaming && s.ligands_in >= 2),
        Duration::from_secs(60),
    )
    .await;
    c.kill_coordinator();
    c.start_coordinator_again().await;
    assert_streamed_once(&c, &job).await;
}

#[tokio::test]
async fn two_streaming_stages_in_a_row_keep_exactly_what_passes_each() {
    let c = TestCluster::builder().agent(AgentOptions::sleep(2)).start().await;
    c.wait_for_nodes(1).await;
    let mut req = streaming_request(200);
    req.stages[1].params = None;
    // Stage 2 scores its ligands -1.00 .. -1.15 by the order they reach it: 10..15 pass.
    req.stages.push(stage("last", |s| s.max_score = Some(-1.095)));
    let job = c.submit(req).await;
    let j = c.wait_job_final(&job, Duration::from_secs(90)).await;
    assert_eq!(j.state, pb::JobState::Succeeded as i32, "{j:?}");
    let flow: Vec<(u32, u32, u32)> = j.stages.iter().map(|s| (s.ligands_in, s.ligands_docked, s.survivors)).collect();
    assert_eq!(flow, [(21, 21, 16), (16, 16, 6), (6, 6, 0)], "{:?}", j.stages);
    let r = c.results(&job).await;
    assert_eq!(r.results.len(), 6);
    for x in &r.results {
        assert!(x.fields["pre.score"] <= -1.045 && x.fields["redock.score"] <= -1.095, "{x:?}");
    }
}
