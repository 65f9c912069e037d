//! `--once`: a frame as plain text lines (no escape codes), for scripts and tests.

use std::fmt::Write;

use super::model::{Frame, Table};

pub fn render(f: &Frame) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", f.title);
    let label_w = f.summary.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in &f.summary {
        let _ = writeln!(out, "{label:<label_w$}  {value}");
    }
    for t in &f.tables {
        out.push('\n');
        table(&mut out, t);
    }
    out
}

fn table(out: &mut String, t: &Table) {
    let _ = writeln!(out, "{}", t.title);
    if t.rows.is_empty() {
        let _ = writeln!(out, "  {}", t.empty);
        return;
    }
    let mut widths: Vec<usize> = t.header.iter().map(|h| h.chars().count()).collect();
    for (cells, _) in &t.rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from(" ");
        for (c, w) in cells.zip(&widths) {
            s.push(' ');
            s.push_str(c);
            s.extend(std::iter::repeat_n(' ', w.saturating_sub(c.chars().count()) + 1));
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&mut t.header.iter().copied()));
    for (cells, _) in &t.rows {
        let _ = writeln!(out, "{}", line(&mut cells.iter().map(String::as_str)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Tone;
    use super::*;

    #[test]
    fn columns_line_up_and_empty_tables_say_so() {
        let f = Frame {
            title: "dockyard top  http://x".into(),
            summary: vec![("queue", "3 queued".into()), ("throughput", "n/a".into())],
            tables: vec![
                Table {
                    title: "NODES".into(),
                    header: vec!["NODE", "STATE"],
                    rows: vec![
                        (vec!["agent-0".into(), "ready".into()], Tone::Good),
                        (vec!["a".into(), "lost".into()], Tone::Bad),
                    ],
                    empty: "none".into(),
                },
                Table {
                    title: "HITS".into(),
                    header: vec!["#"],
                    rows: vec![],
                    empty: "none yet".into(),
                },
            ],
        };
        let text = render(&f);
        assert_eq!(
            text,
            "dockyard top  http://x\n\
             queue       3 queued\n\
             throughput  n/a\n\
             \n\
             NODES\n  \
               NODE     STATE\n  \
               agent-0  ready\n  \
               a        lost\n\
             \n\
             HITS\n  \
               none yet\n"
        );
        assert!(!text.contains('\x1b'));
    }
}
