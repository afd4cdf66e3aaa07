//! What every configuration section shares: the error that names key, value and reason, and the
//! parsers for sizes, durations and listen addresses.
//!
//! A leaf module: each section (limits in `policy`, leak in `drift`, web, cleanup, ...) validates
//! its own keys with these, and `config` only layers the input and dispatches to the sections.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A configuration error: which key, which value, and why it was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: invalid value {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Load(String),
}

impl ConfigError {
    pub(crate) fn invalid(
        key: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Parses a size such as "70GiB", "512 MB" or "1073741824". A bare number is a count of bytes and
/// must be whole ("1000.7" would otherwise be cut to 1000 bytes).
pub fn parse_size(key: &str, value: &str) -> Result<u64, ConfigError> {
    let bare = value.trim();
    if !bare.is_empty()
        && bare.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && bare.parse::<u64>().is_err()
    {
        return Err(ConfigError::invalid(
            key,
            value,
            "a number of bytes must be a whole number (or give a unit, like \"1.5GiB\")",
        ));
    }
    bytesize::ByteSize::from_str(bare)
        .map(|b| b.as_u64())
        .map_err(|_| {
            ConfigError::invalid(
                key,
                value,
                "is not a size like \"70GiB\", \"512MB\" or a number of bytes, nor a percentage like \"90%\"",
            )
        })
}

/// Parses a duration such as "250ms", "1s" or "15m".
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        ConfigError::invalid(
            key,
            value,
            format!("is not a duration like \"250ms\" or \"15m\" ({e})"),
        )
    })
}

/// Parses a duration and checks it lies within `min..=max`; the refusal names both bounds.
pub fn parse_duration_within(
    key: &str,
    value: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = parse_duration(key, value)?;
    if d < min || d > max {
        return Err(ConfigError::invalid(
            key,
            value,
            format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(d)
}

/// The largest size any key accepts: 1 PiB, far above any GPU's memory, far below `u64::MAX`,
/// so arithmetic on sizes (sums, percentages, hysteresis) never overflows.
pub const MAX_SIZE: u64 = 1 << 50;

/// Parses a size and checks it is at most [`MAX_SIZE`].
pub fn parse_bounded_size(key: &str, value: &str) -> Result<u64, ConfigError> {
    let bytes = parse_size(key, value)?;
    if bytes > MAX_SIZE {
        return Err(ConfigError::invalid(
            key,
            value,
            "must be at most 1PiB (no GPU has more memory)",
        ));
    }
    Ok(bytes)
}

/// Parses a listen address: "0.0.0.0:18726", "[::]:18726" or ":18726" (every IPv4 interface).
pub fn parse_listen(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    let v = value.trim();
    let candidate = if let Some(port) = v.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        v.to_string()
    };
    candidate.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            value,
            "is not an address like \"0.0.0.0:18726\", \"[::]:18726\" or \":18726\"",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("web.listen", ":18726").unwrap().port(), 18726);
        assert!(parse_listen("web.listen", "[::]:18726").is_ok());
        assert!(parse_listen("web.listen", "localhost").is_err());
    }

    #[test]
    fn sizes_and_durations_name_the_key() {
        assert_eq!(parse_size("k", "1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("k", "1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("k", " 1024 ").unwrap(), 1024);
        let e = parse_size("k", "1000.7").unwrap_err().to_string();
        assert!(e.contains("whole number"), "{e}");
        let e = parse_duration("leak.window", "soon")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("leak.window: invalid value \"soon\""), "{e}");
        let huge = Duration::from_secs(3600);
        let e = parse_duration_within("k", "300000000000y", Duration::ZERO, huge)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("must be between 0s and 1h"), "{e}");
        assert!(parse_bounded_size("k", "1PiB").is_ok());
        assert!(parse_bounded_size("k", "1025TiB").is_err());
    }
}
