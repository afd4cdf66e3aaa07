//! Recorded memory traces: reading the CSV file a `trace` memory curve replays.
//!
//! The file is read once, when the scenario is loaded, so a bad file is a scenario error (one
//! line naming the file, the line and the problem) rather than a surprise during a run. The first
//! column is the time in seconds; `column` names the bytes column by its header.

use std::path::Path;

use super::raw::{KeyErr, RawInterpolation, RawTrace};
use crate::model::{Interpolation, Trace};

/// Most rows a trace may have: 16 bytes each, so a trace costs at most 16 MiB of memory.
pub const MAX_TRACE_ROWS: usize = 1 << 20;

/// Checks a `trace` table and reads its file (relative paths start at `base_dir`). Error keys are
/// relative to the `memory` key.
pub(super) fn build(raw: RawTrace, base_dir: &Path) -> Result<Trace, KeyErr> {
    let speed = raw.speed.unwrap_or(1.0);
    if !(speed.is_finite() && speed > 0.0) {
        return Err((
            ".trace.speed".into(),
            format!("must be a number > 0, got {speed}"),
        ));
    }
    let rows = read(&base_dir.join(&raw.file), raw.column.as_deref())?;
    Ok(Trace {
        offset: raw.offset.map_or(rows[0].0, |o| o.0),
        rows,
        interpolation: match raw.interpolate {
            None | Some(RawInterpolation::Step) => Interpolation::Step,
            Some(RawInterpolation::Linear) => Interpolation::Linear,
        },
        looped: raw.looped.unwrap_or(false),
        speed,
    })
}

/// Reads `(seconds, bytes)` rows: time from the first column, bytes from `column` (by header
/// name; may be omitted when the file has exactly two columns). At least one row; times strictly
/// increasing.
fn read(path: &Path, column: Option<&str>) -> Result<Vec<(f64, u64)>, KeyErr> {
    let file_err = |problem: String| {
        (
            ".trace.file".to_string(),
            format!("trace file {}: {problem}", path.display()),
        )
    };
    let line_err = |line: u64, problem: String| file_err(format!("line {line}: {problem}"));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(path)
        .map_err(|e| file_err(format!("cannot read it: {}", io_reason(&e))))?;
    let header = reader
        .headers()
        .map_err(|e| file_err(describe(&e)))?
        .clone();
    let header_line = header.position().map_or(1, |p| p.line());
    if header.is_empty() || header.iter().all(str::is_empty) {
        return Err(file_err(
            "is empty (expected a header line and rows)".into(),
        ));
    }
    let names = header.iter().collect::<Vec<_>>().join(", ");
    let bytes_col = match column {
        Some(name) => header.iter().position(|h| h == name).ok_or_else(|| {
            (
                ".trace.column".to_string(),
                format!(
                    "trace file {} line {header_line}: no column {name:?} (columns: {names})",
                    path.display()
                ),
            )
        })?,
        None if header.len() == 2 => 1,
        None => {
            return Err((
                ".trace.column".into(),
                format!(
                    "missing: trace file {} has {} columns ({names}); name the bytes column",
                    path.display(),
                    header.len()
                ),
            ))
        }
    };
    if bytes_col == 0 {
        return Err((
            ".trace.column".into(),
            format!(
                "the first column ({:?}) is the time; name a bytes column",
                &header[0]
            ),
        ));
    }

    let mut rows: Vec<(f64, u64)> = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(line_err(line, describe(&e)));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        if rows.len() == MAX_TRACE_ROWS {
            return Err(line_err(line, format!("more than {MAX_TRACE_ROWS} rows")));
        }
        let time_text = &record[0];
        let time = time_text
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())
            .ok_or_else(|| line_err(line, format!("time {time_text:?} is not a number")))?;
        if let Some(&(previous, _)) = rows.last() {
            if time <= previous {
                return Err(line_err(
                    line,
                    format!("time {time_text} is not later than the previous row's {previous} (times must increase)"),
                ));
            }
        }
        let bytes_text = &record[bytes_col];
        let bytes = bytes_text.parse::<u64>().map_err(|_| {
            line_err(
                line,
                format!(
                    "{:?} value {bytes_text:?} is not a whole number of bytes",
                    &header[bytes_col]
                ),
            )
        })?;
        rows.push((time, bytes));
    }
    if rows.is_empty() {
        return Err(file_err(format!(
            "has a header but no rows (line {header_line})"
        )));
    }
    Ok(rows)
}

/// A CSV error in words, without the crate's position prefix (the caller names the line).
fn describe(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("has {len} fields, the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8 text".into(),
        csv::ErrorKind::Io(io) => format!("cannot read it: {io}"),
        _ => e.to_string(),
    }
}

fn io_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}
