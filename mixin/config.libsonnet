// The knobs of the vram-exporter mixin: override `_config` to fit your Prometheus without editing rules.
//
//   local vram = (import 'mixin.libsonnet') + {
//     _config+:: { vramExporterSelector: 'job="gpu-nodes"', softLimitFor: '10m' },
//   };
{
  _config+:: {
    // Label matchers that select the exporter's series in every rule and dashboard query. Annotations
    // read the job from the alert's labels, so any selector works.
    vramExporterSelector: 'job="vram-exporter"',
    // Label matchers for kube-state-metrics' kube_pod_info in the workload join (vram-exporter.workloads);
    // empty: kube_pod_info has one source, whatever its job is called (e.g. 'job="kube-state-metrics"').
    kubeStateMetricsSelector: '',

    // The label that tells clusters (or Prometheus shards) apart, as in kubernetes-mixin. It is part of
    // every on()/by(), so series of two clusters never meet in one match group; joining on a label that
    // nobody sets is harmless (it is empty on both sides).
    clusterLabel: 'cluster',

    // The labels that identify one GPU's series within a cluster. `instance` is the node: on Kubernetes
    // the shipped ServiceMonitor relabels the node name into it (see docs/deploy.md, stable identity).
    instanceLabel: 'instance',
    gpuLabels: ['job', self.instanceLabel, 'gpu', 'uuid'],

    // Thresholds and durations of the alerts (see docs/runbook.md for what each alert means).
    hardLimitBreachWindow: '2m',  // increase() window of the hard-limit episode counter
    softLimitFor: '5m',
    leakDriftRatio: 0.05,  // drift above this share of the GPU's total memory is a suspected leak
    leakFor: '30m',
    predictHorizonSeconds: 3600,  // VramHardLimitPredicted fires when the hard limit is nearer than this...
    predictFor: '10m',  // ...at the exporter's leak rate, held this long
    peakWindow: '5m',  // instance_gpu:vram_allocated_bytes:max5m
    gpuLostFor: '1m',
    nvmlDownFor: '2m',
    exporterDownFor: '5m',
    exporterAbsentFor: '10m',
    cleanupFailedWindow: '10m',
    allocatorRetriesWindow: '10m',  // increase() window of the allocator's retry counter (vram_client)
    allocatorOomWindow: '10m',  // increase() window of the allocator's OOM counter
    cleanupUnmovedWindow: '30m',  // increase() window of vram_cleanup_predictions_unmoved_total
    pollErrorsWindow: '5m',  // rate() window of the exporter's own poll errors...
    pollErrorsFor: '10m',  // ...failing this long fires VramExporterPollFailing
    pollStalledSeconds: 120,  // no poll published for this long (or a dead poller thread)...
    pollStalledFor: '2m',  // ...held this long fires VramExporterPollStalled

    // Severities, per the example Alertmanager routing (critical pages, warning goes to chat).
    criticalSeverity: 'critical',
    warningSeverity: 'warning',

    runbookURLBase: 'https://github.com/vram-exporter/vram-exporter/blob/main/docs/runbook.md',

    // Dashboards.
    grafanaDashboardTags: ['vram-exporter', 'gpu'],
    dashboardUIDs: {
      'vram-fleet.json': 'vram-fleet',
      'vram-gpu.json': 'vram-gpu',
    },
    dashboardRefresh: '30s',
    dashboardTimezone: 'browser',
    // Soft/hard colour steps for ratios of the hard limit (the exporter's default soft limit is 85%).
    softRatioThreshold: 0.85,
    // The Grafana Prometheus data source picked by default (a regex on data source names).
    datasourceRegex: '',
  },
}
