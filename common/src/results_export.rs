//! A job's hit list as a table, CSV or JSON, written one page at a time as the pages arrive,
//! so exporting a million results never holds more than a page of them. One writer for the
//! CLI (`dockyard results`) and the coordinator's web console, so their files are the same
//! byte for byte when read with the same page size.

use std::collections::BTreeSet;
use std::io::{self, Write};

use dockyard_proto::v1 as pb;

use crate::spec::RankKey;

/// Results per ListResults page when exporting. The CSV's engine-field columns come from
/// the first page, so exports that should match read pages of the same size.
pub const EXPORT_PAGE: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// How the coordinator ranked a list of results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranking {
    /// The key (empty from an older coordinator).
    pub key: String,
    /// A funnel's: the fields holding each earlier stage's score, in stage order.
    pub stage_columns: Vec<String>,
}

impl From<&str> for Ranking {
    fn from(key: &str) -> Self {
        Ranking {
            key: key.to_string(),
            stage_columns: Vec::new(),
        }
    }
}

/// The CSV's fixed columns. The first seven are the file's original ones, and a funnel's
/// stage columns follow them, so scripts reading by position read files with and without
/// the later columns alike.
const CSV_LEAD: [&str; 7] = ["rank", "ligand", "score", "cnn_score", "cnn_affinity", "poses", "pose_key"];
const CSV_TAIL: [&str; 7] = ["smiles", "ligand_index", "task_id", "sdf_key", "log_key", "preparation", "cached"];

/// What the first page decides for the whole stream: table and CSV columns cannot change
/// once the header is out.
struct Layout {
    ranking: Ranking,
    /// Table: CNN columns only for jobs whose engine computed them.
    with_cnn: bool,
    /// CSV: the engine fields given a column, the union of the first page's field names.
    /// Engines write the same fields for every ligand of a job, so the first page (up to
    /// 1000 rows) sees them all; a field first seen later is reported, and JSON carries it.
    fields: Vec<String>,
    /// Every field name with a column (or covered by a fixed one).
    known: BTreeSet<String>,
    /// Fields seen after the header was written, reported once at the end.
    late: BTreeSet<String>,
}

pub struct ResultsWriter<W: Write> {
    out: W,
    format: Format,
    layout: Option<Layout>,
    written: usize,
}

impl<W: Write> ResultsWriter<W> {
    pub fn new(out: W, format: Format) -> Self {
        ResultsWriter {
            out,
            format,
            layout: None,
            written: 0,
        }
    }

    /// Rows written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The sink, to drain what was written so far (a streamed HTTP body).
    pub fn sink_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes the next page, best first; the first page also writes the header.
    pub fn page(&mut self, rows: &[pb::LigandResult], ranking: &Ranking) -> io::Result<()> {
        if self.layout.is_none() {
            let layout = Layout::of(rows, ranking);
            self.header(&layout)?;
            self.layout = Some(layout);
        }
        for r in rows {
            self.row(r)?;
        }
        Ok(())
    }

    /// Ends the stream (the table's legend, JSON's closing bracket) and hands back the sink
    /// with the CSV's late fields: engine fields first seen after the first page, which have
    /// no column (JSON carries them).
    pub fn finish(mut self) -> io::Result<(W, Vec<String>)> {
        if self.layout.is_none() {
            // No page at all: still a header, so the output parses.
            self.page(&[], &Ranking::default())?;
        }
        let layout = self.layout.take().unwrap_or_else(|| Layout::of(&[], &Ranking::default()));
        let mut late = Vec::new();
        match self.format {
            Format::Json => writeln!(self.out, "]")?,
            Format::Csv => late = layout.late.iter().cloned().collect(),
            Format::Table => table_legend(&mut self.out, &layout)?,
        }
        self.out.flush()?;
        Ok((self.out, late))
    }

    fn header(&mut self, l: &Layout) -> io::Result<()> {
        match self.format {
            Format::Json => write!(self.out, "["),
            Format::Csv => {
                let mut w = csv_writer(&mut self.out);
                let stages = l.ranking.stage_columns.iter().map(String::as_str);
                let fields = l.fields.iter().map(String::as_str);
                let header: Vec<&str> = CSV_LEAD.into_iter().chain(stages).chain(CSV_TAIL).chain(fields).collect();
                w.write_record(&header)?;
                w.flush()
            }
            Format::Table => {
                write!(self.out, "{:>4}  {:<32}  {:>12}", "RANK", "LIGAND", "SCORE")?;
                if l.with_cnn {
                    write!(self.out, "  {:>9}  {:>12}", "CNN_SCORE", "CNN_AFFINITY")?;
                }
                for c in &l.ranking.stage_columns {
                    write!(self.out, "  {:>14}", c.to_ascii_uppercase())?;
                }
                writeln!(self.out, "  {:>5}", "POSES")
            }
        }
    }

