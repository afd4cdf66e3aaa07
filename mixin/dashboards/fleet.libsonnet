// The fleet overview dashboard (vram-fleet.json). Its top rows read the fleet recording rules
// (cluster:*, instance:* from rules/rules.libsonnet), so they cost the same for 10 or 10 000 GPUs; the
// per-GPU rows below read raw series filtered by the cluster, job, node and GPU variables.
local g = import 'lib.libsonnet';
local p = import '../lib/promql.libsonnet';
{
  grafanaDashboards+:: {
    local c = $._config,
    local cl = c.clusterLabel,
    local inst = c.instanceLabel,
    local C = '%s=~"$cluster",job=~"$job"' % cl,
    local N = C + ',%s=~"$node"' % inst,
    local S = N + ',gpu=~"$gpu"',
    local on = p.onGpu(c),
    local gpuBy = std.join(', ', [cl] + c.gpuLabels),
    local gpuLink = {
      title: 'Open GPU ${__field.labels.gpu} on ${__field.labels.%s}' % inst,
      url: '/d/%s/vram-single-gpu?var-datasource=${datasource}&var-cluster=${__field.labels.%s}&var-job=${__field.labels.job}&var-node=${__field.labels.%s}&var-gpu=${__field.labels.gpu}&${__url_time_range}'
           % [c.dashboardUIDs['vram-gpu.json'], cl, inst],
    },
    local links = { fieldConfig+: { defaults+: { links: [gpuLink] } } },
    local legend = '{{%s}} GPU {{gpu}}' % inst,
    local o = 8,  // rows below the fleet panels

    'vram-fleet.json': g.dashboard(
      c,
      'vram-fleet.json',
      'VRAM / Fleet overview',
      "Fleet overview of GPU memory from vram-exporter: the fleet at a glance from recording rules (per cluster and node), then every GPU's allocation against the soft/hard limits the exporter enforces, headroom, pressure level, violations, leak drift, top processes, cleanups and exporter health. Shipped with vram-exporter so the alerting policy and the dashboards read the same limits.",
      [
        g.row(100, 'Fleet at a glance (per cluster and job, from recording rules)', 0),
        g.stat(1, 'GPUs', 'GPUs reported by the selected exporters (cluster:vram_gpus:count).', g.grid(0, 1, 3, 4),
               g.targets([['sum(cluster:vram_gpus:count{%s})' % C, 'GPUs']]), 'none',
               g.thresholdColors([['blue', null]])),
        g.stat(2, 'GPUs lost', 'GPUs whose exporter reports vram_device_up 0 (fallen off the bus, NVML errors). Alert: VramGpuLost.', g.grid(3, 1, 3, 4),
               g.targets([['sum(cluster:vram_gpus_lost:count{%s})' % C, 'lost']]), 'none',
               g.thresholdColors([['green', null], ['red', 1]])),
        g.stat(3, 'At soft limit', 'GPUs whose pressure level is 1 (soft limit, latched with hysteresis).', g.grid(6, 1, 3, 4),
               g.targets([['sum(cluster:vram_gpus_soft:count{%s})' % C, 'soft']]), 'none',
               g.thresholdColors([['green', null], ['yellow', 1]])),
        g.stat(4, 'At hard limit', 'GPUs whose pressure level is 2 (hard limit). Alert: VramHardLimitBreached.', g.grid(9, 1, 3, 4),
               g.targets([['sum(cluster:vram_gpus_hard:count{%s})' % C, 'hard']]), 'none',
               g.thresholdColors([['green', null], ['red', 1]])),
        // The one top-row panel on a raw counter: an increase over the dashboard's range needs the counter
        // itself (cluster:vram_hard_limit_violations:increase5m serves federation and graphs instead).
        g.stat(5, 'Hard-limit episodes', "Hard-limit breach episodes (rising edges, also those shorter than a scrape) in the dashboard's time range.", g.grid(12, 1, 4, 4),
               g.targets([['sum(increase(vram_hard_limit_violations_total{%s}[$__range]))' % C, 'episodes']]), 'none',
               g.thresholdColors([['green', null], ['red', 1]])) + { fieldConfig+: { defaults+: { decimals: 0 } } },
        g.stat(6, 'Fleet VRAM allocated', 'Allocated memory of the selected clusters as a share of their total memory.', g.grid(16, 1, 4, 4),
               g.targets([['sum(cluster:vram_allocated_bytes:sum{%s}) / sum(cluster:vram_total_bytes:sum{%s})' % [C, C], 'allocated']]), 'percentunit',
               g.thresholdColors([['green', null], ['yellow', 0.8], ['red', 0.9]])) + { fieldConfig+: { defaults+: { min: 0, max: 1 } } },
        g.stat(7, 'Exporters up', 'Targets of the selected jobs that Prometheus scrapes successfully (up), over all targets. Alerts: VramExporterDown, VramExporterAbsent.', g.grid(20, 1, 4, 4),
               g.targets([['sum(cluster:vram_exporters_up:sum{%s}) / sum(cluster:vram_exporters:count{%s})' % [C, C], 'up']]), 'percentunit',
               g.thresholdColors([['red', null], ['green', 1]])) + { fieldConfig+: { defaults+: { min: 0, max: 1 } } },
        g.timeseries(9, 'Allocated of total per cluster', 'Allocated memory of each cluster and job as a share of its total GPU memory (cluster:vram_allocated_bytes:sum over cluster:vram_total_bytes:sum).', g.grid(0, 5, 12, 8),
                     g.targets([['cluster:vram_allocated_bytes:sum{%s} / cluster:vram_total_bytes:sum{%s}' % [C, C], '{{%s}} {{job}}' % cl]]), 'percentunit')
        + { fieldConfig+: { defaults+: { min: 0, max: 1 } } },
        g.bargauge(14, 'Nodes nearest their hard limit', 'The 20 nodes whose GPUs together hold the largest share of their summed hard limits (instance:vram_allocated_bytes:sum over instance:vram_hard_limit_bytes:sum).', g.grid(12, 5, 12, 8),
                   g.targets([['topk(20, instance:vram_allocated_bytes:sum{%s} / instance:vram_hard_limit_bytes:sum{%s})' % [N, N], '{{%s}}' % inst]], instant=true), 'percentunit')
        + { fieldConfig+: { defaults+: { max: 1.1 } + g.thresholdColors([['green', null], ['yellow', c.softRatioThreshold], ['red', 1]]) } },
        g.table(8, 'GPU inventory', 'Every GPU with its model, PCI bus id, UUID and current pressure level. Click a GPU to open its drill-down.', g.grid(0, 5 + o, 24, 6),
                g.targets([
                  ['max by (%s, model, pci_bus_id) (vram_gpu_info{%s})' % [gpuBy, S]],
                  ['max by (%s) (vram_pressure_level{%s})' % [gpuBy, S]],
                ], instant=true, table=true), 'none',
                { excludeByName: { Time: true, __name__: true, job: true, 'Value #A': true }, indexByName: { [cl]: 0, [inst]: 1, gpu: 2, model: 3, uuid: 4, pci_bus_id: 5, 'Value #B': 6 }, renameByName: { 'Value #B': 'level', pci_bus_id: 'PCI bus' } },
                { displayName: inst, desc: false })
        + links + {
          fieldConfig+: { overrides: [{ matcher: { id: 'byName', options: 'level' }, properties: [{ id: 'mappings', value: g.levelMap }, { id: 'custom.cellOptions', value: { type: 'color-background' } }] }] },
          transformations: [{ id: 'merge', options: {} }] + super.transformations,
        },

        g.row(101, 'Memory against limits', 11 + o),
        g.timeseries(10, 'Allocated vs soft and hard limit per GPU', "Allocated memory of each GPU (solid) against the exporter's effective soft (yellow dashes) and hard (red dashes) limits.", g.grid(0, 12 + o, 24, 9),
                     g.targets([
                       ['vram_allocated_bytes{%s}' % S, legend + ' allocated'],
                       ['vram_soft_limit_bytes{%s}' % S, legend + ' soft limit'],
                       ['vram_hard_limit_bytes{%s}' % S, legend + ' hard limit'],
                     ]), 'bytes')
        + links + { fieldConfig+: { defaults+: { min: 0 }, overrides: [g.colorOverride('soft limit', 'yellow', [10, 10]), g.colorOverride('hard limit', 'red', [10, 5])] } },
        g.bargauge(11, 'Allocated of hard limit', "Allocated memory as a share of each GPU's hard limit (100% = at the hard limit).", g.grid(0, 21 + o, 8, 8),
                   g.targets([['vram_allocated_bytes{%s} / %s vram_hard_limit_bytes{%s}' % [S, on, S], legend]], instant=true), 'percentunit')
        + links + { fieldConfig+: { defaults+: { max: 1.1 } + g.thresholdColors([['green', null], ['yellow', c.softRatioThreshold], ['red', 1]]) } },
        g.timeseries(12, 'Headroom to hard limit', "Bytes left before each GPU's hard limit; below zero the GPU is over it.", g.grid(8, 21 + o, 16, 8),
                     g.targets([['vram_hard_limit_bytes{%s} - %s vram_allocated_bytes{%s}' % [S, on, S], legend]]), 'bytes')
        + links + { fieldConfig+: { defaults+: { thresholds: g.steps([['transparent', null], ['red', 0]]), custom+: { thresholdsStyle: { mode: 'line+area' } } } } },
        g.stateTimeline(13, 'Pressure level over time', "The exporter's latched pressure level per GPU: ok, soft, hard.", g.grid(0, 29 + o, 24, 7),
                        g.targets([['vram_pressure_level{%s}' % S, legend]]), 'none', g.levelMap, g.levelColors) + links,

        g.row(102, 'Violations and leaks', 36 + o),
        g.timeseries(20, 'Limit episodes', 'New soft and hard limit episodes (rising edges counted by the exporter) per GPU.', g.grid(0, 37 + o, 8, 8),
                     g.targets([
                       ['sum by (%s, %s, gpu) (increase(vram_soft_limit_violations_total{%s}[$__rate_interval]))' % [cl, inst, S], legend + ' soft'],
                       ['sum by (%s, %s, gpu) (increase(vram_hard_limit_violations_total{%s}[$__rate_interval]))' % [cl, inst, S], legend + ' hard'],
                     ]), 'short', bars=true),
        g.timeseries(21, 'Leak drift', "Memory each GPU's leak has taken: sustained growth rate of the usage floor times how long it has grown, within the exporter's leak window (default 15m); a training sawtooth and a model load stay at 0.", g.grid(8, 37 + o, 8, 8),
                     g.targets([['vram_leak_drift_bytes{%s}' % S, legend]]), 'bytes'),
        g.timeseries(22, 'Leak drift of total', 'Leak drift as a share of total memory; VramLeakSuspected fires above %g%% (red line) held for %s.' % [c.leakDriftRatio * 100, c.leakFor], g.grid(16, 37 + o, 8, 8),
                     g.targets([['vram_leak_drift_bytes{%s} / %s vram_total_bytes{%s}' % [S, on, S], legend]]), 'percentunit')
        + { fieldConfig+: { defaults+: { thresholds: g.steps([['transparent', null], ['red', c.leakDriftRatio]]), custom+: { thresholdsStyle: { mode: 'line+area' } } } } },

        g.timeseries(23, 'Leak rate', "Sustained growth rate of each GPU's usage floor (vram_leak_rate_bytes_per_second): 0 for a flat floor, a training sawtooth or a model load; a leak's rate while it goes on.", g.grid(0, 45 + o, 12, 8),
                     g.targets([['vram_leak_rate_bytes_per_second{%s}' % S, legend]]), 'Bps') + links,
        g.timeseries(24, 'Time to hard limit', 'Seconds until allocation reaches the hard limit at the leak rate (vram_hard_limit_eta_seconds); only GPUs whose floor grows have one. VramHardLimitPredicted fires under %s (red line) held for %s.' % [p.humanSeconds(c.predictHorizonSeconds), c.predictFor], g.grid(12, 45 + o, 12, 8),
                     g.targets([['vram_hard_limit_eta_seconds{%s}' % S, legend]]), 's')
        + links + { fieldConfig+: { defaults+: { min: 0, thresholds: g.steps([['red', null], ['transparent', c.predictHorizonSeconds]]), custom+: { thresholdsStyle: { mode: 'line+area' } } } } },

        g.row(103, 'Processes', 53 + o),
        g.table(30, 'Top processes by VRAM', 'The 20 processes holding the most GPU memory across the selection, with their leak drift.', g.grid(0, 46 + o, 14, 9),
                g.targets([
                  ['topk(20, max by (%s, pid, process) (vram_process_allocated_bytes{%s}))' % [gpuBy, S]],
                  ['max by (%s, pid, process) (vram_process_leak_drift_bytes{%s})' % [gpuBy, S]],
                ], instant=true, table=true), 'none',
                { excludeByName: { Time: true, __name__: true, job: true, uuid: true }, indexByName: { [cl]: 0, [inst]: 1, gpu: 2, pid: 3, process: 4, 'Value #A': 5, 'Value #B': 6 }, renameByName: { 'Value #A': 'allocated', 'Value #B': 'leak drift' } },
                { displayName: 'allocated', desc: true })
        + links + {
          fieldConfig+: { overrides: [
            { matcher: { id: 'byName', options: 'allocated' }, properties: [{ id: 'unit', value: 'bytes' }, { id: 'custom.cellOptions', value: { type: 'gauge', mode: 'basic' } }] },
            { matcher: { id: 'byName', options: 'leak drift' }, properties: [{ id: 'unit', value: 'bytes' }] },
          ] },
          transformations: [
            { id: 'merge', options: {} },
            { id: 'filterByValue', options: { filters: [{ fieldName: 'Value #A', config: { id: 'isNull', options: {} } }], type: 'exclude', match: 'any' } },
          ] + super.transformations,
        },
        g.bargauge(31, 'Largest processes', 'The 10 largest GPU memory holders.', g.grid(14, 46 + o, 10, 9),
                   g.targets([['topk(10, vram_process_allocated_bytes{%s})' % S, '{{process}} ({{pid}}) ' + legend]], instant=true), 'bytes')
        + links + { fieldConfig+: { defaults+: { color: { mode: 'continuous-GrYlRd' } } } },

        g.row(104, 'Cleanups', 63 + o),
        g.timeseries(40, 'Cleanup actions', 'Cleanup actions run per GPU by trigger (hard: above the hard limit; predicted: before it, on the time to it), action and result (ok, failed, skipped, dry_run); 0 where cleanup is off. Alerts: VramCleanupFailed, VramCleanupPredictionUnmoved.', g.grid(0, 56 + o, 12, 8),
                     g.targets([['sum by (%s, %s, gpu, trigger, action, result) (increase(vram_cleanups_total{%s}[$__rate_interval])) or sum by (%s, %s, gpu) (vram_total_bytes{%s} * 0)' % [cl, inst, S, cl, inst, S], legend + ' {{trigger}} {{action}} {{result}}']]), 'short', bars=true)
        + { fieldConfig+: { overrides: [g.colorOverride('failed', 'red')] } },
        g.timeseries(41, 'Reclaimed by cleanup', 'Memory freed on each GPU within a few polls after its last cleanup; 0 where cleanup is off.', g.grid(12, 56 + o, 8, 8),
                     g.targets([['vram_cleanup_reclaimed_bytes{%s} or (vram_total_bytes{%s} * 0)' % [S, S], legend]]), 'bytes'),
        g.stat(42, 'Failed cleanups', "Failed cleanup actions in the dashboard's time range.", g.grid(20, 56 + o, 4, 8),
               g.targets([['sum(increase(vram_cleanups_total{%s,result="failed"}[$__range])) or vector(0)' % S, 'failed']]), 'none',
               g.thresholdColors([['green', null], ['orange', 1]])) + { fieldConfig+: { defaults+: { decimals: 0 } } },

        g.row(105, 'Exporter health', 72 + o),
        g.stateTimeline(50, 'Scrape, NVML and device status', 'Whether Prometheus scrapes each exporter (up), whether it has NVML (vram_nvml_up) and whether each GPU answers (vram_device_up).', g.grid(0, 65 + o, 24, 7),
                        g.targets([
                          ['up{%s}' % N, '{{%s}} scrape' % inst],
                          ['vram_nvml_up{%s}' % N, '{{%s}} NVML' % inst],
                          ['vram_device_up{%s}' % S, legend],
                        ]), 'none', g.upMap(), g.upColors),
        g.timeseries(51, 'Poll duration', 'Median and 99th percentile of one NVML poll cycle per exporter.', g.grid(0, 72 + o, 8, 8),
                     g.targets([
                       ['histogram_quantile(0.5, sum by (%s, %s, le) (rate(vram_exporter_poll_duration_seconds_bucket{%s}[$__rate_interval])))' % [cl, inst, N], '{{%s}} p50' % inst],
                       ['histogram_quantile(0.99, sum by (%s, %s, le) (rate(vram_exporter_poll_duration_seconds_bucket{%s}[$__rate_interval])))' % [cl, inst, N], '{{%s}} p99' % inst],
                     ]), 's'),
        g.timeseries(52, 'Poll errors', 'NVML call errors per second by exporter and operation; 0 when there are none.', g.grid(8, 72 + o, 8, 8),
                     g.targets([['sum by (%s, %s, operation) (rate(vram_exporter_poll_errors_total{%s}[$__rate_interval])) or sum by (%s, %s) (up{%s} * 0)' % [cl, inst, N, cl, inst, N], '{{%s}} {{operation}}' % inst]]), 'reqps'),
        g.timeseries(53, 'Time since last poll', 'Age of the latest completed poll; it grows when polling is stuck.', g.grid(16, 72 + o, 8, 8),
                     g.targets([['time() - vram_exporter_last_poll_timestamp_seconds{%s}' % N, '{{%s}}' % inst]]), 's'),
        g.timeseries(54, 'Exporter resident memory', 'Resident memory of each exporter process.', g.grid(0, 80 + o, 8, 8),
                     g.targets([['process_resident_memory_bytes{%s}' % N, '{{%s}}' % inst]]), 'bytes'),
        g.timeseries(55, 'Exporter CPU', 'CPU used by each exporter process, in cores.', g.grid(8, 80 + o, 8, 8),
                     g.targets([['rate(process_cpu_seconds_total{%s}[$__rate_interval])' % N, '{{%s}}' % inst]]), 'short'),
        g.table(56, 'Exporter versions', 'vram-exporter version and NVIDIA driver version per exporter.', g.grid(16, 80 + o, 8, 8),
                g.targets([['vram_exporter_build_info{%s}' % N]], instant=true, table=true), 'none',
                { excludeByName: { Time: true, __name__: true, job: true, Value: true }, indexByName: { [cl]: 0, [inst]: 1, version: 2, driver_version: 3 } }),

        // Kubernetes workloads: the namespace, pod and container labels of the per-process series
        // (docs/deploy.md, workload attribution); empty panels outside Kubernetes.
        g.row(106, 'Workloads', 88 + o),
        g.timeseries(60, 'Memory by namespace', 'GPU memory of the top processes per node and GPU, summed by Kubernetes namespace (processes whose namespace is unknown are left out); 0 outside Kubernetes.', g.grid(0, 89 + o, 12, 9),
                     g.targets([['sum by (%s, namespace) (vram_process_allocated_bytes{%s,namespace=~"$namespace",namespace!=""}) or sum by (%s) (vram_total_bytes{%s} * 0)' % [cl, S, cl, S], '{{namespace}}']]), 'bytes')
        + { fieldConfig+: { defaults+: { custom+: { fillOpacity: 40, stacking: { mode: 'normal', group: 'A' } } } } },
        g.timeseries(61, 'Memory by pod', 'GPU memory of the top processes summed by namespace and pod; 0 outside Kubernetes.', g.grid(12, 89 + o, 12, 9),
                     g.targets([['sum by (%s, namespace, pod) (vram_process_allocated_bytes{%s,namespace=~"$namespace",pod!=""}) or sum by (%s) (vram_total_bytes{%s} * 0)' % [cl, S, cl, S], '{{namespace}}/{{pod}}']]), 'bytes')
        + { fieldConfig+: { defaults+: { custom+: { fillOpacity: 40, stacking: { mode: 'normal', group: 'A' } } } } },
      ],
      [g.dashboardLink('Single GPU', '/d/%s/vram-single-gpu' % c.dashboardUIDs['vram-gpu.json'], 'Drill down into one GPU')],
      true,
    ),
  },
}
