//! Agents advertise only the engines they find, with their versions; `--smina`/`--gnina`
//! point at a binary off PATH (here the real smina, and a test double for Vina).

use std::time::Duration;

use dockyard_tests::{pb, read_shared, require_smina, shared_data, vina_1iep_request, AgentOptions, TestCluster};

fn fixture(name: &str) -> String {
    format!("{}/../node-agent/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A small smina job on 1iep: one lead-like molecule as SDF (docked as is, smina reads
/// SDF) and the same molecule as Meeko PDBQT, in a 12 Å box at exhaustiveness 1.
fn smina_request() -> pb::SubmitJobRequest {
    let sdf = String::from_utf8(read_shared(&shared_data("ligands/ligands-20-3d.sdf"))).expect("utf-8");
    let first = sdf.split_inclusive("$$$$\n").next().expect("a record").to_string();
    let pdbqt = read_shared(&shared_data("ligands/pdbqt-meeko/MOSES_TEST_140264.pdbqt"));
    let mut req = vina_1iep_request(vec![
        dockyard_tests::input("small.sdf", first),
        dockyard_tests::input("small.pdbqt", pdbqt),
    ]);
    req.name = "smina-1iep".into();
    req.engine = "smina".into();
    if let Some(b) = req.r#box.as_mut() {
        b.size = Some(dockyard_tests::vec3(12.0, 12.0, 12.0));
    }
    req.params = Some(pb::EngineParams {
        exhaustiveness: 1,
        num_modes: 3,
        seed: 42,
        ..Default::default()
    });
    req
}

/// The `minimizedAffinity` of each record of an SDF pose file.
fn sdf_affinities(text: &str) -> Vec<f64> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with('>') && w[0].contains("<minimizedAffinity>"))
        .map(|w| w[1].trim().parse().expect("a number"))
        .collect()
}

/// A smina job waits, unschedulable, until an agent started with `--smina PATH` (the real
/// smina) advertises it with its version, then docks end to end: scores, the RMSDs of the
/// poses, the engine's SD fields and the SDF pose artifact.
#[tokio::test]
async fn smina_given_by_path_is_advertised_and_docks_a_job() {
    let smina = require_smina();
    let mut c = TestCluster::builder().agent(AgentOptions::vina(1).node_id("plain")).start().await;
    c.wait_for_nodes(1).await;
    let plain = c.node("plain").await.expect("node");
    assert!(
        plain.engines.iter().all(|e| e.name != "smina"),
        "smina advertised without a binary: {plain:?}"
    );

    let job = c.submit(smina_request()).await;
    let j = c
        .wait_job(&job, |j| !j.unschedulable_reason.is_empty(), Duration::from_secs(10))
        .await;
    assert!(j.unschedulable_reason.contains("smina"), "{}", j.unschedulable_reason);

    c.add_agent_and_wait(
        AgentOptions::vina(1)
            .node_id("with-smina")
            .arg("--smina")
            .arg(smina.display().to_string()),
    )
    .await;
    let n = c.node("with-smina").await.expect("node");
    let advertised: Vec<&pb::EngineInfo> = n.engines.iter().filter(|e| e.name == "smina").collect();
    assert_eq!(advertised.len(), 1, "{n:?}");
    // smina 2a4feb4 reports its build date, e.g. "Dec 5 2026".
    assert_eq!(advertised[0].version.split(' ').count(), 3, "{:?}", advertised[0]);
    assert!(!advertised[0].test_only, "{:?}", advertised[0]);

    let j = c.wait_job_final(&job, Duration::from_secs(180)).await;
    assert_eq!(
        dockyard_tests::state(&j),
        pb::JobState::Succeeded,
        "{}",
        dockyard_tests::describe_job(&j)
    );
    assert_eq!((j.ligands_docked, j.ligands_failed), (2, 0), "{}", dockyard_tests::describe_job(&j));
    assert!(j.cpu_seconds > 0.1, "engine CPU time not recorded: {}", j.cpu_seconds);

    let r = c.results(&job).await;
    assert_eq!(r.results.len(), 2, "{r:?}");
    for row in &r.results {
        assert!(row.score < -4.0 && row.score > -12.0, "implausible score: {row:?}");
        assert!((1..=3).contains(&row.poses.len()), "{row:?}");
        assert_eq!(row.poses[0].affinity, row.score, "{row:?}");
        assert!(row.poses.windows(2).all(|w| w[0].affinity <= w[1].affinity), "{row:?}");
        // The RMSDs to the best pose come from smina's result table.
        assert!(row.poses[1..].iter().all(|p| p.rmsd_lb > 0.0 && p.rmsd_ub >= p.rmsd_lb), "{row:?}");
        assert_eq!(row.fields.get("minimizedAffinity"), Some(&row.score), "{row:?}");

        assert!(row.sdf_key.ends_with(".sdf"), "{row:?}");
        // smina writes SDF: its poses are stored once, under their format's name.
        assert_eq!(row.pose_key, row.sdf_key, "{row:?}");
        let text = c.stored_text(&row.sdf_key);
        let affinities = sdf_affinities(&text);
        assert_eq!(affinities.len(), row.poses.len(), "{text}");
        for (file, pose) in affinities.iter().zip(&row.poses) {
            assert!((file - pose.affinity).abs() < 1e-9, "{file} vs {pose:?}");
        }
        assert_eq!(text.matches("$$$$").count(), row.poses.len(), "{text}");
    }
}

