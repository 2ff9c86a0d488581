//! Tables as the `linstor` client draws them.
//!
//! ```text
//! ╭────────────────────────────╮        +----------------------------+
//! ┊ Node  ┊ NodeType ┊ State  ┊        | Node  | NodeType | State  |
//! ╞════════════════════════════╡        |============================|
//! ┊ alpha ┊ COMBINED ┊ Online ┊        | alpha | COMBINED | Online |
//! ╰────────────────────────────╯        +----------------------------+
//! ```
//!
//! Rows are sorted naturally by the group-by columns (the first column unless `-g` names
//! others), keeping the controller's order among equal keys. A cell may hold several lines;
//! when any does, a dotted rule separates the rows. Columns are as wide as their widest line;
//! text is left- or right-aligned per column. Colors wrap the padded cell, so they never change
//! the layout.

use std::cmp::Ordering;

use crate::output::{Color, Style};

/// How a column's text sits in its cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A column: header, alignment and the color its data cells take by default.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub align: Align,
    pub color: Option<Color>,
}

impl Column {
    pub fn new(name: impl Into<String>) -> Column {
        Column {
            name: name.into(),
            align: Align::Left,
            color: None,
        }
    }

    pub fn right(mut self) -> Column {
        self.align = Align::Right;
        self
    }

    pub fn colored(mut self, color: Color) -> Column {
        self.color = Some(color);
        self
    }
}

/// One cell: its text (lines separated by `\n`) and an optional color of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub color: Option<Color>,
}

impl Cell {
    pub fn colored(text: impl Into<String>, color: Option<Color>) -> Cell {
        Cell {
            text: text.into(),
            color,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell { text, color: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_string())
    }
}

/// The characters of a frame.
struct Frame {
    top: (char, char, char),
    header_rule: (char, char, char),
    row_rule: (char, char, char),
    bottom: (char, char, char),
    pipe: char,
}

const UTF8: Frame = Frame {
    top: ('╭', '─', '╮'),
    header_rule: ('╞', '═', '╡'),
    row_rule: ('╞', '┄', '╡'),
    bottom: ('╰', '─', '╯'),
    pipe: '┊',
};

const ASCII: Frame = Frame {
    top: ('+', '-', '+'),
    header_rule: ('|', '=', '|'),
    row_rule: ('|', '-', '|'),
    bottom: ('+', '-', '+'),
    pipe: '|',
};

/// A table under construction.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<Cell>>,
    group_by: Vec<usize>,
}

impl Table {
    pub fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
            group_by: vec![0],
        }
    }

    /// Keeps the rows in the order they were added (unless [`Table::group_by`] names columns).
    pub fn unsorted(mut self) -> Table {
        self.group_by.clear();
        self
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<Cell>) {
        let mut cells = cells;
        cells.resize(self.columns.len(), Cell::default());
        self.rows.push(cells);
    }

    /// Sorts by these columns (header names, any case) instead of the first one. Unknown names
    /// are ignored.
    pub fn group_by(&mut self, names: &[String]) {
        let wanted: Vec<usize> = names
            .iter()
            .filter_map(|name| {
                self.columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name))
            })
            .collect();
        if !wanted.is_empty() {
            self.group_by = wanted;
        }
    }

    /// The table as text, one line per row, each ending in `\n`.
    pub fn render(&self, style: &Style) -> String {
        let frame = if style.utf8 { &UTF8 } else { &ASCII };
        let mut rows = self.rows.clone();
        if !self.group_by.is_empty() {
            rows.sort_by(|a, b| {
                self.group_by
                    .iter()
                    .map(|&i| natural_cmp(&a[i].text, &b[i].text))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            });
        }
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| c.name.replace('_', " "))
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
        let mut multi_line = false;
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                multi_line |= cell.text.contains('\n');
                widths[i] = widths[i].max(cell.text.lines().map(width).max().unwrap_or(0));
            }
        }
        let inner = widths.iter().sum::<usize>() + 3 * widths.len() - 1;
        let rule = |(left, fill, right): (char, char, char)| {
            let mut line = String::with_capacity(inner + 2);
            line.push(left);
            line.extend(std::iter::repeat_n(fill, inner));
            line.push(right);
            line.push('\n');
            line
        };

        let mut out = rule(frame.top);
        let header_cells: Vec<Cell> = header.into_iter().map(Cell::from).collect();
        self.render_row(&mut out, &header_cells, &widths, frame, style, true);
        out.push_str(&rule(frame.header_rule));
        for (index, row) in rows.iter().enumerate() {
            self.render_row(&mut out, row, &widths, frame, style, false);
            if multi_line && index + 1 < rows.len() {
                out.push_str(&rule(frame.row_rule));
            }
        }
        out.push_str(&rule(frame.bottom));
        out
    }

    fn render_row(
        &self,
        out: &mut String,
        cells: &[Cell],
        widths: &[usize],
        frame: &Frame,
        style: &Style,
        header: bool,
    ) {
        let lines: Vec<Vec<&str>> = cells.iter().map(|c| c.text.split('\n').collect()).collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(1);
        for line in 0..height {
            out.push(frame.pipe);
            for (i, column) in self.columns.iter().enumerate() {
                let text = lines[i].get(line).copied().unwrap_or("");
                let pad = widths[i].saturating_sub(width(text));
                let padded = match column.align {
                    Align::Left => format!("{text}{}", " ".repeat(pad)),
                    Align::Right => format!("{}{text}", " ".repeat(pad)),
                };
                let color = if header {
                    None
                } else {
                    cells[i].color.or(column.color)
                };
                out.push(' ');
                out.push_str(&style.paint(&padded, color));
                out.push(' ');
                out.push(frame.pipe);
            }
            out.push('\n');
        }
    }
}

