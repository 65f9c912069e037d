//! Agents as Slurm jobs, started and stopped by `dockyard autoscale`, on a real one-node
//! Slurm (slurmctld, slurmd and munged from Debian, started by the test): the batch script
//! of deploy/slurm runs them, one is cancelled with `scancel` mid-task, the others reach
//! their time limit mid-task, and the screen still commits every task exactly once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dockyard_tests::fault_engine::Fault;
use dockyard_tests::metrics_scrape;
use dockyard_tests::slurm::SlurmCluster;
use dockyard_tests::{binary, describe_job, input, ligand_1iep, pb, read_shared, state, vina_1iep_request, TestCluster};

const MAX_AGENTS: usize = 3;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/slurm/dockyard-agent.sbatch")
}

struct Autoscaler {
    child: Child,
    log: PathBuf,
}

impl Autoscaler {
    fn start(c: &TestCluster, slurm: &SlurmCluster, env: &[(&str, String)], config: &Path, name: &str, extra: &[&str]) -> Autoscaler {
        let log = c.dir().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(binary("dockyard"))
            .args(["--endpoint", &c.endpoint(), "autoscale", "--pools"])
            .arg(config)
            .args(["--interval-s", "1", "--cooldown-s", "3"])
            .args(extra)
            .env("SLURM_CONF", slurm.conf())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start dockyard autoscale");
        Autoscaler { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The metrics address (host:port) it printed, within 10 s.
    fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(url) = self.log().lines().find_map(|l| {
                l.strip_prefix("autoscale: metrics at http://")?
                    .strip_suffix("/metrics")
                    .map(str::to_string)
            }) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "no metrics address in the autoscaler's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Autoscaler {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A counter from the autoscaler's metrics page (0 before its first use creates it).
async fn metric(addr: &str, series: &str) -> f64 {
    metrics_scrape::value(&metrics_scrape::scrape(addr).await, series).unwrap_or(0.0)
}

/// `running=N` of the agent's "SIGTERM: finishing running tasks" line (0 without one).
fn sigterm_with_running(log: &str) -> usize {
    log.lines()
        .find(|l| l.contains("SIGTERM: finishing running tasks"))
        .and_then(|l| l.split("running=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, timeout: Duration, slurm: &SlurmCluster, f: impl Fn() -> F) -> f64 {
    let t = Instant::now();
    while !f().await {
        assert!(
            t.elapsed() < timeout,
            "{what}: not within {timeout:?}; jobs {:?}\n{}",
            slurm.jobs(),
            slurm.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn slurm_agents_scale_with_the_queue_and_leave_without_losing_work() {
    let mut c = TestCluster::builder().reconcile_grace_ms(1500).start().await;
    let slurm = SlurmCluster::start(c.dir(), 8, 8000);
    let fault = Fault::new(c.dir());
    fault.set_mode("slow");
    let work = c.dir().join("slurm-work");
    std::fs::create_dir_all(&work).expect("work folder");
    let env = vec![
        ("DOCKYARD_AGENT", binary("dockyard-agent").display().to_string()),
        ("DOCKYARD_VINA", fault.wrapper.display().to_string()),
        ("DOCKYARD_FAULT_SLOW_S", "10".to_string()),
        // Well below the 10 s a task takes, so an agent told to leave has tasks to hand back.
        ("DOCKYARD_SHUTDOWN_GRACE_S", "1".to_string()),
        ("DOCKYARD_WORK_BASE", work.display().to_string()),
    ];
    let config = c.dir().join("autoscale.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"t\"\n[[pool]]\nname = \"cpu\"\nengines = [\"vina\"]\nslots = 2\nmemory_mb = 2000\nmin = 0\nmax = {MAX_AGENTS}\n\
             script = \"{}\"\nsbatch_args = [\"--cpus-per-task=2\", \"--mem=2000M\", \"--time=1\", \"--signal=B:TERM@20\", \"--output={}/agent-%j.log\"]\n",
            script().display(),
            c.dir().display()
        ),
    )
    .expect("autoscale.toml");

    let n = 60;
    let ligand = read_shared(&ligand_1iep());
    let mut req = vina_1iep_request((0..n).map(|i| input(&format!("lig{i}.pdbqt"), ligand.clone())).collect());
    req.fresh = true;
    req.batch_size = 1;
    let job = c.submit(req).await;

    // A dry run says what it would do and does nothing.
    let dry = Command::new(binary("dockyard"))
        .args(["--endpoint", &c.endpoint(), "autoscale", "--dry-run", "--once", "--pools"])
        .arg(&config)
        .env("SLURM_CONF", slurm.conf())
        .output()
        .expect("dry run");
    let dry_out = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{dry:?}");
    assert!(
        dry_out.contains(&format!("pool cpu: would submit {MAX_AGENTS} agent job(s)")),
        "{dry_out}"
    );
    assert!(slurm.jobs().is_empty(), "a dry run submitted {:?}", slurm.jobs());

    // Never more agent jobs than the maximum, through an autoscaler crash and restart.
    let most = Arc::new(AtomicUsize::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (most, watching, conf) = (most.clone(), watching.clone(), slurm.conf().to_path_buf());
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                if let Ok(o) = Command::new("squeue")
                    .args(["--noheader", "--name=dockyard-t-cpu"])
                    .env("SLURM_CONF", &conf)
                    .output()
                {
                    let jobs = String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.trim().is_empty()).count();
                    most.fetch_max(jobs, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let mut first = Autoscaler::start(&c, &slurm, &env, &config, "autoscale-1", &[]);
    let first_task_s = wait_until("a task running on a Slurm agent", Duration::from_secs(90), &slurm, || async {
        c.stats().await.running > 0
    })
    .await;
    wait_until("every agent registered and busy", Duration::from_secs(90), &slurm, || async {
        let nodes = c.nodes().await;
        nodes
            .iter()
            .filter(|n| n.labels.contains_key("slurm_job_id") && !n.running.is_empty())
            .count()
            == MAX_AGENTS
    })
    .await;

    // Each agent offers what Slurm allocated it (--cpus-per-task=2, --mem=2000M, no GPU).
    for n in c.nodes().await.iter().filter(|n| n.labels.contains_key("slurm_job_id")) {
        let cap = n.capacity.clone().unwrap_or_default();
        assert_eq!(
            (cap.cpu_slots, cap.memory_bytes, cap.gpus.len()),
            // 2000 MiB, offered in whole MB (10^6 bytes) so never above the allocation.
            (2, 2097 * 1_000_000, 0),
            "{} offers other than its allocation",
            n.node_id
        );
        assert_eq!(n.node_id, format!("slurm-{}", n.labels["slurm_job_id"]));
        assert_eq!(n.labels.get("pool").map(String::as_str), Some("cpu"));
    }

    // The autoscaler dies and another takes over: it counts the jobs in Slurm and asks for
    // none (the leader's view of the queue is the same).
    first.kill();
    let second = Autoscaler::start(&c, &slurm, &env, &config, "autoscale-2", &["--metrics-listen", "127.0.0.1:0"]);
    let url = second.metrics_addr();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        metric(&url, "dockyard_autoscale_requested_total{pool=\"cpu\"}").await,
        0.0,
        "a restarted autoscaler asked for agents that were already there:\n{}",
        second.log()
    );

    // The coordinator is killed and started again on its state (what the autoscaler sees of
    // a failover): its ticks fail while the coordinator is away, and afterwards it counts
    // the jobs Slurm already runs, whose agents come back, instead of asking for more. The
    // maximum check at the end covers this stretch too.
    c.restart_coordinator().await;
    wait_until(
        "a Slurm agent busy again after the coordinator restart",
        Duration::from_secs(60),
        &slurm,
        || async {
            c.nodes()
                .await
                .iter()
                .any(|n| !n.running.is_empty() && n.labels.contains_key("slurm_job_id"))
        },
    )
    .await;

    // scancel one busy agent mid-task. Slurm signals every process of the job, so its
    // engine runs end at once and their tasks go back to the queue as retryable.
    let nodes = c.nodes().await;
    let busy = nodes
        .iter()
        .find(|n| !n.running.is_empty() && n.labels.contains_key("slurm_job_id"))
        .expect("a busy Slurm agent");
    let cancelled = busy.labels["slurm_job_id"].clone();
    let requeued_before = c.stats().await.requeued_total;
    let st = slurm.command("scancel").arg(&cancelled).status().expect("scancel");
    assert!(st.success(), "scancel {cancelled}");
    let agent_log = |id: &str| std::fs::read_to_string(c.dir().join(format!("agent-{id}.log"))).unwrap_or_default();
    // Slurm lists the job as cancelled at once; the agent leaves when its tasks are back.
    wait_until("the cancelled agent to stop", Duration::from_secs(30), &slurm, || async {
        agent_log(&cancelled).contains("agent stopped")
    })
    .await;
    assert!(
        sigterm_with_running(&agent_log(&cancelled)) > 0,
        "the cancelled agent was not mid-task:\n{}",
        agent_log(&cancelled)
    );
    wait_until("the cancelled agent's tasks requeued", Duration::from_secs(10), &slurm, || async {
        c.stats().await.requeued_total > requeued_before
    })
    .await;

    // The others reach the end of their time (--time=1): --signal=B:TERM@20 tells the agent
    // alone, 20 s ahead, so its running tasks get the grace period, then go back.
    let left_in_time = || {
        (1..=40).map(|i| i.to_string()).filter(|id| id != &cancelled).find(|id| {
            let log = agent_log(id);
            sigterm_with_running(&log) > 0 && log.contains("grace period over: handing back unfinished tasks")
        })
    };
    wait_until(
        "an agent to reach its time limit mid-task and hand tasks back",
        Duration::from_secs(150),
        &slurm,
        || async { left_in_time().is_some() },
    )
    .await;
    let timed_out = left_in_time().unwrap_or_default();

    let j = c.wait_job_final(&job, Duration::from_secs(300)).await;
    assert_eq!(state(&j), pb::JobState::Succeeded, "{}", describe_job(&j));
    let gone_s = wait_until(
        "every agent job gone once the queue is empty",
        Duration::from_secs(60),
        &slurm,
        || async { slurm.jobs().is_empty() },
    )
    .await;
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.join();
    assert!(
        most.load(Ordering::Relaxed) <= MAX_AGENTS,
        "{} agent jobs at once, above the maximum {MAX_AGENTS}",
        most.load(Ordering::Relaxed)
    );
    let requested = metric(&url, "dockyard_autoscale_requested_total{pool=\"cpu\"}").await;
    let retired = metric(&url, "dockyard_autoscale_cancelled_total{pool=\"cpu\"}").await;
    assert!(requested >= 1.0, "the replacements were not counted:\n{}", second.log());
    assert!(retired >= 1.0, "no idle agent was retired:\n{}", second.log());
    let s = c.stats().await;
    assert!(s.requeued_total > 0, "nothing was handed back: {s:?}");
    drop(second);

    c.kill_coordinator();
    let total = j.tasks.as_ref().map_or(0, |t| t.total);
    assert_eq!(total, n as u32);
    let (doubles, lost) = dockyard_tests::sled_audit::audit_sled(c.data_dir(), &j.job_id, total).expect("audit");
    println!(
        "slurm: first task running {first_task_s:.1} s after the autoscaler started on an empty cluster; \
         every agent job gone {gone_s:.1} s after the queue emptied (cool-down 3 s, interval 1 s); \
         cancelled job {cancelled} and job {timed_out} at its time limit handed tasks back; requeued {}; \
         autoscaler requested {requested} replacement(s) and retired {retired}; lost={lost} double_commits={doubles}",
        s.requeued_total
    );
    assert_eq!((lost, doubles), (0, 0), "lost and double commits from the sled records");
}