/// A test double for vina that logs, around each run of the fault-injection double (in its
/// `ok` mode), the `--cpu` it was given and its OMP_NUM_THREADS: `start cpu=N omp=M`, then
/// `end` two seconds later.
fn threads_double(dir: &std::path::Path, log: &std::path::Path) -> std::path::PathBuf {
    let fault = fixture("fault_engine.sh");
    let script = format!(
        "#!/bin/sh\n\
         # TEST DOUBLE for vina: records the threads each run was given.\n\
         if [ \"$1\" = --version ]; then exec '{fault}' --version; fi\n\
         cpu=; prev=\n\
         for a in \"$@\"; do [ \"$prev\" = --cpu ] && cpu=\"$a\"; prev=\"$a\"; done\n\
         echo \"start cpu=$cpu omp=${{OMP_NUM_THREADS-unset}}\" >>'{log}'\n\
         sleep 2\n\
         echo end >>'{log}'\n\
         DOCKYARD_FAULT_MODE=ok exec '{fault}' \"$@\"\n",
        log = log.display()
    );
    let path = dir.join("vina-threads-double");
    std::fs::write(&path, script).expect("write the double");
    let mut perm = std::fs::metadata(&path).expect("double").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).expect("chmod the double");
    path
}

/// Two single-ligand tasks, with `cpus` cores each when given.
fn two_tasks(cpus: Option<u32>) -> pb::SubmitJobRequest {
    let ligand = dockyard_tests::read_shared(&dockyard_tests::ligand_1iep());
    let mut req = vina_1iep_request(vec![
        dockyard_tests::input("a.pdbqt", ligand.clone()),
        dockyard_tests::input("b.pdbqt", ligand),
    ]);
    req.batch_size = 1;
    req.cpus_per_task = cpus;
    // The same docking again: without this the result cache would serve it.
    req.fresh = true;
    req
}