/// Display width: characters, which is right for the names and states tables show.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// Compares like a human: runs of digits as numbers, the rest character by character.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let mut a = a.chars().peekable();
    let mut b = b.chars().peekable();
    loop {
        match (a.peek().copied(), b.peek().copied()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let take = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| {
                    let mut digits = String::new();
                    while let Some(c) = it.peek().copied().filter(char::is_ascii_digit) {
                        digits.push(c);
                        it.next();
                    }
                    digits
                };
                let (x, y) = (take(&mut a), take(&mut b));
                let (xt, yt) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                let order = xt
                    .len()
                    .cmp(&yt.len())
                    .then_with(|| xt.cmp(yt))
                    .then_with(|| x.len().cmp(&y.len()));
                if order.is_ne() {
                    return order;
                }
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a.next();
                b.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Style {
        Style {
            utf8: false,
            color: false,
        }
    }

    /// `linstor node list` from the tutorial transcript.
    const NODE_LIST: &str = "\
+-------------------------------------------------------+
| Node    | NodeType | Addresses               | State  |
|=======================================================|
| alpha   | COMBINED | 10.43.70.2:3366 (PLAIN) | Online |
| bravo   | COMBINED | 10.43.70.3:3366 (PLAIN) | Online |
| charlie | COMBINED | 10.43.70.4:3366 (PLAIN) | Online |
| delta   | COMBINED | 10.43.70.5:3366 (PLAIN) | Online |
+-------------------------------------------------------+
";

    fn node_table() -> Table {
        let mut table = Table::new(vec![
            Column::new("Node"),
            Column::new("NodeType"),
            Column::new("Addresses"),
            Column::new("State").colored(Color::DarkGreen),
        ]);
        for (name, address) in [
            ("delta", "10.43.70.5"),
            ("bravo", "10.43.70.3"),
            ("alpha", "10.43.70.2"),
            ("charlie", "10.43.70.4"),
        ] {
            table.row(vec![
                name.into(),
                "COMBINED".into(),
                format!("{address}:3366 (PLAIN)").into(),
                Cell::colored("Online", Some(Color::Green)),
            ]);
        }
        table
    }

    #[test]
    fn node_list_matches_the_tutorial() {
        assert_eq!(node_table().render(&plain()), NODE_LIST);
    }

    #[test]
    fn utf8_frame() {
        let text = node_table().render(&Style {
            utf8: true,
            color: false,
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("╭{}╮", "─".repeat(55)));
        assert_eq!(
            lines[1],
            "┊ Node    ┊ NodeType ┊ Addresses               ┊ State  ┊"
        );
        assert_eq!(lines[2], format!("╞{}╡", "═".repeat(55)));
        assert_eq!(
            lines[3],
            "┊ alpha   ┊ COMBINED ┊ 10.43.70.2:3366 (PLAIN) ┊ Online ┊"
        );
        assert_eq!(lines[7], format!("╰{}╯", "─".repeat(55)));
    }

    #[test]
    fn colors_wrap_padded_cells_and_leave_headers_alone() {
        let text = node_table().render(&Style {
            utf8: false,
            color: true,
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "| Node    | NodeType | Addresses               | State  |"
        );
        assert_eq!(
            lines[3],
            "| alpha   | COMBINED | 10.43.70.2:3366 (PLAIN) | \u{1b}[1;32mOnline\u{1b}[0m |"
        );
    }

    /// `linstor resource-group list`: a multi-line cell puts a rule between rows.
    const RG_LIST: &str = "\
+-----------------------------------------------------------------+
| ResourceGroup | SelectFilter             | VlmNrs | Description |
|=================================================================|
| DfltRscGrp    |                          |        |             |
|-----------------------------------------------------------------|
| my_ssd_group  | PlaceCount: 2            | 0      |             |
|               | StoragePool(s): pool_ssd |        |             |
+-----------------------------------------------------------------+
";

    #[test]
    fn multi_line_cells_match_the_tutorial() {
        let mut table = Table::new(vec![
            Column::new("ResourceGroup"),
            Column::new("SelectFilter"),
            Column::new("VlmNrs"),
            Column::new("Description"),
        ]);
        table.row(vec![
            "my_ssd_group".into(),
            "PlaceCount: 2\nStoragePool(s): pool_ssd".into(),
            "0".into(),
            "".into(),
        ]);
        table.row(vec!["DfltRscGrp".into(), "".into(), "".into(), "".into()]);
        assert_eq!(table.render(&plain()), RG_LIST);
    }

    /// `linstor volume list`: right-aligned columns.
    #[test]
    fn right_alignment_matches_the_tutorial() {
        let expected = "\
+---------------------------------------------------------------------------------------------------------------------+
| Resource   | Node  | StoragePool | VolNr | MinorNr | DeviceName    | Allocated | InUse  |    State | Repl           |
|=====================================================================================================================|
| my_ssd_res | alpha | pool_ssd    |     0 |    1000 | /dev/drbd1000 |    20 GiB | Unused | UpToDate | Established(1) |
+---------------------------------------------------------------------------------------------------------------------+
";
        let mut table = Table::new(vec![
            Column::new("Resource"),
            Column::new("Node"),
            Column::new("StoragePool"),
            Column::new("VolNr").right(),
            Column::new("MinorNr").right(),
            Column::new("DeviceName"),
            Column::new("Allocated").right(),
            Column::new("InUse"),
            Column::new("State").right(),
            Column::new("Repl"),
        ]);
        table.row(
            [
                "my_ssd_res",
                "alpha",
                "pool_ssd",
                "0",
                "1000",
                "/dev/drbd1000",
                "20 GiB",
                "Unused",
                "UpToDate",
                "Established(1)",
            ]
            .into_iter()
            .map(Cell::from)
            .collect(),
        );
        assert_eq!(table.render(&plain()), expected);
    }

    #[test]
    fn empty_tables_still_have_a_header() {
        let table = Table::new(vec![Column::new("VolumeNr"), Column::new("Flags")]);
        assert_eq!(
            table.render(&plain()),
            "+------------------+\n| VolumeNr | Flags |\n|==================|\n+------------------+\n"
        );
    }

    #[test]
    fn grouping_sorts_naturally_and_keeps_order_within_groups() {
        let mut table = Table::new(vec![Column::new("Resource"), Column::new("Node")]);
        for (r, n) in [("r10", "b"), ("r2", "z"), ("r2", "a"), ("R1", "x")] {
            table.row(vec![r.into(), n.into()]);
        }
        let text = table.render(&plain());
        let order: Vec<&str> = text
            .lines()
            .skip(3)
            .filter(|l| l.starts_with("| "))
            .collect();
        assert_eq!(
            order,
            vec![
                "| R1       | x    |",
                "| r2       | z    |",
                "| r2       | a    |",
                "| r10      | b    |"
            ]
        );
        table.group_by(&["node".to_string()]);
        let text = table.render(&plain());
        assert!(text.lines().nth(3).unwrap().contains("| a "));
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("node2", "node10"), Ordering::Less);
        assert_eq!(natural_cmp("a", "b"), Ordering::Less);
        assert_eq!(natural_cmp("B", "a"), Ordering::Less);
        assert_eq!(natural_cmp("x01", "x1"), Ordering::Greater);
        assert_eq!(natural_cmp("same", "same"), Ordering::Equal);
        assert_eq!(natural_cmp("", "a"), Ordering::Less);
    }
}
