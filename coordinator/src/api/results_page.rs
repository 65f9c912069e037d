//! One page of a job's results, ranked by a [`RankKey`].
//!
//! By score the store's own order serves the page (result keys sort by score), and the page
//! token is the last key. The CNN keys have no index: the job's results are read and sorted
//! per page, and the token is the offset. That is a full read of the job's results per page,
//! fine for the top hits of a screen; an index per key is the next step if a key other than
//! the score is paged through at the million-result scale.

use dockyard_common::error::DockyardError;
use dockyard_common::ids::JobId;
use dockyard_common::spec::RankKey;

use crate::model::LigandResultRecord;
use crate::store::Store;

/// Store pages read at a time when a whole job's results must be sorted.
const READ_PAGE: usize = 10_000;

pub struct Page {
    pub rows: Vec<LigandResultRecord>,
    /// Empty when this is the last page.
    pub next_token: String,
}

pub fn page(store: &Store, job: &JobId, key: RankKey, token: &str, size: usize) -> Result<Page, DockyardError> {
    let bad_token = || DockyardError::invalid("page_token", "not a token from a previous page of the same ranking");
    if key == RankKey::Score {
        let after = if token.is_empty() {
            None
        } else {
            Some(hex::decode(token).map_err(|_| bad_token())?)
        };
        let (rows, more) = store.results(job, after.as_deref(), size)?;
        return Ok(Page {
            rows,
            next_token: more.map(hex::encode).unwrap_or_default(),
        });
    }
    // Offsets are written as `o<n>` so a score token (hex) is never taken for one.
    let offset: usize = match token {
        "" => 0,
        t => t.strip_prefix('o').and_then(|n| n.parse().ok()).ok_or_else(bad_token)?,
    };
    let mut all = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let (rows, more) = store.results(job, after.as_deref(), READ_PAGE)?;
        all.extend(rows);
        match more {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    // Stable over the store's score order, so ties keep a fixed order between pages.
    all.sort_by(|a, b| key.compare((a.score, &a.fields), (b.score, &b.fields)));
    let total = all.len();
    let start = offset.min(total);
    let end = start.saturating_add(size).min(total);
    let rows: Vec<LigandResultRecord> = all.drain(start..end).collect();
    let next_token = if end < total { format!("o{end}") } else { String::new() };
    Ok(Page { rows, next_token })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::StoreBatch;

    fn record(index: u32, score: f64, cnn: Option<f64>) -> LigandResultRecord {
        LigandResultRecord {
            ligand: format!("lig{index}"),
            index,
            score,
            fields: cnn.map(|c| BTreeMap::from([("cnn_score".to_string(), c)])).unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn pages_by_cnn_score_cover_every_result_once_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let job = JobId::parse("0123456789abcdef0123").expect("id");
        // Scores and CNN scores disagree on the order, and two ligands have no CNN score.
        let rows = [
            (-9.0, Some(0.2)),
            (-7.0, Some(0.9)),
            (-11.0, None),
            (-8.0, Some(0.5)),
            (-12.0, None),
        ];
        let mut batch = StoreBatch::default();
        for (i, (score, cnn)) in rows.iter().enumerate() {
            batch.put_result(&job, &record(i as u32, *score, *cnn));
        }
        store.apply(batch).expect("write");

        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let p = page(&store, &job, RankKey::CnnScore, &token, 2).expect("page");
            seen.extend(p.rows.iter().map(|r| r.index));
            if p.next_token.is_empty() {
                break;
            }
            token = p.next_token;
        }
        // cnn 0.9, 0.5, 0.2, then the two without, best score first.
        assert_eq!(seen, [1, 3, 0, 4, 2]);

        let by_score = page(&store, &job, RankKey::Score, "", 10).expect("page");
        let order: Vec<u32> = by_score.rows.iter().map(|r| r.index).collect();
        assert_eq!(order, [4, 2, 0, 3, 1]);
        assert!(by_score.next_token.is_empty());

        let bad = page(&store, &job, RankKey::CnnScore, "zz", 2).err().expect("bad token");
        assert!(bad.to_string().contains("page_token"), "{bad}");
    }
}