/// `--cpus-per-task`: a task holds as many agent slots as its cores and its engine gets as
/// many threads. On a 2-slot agent two 1-core tasks run side by side; two 2-core tasks run
/// one after the other with `--cpu 2` and OMP_NUM_THREADS=2; a 3-core task is reported
/// unschedulable.
#[tokio::test]
async fn a_two_core_task_holds_both_slots_and_its_engine_gets_two_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("runs.log");
    let double = threads_double(dir.path(), &log);
    let c = TestCluster::builder()
        .agent(AgentOptions::vina(2).arg("--vina").arg(double.display().to_string()))
        .start()
        .await;
    c.wait_for_nodes(1).await;
    // Runs the job to success and returns what the double logged for it.
    let runs_of = |req: pb::SubmitJobRequest| {
        let (c, log) = (&c, &log);
        async move {
            let job = c.submit(req).await;
            let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
            assert_eq!(
                dockyard_tests::state(&j),
                pb::JobState::Succeeded,
                "{}",
                dockyard_tests::describe_job(&j)
            );
            let lines: Vec<String> = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect();
            std::fs::remove_file(log).expect("clear the log");
            lines
        }
    };

    let one_core = runs_of(two_tasks(None)).await;
    assert_eq!(
        one_core,
        ["start cpu=1 omp=1", "start cpu=1 omp=1", "end", "end"],
        "two 1-core tasks share the 2 slots"
    );

    let two_cores = runs_of(two_tasks(Some(2))).await;
    assert_eq!(
        two_cores,
        ["start cpu=2 omp=2", "end", "start cpu=2 omp=2", "end"],
        "a 2-core task holds both slots: the second waits for the first"
    );

    let job = c.submit(two_tasks(Some(3))).await;
    let j = c
        .wait_job(&job, |j| !j.unschedulable_reason.is_empty(), Duration::from_secs(10))
        .await;
    assert!(j.unschedulable_reason.contains("3 CPU slots"), "{}", j.unschedulable_reason);
}

/// A rustina job on the 5x72 example at the cheapest settings it takes: `qvina2` at
/// exhaustiveness 1 (4 runs), three poses.
fn rustina_5x72_request(ligands: Vec<pb::InputFile>) -> pb::SubmitJobRequest {
    let data = |name: &str| dockyard_tests::read_shared(&dockyard_tests::shared_data(&format!("vina-examples/5x72/{name}")));
    pb::SubmitJobRequest {
        name: "rustina-5x72".into(),
        engine: "rustina".into(),
        receptor: Some(dockyard_tests::input("5x72_receptor.pdbqt", data("5x72_receptor.pdbqt"))),
        ligands,
        r#box: Some(pb::DockingBox {
            center: Some(dockyard_tests::vec3(-15.0, 15.0, 129.0)),
            size: Some(dockyard_tests::vec3(20.0, 20.0, 20.0)),
        }),
        params: Some(pb::EngineParams {
            exhaustiveness: 1,
            num_modes: 3,
            seed: 42,
            search_mode: "qvina2".into(),
            ..Default::default()
        }),
        fresh: true,
        ..Default::default()
    }
}

fn p59() -> Vec<u8> {
    dockyard_tests::read_shared(&dockyard_tests::shared_data("vina-examples/5x72/5x72_ligand_p59.pdbqt"))
}

