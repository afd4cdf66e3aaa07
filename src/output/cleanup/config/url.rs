//! Webhook URLs in the configuration: what is accepted, and how a URL is shown (its secrets
//! redacted) in logs, audit lines and errors.

use crate::base::input::ConfigError;

pub(super) fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    // The value is echoed redacted: a URL may carry a token.
    let shown = redacted_url(url);
    match host {
        None => Err(ConfigError::invalid(
            key,
            if url.is_empty() { "(missing)" } else { &shown },
            "must be an http:// or https:// URL",
        )),
        Some(h) if h.is_empty() || h.contains(char::is_whitespace) || h.contains('@') => {
            Err(ConfigError::invalid(
                key,
                shown,
                "must name a host (credentials in the URL are not accepted)",
            ))
        }
        Some(_) => match url.parse::<ureq::http::Uri>() {
            Ok(_) => Ok(()),
            Err(e) => Err(ConfigError::invalid(
                key,
                shown,
                format!("is not a valid URL: {e}"),
            )),
        },
    }
}

/// What replaces a secret in a shown URL.
pub const REDACTED: &str = "REDACTED";

/// A URL as it may be shown: user information (`user:password@`), every query value and the
/// fragment replaced by `REDACTED`; scheme, host, port, path and query keys kept, so the
/// endpoint stays recognisable. Works on any text, valid URL or not (errors show it too).
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(REDACTED);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let (before_fragment, fragment) = match tail.find('#') {
        Some(i) => (&tail[..i], Some(())),
        None => (tail, None),
    };
    let (path, query) = match before_fragment.find('?') {
        Some(i) => (&before_fragment[..i], Some(&before_fragment[i + 1..])),
        None => (before_fragment, None),
    };
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}={REDACTED}"),
                None if pair.is_empty() => String::new(),
                None => REDACTED.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if fragment.is_some() {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}
