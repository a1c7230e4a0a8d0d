//! The commands. Each one does its requests through rmq-client and prints either text or one
//! JSON document (`--json`) on standard output.

pub mod admin;
pub mod messages;
pub mod offsets;

use std::io::Write;

use anyhow::{Context, Result};
use rmq_client::MQClient;
use serde_json::Value;

/// What every command gets.
pub struct Ctx {
    pub client: MQClient,
    pub json: bool,
}

impl Ctx {
    /// Prints `value` as JSON, or `text()` as is.
    pub fn emit(&self, value: &Value, text: impl FnOnce() -> String) -> Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, value)?;
            writeln!(out)?;
        } else {
            let t = text();
            out.write_all(t.as_bytes())?;
            if !t.is_empty() && !t.ends_with('\n') {
                writeln!(out)?;
            }
        }
        out.flush().context("writing standard output")
    }

    /// One line of a stream (messages as they arrive): JSON lines with `--json`.
    pub fn line(&self, value: &Value, text: impl FnOnce() -> String) -> Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut out, value)?;
        } else {
            out.write_all(text().as_bytes())?;
        }
        writeln!(out)?;
        out.flush().context("writing standard output")
    }
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_aligns() {
        let t = super::table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\nxyz  1\n");
    }
}
