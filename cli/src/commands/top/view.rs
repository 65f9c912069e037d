//! Drawing a frame with ratatui: the same content as the `--once` text, with colour.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table as TableWidget};

use super::model::{Frame, Table, Tone};

pub fn draw(out: &mut ratatui::Frame<'_>, f: &Frame) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut head = vec![Line::from(Span::styled(f.title.clone(), bold.fg(Color::Cyan)))];
    let label_w = f.summary.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in &f.summary {
        let value_style = if *label == "error" {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        head.push(Line::from(vec![
            Span::styled(format!("{label:<label_w$}  "), bold),
            Span::styled(value.clone(), value_style),
        ]));
    }
    let mut heights = vec![Constraint::Length(u16::try_from(head.len() + 1).unwrap_or(u16::MAX))];
    for (i, t) in f.tables.iter().enumerate() {
        // The last table (best hits) takes what is left; the others are as tall as their rows.
        let rows = t.rows.len().max(1) + 3;
        heights.push(if i + 1 == f.tables.len() {
            Constraint::Min(0)
        } else {
            Constraint::Length(u16::try_from(rows).unwrap_or(u16::MAX))
        });
    }
    let areas = Layout::vertical(heights).split(out.area());
    if let Some(a) = areas.first() {
        out.render_widget(Paragraph::new(head), *a);
    }
    for (t, area) in f.tables.iter().zip(areas.iter().skip(1)) {
        table(out, t, *area);
    }
}

fn table(out: &mut ratatui::Frame<'_>, t: &Table, area: Rect) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let [title, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    out.render_widget(Paragraph::new(Line::from(Span::styled(t.title.clone(), bold))), title);
    if t.rows.is_empty() {
        out.render_widget(
            Paragraph::new(format!("  {}", t.empty)).style(Style::new().fg(Color::DarkGray)),
            body,
        );
        return;
    }
    let mut widths: Vec<usize> = t.header.iter().map(|h| h.chars().count()).collect();
    for (cells, _) in &t.rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let widths = widths.into_iter().map(|w| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX)));
    let rows = t.rows.iter().map(|(cells, tone)| Row::new(cells.clone()).style(style(*tone)));
    let header = Row::new(t.header.clone()).style(bold.fg(Color::Gray));
    let inset = Rect {
        x: body.x.saturating_add(2),
        width: body.width.saturating_sub(2),
        ..body
    };
    out.render_widget(TableWidget::new(rows, widths).header(header).column_spacing(2), inset);
}

fn style(t: Tone) -> Style {
    match t {
        Tone::Normal => Style::new(),
        Tone::Good => Style::new().fg(Color::Green),
        Tone::Warn => Style::new().fg(Color::Yellow),
        Tone::Bad => Style::new().fg(Color::Red),
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::super::model::Tone;
    use super::*;

    #[test]
    fn draws_the_same_content_as_the_text() {
        let f = Frame {
            title: "dockyard top  http://x".into(),
            summary: vec![("queue", "7 queued (p5 7)".into())],
            tables: vec![
                Table {
                    title: "NODES".into(),
                    header: vec!["NODE", "STATE"],
                    rows: vec![(vec!["agent-0".into(), "ready".into()], Tone::Good)],
                    empty: "none".into(),
                },
                Table {
                    title: "BEST HITS".into(),
                    header: vec!["#"],
                    rows: vec![],
                    empty: "none yet".into(),
                },
            ],
        };
        let mut term = Terminal::new(TestBackend::new(60, 14)).expect("test terminal");
        term.draw(|out| draw(out, &f)).expect("draw");
        let screen: String = term
            .backend()
            .buffer()
            .content()
            .chunks(60)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>().trim_end().to_string() + "\n")
            .collect();
        for want in [
            "dockyard top  http://x",
            "queue  7 queued (p5 7)",
            "NODE",
            "agent-0",
            "ready",
            "BEST HITS",
            "none yet",
        ] {
            assert!(screen.contains(want), "{want:?} missing from\n{screen}");
        }
    }
}