    fn row(&mut self, r: &pb::LigandResult) -> io::Result<()> {
        self.written += 1;
        let rank = self.written;
        let Some(l) = self.layout.as_mut() else {
            return Ok(());
        };
        match self.format {
            Format::Json => {
                if rank > 1 {
                    write!(self.out, ",")?;
                }
                serde_json::to_writer(&mut self.out, &row_json(rank, r, &l.ranking.stage_columns))?;
                Ok(())
            }
            Format::Csv => {
                l.late.extend(r.fields.keys().filter(|k| !l.known.contains(*k)).cloned());
                let mut cells = vec![
                    rank.to_string(),
                    r.ligand.clone(),
                    format!("{:.3}", r.score),
                    cnn_cell(r, RankKey::CnnScore),
                    cnn_cell(r, RankKey::CnnAffinity),
                    r.poses.len().to_string(),
                    r.pose_key.clone(),
                ];
                cells.extend(l.ranking.stage_columns.iter().map(|c| stage_cell(r, c)));
                cells.extend([
                    r.smiles.clone(),
                    r.ligand_index.to_string(),
                    r.task_id.clone(),
                    r.sdf_key.clone(),
                    r.log_key.clone(),
                    r.preparation.clone(),
                    r.cached.to_string(),
                ]);
                // The value as the JSON and SD exports write it; a field this ligand lacks is empty.
                cells.extend(l.fields.iter().map(|k| r.fields.get(k).map_or_else(String::new, |v| v.to_string())));
                let mut w = csv_writer(&mut self.out);
                w.write_record(&cells)?;
                w.flush()
            }
            Format::Table => {
                write!(self.out, "{:>4}  {:<32}  {:>12.3}", rank, r.ligand, r.score)?;
                if l.with_cnn {
                    write!(
                        self.out,
                        "  {:>9}  {:>12}",
                        cnn_cell(r, RankKey::CnnScore),
                        cnn_cell(r, RankKey::CnnAffinity)
                    )?;
                }
                for c in &l.ranking.stage_columns {
                    write!(self.out, "  {:>14}", stage_cell(r, c))?;
                }
                writeln!(self.out, "  {:>5}", r.poses.len())
            }
        }
    }
}

impl Layout {
    fn of(rows: &[pb::LigandResult], ranking: &Ranking) -> Layout {
        let cnn = [RankKey::CnnScore, RankKey::CnnAffinity];
        let mut known: BTreeSet<String> = CSV_LEAD
            .iter()
            .chain(CSV_TAIL.iter())
            .map(|c| c.to_string())
            .chain(ranking.stage_columns.iter().cloned())
            .collect();
        // A field named like a fixed column (cnn_score) is in that column already.
        let fields: BTreeSet<String> = rows
            .iter()
            .flat_map(|r| r.fields.keys())
            .filter(|k| !known.contains(*k))
            .cloned()
            .collect();
        known.extend(fields.iter().cloned());
        Layout {
            ranking: ranking.clone(),
            with_cnn: rows.iter().any(|r| cnn.iter().any(|k| k.value(r.score, &r.fields).is_some())),
            fields: fields.into_iter().collect(),
            known,
            late: BTreeSet::new(),
        }
    }
}

/// A CSV writer for one page onto the stream; the header is written as a record of its own.
fn csv_writer<W: Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new().has_headers(false).from_writer(out)
}

fn table_legend<W: Write>(out: &mut W, l: &Layout) -> io::Result<()> {
    let by = match l.ranking.key.as_str() {
        "" | "score" => "ranked by score".to_string(),
        k => format!("ranked by {k}, highest first"),
    };
    write!(out, "(score: best affinity in kcal/mol; lower is better; {by}")?;
    if l.with_cnn {
        write!(out, "; cnn_score: pose probability, cnn_affinity: pK")?;
    }
    writeln!(out, ")")
}

