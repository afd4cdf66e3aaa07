//! Criterion benchmarks of the exporter's own work on an 8-GPU × 32-process node, NVML excluded.
//!
//! - `poll_cycle/8x32`: what the poller does with one poll besides NVML: policy + drift (the
//!   engine's snapshot) and the exposition render, as published;
//!   the budget is ≤ 20 µs per GPU, so ≤ 160 µs here.
//! - `render/8x32`: rendering the domain exposition alone.
//! - `scrape/8x32`: what a `/metrics` request does: copy the pre-rendered text and encode the
//!   self-metrics (process collector included); budget ≤ 100 µs.
//! - `attribution/8x32`: the Kubernetes attributor on one poll (cgroups cached, names looked up),
//!   as the poller runs it before the engine; `attribution_reread/8x32` the same with every cgroup
//!   file read and parsed again (what each refresh interval costs).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use vram_exporter::base::telemetry::Telemetry;
use vram_exporter::output::publish::Published;
use vram_exporter::source::kubernetes::pb::v1::{
    ContainerDevices, ContainerResources, ListPodResourcesResponse, PodResources,
};
use vram_exporter::source::kubernetes::{Attributor, DeviceMap};
use vram_exporter::source::sample::PollSample;
use vram_testkit::builders::{engine, node};

/// Per-process series per GPU, as by default.
const TOP_N: usize = 16;

fn benches(c: &mut Criterion) {
    let samples: Vec<PollSample> = (0..64).map(|i| node(8, 32, i * 1000)).collect();
    let mut e = engine();
    // Warm the trackers so the steady state is measured, not first sight of every process.
    for s in &samples {
        e.apply(s);
    }
    let mut i = 0usize;
    c.bench_function("poll_cycle/8x32", |b| {
        b.iter(|| {
            i = (i + 1) % samples.len();
            black_box(Published::new(e.apply(black_box(&samples[i])), TOP_N))
        })
    });

    let published = Published::new(e.apply(&samples[0]), TOP_N);
    c.bench_function("render/8x32", |b| {
        b.iter(|| {
            black_box(vram_exporter::output::exposition::render(
                black_box(&published.snapshot),
                TOP_N,
            ))
        })
    });

    let telemetry = Telemetry::new();
    telemetry.poll_duration.observe(0.001);
    c.bench_function("scrape/8x32", |b| {
        b.iter(|| {
            let mut body = Vec::with_capacity(published.exposition.len() + 4096);
            body.extend_from_slice(&published.exposition);
            telemetry.encode_into(&mut body);
            black_box(body)
        })
    });

    attribution(c, &samples[0]);
}

/// Each GPU held by one pod (32 containers, one per process), real-format cgroup files in a
/// temporary proc root.
fn attribution(c: &mut Criterion, sample: &PollSample) {
    let root = tempfile::tempdir().expect("tempdir");
    let mut pods = Vec::new();
    for d in &sample.devices {
        let g = d.identity.index;
        let uid = format!("5d1c3a2b-8e7f-4a6b-9c0d-1e2f3a4b5c{g:02}");
        let mut containers = Vec::new();
        for (n, p) in d.processes.listed().iter().enumerate() {
            let dir = root.path().join(p.pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let path = format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{:064x}.scope",
                uid.replace('-', "_"),
                u64::from(g) * 1000 + n as u64
            );
            std::fs::write(dir.join("cgroup"), format!("0::{path}\n")).unwrap();
            containers.push(ContainerResources {
                name: format!("worker-{n}"),
                devices: vec![ContainerDevices {
                    resource_name: "nvidia.com/gpu".into(),
                    device_ids: vec![d.identity.uuid.clone()],
                    topology: None,
                }],
                ..Default::default()
            });
        }
        pods.push(PodResources {
            name: format!("train-{g}"),
            namespace: "team".into(),
            containers,
        });
    }
    let map = DeviceMap::from_response(&ListPodResourcesResponse {
        pod_resources: pods,
    });
    for (name, reread) in [
        ("attribution/8x32", Duration::from_secs(3600)),
        ("attribution_reread/8x32", Duration::ZERO),
    ] {
        let (_tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(map.clone()));
        let mut a = Attributor::new(root.path().to_path_buf(), reread, Some(rx));
        a.annotate(&mut sample.clone());
        c.bench_function(name, |b| {
            b.iter_batched(
                || sample.clone(),
                |mut s| {
                    a.annotate(&mut s);
                    black_box(s)
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group! {
    name = core;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(core);
