//! A batch's effects are fixed when the batch ends (`Core::stage`): the run loop applies the
//! next batch before this one is durable, and nothing that batch did may show in them.

use tokio::sync::{mpsc, oneshot};

use dockyard_common::ids::{JobId, NodeId};
use dockyard_proto::v1 as pb;

use super::core::Core;
use super::tests::{sleep_job, sleep_node};
use super::txn::Txn;
use super::{Command, Embedded, SchedulerConfig};
use crate::store::Store;

async fn fresh(dir: &tempfile::TempDir) -> Core {
    Core::load(Store::open(dir.path()).expect("store"), SchedulerConfig::default(), &Embedded)
        .await
        .expect("load")
}

/// Ends a batch as the run loop does, up to its write.
fn end(core: &mut Core, tx: &mut Txn) {
    core.dispatch(tx);
    core.finalize(tx);
    core.stage(tx);
}

fn assigned(rx: &mut mpsc::Receiver<Result<pb::CoordinatorMessage, tonic::Status>>) -> usize {
    let mut n = 0;
    while let Ok(Ok(m)) = rx.try_recv() {
        if let Some(pb::coordinator_message::Kind::Assign(a)) = m.kind {
            n += a.tasks.len();
        }
    }
    n
}

#[tokio::test]
async fn an_assignment_never_goes_out_on_a_connection_opened_after_its_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut core = fresh(&dir).await;
    let node = NodeId::parse("n1").expect("node");

    // Batch 1: the node registers, on connection 1.
    let mut tx = Txn::default();
    let (out1, mut rx1) = mpsc::channel(64);
    let (reply, conn1) = oneshot::channel();
    core.apply(
        Command::Register {
            reg: sleep_node(1),
            outbound: out1,
            reply,
        },
        &mut tx,
    );
    end(&mut core, &mut tx);
    core.effects(tx);
    let conn1 = conn1.await.expect("reply").expect("registered");

    // Batch 2: a one-task job, assigned to the node; the batch is not durable yet.
    let mut tx2 = Txn::default();
    let (reply, _submitted) = oneshot::channel();
    let job = JobId::parse(&format!("{:020x}", 1)).expect("id");
    core.apply(
        Command::Submit {
            job,
            spec: Box::new(sleep_job("o", 1, 0)),
            skipped: Vec::new(),
            reply,
        },
        &mut tx2,
    );
    end(&mut core, &mut tx2);
    assert_eq!(tx2.assigns.values().map(Vec::len).sum::<usize>(), 1, "batch 2 assigns the task");

    // Batch 3, applied while batch 2 is flushed: connection 1 closes and connection 2 opens.
    let mut tx3 = Txn::default();
    core.apply(
        Command::Disconnected {
            node: node.clone(),
            conn: conn1,
            reason: "test".into(),
        },
        &mut tx3,
    );
    let (out2, mut rx2) = mpsc::channel(64);
    let (reply, conn2) = oneshot::channel();
    core.apply(
        Command::Register {
            reg: sleep_node(1),
            outbound: out2,
            reply,
        },
        &mut tx3,
    );
    end(&mut core, &mut tx3);

    // Batch 2 is durable: its assignment was made on connection 1, which is gone.
    core.effects(tx2);
    assert_eq!(assigned(&mut rx2), 0, "batch 2's assignment went out on connection 2");
    assert_eq!(assigned(&mut rx1), 0, "batch 2's assignment went out on a closed connection");
    core.effects(tx3);
    let conn2 = conn2.await.expect("reply").expect("registered");
    assert_ne!(conn1, conn2);
}

#[tokio::test]
async fn a_watcher_sees_each_batch_as_it_ended_and_the_stream_ends_with_the_job() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut core = fresh(&dir).await;
    let job = JobId::parse(&format!("{:020x}", 7)).expect("id");
    let mut tx = Txn::default();
    let (reply, submitted) = oneshot::channel();
    core.apply(
        Command::Submit {
            job: job.clone(),
            spec: Box::new(sleep_job("o", 2, 0)),
            skipped: Vec::new(),
            reply,
        },
        &mut tx,
    );
    end(&mut core, &mut tx);
    core.effects(tx);
    submitted.await.expect("reply").expect("submitted");

    // Batch 1 subscribes; batch 2 cancels the job before batch 1 is durable.
    let mut tx1 = Txn::default();
    let (reply, watch) = oneshot::channel();
    core.apply(Command::Watch { job: job.clone(), reply }, &mut tx1);
    end(&mut core, &mut tx1);
    let mut tx2 = Txn::default();
    let (reply, _cancelled) = oneshot::channel();
    core.apply(
        Command::Cancel {
            job: job.clone(),
            reason: "test".into(),
            reply,
        },
        &mut tx2,
    );
    end(&mut core, &mut tx2);

    core.effects(tx1);
    let mut rx = watch.await.expect("reply").expect("subscribed");
    let state = |j: &pb::Job| pb::JobState::try_from(j.state).expect("state");
    assert_eq!(
        state(&rx.borrow_and_update()),
        pb::JobState::Queued,
        "batch 2's cancel showed before it was durable"
    );
    core.effects(tx2);
    rx.changed().await.expect("batch 2's view");
    assert_eq!(state(&rx.borrow_and_update()), pb::JobState::Cancelled);
    assert!(rx.changed().await.is_err(), "the stream ends with the job");
}