fn row_json(rank: usize, r: &pb::LigandResult, stages: &[String]) -> serde_json::Value {
    serde_json::json!({
        "rank": rank,
        "ligand": r.ligand,
        "score": r.score,
        "cnn_score": RankKey::CnnScore.value(r.score, &r.fields),
        "cnn_affinity": RankKey::CnnAffinity.value(r.score, &r.fields),
        "ligand_index": r.ligand_index,
        "task_id": r.task_id,
        "poses": r.poses.iter().map(|p| serde_json::json!({"rank": p.rank, "affinity": p.affinity, "rmsd_lb": p.rmsd_lb, "rmsd_ub": p.rmsd_ub})).collect::<Vec<_>>(),
        "pose_key": r.pose_key,
        "sdf_key": r.sdf_key,
        "log_key": r.log_key,
        "smiles": r.smiles,
        "preparation": r.preparation,
        "cached": r.cached,
        "stage_scores": stages.iter().map(|c| (c.clone(), serde_json::json!(r.fields.get(c).copied().filter(|v| v.is_finite())))).collect::<serde_json::Map<String, serde_json::Value>>(),
        "fields": r.fields,
    })
}

/// An earlier stage's score of one result, or `n/a` (a cached result, an older record).
fn stage_cell(r: &pb::LigandResult, column: &str) -> String {
    r.fields
        .get(column)
        .filter(|v| v.is_finite())
        .map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
}

/// A CNN column of one result: its value, or `n/a` when the engine did not compute it.
fn cnn_cell(r: &pb::LigandResult, key: RankKey) -> String {
    key.value(r.score, &r.fields)
        .map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
}

/// One ligand's poses from its SDF object, each record followed by the dockyard fields
/// (ligand, rank, pose, affinity, best score, SMILES) and every engine field; returns how
/// many records were written.
pub fn write_sdf_records<W: Write>(f: &mut W, r: &pb::LigandResult, rank: usize, sdf: &[u8]) -> io::Result<usize> {
    let text = String::from_utf8_lossy(sdf);
    let mut written = 0;
    for (pose_i, rec) in text.split("$$$$").map(str::trim_end).filter(|r| !r.trim().is_empty()).enumerate() {
        let rec = rec.trim_start_matches(['\r', '\n']);
        writeln!(f, "{rec}")?;
        // A data item the engine's SDF ends with (obabel's TORSDO) needs its closing blank
        // line back, or the next field would read as part of its value.
        if !rec.ends_with("M  END") {
            writeln!(f)?;
        }
        let mut field = |k: &str, v: String| writeln!(f, ">  <{k}>\n{v}\n");
        field("dockyard_ligand", r.ligand.clone())?;
        field("dockyard_rank", rank.to_string())?;
        field("dockyard_pose", (pose_i + 1).to_string())?;
        if let Some(p) = r.poses.get(pose_i) {
            field("dockyard_affinity", format!("{:.3}", p.affinity))?;
        }
        field("dockyard_best_score", format!("{:.3}", r.score))?;
        if !r.smiles.is_empty() {
            field("dockyard_smiles", r.smiles.clone())?;
        }
        // In name order: the map's own order changes from run to run. The ligand's fields
        // are its best pose's: a pose record that carries a field of its own (rustina's
        // cnn_score, Vina's energy terms) keeps its value, not a second one of that name.
        let own = sd_item_names(rec);
        let mut fields: Vec<(&String, &f64)> = r.fields.iter().filter(|(k, _)| !own.contains(k.as_str())).collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in fields {
            field(k, format!("{v}"))?;
        }
        writeln!(f, "$$$$")?;
        written += 1;
    }
    Ok(written)
}

/// The names of an SD record's data items (`>  <name>` header lines).
fn sd_item_names(rec: &str) -> std::collections::HashSet<&str> {
    rec.lines()
        .filter(|l| l.starts_with('>'))
        .filter_map(|l| l.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(name, _)| name))
        .collect()
}

