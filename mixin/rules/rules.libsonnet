// Recording rules: per-GPU ratios and headroom (instance_gpu:*) that the alerts and the drill-down read,
// and the fleet aggregates (instance:* per node, cluster:* per cluster and job) that the fleet dashboard
// reads instead of raw series, so its cost does not grow with the number of GPUs. New levels (e.g.
// namespace:* once per-pod labels exist) go in a group of their own here.
local p = import '../lib/promql.libsonnet';
{
  prometheusRules+:: {
    local c = $._config,
    local on = p.onGpu(c),
    local sel(m, extra='') = p.sel(c, m, extra),
    local ratio(a, b) = '%s\n  / %s\n%s\n' % [sel(a), on, sel(b)],
    local diff(a, b) = '%s\n  - %s\n%s\n' % [sel(a), on, sel(b)],
    local byCluster = p.byCluster(c),
    local byNode = p.byNode(c),
    groups+: [
      {
        name: 'vram-exporter.rules',
        rules: [
          // Share of the GPU's total memory that is allocated (0-1).
          { record: 'instance_gpu:vram_allocated:ratio', expr: ratio('vram_allocated_bytes', 'vram_total_bytes') },
          // Allocation relative to the effective hard limit (1 = at the limit).
          { record: 'instance_gpu:vram_allocated_hard_limit:ratio', expr: ratio('vram_allocated_bytes', 'vram_hard_limit_bytes') },
          // Bytes left before the soft and the hard limit (negative = over the limit).
          { record: 'instance_gpu:vram_soft_limit_headroom:bytes', expr: diff('vram_soft_limit_bytes', 'vram_allocated_bytes') },
          { record: 'instance_gpu:vram_hard_limit_headroom:bytes', expr: diff('vram_hard_limit_bytes', 'vram_allocated_bytes') },
          // Leak drift as a share of the GPU's total memory (0-1).
          { record: 'instance_gpu:vram_leak_drift:ratio', expr: ratio('vram_leak_drift_bytes', 'vram_total_bytes') },
          // Peak allocation over 5 minutes: flat for a training sawtooth and blind to dips shorter than 5m,
          // for trends of the peaks that actually hit the limit (VramHardLimitPredicted reads the exporter's
          // own hard-limit ETA instead).
          { record: 'instance_gpu:vram_allocated_bytes:max5m', expr: 'max_over_time(%s[%s])' % [sel('vram_allocated_bytes'), c.peakWindow] },
        ],
      },
      {
        // One series per node and per cluster: what the fleet dashboard and a federating or
        // remote-writing Prometheus need (docs/scale.md). Counts use `== bool` so they are 0, not absent.
        name: 'vram-exporter.fleet',
        rules: [
          { record: 'instance:vram_allocated_bytes:sum', expr: 'sum %s (%s)' % [byNode, sel('vram_allocated_bytes')] },
          { record: 'instance:vram_total_bytes:sum', expr: 'sum %s (%s)' % [byNode, sel('vram_total_bytes')] },
          { record: 'instance:vram_hard_limit_bytes:sum', expr: 'sum %s (%s)' % [byNode, sel('vram_hard_limit_bytes')] },
          { record: 'instance:vram_pressure_level:max', expr: 'max %s (%s)' % [byNode, sel('vram_pressure_level')] },
          { record: 'cluster:vram_gpus:count', expr: 'count %s (%s)' % [byCluster, sel('vram_gpu_info')] },
          { record: 'cluster:vram_gpus_lost:count', expr: 'sum %s (%s == bool 0)' % [byCluster, sel('vram_device_up')] },
          { record: 'cluster:vram_gpus_soft:count', expr: 'sum %s (%s == bool 1)' % [byCluster, sel('vram_pressure_level')] },
          { record: 'cluster:vram_gpus_hard:count', expr: 'sum %s (%s == bool 2)' % [byCluster, sel('vram_pressure_level')] },
          { record: 'cluster:vram_allocated_bytes:sum', expr: 'sum %s (%s)' % [byCluster, sel('vram_allocated_bytes')] },
          { record: 'cluster:vram_total_bytes:sum', expr: 'sum %s (%s)' % [byCluster, sel('vram_total_bytes')] },
          { record: 'cluster:vram_exporters_up:sum', expr: 'sum %s (%s)' % [byCluster, sel('up')] },
          { record: 'cluster:vram_exporters:count', expr: 'count %s (%s)' % [byCluster, sel('up')] },
          // Hard-limit episodes per cluster and 5 minutes; rate() before sum(), so exporter restarts
          // (counter resets) are not counted as episodes.
          { record: 'cluster:vram_hard_limit_violations:increase5m', expr: 'sum %s (increase(%s[5m]))' % [byCluster, sel('vram_hard_limit_violations_total')] },
        ],
      },
      {
        // Kubernetes workloads (docs/deploy.md, workload attribution). The exporter names a process's
        // namespace and pod where the kubelet's device allocations make that unambiguous; for the rest,
        // vram_process_info carries the pod UID from the process's cgroup, and the join with
        // kube-state-metrics' kube_pod_info{uid} names it (any process in a pod, time-sliced GPUs included).
        name: 'vram-exporter.workloads',
        local procLabels = std.join(', ', [c.clusterLabel] + c.gpuLabels + ['pid', 'process']),
        rules: [
          {
            record: 'instance_gpu_process:vram_process_allocated_bytes:kube_pod_info',
            expr: |||
              max without (namespace, pod, container) (
                %(alloc)s
                * on (%(proc)s) group_left (pod_uid)
                %(info)s
              )
              * on (%(cl)s, pod_uid) group_left (namespace, pod)
              max by (%(cl)s, pod_uid, namespace, pod) (
                label_replace(kube_pod_info{%(ksm)s}, "pod_uid", "$1", "uid", "(.+)")
              )
            ||| % {
              alloc: sel('vram_process_allocated_bytes'),
              info: sel('vram_process_info'),
              proc: procLabels,
              cl: c.clusterLabel,
              ksm: c.kubeStateMetricsSelector,
            },
          },
          // GPU memory per namespace from the join above (every process in a pod, named or not).
          {
            record: 'namespace:vram_process_allocated_bytes:sum',
            expr: 'sum by (%s, job, namespace) (instance_gpu_process:vram_process_allocated_bytes:kube_pod_info)' % c.clusterLabel,
          },
        ],
      },
    ],
  },
}
