//! `dockyard results` and the hit list of `dockyard run`: a job's results paged in from the
//! coordinator and written as each page arrives, to stdout or to `--out FILE`.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use dockyard_proto::v1 as pb;

use dockyard_common::results_export::{ResultsWriter, EXPORT_PAGE as PAGE};

use crate::client::{explain, Client};
use crate::output::{Format, Ranking};

/// Ligands named when some have no SDF poses; the count covers the rest.
const MISSING_NAMED: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ResultsFormat {
    Table,
    Csv,
    Json,
    /// Poses with scores as data fields (needs --out).
    Sdf,
}

/// How many results, in which format, to where.
#[derive(Clone, Debug)]
pub struct Export {
    /// None: every result.
    pub limit: Option<usize>,
    pub format: ResultsFormat,
    pub out: Option<PathBuf>,
}

impl Export {
    /// `--top N` (0 = all) and `--all`.
    pub fn new(top: usize, all: bool, format: ResultsFormat, out: Option<PathBuf>) -> Self {
        Export {
            limit: (!all && top > 0).then_some(top),
            format,
            out,
        }
    }

    /// Checked before any work (`dockyard run` docks first, then writes).
    pub fn check(&self) -> Result<()> {
        if self.format == ResultsFormat::Sdf && self.out.is_none() {
            bail!("--format sdf needs --out FILE.sdf");
        }
        Ok(())
    }

    /// Whether stdout carries the results (so nothing else may go there).
    pub fn to_stdout(&self) -> bool {
        self.out.is_none()
    }
}

/// A job's results, best first, one coordinator page at a time.
pub struct Pages<'a> {
    c: &'a Client,
    req: pb::ListResultsRequest,
    left: Option<usize>,
    done: bool,
}

impl<'a> Pages<'a> {
    /// `limit` None: all of them; `stage` 0: a funnel's deepest stage; `rank_by` "": the
    /// engine's own ranking.
    pub fn new(c: &'a Client, job: &str, limit: Option<usize>, rank_by: &str, stage: u32) -> Self {
        Pages {
            c,
            req: pb::ListResultsRequest {
                job_id: job.to_string(),
                rank_by: rank_by.to_string(),
                stage,
                ..Default::default()
            },
            left: limit,
            done: false,
        }
    }

    /// The next page and how it is ranked; the first call always returns one (maybe empty).
    pub async fn next(&mut self) -> Result<Option<(Vec<pb::LigandResult>, Ranking)>> {
        if self.done {
            return Ok(None);
        }
        self.req.page_size = self.left.map_or(PAGE, |l| l.clamp(1, PAGE)) as u32;
        let r = self
            .c
            .jobs
            .clone()
            .list_results(self.c.req(self.req.clone()))
            .await
            .map_err(explain)?
            .into_inner();
        let mut rows = r.results;
        if let Some(left) = self.left.as_mut() {
            rows.truncate(*left);
            *left -= rows.len();
        }
        self.done = r.next_page_token.is_empty() || rows.is_empty() || self.left == Some(0);
        self.req.page_token = r.next_page_token;
        let ranking = Ranking {
            key: r.rank_by,
            stage_columns: r.stage_columns,
        };
        Ok(Some((rows, ranking)))
    }
}

/// Writes the job's results as `e` says; returns how many were written.
pub async fn export(c: &Client, job: &str, rank_by: &str, stage: u32, e: &Export) -> Result<usize> {
    e.check()?;
    let mut pages = Pages::new(c, job, e.limit, rank_by, stage);
    // The first page before the file: a wrong job id leaves no empty file behind.
    let first = pages.next().await?.unwrap_or_default();
    let sink: Box<dyn Write> = match &e.out {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout())),
    };
    let written = match e.format {
        ResultsFormat::Sdf => match &e.out {
            Some(path) => sdf(c, &mut pages, first, sink, path).await,
            None => bail!("--format sdf needs --out FILE.sdf"),
        },
        ResultsFormat::Table => listing(&mut pages, first, sink, Format::Table).await,
        ResultsFormat::Csv => listing(&mut pages, first, sink, Format::Csv).await,
        ResultsFormat::Json => listing(&mut pages, first, sink, Format::Json).await,
    };
    match (written, &e.out) {
        (Ok(n), Some(path)) => {
            if e.format != ResultsFormat::Sdf {
                eprintln!("wrote {n} results to {}", path.display());
            }
            Ok(n)
        }
        (Ok(n), None) => Ok(n),
        // A reader that stopped early (`| head`) is not an error.
        (Err(err), None)
            if err
                .downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(0)
        }
        (Err(err), Some(path)) if err.downcast_ref::<io::Error>().is_some() => Err(err.context(format!("cannot write {}", path.display()))),
        (Err(err), _) => Err(err),
    }
}

type Page = (Vec<pb::LigandResult>, Ranking);

async fn listing(pages: &mut Pages<'_>, first: Page, sink: Box<dyn Write>, f: Format) -> Result<usize> {
    let mut w = ResultsWriter::new(sink, f.into());
    let (rows, ranking) = first;
    w.page(&rows, &ranking)?;
    while let Some((rows, ranking)) = pages.next().await? {
        w.page(&rows, &ranking)?;
    }
    let n = w.written();
    let (_, late) = w.finish()?;
    if !late.is_empty() {
        eprintln!(
            "note: engine field(s) {} first appear after the first page and have no CSV column; --format json carries them",
            late.join(", ")
        );
    }
    Ok(n)
}

/// The hits' poses as one SDF, each record carrying its scores as data fields.
async fn sdf(c: &Client, pages: &mut Pages<'_>, first: Page, mut f: Box<dyn Write>, out: &Path) -> Result<usize> {
    let (mut ligands, mut poses) = (0usize, 0usize);
    let mut missing = (0usize, Vec::new());
    let mut page = Some(first);
    while let Some((rows, _)) = page {
        for r in rows {
            ligands += 1;
            if r.sdf_key.is_empty() {
                missing.0 += 1;
                if missing.1.len() < MISSING_NAMED {
                    missing.1.push(r.ligand.clone());
                }
                continue;
            }
            poses += sdf_records(c, &r, ligands, &mut f).await?;
        }
        page = pages.next().await?;
    }
    f.flush()?;
    let (missing, named) = missing;
    eprintln!("wrote {poses} poses of {} ligands to {}", ligands - missing, out.display());
    if missing > 0 {
        let more = if missing > named.len() { ", ..." } else { "" };
        eprintln!(
            "no SDF poses for {missing} ligand(s) (their agent had no Open Babel): {}{more}",
            named.join(", ")
        );
    }
    Ok(ligands)
}

/// One ligand's poses, each followed by the dockyard and engine fields; returns how many.
async fn sdf_records(c: &Client, r: &pb::LigandResult, rank: usize, f: &mut impl Write) -> Result<usize> {
    let data = c.artifact(&r.sdf_key).await?;
    Ok(dockyard_common::results_export::write_sdf_records(f, r, rank, &data)?)
}
