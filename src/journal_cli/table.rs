//! Plain-text tables and the small formatting rules every text view shares.

use std::fmt::Write as _;

/// Columns padded to the widest cell, two spaces apart; the last column is not padded.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    show_header: bool,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), show_header: true, rows: Vec::new() }
    }

    /// Aligned columns without a header line (key/value blocks).
    pub fn headless(columns: usize) -> Self {
        Self { headers: vec![""; columns], show_header: false, rows: Vec::new() }
    }

    /// Cells are cleaned of control characters (see [`clean`]); missing cells are empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(widths.len()) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        let header = self.show_header.then_some(&header);
        for row in header.into_iter().chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width.saturating_sub(cell.chars().count());
                let _ = write!(line, "{cell}{}", " ".repeat(pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Control characters (a newline in a mount(8) error, an escape sequence) are shown
/// escaped, so one record stays one line and nothing in the journal can drive a terminal.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

/// The first 8 characters of a uuid (boot ids, operation ids): enough to tell them apart on
/// one node, short enough for a table. JSON output always has the full value.
pub fn short(id: impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

/// `-` for nothing.
pub fn or_dash(value: Option<String>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or_else(|| "-".to_owned())
}

/// `1 target`, `2 targets`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_rows_when_rendered_then_columns_align_and_lines_have_no_trailing_space() {
        let mut t = Table::new(&["A", "LONGER", "LAST"]);
        t.row(vec!["xxxx".into(), "y".into(), "z".into()]);
        t.row(vec!["1".into(), "2".into(), String::new()]);
        assert_eq!(t.render(), "A     LONGER  LAST\nxxxx  y       z\n1     2\n");
    }

    #[test]
    fn given_control_characters_when_cleaned_then_they_are_escaped() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(clean("a\nb\x1b[2J"), "a\\nb\\u{1b}[2J");
        let mut t = Table::new(&["X"]);
        t.row(vec!["two\nlines".into()]);
        assert_eq!(t.render(), "X\ntwo\\nlines\n");
    }

    #[test]
    fn given_small_values_when_formatted_then_helpers_pluralize_and_dash() {
        assert_eq!(count(1, "target", "targets"), "1 target");
        assert_eq!(count(0, "target", "targets"), "0 targets");
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some(String::new())), "-");
        assert_eq!(short("3f1b2c4d-1111-4222-8333-944455556666"), "3f1b2c4d");
    }
}
