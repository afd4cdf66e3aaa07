//! The listener's self-metrics: messages accepted and refused (by reason) and clients connected.
//! Registered only when the listener runs, so an exporter without it exposes nothing new.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::message::Refusal;

#[derive(Clone)]
pub struct ClientMetrics {
    accepted: IntCounter,
    refused: IntCounterVec,
    pub connected: IntGauge,
}

impl ClientMetrics {
    pub fn new() -> Self {
        let accepted = IntCounter::new(
            "vram_exporter_client_messages_total",
            "Allocator reports and events accepted from clients on the clients socket.",
        )
        .expect("valid counter");
        let refused = IntCounterVec::new(
            Opts::new(
                "vram_exporter_client_messages_refused_total",
                "Client messages and connections refused, by reason (malformed, version, too_large, rate, identity, too_many_clients, not_on_gpu).",
            ),
            &["reason"],
        )
        .expect("valid counter");
        for r in Refusal::ALL {
            refused.with_label_values(&[r.as_str()]);
        }
        let connected = IntGauge::new(
            "vram_exporter_clients_connected",
            "Clients connected to the clients socket now.",
        )
        .expect("valid gauge");
        ClientMetrics {
            accepted,
            refused,
            connected,
        }
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.accepted.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        registry.register(Box::new(self.connected.clone()))
    }

    pub fn accepted(&self) {
        self.accepted.inc();
    }

    pub fn refused(&self, why: Refusal) {
        self.refused.with_label_values(&[why.as_str()]).inc();
    }
}

impl Default for ClientMetrics {
    fn default() -> Self {
        Self::new()
    }
}
