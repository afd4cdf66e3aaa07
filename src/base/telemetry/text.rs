//! The self-metrics in the text format: the families `Registry::gather` returns, written through
//! the exposition's encoder (so one writer owns the format) exactly as the prometheus crate's
//! `TextEncoder` would write them: families and series in the registry's order, values in Rust's
//! shortest float form, histogram buckets with `le` and a `+Inf` bucket, `_sum` and `_count`.

use prometheus::proto::{Metric, MetricFamily, MetricType};

use crate::base::encoder::{push_label, Encoder, Kind, LabelValue, Value};

/// Appends `families` to `out`.
pub fn write(out: &mut String, families: &[MetricFamily]) {
    let mut e = Encoder::new(out);
    for family in families {
        let name = family.name();
        let kind = match family.get_field_type() {
            MetricType::COUNTER => Kind::Counter,
            MetricType::GAUGE => Kind::Gauge,
            MetricType::HISTOGRAM => Kind::Histogram,
            MetricType::SUMMARY => Kind::Summary,
            // The crate has no untyped metric (its encoder cannot write one either).
            MetricType::UNTYPED => continue,
        };
        // What the crate's encoder refuses; a registry never gathers either.
        if name.is_empty() || family.get_metric().is_empty() {
            continue;
        }
        e.header(name, kind, family.help());
        for m in family.get_metric() {
            write_metric(&mut e, name, kind, m);
        }
    }
}

/// One series of a family: one sample, or a histogram's or summary's samples.
fn write_metric(e: &mut Encoder<'_>, name: &str, kind: Kind, m: &Metric) {
    let mut labels = String::with_capacity(64);
    for pair in m.get_label() {
        push_label(&mut labels, pair.name(), LabelValue::Text(pair.value()));
    }
    let ts = m.timestamp_ms();
    // The series' labels and one more (`le`, `quantile`).
    let with = |extra: &str, value: &str| {
        let mut set = String::with_capacity(labels.len() + 24);
        set.push_str(&labels);
        push_label(&mut set, extra, LabelValue::Text(value));
        set
    };
    let mut sample = |suffix: &str, labels: &str, value: f64| {
        e.sample_at(name, suffix, labels, Value::Float(value), ts);
    };
    match kind {
        Kind::Counter => sample("", &labels, m.get_counter().get_value()),
        Kind::Gauge => sample("", &labels, m.get_gauge().get_value()),
        Kind::Histogram => {
            let h = m.get_histogram();
            let mut inf_seen = false;
            for b in h.get_bucket() {
                let bound = b.upper_bound();
                let count = b.cumulative_count() as f64;
                sample("_bucket", &with("le", &bound.to_string()), count);
                inf_seen |= bound.is_infinite() && bound.is_sign_positive();
            }
            if !inf_seen {
                let count = h.get_sample_count() as f64;
                sample("_bucket", &with("le", "+Inf"), count);
            }
            sample("_sum", &labels, h.get_sample_sum());
            sample("_count", &labels, h.get_sample_count() as f64);
        }
        Kind::Summary => {
            let s = m.get_summary();
            for q in s.get_quantile() {
                let set = with("quantile", &q.quantile().to_string());
                sample("", &set, q.value());
            }
            sample("_sum", &labels, s.sample_sum());
            sample("_count", &labels, s.sample_count() as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::proto::{Quantile, Summary};
    use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts, Registry, TextEncoder};

    use super::*;

    /// Every kind the registry can hold, odd label values and help, a histogram with and without
    /// its own `+Inf` bucket and a hand-made summary: written as the prometheus crate writes them.
    #[test]
    fn writes_what_the_prometheus_crate_writes() {
        let telemetry = crate::base::telemetry::Telemetry::new();
        telemetry.poll_duration.observe(0.003);
        telemetry.poll_duration.observe(42.0);
        telemetry
            .poll_errors
            .with_label_values(&["0", "memory"])
            .inc_by(3);
        let registry = Registry::new();
        let gauges = IntGaugeVec::new(
            Opts::new("t_gauge", "Help with \\ and\na newline, \"quoted\"."),
            &["name"],
        )
        .unwrap();
        gauges.with_label_values(&["a\"b\\c\nd"]).set(-7);
        gauges.with_label_values(&["ünïcode"]).set(1 << 60);
        let histograms = HistogramVec::new(
            HistogramOpts::new("t_seconds", "h").buckets(vec![0.1, 1.5, f64::INFINITY]),
            &["phase"],
        )
        .unwrap();
        histograms.with_label_values(&["x"]).observe(0.25);
        registry.register(Box::new(gauges)).unwrap();
        registry.register(Box::new(histograms)).unwrap();
        let mut families = telemetry.registry.gather();
        families.extend(registry.gather());
        let mut summary = MetricFamily::default();
        summary.set_name("t_summary".into());
        summary.set_field_type(MetricType::SUMMARY);
        let mut s = Summary::default();
        let mut q = Quantile::default();
        q.set_quantile(0.5);
        q.set_value(2.5);
        s.set_quantile(vec![q]);
        s.set_sample_sum(10.0);
        s.set_sample_count(4);
        let mut m = Metric::default();
        m.set_summary(s);
        m.set_timestamp_ms(1234);
        summary.set_metric(vec![m]);
        families.push(summary);

        let want = TextEncoder::new().encode_to_string(&families).unwrap();
        let mut got = String::new();
        write(&mut got, &families);
        assert_eq!(got, want);
        assert!(got.contains("vram_exporter_poll_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
    }
}
