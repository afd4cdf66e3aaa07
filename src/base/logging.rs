//! Logging: the `[log]` section (`--log.level`, `--log.format`) and the line formats on stderr.
//!
//! Text lines are coloured only on a terminal and never with `NO_COLOR`; when stderr is the
//! systemd journal (`JOURNAL_STREAM` names stderr's device and inode) each line starts with an
//! sd-daemon `<N>` priority prefix instead of a timestamp, so `journalctl -p err` filters. JSON lines
//! are flat: `ts`, `level`, `msg`, then the event's fields, then `target`. In text lines every control
//! character of a message or value is escaped (`\n`, `\u{1b}`), so a string that came from NVML or a
//! process name cannot start a forged line or repaint the terminal. `RUST_LOG`, when set, replaces
//! `--log.level` with its own directives (per module levels), for debugging.
//!
//! Lines reach stderr through [`sink`]: a bounded queue and a writer thread, so a log line never
//! blocks, fails or panics the thread that logs it. A panic's message goes the same way (the
//! default panic hook writes to stderr directly and would block on a full pipe).

pub mod sink;

use std::fmt::{self, Write as _};
use std::io::IsTerminal as _;

use serde::{Deserialize, Serialize};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::base::input::ConfigError;

/// The environment variable that overrides `log.level` with tracing directives.
pub const RUST_LOG: &str = "RUST_LOG";

/// The line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event (coloured on a terminal, priority-prefixed in the journal).
    #[default]
    Text,
    /// One JSON object per line: `ts`, `level`, `msg`, then the event's fields.
    Json,
}

/// The `[log]` section as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// The least severe level logged: error, warn, info, debug or trace.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// The validated `[log]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LevelFilter,
    pub format: LogFormat,
}

impl RawLog {
    pub fn validate(&self) -> Result<LogConfig, ConfigError> {
        let level = match self.level.trim().to_ascii_lowercase().as_str() {
            "error" => LevelFilter::ERROR,
            "warn" => LevelFilter::WARN,
            "info" => LevelFilter::INFO,
            "debug" => LevelFilter::DEBUG,
            "trace" => LevelFilter::TRACE,
            _ => {
                return Err(ConfigError::invalid(
                    "log.level",
                    &self.level,
                    "must be one of error, warn, info, debug, trace",
                ))
            }
        };
        Ok(LogConfig {
            level,
            format: self.format,
        })
    }
}

/// How text lines are decorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStyle {
    /// Timestamp, level, target, message, fields; no escape sequences (files, pipes, `NO_COLOR`).
    Plain,
    /// As `Plain`, with ANSI colours (stderr is a terminal).
    Color,
    /// `<N>` syslog priority first and no timestamp: the journal adds its own (sd-daemon(3)).
    Journal,
}

impl TextStyle {
    /// Decides from the environment: the journal when `JOURNAL_STREAM` names stderr, colour only
    /// when stderr is a terminal and `NO_COLOR` is unset or empty (no-color.org).
    pub fn detect() -> TextStyle {
        let journal = std::env::var("JOURNAL_STREAM")
            .ok()
            .is_some_and(|v| stderr_is(&v));
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        TextStyle::choose(journal, std::io::stderr().is_terminal(), no_color)
    }

    fn choose(journal: bool, terminal: bool, no_color: bool) -> TextStyle {
        if journal {
            TextStyle::Journal
        } else if terminal && !no_color {
            TextStyle::Color
        } else {
            TextStyle::Plain
        }
    }
}

/// Whether `journal_stream` ("DEV:INO", as systemd sets it) is the file stderr is open on; a
/// process whose stderr was redirected elsewhere inherits the variable but must not use the prefix.
fn stderr_is(journal_stream: &str) -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let Some((dev, ino)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

/// The filter: `RUST_LOG` when set and not empty (it must parse), else `level` for everything.
pub fn filter(level: LevelFilter, rust_log: Option<&str>) -> Result<EnvFilter, ConfigError> {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(directives) => EnvFilter::builder().parse(directives).map_err(|e| {
            ConfigError::invalid(
                RUST_LOG,
                directives,
                format!("is not a list of tracing directives like \"info,vram_exporter::source::nvml=debug\" ({e})"),
            )
        }),
        None => Ok(EnvFilter::default().add_directive(level.into())),
    }
}

/// The logger, checked (`RUST_LOG` parsed) but not yet installed.
#[derive(Debug)]
pub struct Logger {
    filter: EnvFilter,
    format: LineFormat,
}

