//! The report: per phase a table of measure, target, measured value and the baseline measured
//! in the same run, plus notes; printed and written as Markdown.

use std::fmt::Write as _;

/// Whether a measured value meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// No target: a figure for context.
    Context,
}

impl Verdict {
    pub fn of(met: bool) -> Verdict {
        if met { Verdict::Met } else { Verdict::Missed }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**MISSED**",
            Verdict::Context => "",
        }
    }
}

/// One line of a table.
#[derive(Debug, Clone)]
pub struct Row {
    pub measure: String,
    pub target: String,
    pub measured: String,
    pub baseline: String,
    pub verdict: Verdict,
}

/// A table with its title and notes.
#[derive(Debug, Clone, Default)]
pub struct Section {
    pub title: String,
    pub intro: Vec<String>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: impl Into<String>) -> Section {
        Section {
            title: title.into(),
            ..Section::default()
        }
    }

    pub fn intro(&mut self, line: impl Into<String>) {
        self.intro.push(line.into());
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// A figure with a target.
    pub fn target(
        &mut self,
        measure: impl Into<String>,
        target: impl Into<String>,
        measured: impl Into<String>,
        baseline: impl Into<String>,
        met: bool,
    ) {
        self.rows.push(Row {
            measure: measure.into(),
            target: target.into(),
            measured: measured.into(),
            baseline: baseline.into(),
            verdict: Verdict::of(met),
        });
    }

    /// A figure for context, without a target.
    pub fn context(
        &mut self,
        measure: impl Into<String>,
        measured: impl Into<String>,
        baseline: impl Into<String>,
    ) {
        self.rows.push(Row {
            measure: measure.into(),
            target: "—".to_string(),
            measured: measured.into(),
            baseline: baseline.into(),
            verdict: Verdict::Context,
        });
    }
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub header: Vec<String>,
    pub sections: Vec<Section>,
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Ferrite controller scale benchmark\n");
        for line in &self.header {
            let _ = writeln!(out, "{line}");
        }
        for section in &self.sections {
            let _ = writeln!(out, "\n## {}\n", section.title);
            for line in &section.intro {
                let _ = writeln!(out, "{line}");
            }
            if !section.intro.is_empty() {
                let _ = writeln!(out);
            }
            let _ = writeln!(
                out,
                "| measure | target | measured | baseline (same run) | |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|");
            for row in &section.rows {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    cell(&row.measure),
                    cell(&row.target),
                    cell(&row.measured),
                    cell(&row.baseline),
                    row.verdict.text()
                );
            }
            if !section.notes.is_empty() {
                let _ = writeln!(out);
                for line in &section.notes {
                    let _ = writeln!(out, "- {line}");
                }
            }
        }
        out
    }

    /// Whether any target was missed.
    pub fn missed(&self) -> Vec<&Row> {
        self.sections
            .iter()
            .flat_map(|s| &s.rows)
            .filter(|r| r.verdict == Verdict::Missed)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_escape_pipes_and_mark_misses() {
        let mut section = Section::new("Phase");
        section.target("view", "≤ 250 ms", "300 ms", "a | b", false);
        section.context("rss", "10 MiB", "5 MiB");
        let report = Report {
            header: vec![],
            sections: vec![section],
        };
        let text = report.markdown();
        assert!(text.contains("| view | ≤ 250 ms | 300 ms | a \\| b | **MISSED** |"));
        assert_eq!(report.missed().len(), 1);
    }
}
