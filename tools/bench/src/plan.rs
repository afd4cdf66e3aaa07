//! How long each figure is measured: the full run (BENCHMARKS.md) and the short one CI runs.

use std::time::Duration;

use crate::scenarios::Shape;

/// How long each figure is measured.
#[derive(Debug, Clone)]
pub struct Plan {
    pub warmup: Duration,
    pub idle: Duration,
    pub latency_rounds: usize,
    pub latency_round: Duration,
    pub latency_round_max: u64,
    /// Scrapes (in all) after which "RSS after scrapes" is read.
    pub soak_scrapes: u64,
    /// Scrapers that send the scrapes still missing after the latency rounds.
    pub soak_concurrency: usize,
    pub soak_max_time: Duration,
    pub scaling: Vec<Shape>,
    pub scaling_warmup: Duration,
    pub scaling_idle: Duration,
    pub scaling_latency: Duration,
}

impl Plan {
    pub fn new(short: bool) -> Self {
        let grid: Vec<Shape> = [1u32, 8, 16]
            .iter()
            .flat_map(|&g| [16u32, 64, 256].map(|p| Shape::plain(g, p)))
            .collect();
        let mig = Shape {
            gpus: 8,
            processes: 0,
            mig_per_gpu: 7,
            processes_per_mig: 4,
        };
        if short {
            Plan {
                warmup: Duration::from_secs(3),
                idle: Duration::from_secs(5),
                latency_rounds: 1,
                latency_round: Duration::from_secs(1),
                latency_round_max: 2_000,
                soak_scrapes: 1_000,
                soak_concurrency: 4,
                soak_max_time: Duration::from_secs(8),
                scaling: vec![Shape::plain(1, 16), Shape::plain(16, 256), mig],
                scaling_warmup: Duration::from_secs(2),
                scaling_idle: Duration::from_secs(3),
                scaling_latency: Duration::from_millis(500),
            }
        } else {
            let mut scaling = grid;
            scaling.push(mig);
            Plan {
                warmup: Duration::from_secs(10),
                idle: Duration::from_secs(60),
                latency_rounds: 3,
                latency_round: Duration::from_secs(3),
                latency_round_max: 20_000,
                soak_scrapes: 10_000,
                soak_concurrency: 4,
                soak_max_time: Duration::from_secs(300),
                scaling,
                scaling_warmup: Duration::from_secs(4),
                scaling_idle: Duration::from_secs(10),
                scaling_latency: Duration::from_secs(2),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn generated_scenarios_are_valid_nvml_sim_scenarios() {
        let plan = Plan::new(false);
        assert_eq!(plan.scaling.len(), 10);
        for shape in &plan.scaling {
            let mut notes = Vec::new();
            let s = nvml_sim::scenario::load_str(
                &shape.toml(),
                Path::new("generated.toml"),
                &|_| None,
                &mut notes,
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", shape.label()));
            assert!(notes.is_empty(), "{notes:?}");
            assert_eq!(s.devices.len(), shape.gpus as usize);
            let migs: usize = s.devices.iter().map(|d| d.migs.len()).sum();
            assert_eq!(migs, (shape.gpus * shape.mig_per_gpu) as usize);
        }
    }
}