/// A whole list at once (a report's top hits, tests).
pub fn render(rows: &[pb::LigandResult], ranking: &Ranking, f: Format) -> String {
    let mut w = ResultsWriter::new(Vec::new(), f);
    // Writing to memory cannot fail.
    let out = w
        .page(rows, ranking)
        .and_then(|()| w.finish())
        .map(|(out, _)| out)
        .unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(ligand: &str, smiles: &str, fields: &[(&str, f64)]) -> pb::LigandResult {
        pb::LigandResult {
            ligand: ligand.into(),
            smiles: smiles.into(),
            score: -7.0,
            fields: fields.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }
    }

    fn parse(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let header = r.headers().expect("header").iter().map(String::from).collect();
        let rows = r
            .records()
            .map(|rec| rec.expect("record").iter().map(String::from).collect())
            .collect();
        (header, rows)
    }

    /// Every engine field of the first page is a column; a row without it has an empty
    /// cell; names and SMILES with commas and quotes survive the round trip.
    #[test]
    fn csv_carries_smiles_and_every_engine_field() {
        let ranking = Ranking {
            key: "score".into(),
            stage_columns: vec!["cheap.score".into()],
        };
        let page1 = [
            hit("a, \"the\" one", "C(=O)O", &[("minimizedAffinity", -7.5), ("cheap.score", -6.0)]),
            hit("b", "CC", &[("CNNscore", 0.5)]),
        ];
        let page2 = [hit("c", "CCC", &[("minimizedAffinity", -6.5), ("late", 1.0)])];
        let mut w = ResultsWriter::new(Vec::new(), Format::Csv);
        w.page(&page1, &ranking).expect("page 1");
        w.page(&page2, &ranking).expect("page 2");
        let text = String::from_utf8(w.finish().expect("finish").0).expect("utf-8");
        let (header, rows) = parse(&text);
        assert_eq!(
            header,
            [
                "rank",
                "ligand",
                "score",
                "cnn_score",
                "cnn_affinity",
                "poses",
                "pose_key",
                "cheap.score",
                "smiles",
                "ligand_index",
                "task_id",
                "sdf_key",
                "log_key",
                "preparation",
                "cached",
                "CNNscore",
                "minimizedAffinity"
            ]
        );
        let col = |name: &str| header.iter().position(|h| h == name).expect(name);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][col("ligand")], "a, \"the\" one");
        assert_eq!(rows[0][col("smiles")], "C(=O)O");
        assert_eq!(rows[0][col("minimizedAffinity")], "-7.5");
        assert_eq!(rows[0][col("cheap.score")], "-6.000");
        assert_eq!(rows[0][col("CNNscore")], "");
        assert_eq!(rows[1][col("CNNscore")], "0.5");
        assert_eq!(rows[1][col("cnn_score")], "0.500");
        assert_eq!(rows[1][col("cheap.score")], "n/a");
        assert_eq!(rows[2][col("rank")], "3");
        assert_eq!(rows[2][col("minimizedAffinity")], "-6.5");
    }

    /// Pages written one after another make one valid JSON array, ranked across pages.
    #[test]
    fn json_pages_make_one_array() {
        let mut w = ResultsWriter::new(Vec::new(), Format::Json);
        w.page(&[hit("a", "C", &[])], &Ranking::default()).expect("page 1");
        w.page(&[], &Ranking::default()).expect("empty page");
        w.page(&[hit("b", "CC", &[]), hit("c", "CCC", &[])], &Ranking::default())
            .expect("page 3");
        let v: serde_json::Value = serde_json::from_slice(&w.finish().expect("finish").0).expect("json");
        let ranks: Vec<i64> = v.as_array().expect("array").iter().filter_map(|r| r["rank"].as_i64()).collect();
        assert_eq!(ranks, [1, 2, 3]);
        assert_eq!(render(&[], &Ranking::default(), Format::Json), "[]\n");
    }

    /// A pose record's own data item keeps its value; the ligand's (best pose's) fields
    /// fill in only the names the record lacks, so no record has a name twice.
    #[test]
    fn sdf_pose_records_keep_their_own_fields() {
        let r = hit("lig", "", &[("vina_unbound", -0.1), ("vina_affinity", -7.0)]);
        let rec =
            |unbound: &str| format!("lig\n\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n>  <vina_unbound>\n{unbound}\n\n$$$$\n");
        let sdf = format!("{}{}", rec("-0.1"), rec("4.923"));
        let mut out = Vec::new();
        assert_eq!(write_sdf_records(&mut out, &r, 1, sdf.as_bytes()).expect("written"), 2);
        let text = String::from_utf8(out).expect("utf8");
        let records: Vec<&str> = text.split("$$$$").filter(|r| !r.trim().is_empty()).collect();
        assert_eq!(records.len(), 2);
        for (rec, unbound) in records.iter().zip(["-0.1", "4.923"]) {
            assert_eq!(rec.matches("<vina_unbound>").count(), 1, "{rec}");
            assert!(rec.contains(&format!("<vina_unbound>\n{unbound}\n")), "{rec}");
            assert_eq!(rec.matches("<vina_affinity>").count(), 1, "{rec}");
        }
    }
}
