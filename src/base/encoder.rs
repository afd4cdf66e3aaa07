//! The one writer of the text exposition format (0.0.4): escaping of label values and HELP text,
//! the `# HELP`/`# TYPE` lines, label sets and sample lines, and how values are written. Both the
//! domain families (`exposition`) and the self-metrics (`telemetry`) go through it, so the format
//! has one owner; the gzip form is made from its output by `publish`.

use std::fmt::Write as _;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's type, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// A sample's value as the format writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// An integer, every digit (bytes and counts past 2^53 stay exact).
    Int(u64),
    /// A float in Rust's shortest round-trip form, as the prometheus crate writes it: `1`, `0.25`,
    /// `inf`, `NaN`.
    Float(f64),
    /// A float with three decimals: a Unix time in seconds, to the millisecond.
    Millis(f64),
}

impl Value {
    /// Appends the value as the format writes it.
    fn push_to(self, out: &mut String) {
        // `write!` into a String cannot fail.
        let _ = match self {
            Value::Int(v) => write!(out, "{v}"),
            Value::Float(v) => write!(out, "{v}"),
            Value::Millis(v) => write!(out, "{v:.3}"),
        };
    }
}

/// A label's value: text (escaped when written) or a number.
#[derive(Debug, Clone, Copy)]
pub enum LabelValue<'a> {
    Text(&'a str),
    Number(u64),
}

/// Appends `s` escaped for the text format: backslash and newline, and the double quote when
/// `quote` (label values; HELP text keeps its quotes).
pub fn escape_into(out: &mut String, s: &str, quote: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    let Some(first) = s.find(special) else {
        out.push_str(s);
        return;
    };
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Appends `name="value"` pairs, comma-separated, to `out` (after a comma when `out` already
/// holds pairs); names and values come in equal numbers, checked at compile time.
pub fn push_labels<const N: usize>(
    out: &mut String,
    names: &[&str; N],
    values: [LabelValue<'_>; N],
) {
    for (name, value) in names.iter().zip(values) {
        push_label(out, name, value);
    }
}

/// Appends one `name="value"` pair, after a comma when `out` already holds pairs.
pub fn push_label(out: &mut String, name: &str, value: LabelValue<'_>) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(name);
    out.push_str("=\"");
    match value {
        LabelValue::Text(s) => escape_into(out, s, true),
        // `write!` into a String cannot fail.
        LabelValue::Number(n) => {
            let _ = write!(out, "{n}");
        }
    }
    out.push('"');
}

/// A label set (`name="value",…`, without braces) for `names` and `values`.
pub fn label_set<const N: usize>(names: &[&str; N], values: [LabelValue<'_>; N]) -> String {
    let mut out = String::with_capacity(24 * N);
    push_labels(&mut out, names, values);
    out
}

/// Writes families into a text buffer.
pub struct Encoder<'a> {
    out: &'a mut String,
}

impl<'a> Encoder<'a> {
    pub fn new(out: &'a mut String) -> Self {
        Encoder { out }
    }

    /// A family's `# HELP` line (none when `help` is empty) and `# TYPE` line.
    pub fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let out = &mut *self.out;
        if !help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_into(out, help, false);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(kind.as_str());
        out.push('\n');
    }

    /// A sample line: `name{labels} value`, without braces when `labels` (an escaped label set)
    /// is empty.
    pub fn sample(&mut self, name: &str, labels: &str, value: Value) {
        self.sample_at(name, "", labels, value, 0);
    }

    /// A sample line of a family's series `name` + `suffix` (`_bucket`, `_sum`, `_count`), with
    /// a timestamp in milliseconds unless it is 0.
    pub fn sample_at(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &str,
        value: Value,
        timestamp_ms: i64,
    ) {
        let out = &mut *self.out;
        out.push_str(name);
        out.push_str(suffix);
        if !labels.is_empty() {
            out.push('{');
            out.push_str(labels);
            out.push('}');
        }
        out.push(' ');
        value.push_to(out);
        if timestamp_ms != 0 {
            // `write!` into a String cannot fail.
            let _ = write!(out, " {timestamp_ms}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str, quote: bool) -> String {
        let mut out = String::new();
        escape_into(&mut out, s, quote);
        out
    }

    #[test]
    fn escapes_label_values_and_help() {
        assert_eq!(escaped("a\"b\\c\nd", true), "a\\\"b\\\\c\\nd");
        assert_eq!(escaped("a\"b\\c\nd", false), "a\"b\\\\c\\nd");
        assert_eq!(escaped("plain", true), "plain");
        assert_eq!(escaped("ünï\"", true), "ünï\\\"");
    }

    #[test]
    fn values_are_written_as_the_prometheus_crate_writes_them() {
        let v = |v: Value| {
            let mut out = String::new();
            v.push_to(&mut out);
            out
        };
        assert_eq!(v(Value::Int(u64::MAX)), "18446744073709551615");
        assert_eq!(v(Value::Float(1.0)), "1");
        assert_eq!(v(Value::Float(0.0005)), "0.0005");
        assert_eq!(v(Value::Float(f64::INFINITY)), "inf");
        assert_eq!(v(Value::Float(f64::NAN)), "NaN");
        assert_eq!(v(Value::Millis(1.5)), "1.500");
    }

    #[test]
    fn lines() {
        let mut out = String::new();
        let mut e = Encoder::new(&mut out);
        e.header("m", Kind::Counter, "Help with \"quotes\" and \\.");
        let labels = label_set(
            &["gpu", "name"],
            [LabelValue::Number(3), LabelValue::Text("x\"y")],
        );
        e.sample("m", &labels, Value::Int(7));
        e.sample("m", "", Value::Int(0));
        e.sample_at("m", "_sum", "", Value::Float(0.5), 12);
        e.header("n", Kind::Gauge, "");
        assert_eq!(
            out,
            "# HELP m Help with \"quotes\" and \\\\.\n# TYPE m counter\n\
             m{gpu=\"3\",name=\"x\\\"y\"} 7\nm 0\nm_sum 0.5 12\n# TYPE n gauge\n"
        );
    }
}