/// The real rustina behind `--rustina-python`: the agent advertises it with its version; a
/// ligand whose torsion tree rustina refuses (a BRANCH hanging off an atom of a closed
/// branch, which Dockyard's PDBQT checks let through) fails alone with rustina's reason
/// while the next one, with a repeated atom serial, is renumbered and docks with
/// `cnn_score`/`cnn_affinity` result fields and SD fields; cancelling a running job kills
/// its Python process.
#[tokio::test]
async fn rustina_docks_with_cnn_fields_fails_a_bad_ligand_alone_and_is_cancelled() {
    let c = TestCluster::builder()
        .agent(AgentOptions::vina(1).node_id("rustina").arg("--rustina-python").arg("python3"))
        .start()
        .await;
    c.wait_for_nodes(1).await;
    let n = c.node("rustina").await.expect("node");
    let rustina: Vec<&pb::EngineInfo> = n.engines.iter().filter(|e| e.name == "rustina").collect();
    assert_eq!(rustina.len(), 1, "rustina not advertised (pip install rustina==0.9.0): {n:?}");
    assert_eq!(rustina[0].version, "0.9.0");

    let original = String::from_utf8(p59()).expect("text");
    // `replace` changes the ENDBRANCH too, which contains the BRANCH text.
    let bad = original.replace("BRANCH  11  20", "BRANCH  13  20");
    assert_eq!(bad.matches("BRANCH  13  20").count(), 2, "{bad}");
    // Atom 3 numbered 4 like the next one (no BRANCH names them): Dockyard's checks and
    // Vina accept it, rustina alone says `duplicate atom serial 4`; the agent renumbers it.
    let good = original.replacen("ATOM      3 ", "ATOM      4 ", 1);
    assert_eq!(good.matches("ATOM      4 ").count(), 2);
    let job = c
        .submit(rustina_5x72_request(vec![
            dockyard_tests::input("bad_tree.pdbqt", bad),
            dockyard_tests::input("p59.pdbqt", good),
        ]))
        .await;
    let j = c.wait_job_final(&job, Duration::from_secs(120)).await;
    let described = dockyard_tests::describe_job(&j);
    assert_eq!(dockyard_tests::state(&j), pb::JobState::Partial, "{described}");
    assert_eq!((j.ligands_docked, j.ligands_failed), (1, 1), "{described}");

    let r = c.results(&job).await;
    let row = r.results.iter().find(|r| r.ligand == "p59").unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(row.poses.len(), 3, "{row:?}");
    assert!((row.poses[0].affinity - row.score).abs() < 1e-6, "{row:?}");
    assert_eq!(row.fields.get("rustina_affinity"), Some(&row.score), "{row:?}");
    let p = row.fields.get("cnn_score").copied().unwrap_or(f64::NAN);
    assert!((0.0..=1.0).contains(&p), "{row:?}");
    assert!(row.fields.get("cnn_affinity").is_some_and(|a| *a > 0.0), "{row:?}");
    let poses = c.stored_text(&row.pose_key);
    assert_eq!(poses.matches("REMARK VINA RESULT").count(), 3, "{poses}");
    assert!(!row.sdf_key.is_empty(), "{row:?}");
    let sdf = c.stored_text(&row.sdf_key);
    assert_eq!(sdf.matches(">  <cnn_score>").count(), 3, "{sdf}");
    assert_eq!(sdf.matches(">  <cnn_affinity>").count(), 3, "{sdf}");
    assert!(
        sdf.contains(&format!(">  <cnn_score>\n{p}\n")),
        "the top record carries the top pose's score: {sdf}"
    );

    let report = c
        .jobs()
        .await
        .get_job_report(pb::GetJobRequest { job_id: job.clone() })
        .await
        .expect("report")
        .into_inner();
    let failure = report
        .failures
        .iter()
        .find(|f| f.kind == "ligand")
        .unwrap_or_else(|| panic!("{report:?}"));
    assert!(
        failure.reason.contains("rustina refused the ligand") && failure.reason.contains("BRANCH 13 20"),
        "{failure:?}"
    );

    // Rustina's default search, 64 times the runs: it must not finish on its own.
    let mut req = rustina_5x72_request(vec![dockyard_tests::input("p59.pdbqt", p59())]);
    if let Some(p) = req.params.as_mut() {
        p.exhaustiveness = 64;
        p.search_mode = String::new();
    }
    let job = c.submit(req).await;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let pids = loop {
        let pids = dockyard_tests::processes_mentioning("python3", c.dir());
        if !pids.is_empty() {
            break pids;
        }
        assert!(std::time::Instant::now() < until, "no rustina process started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let j = c.cancel(&job).await;
    assert_eq!(dockyard_tests::state(&j), pb::JobState::Cancelled);
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while !dockyard_tests::processes_mentioning("python3", c.dir()).is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "rustina's python (pids {pids:?}) still running 15 s after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A rustina job with `--gpus 1` and no search mode runs rustina's GPU search on the
/// assigned device. The agent's GPU here is a test double (`--fake-gpus`), so rustina finds
/// no adapter and the ligand fails with that reason: what a real GPU node would run
/// instead is unverified here.
#[tokio::test]
async fn a_rustina_task_given_a_gpu_runs_the_gpu_search() {
    let c = TestCluster::builder()
        .agent(AgentOptions::vina(1).fake_gpus(1).arg("--rustina-python").arg("python3"))
        .start()
        .await;
    c.wait_for_nodes(1).await;
    let mut req = rustina_5x72_request(vec![dockyard_tests::input("p59.pdbqt", p59())]);
    req.gpus_per_task = 1;
    if let Some(p) = req.params.as_mut() {
        p.search_mode = String::new();
    }
    let job = c.submit(req).await;
    let j = c.wait_job_final(&job, Duration::from_secs(60)).await;
    assert_eq!(j.ligands_failed, 1, "{}", dockyard_tests::describe_job(&j));
    let report = c
        .jobs()
        .await
        .get_job_report(pb::GetJobRequest { job_id: job.clone() })
        .await
        .expect("report")
        .into_inner();
    assert!(
        report.failures.iter().any(|f| f.reason.contains("gpu search unavailable")),
        "{report:?}"
    );
}

/// Results of a rustina job are listed by rustina's own ranking (the CNN pose score,
/// highest first) unless `--rank-by` names another key; the CSV carries both CNN columns
/// and the report's top hits say what they are ranked by.
#[tokio::test]
async fn rustina_results_are_ranked_by_the_cnn_unless_another_key_is_asked_for() {
    let c = TestCluster::builder()
        .agent(AgentOptions::vina(1).arg("--rustina-python").arg("python3"))
        .start()
        .await;
    c.wait_for_nodes(1).await;
    let p69 = dockyard_tests::read_shared(&dockyard_tests::shared_data("vina-examples/5x72/5x72_ligand_p69.pdbqt"));
    let job = c
        .submit(rustina_5x72_request(vec![
            dockyard_tests::input("p59.pdbqt", p59()),
            dockyard_tests::input("p69.pdbqt", p69),
        ]))
        .await;
    let j = c.wait_job_final(&job, Duration::from_secs(120)).await;
    assert_eq!(
        dockyard_tests::state(&j),
        pb::JobState::Succeeded,
        "{}",
        dockyard_tests::describe_job(&j)
    );

    let listed = |args: &'static [&'static str]| {
        let (c, job) = (&c, job.clone());
        async move {
            let mut all = vec!["results", job.as_str(), "--format", "json"];
            all.extend_from_slice(args);
            let o = c.cli(&all).await;
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
            v.as_array().expect("array").clone()
        }
    };
    let key = |rows: &[serde_json::Value], k: &str| -> Vec<f64> { rows.iter().map(|r| r[k].as_f64().expect(k)).collect() };
    let descending = |v: &[f64]| v.windows(2).all(|w| w[0] >= w[1]);

    let own = listed(&[]).await;
    assert_eq!(own.len(), 2);
    assert!(descending(&key(&own, "cnn_score")), "{own:?}");
    let by_affinity = listed(&["--rank-by", "cnn_affinity"]).await;
    assert!(descending(&key(&by_affinity, "cnn_affinity")), "{by_affinity:?}");
    let by_score = listed(&["--rank-by", "score"]).await;
    let scores = key(&by_score, "score");
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{by_score:?}");

    let o = c.cli(&["results", &job, "--format", "csv"]).await;
    let csv = String::from_utf8_lossy(&o.stdout);
    assert!(csv.starts_with("rank,ligand,score,cnn_score,cnn_affinity,"), "{csv}");
    assert!(!csv.contains("n/a"), "rustina computed both CNN columns: {csv}");

    let o = c.cli(&["results", &job, "--rank-by", "cnn"]).await;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cnn_affinity"), "{o:?}");

    let report = c
        .jobs()
        .await
        .get_job_report(pb::GetJobRequest { job_id: job.clone() })
        .await
        .expect("report")
        .into_inner();
    assert_eq!(report.rank_by, "cnn_score");
    let names: Vec<&str> = report.top_hits.iter().map(|h| h.ligand.as_str()).collect();
    let own_names: Vec<&str> = own.iter().map(|r| r["ligand"].as_str().expect("ligand")).collect();
    assert_eq!(names, own_names);
}