impl Logger {
    /// Checks `config` and `RUST_LOG` and decides the line style; installs nothing, so that
    /// `--check-config` refuses a bad `RUST_LOG` too.
    pub fn new(config: LogConfig) -> Result<Logger, ConfigError> {
        let rust_log = std::env::var(RUST_LOG).ok();
        Ok(Logger {
            filter: filter(config.level, rust_log.as_deref())?,
            format: LineFormat {
                json: config.format == LogFormat::Json,
                style: TextStyle::detect(),
            },
        })
    }

    /// Installs the global subscriber writing to stderr through the non-blocking [`sink`], and a
    /// panic hook that logs through it.
    pub fn install(self) -> Result<(), ConfigError> {
        tracing_subscriber::fmt()
            .with_env_filter(self.filter)
            .with_writer(sink::Sink::stderr())
            .event_format(self.format)
            .try_init()
            .map_err(|e| ConfigError::Load(format!("cannot install the logger: {e}")))?;
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            tracing::error!(
                thread = thread.name().unwrap_or("unnamed"),
                panic = %info,
                "a thread panicked"
            );
        }));
        Ok(())
    }
}

/// The event formatter for both formats.
#[derive(Debug, Clone, Copy)]
pub struct LineFormat {
    pub json: bool,
    pub style: TextStyle,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = Line {
            level: *meta.level(),
            target: fields.log_target.as_deref().unwrap_or(meta.target()),
            message: &fields.message,
            fields: &fields.pairs,
        };
        let now = std::time::SystemTime::now();
        let text = if self.json {
            line.json(now)
        } else {
            line.text(self.style, now)
        };
        writer.write_str(&text)
    }
}

/// A field's value as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    /// A `Debug`/`Display` rendering (`?x`, `%x`): written bare in text, as a string in JSON.
    Shown(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// The fields of one event.
#[derive(Debug, Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, Value)>,
    /// Events bridged from the `log` crate carry their real target in a field.
    log_target: Option<String>,
}

impl Fields {
    fn push(&mut self, field: &tracing::field::Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = match value {
                Value::Str(s) | Value::Shown(s) => s,
                other => other.bare(),
            };
        } else if name == "log.target" {
            self.log_target = Some(value.bare());
        } else if !name.starts_with("log.") {
            self.pairs.push((name, value));
        }
    }
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field, Value::Str(value.to_string()));
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.push(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.push(field, Value::U64(value));
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.push(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.push(field, Value::Bool(value));
    }
    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.push(field, Value::Shown(value.to_string()));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.push(field, Value::Shown(format!("{value:?}")));
    }
}

impl Value {
    /// The value as plain text (before any escaping).
    fn bare(&self) -> String {
        match self {
            Value::Str(s) | Value::Shown(s) => s.clone(),
            Value::I64(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
            Value::F64(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) | Value::Shown(s) => serde_json::Value::from(s.as_str()),
            Value::I64(v) => (*v).into(),
            Value::U64(v) => (*v).into(),
            Value::F64(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| v.to_string().into()),
            Value::Bool(v) => (*v).into(),
        }
    }
}

/// One event, ready to be written.
#[derive(Debug)]
pub struct Line<'a> {
    pub level: Level,
    pub target: &'a str,
    pub message: &'a str,
    pub fields: &'a [(&'static str, Value)],
}

/// Keys a JSON line owns; an event field of the same name is written as `field.NAME`.
const JSON_KEYS: [&str; 4] = ["ts", "level", "msg", "target"];

impl Line<'_> {
    /// `{"ts":…,"level":"info","msg":…,FIELDS…,"target":…}` and a newline.
    pub fn json(&self, now: std::time::SystemTime) -> String {
        let mut out = String::with_capacity(128 + self.message.len());
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let _ = write!(
            out,
            "{{\"ts\":\"{}\",\"level\":\"{}\",\"msg\":{}",
            humantime::format_rfc3339_millis(now),
            level_name(self.level),
            quoted(self.message)
        );
        for (name, value) in self.fields {
            let key = if JSON_KEYS.contains(name) {
                quoted(&format!("field.{name}"))
            } else {
                quoted(name)
            };
            let _ = write!(out, ",{key}:{}", value.json());
        }
        let _ = writeln!(out, ",\"target\":{}}}", quoted(self.target));
        out
    }

    /// `TS LEVEL target: message key=value …` (or `<N>LEVEL target: …` for the journal) and a
    /// newline; control characters in the message and values are escaped.
    pub fn text(&self, style: TextStyle, now: std::time::SystemTime) -> String {
        let (dim, bold, reset, level_color) = match style {
            TextStyle::Color => ("\x1b[2m", "\x1b[1m", "\x1b[0m", level_color(self.level)),
            _ => ("", "", "", ""),
        };
        let mut out = String::with_capacity(128 + self.message.len());
        if style == TextStyle::Journal {
            let _ = write!(out, "<{}>", syslog_priority(self.level));
        } else {
            let _ = write!(
                out,
                "{dim}{}{reset} ",
                humantime::format_rfc3339_millis(now)
            );
        }
        let _ = write!(
            out,
            "{level_color}{:>5}{reset} {dim}{}:{reset} ",
            self.level.as_str(),
            self.target
        );
        escape_into(&mut out, self.message);
        for (name, value) in self.fields {
            let _ = write!(out, " {bold}{name}{reset}=");
            match value {
                Value::Str(s) => {
                    out.push('"');
                    escape_into(&mut out, &s.replace('\\', "\\\\").replace('"', "\\\""));
                    out.push('"');
                }
                other => escape_into(&mut out, &other.bare()),
            }
        }
        out.push('\n');
        out
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// sd-daemon(3) priorities: SD_ERR 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn level_color(level: Level) -> &'static str {
    match level {
        Level::ERROR => "\x1b[31m",
        Level::WARN => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        Level::DEBUG => "\x1b[34m",
        Level::TRACE => "\x1b[35m",
    }
}

