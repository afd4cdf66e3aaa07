//! The wire format a client sends (docs/client-protocol.md): version-1 newline-delimited JSON,
//! one message per line, at most [`MAX_LINE`] bytes. An edge type: parsed here, turned into the
//! sample's plain types by the listener.

use serde::Deserialize;

/// The protocol version this exporter speaks.
pub const VERSION: u32 = 1;
/// The longest line accepted, newline included; a longer one closes the connection.
pub const MAX_LINE: usize = 16 * 1024;
/// The most devices one report may describe (more is not a GPU node).
pub const MAX_DEVICES: usize = 64;
/// The most fields of one event kept, and the longest name or value kept (longer ones are cut).
pub const MAX_EVENT_FIELDS: usize = 16;
pub const MAX_STRING: usize = 256;
/// The shortest and longest reporting interval a client may announce.
pub const MIN_INTERVAL_MS: u64 = 100;
pub const MAX_INTERVAL_MS: u64 = 30_000;

/// One line from a client. Unknown fields are ignored (additions within a version).
#[derive(Debug, Deserialize)]
pub struct Message {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The sender's pid as it sees it (in its own PID namespace).
    pub pid: u32,
    /// The sender's start time, clock ticks after boot (`/proc/self/stat` field 22).
    pub start_time: u64,
    #[serde(default)]
    pub interval_ms: Option<u64>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Report,
    Event,
}

/// One device's figures in a report.
#[derive(Debug, Deserialize)]
pub struct Device {
    /// NVML's UUID of the GPU ("GPU-...").
    pub uuid: String,
    pub allocated_bytes: u64,
    pub reserved_bytes: u64,
    #[serde(default)]
    pub active_bytes: u64,
    #[serde(default)]
    pub inactive_split_bytes: u64,
    #[serde(default)]
    pub peak_reserved_bytes: u64,
    #[serde(default)]
    pub alloc_retries: u64,
    #[serde(default)]
    pub ooms: u64,
    /// Present in the report that follows a release: what it handed back.
    #[serde(default)]
    pub released_bytes: Option<u64>,
}

/// Why a message is refused: the `reason` label of
/// `vram_exporter_client_messages_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not JSON of the protocol's shape, or out of its bounds.
    Malformed,
    /// A version this exporter does not speak.
    Version,
    /// A line longer than [`MAX_LINE`] (the connection is closed).
    TooLarge,
    /// More lines than the per-connection rate allows.
    Rate,
    /// The process could not be identified, or the message speaks for another process.
    Identity,
    /// The client limit was reached (the connection is closed at once).
    TooManyClients,
    /// A report for a GPU on which NVML does not list the process.
    NotOnGpu,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::Malformed,
        Refusal::Version,
        Refusal::TooLarge,
        Refusal::Rate,
        Refusal::Identity,
        Refusal::TooManyClients,
        Refusal::NotOnGpu,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Version => "version",
            Refusal::TooLarge => "too_large",
            Refusal::Rate => "rate",
            Refusal::Identity => "identity",
            Refusal::TooManyClients => "too_many_clients",
            Refusal::NotOnGpu => "not_on_gpu",
        }
    }
}

/// Parses and bounds one line (without its newline).
pub fn parse(line: &[u8]) -> Result<Message, Refusal> {
    #[derive(Deserialize)]
    struct Versioned {
        v: u32,
    }
    let v: Versioned = serde_json::from_slice(line).map_err(|_| Refusal::Malformed)?;
    if v.v != VERSION {
        return Err(Refusal::Version);
    }
    let m: Message = serde_json::from_slice(line).map_err(|_| Refusal::Malformed)?;
    let uuids_ok = m
        .devices
        .iter()
        .all(|d| !d.uuid.is_empty() && d.uuid.len() <= 96);
    let interval_ok = m
        .interval_ms
        .is_none_or(|i| (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&i));
    let kind_ok = match m.kind {
        Kind::Report => m.event.is_none(),
        Kind::Event => m.event.is_some() && m.devices.is_empty(),
    };
    if m.pid == 0 || m.devices.len() > MAX_DEVICES || !uuids_ok || !interval_ok || !kind_ok {
        return Err(Refusal::Malformed);
    }
    Ok(m)
}

/// A string cut to [`MAX_STRING`] bytes at a character boundary, control characters dropped.
pub fn clip(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_STRING));
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_STRING {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report_and_refuses_what_is_out_of_bounds() {
        let ok = br#"{"v":1,"type":"report","pid":42,"start_time":7,"interval_ms":1000,"reason":"periodic","devices":[{"uuid":"GPU-1","allocated_bytes":1,"reserved_bytes":2,"extra":true}]}"#;
        let m = parse(ok).unwrap();
        assert_eq!(
            (m.kind, m.pid, m.devices[0].reserved_bytes),
            (Kind::Report, 42, 2)
        );
        assert_eq!(
            parse(br#"{"v":2,"type":"report","pid":1,"start_time":1}"#).unwrap_err(),
            Refusal::Version
        );
        for bad in [
            &br#"{"v":1,"type":"report","pid":0,"start_time":1}"#[..],
            br#"{"v":1,"type":"report","pid":1,"start_time":1,"interval_ms":5}"#,
            br#"{"v":1,"type":"event","pid":1,"start_time":1}"#,
            br#"{"v":1,"type":"report","pid":-1,"start_time":1}"#,
            br#"{"v":1,"type":"report","pid":1,"start_time":1,"devices":[{"uuid":"","allocated_bytes":1,"reserved_bytes":1}]}"#,
            b"not json",
        ] {
            assert_eq!(parse(bad).unwrap_err(), Refusal::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn clip_bounds_and_cleans() {
        assert_eq!(clip("a\nb"), "ab");
        assert_eq!(clip(&"é".repeat(200)).len(), 256);
    }
}
