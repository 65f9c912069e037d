//! The artifact store failing under the cluster: down for a while, or corrupting bodies.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use bytes::Bytes;

use super::{screen_under_way, settle, with_two_agents, Report, Size};
use crate::ha::HaOptions;
use crate::proxy::{Mode, Proxy};
use crate::servers::{S3Server, S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY};
use dockyard_common::artifact::{ArtifactKey, ArtifactStore, S3Options, S3Store};

/// Scenario 10: The S3 server goes down mid-screen (the leader's journal writes outcome files to it)
/// and comes back: commits wait and retry; nothing is lost or doubled.
pub async fn s3_down(size: Size) -> Result<Report> {
    let mut r = Report::new("s3_down_then_back");
    let (mut c, _) = with_two_agents(HaOptions {
        coordinators: 1,
        ..HaOptions::default()
    })
    .await;
    let (id, total) = screen_under_way(&c, size).await?;
    let s3 = c.s3.as_mut().ok_or_else(|| anyhow::anyhow!("no s3"))?;
    s3.stop();
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Some(s3) = c.s3.as_mut() {
        s3.restart();
    }
    let back = Instant::now();
    settle(&c, &id, total, Duration::from_secs(180), &mut r).await?;
    r.recover_s = back.elapsed().as_secs_f64();
    r.note = format!("S3 down {:.1} s during the screen", (back - t).as_secs_f64());
    Ok(r)
}

/// Scenario 11: A body corrupted on the wire is refused by its checksum (Content-MD5), and the
/// retried upload stores the right bytes.
pub async fn corrupted_upload(_size: Size) -> Result<Report> {
    let mut r = Report::new("corrupted_upload_refused");
    let dir = tempfile::tempdir()?;
    let s3 = S3Server::start(dir.path());
    s3.create_bucket("dockyard");
    let target = s3.endpoint.trim_start_matches("http://").parse()?;
    let proxy = Proxy::start(target).await;
    let store = S3Store::connect(S3Options {
        bucket: "dockyard".into(),
        prefix: "faults".into(),
        endpoint: Some(proxy.endpoint()),
        region: Some(S3_REGION.into()),
        path_style: true,
        credentials: Some((S3_ACCESS_KEY.into(), S3_SECRET_KEY.into())),
        ..S3Options::default()
    })
    .await?;
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let key = ArtifactKey::new("orgs/default/faults/body.bin")?;
    proxy.set(Mode::CorruptUp);
    let t = Instant::now();
    // Every attempt is corrupted while the mode holds: the store must refuse them all.
    let refused = store.put(&key, Bytes::from(body.clone())).await;
    r.detect_s = t.elapsed().as_secs_f64();
    ensure!(refused.is_err(), "a corrupted upload was accepted");
    ensure!(
        store.head(&key).await.ok().flatten().is_none(),
        "a corrupted upload left an object behind"
    );
    ensure!(proxy.stats().corrupted > 0, "the proxy corrupted nothing");
    proxy.set(Mode::Pass);
    store.put(&key, Bytes::from(body.clone())).await?;
    let back = store.get(&key).await?;
    r.recover_s = t.elapsed().as_secs_f64();
    ensure!(back.as_ref() == body.as_slice(), "stored bytes differ");
    r.note = format!("refused: {}", refused.err().map(|e| e.to_string()).unwrap_or_default());
    Ok(r)
}
