//! The history's memory in the soak: what `/api/v1/history` says the exporter's history holds
//! after the run (every GPU's series, the previous poll's processes, the events), against its
//! bound, so the report shows the fixed budget holding on a churning node.

use std::net::SocketAddr;

use vram_testkit::http::Client;

/// One report line, or why there is none.
pub fn line(addr: SocketAddr, auth: &Option<String>) -> String {
    let mut c = Client::new(addr).timeout(std::time::Duration::from_secs(10));
    if let Some(a) = auth {
        c = c.authorization(a);
    }
    let mut body = Vec::new();
    match c.get_into("/api/v1/history?window=1h&events=0", &mut body) {
        Ok(200) => {}
        Ok(status) => return format!("not read (HTTP {status})"),
        Err(e) => return format!("not read ({e})"),
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return "not read (invalid JSON)".into();
    };
    let gpus = v["gpus"].as_array().map_or(0, Vec::len);
    let processes: usize = v["gpus"].as_array().map_or(0, |g| {
        g.iter()
            .filter_map(|g| g["processes"].as_array())
            .map(Vec::len)
            .sum()
    });
    let held = v["held_bytes"].as_f64().unwrap_or(0.0) / 1024.0;
    let bound = v["max_bytes_per_gpu"].as_f64().unwrap_or(0.0) / 1024.0;
    format!(
        "{held:.1} KiB held: {gpus} GPUs ({:.1} KiB each at most for their series), {processes} process series, {} of 256 events",
        bound,
        v["events_held"]
    )
}