/// Appends `s` with every control character escaped: `\n`, `\r`, `\t`, others as `\u{XX}`
/// (ESC, DEL, the C1 range and the Unicode line separators included).
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(fields: &'a [(&'static str, Value)]) -> Line<'a> {
        Line {
            level: Level::WARN,
            target: "vram_exporter::source::nvml",
            message: "GPU lost\nINFO forged",
            fields,
        }
    }

    #[test]
    fn text_escapes_control_characters_in_message_and_values() {
        let fields = [
            (
                "name",
                Value::Str("evil\n2026-01-01 INFO fake \x1b[2J".into()),
            ),
            ("shown", Value::Shown("a\r\nb\u{2028}".into())),
            ("gpu", Value::U64(3)),
        ];
        let t = line(&fields).text(TextStyle::Plain, std::time::UNIX_EPOCH);
        assert_eq!(t.matches('\n').count(), 1, "{t:?}");
        assert!(t.ends_with('\n'));
        assert!(!t.contains('\x1b'), "{t:?}");
        assert_eq!(
            t,
            "1970-01-01T00:00:00.000Z  WARN vram_exporter::source::nvml: GPU lost\\nINFO forged \
             name=\"evil\\n2026-01-01 INFO fake \\u{1b}[2J\" shown=a\\r\\nb\\u{2028} gpu=3\n"
        );
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_timestamp() {
        let t = line(&[]).text(TextStyle::Journal, std::time::UNIX_EPOCH);
        assert!(
            t.starts_with("<4> WARN vram_exporter::source::nvml: "),
            "{t:?}"
        );
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color_and_never_in_the_journal() {
        assert_eq!(TextStyle::choose(false, true, false), TextStyle::Color);
        assert_eq!(TextStyle::choose(false, true, true), TextStyle::Plain);
        assert_eq!(TextStyle::choose(false, false, false), TextStyle::Plain);
        assert_eq!(TextStyle::choose(true, true, false), TextStyle::Journal);
        let t = line(&[]).text(TextStyle::Color, std::time::UNIX_EPOCH);
        assert!(t.contains("\x1b[33m WARN\x1b[0m"), "{t:?}");
    }

    #[test]
    fn json_is_flat_and_ordered() {
        let fields = [
            ("gpu", Value::U64(0)),
            ("level", Value::Str("hard".into())),
            ("ratio", Value::F64(0.5)),
            ("error", Value::Shown("timed out".into())),
        ];
        let j = line(&fields).json(std::time::UNIX_EPOCH);
        assert!(j.ends_with("}\n"));
        assert!(
            j.starts_with(
                "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"level\":\"warn\",\"msg\":\"GPU lost\\nINFO forged\",\"gpu\":0,"
            ),
            "{j}"
        );
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["field.level"], "hard");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["ratio"], 0.5);
        assert_eq!(v["error"], "timed out");
        assert_eq!(v["target"], "vram_exporter::source::nvml");
    }

    #[test]
    fn levels_and_rust_log() {
        let ok = |l: &str| {
            RawLog {
                level: l.into(),
                format: LogFormat::Text,
            }
            .validate()
        };
        assert_eq!(ok("DEBUG").unwrap().level, LevelFilter::DEBUG);
        let e = ok("loud").unwrap_err().to_string();
        assert!(e.starts_with("log.level: invalid value \"loud\""), "{e}");
        assert!(filter(LevelFilter::INFO, Some("info,vram_exporter=debug")).is_ok());
        assert!(filter(LevelFilter::INFO, Some("")).is_ok());
        let e = filter(LevelFilter::INFO, Some("vram_exporter=loud"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("RUST_LOG: invalid value"), "{e}");
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(!stderr_is("not-a-pair"));
        assert!(!stderr_is("1:2"));
    }
}
