// The single-GPU drill-down dashboard (vram-gpu.json): one GPU picked by cluster, job, node and GPU.
local g = import 'lib.libsonnet';
local p = import '../lib/promql.libsonnet';
{
  grafanaDashboards+:: {
    local c = $._config,
    local cl = c.clusterLabel,
    local inst = c.instanceLabel,
    local N = '%s=~"$cluster",job=~"$job",%s=~"$node"' % [cl, inst],
    local S = N + ',gpu=~"$gpu"',
    local on = p.onGpu(c),
    local gpuBy = std.join(', ', [cl] + c.gpuLabels),
    local fixed(name, color) = { matcher: { id: 'byName', options: name }, properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: color } }] },

    'vram-gpu.json': g.dashboard(
      c,
      'vram-gpu.json',
      'VRAM / Single GPU',
      "Drill-down into one GPU watched by vram-exporter: memory against its soft/hard limits, pressure level, violations, leak drift per GPU and per process, top processes, cleanup actions and the exporter's poll health.",
      [
        g.row(200, 'Status', 0),
        g.table(1, 'GPU', 'Model, UUID and PCI bus id of this GPU (vram_gpu_info).', g.grid(0, 1, 9, 4),
                g.targets([['vram_gpu_info{%s}' % S]], instant=true, table=true), 'none',
                { excludeByName: { Time: true, __name__: true, job: true, Value: true, [cl]: true, [inst]: true, gpu: true }, indexByName: { model: 0, uuid: 1, pci_bus_id: 2 }, renameByName: { pci_bus_id: 'PCI bus' } }),
        g.stat(2, 'Allocated', 'Memory allocated on this GPU now.', g.grid(9, 1, 3, 4),
               g.targets([['vram_allocated_bytes{%s}' % S, 'allocated']]), 'bytes', g.thresholdColors([['blue', null]])),
        g.stat(3, 'Total', 'Total memory of this GPU.', g.grid(12, 1, 3, 4),
               g.targets([['vram_total_bytes{%s}' % S, 'total']]), 'bytes', g.thresholdColors([['text', null]])) + { options+: { graphMode: 'none' } },
        g.stat(4, 'Headroom to hard limit', 'Bytes left before the hard limit; negative = over it.', g.grid(15, 1, 3, 4),
               g.targets([['vram_hard_limit_bytes{%s} - %s vram_allocated_bytes{%s}' % [S, on, S], 'headroom']]), 'bytes',
               g.thresholdColors([['red', null], ['green', 0]])),
        g.stat(5, 'Pressure level', "The exporter's latched pressure level: ok, soft, hard.", g.grid(18, 1, 3, 4),
               g.targets([['vram_pressure_level{%s}' % S, 'level']]), 'none', g.levelColors, background=true)
        + { fieldConfig+: { defaults+: { mappings: g.levelMap } } },
        g.stat(6, 'Device', 'Whether this GPU answers NVML (vram_device_up). Alert: VramGpuLost.', g.grid(21, 1, 3, 4),
               g.targets([['vram_device_up{%s}' % S, 'device']]), 'none', g.upColors, background=true)
        + { fieldConfig+: { defaults+: { mappings: g.upMap('LOST') } } },

        g.row(201, 'Memory', 5),
        g.timeseries(10, 'Memory and limits', 'Allocated, reserved and free memory with the effective soft (yellow dashes) and hard (red dashes) limits and the total.', g.grid(0, 6, 16, 9),
                     g.targets([
                       ['vram_allocated_bytes{%s}' % S, 'allocated'],
                       ['vram_reserved_bytes{%s}' % S, 'reserved'],
                       ['vram_free_bytes{%s}' % S, 'free'],
                       ['vram_total_bytes{%s}' % S, 'total'],
                       ['vram_soft_limit_bytes{%s}' % S, 'soft limit'],
                       ['vram_hard_limit_bytes{%s}' % S, 'hard limit'],
                     ]), 'bytes')
        + { fieldConfig+: { defaults+: { min: 0 }, overrides: [
          g.colorOverride('soft limit', 'yellow', [10, 10]),
          g.colorOverride('hard limit', 'red', [10, 5]),
          { matcher: { id: 'byName', options: 'total' }, properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'text' } }, { id: 'custom.lineStyle', value: { fill: 'dot', dash: [0, 10] } }, { id: 'custom.fillOpacity', value: 0 }] },
          { matcher: { id: 'byName', options: 'free' }, properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'green' } }, { id: 'custom.fillOpacity', value: 0 }] },
        ] } },
        g.gauge(11, 'Allocated of hard limit', 'Allocated memory as a share of the hard limit (100% = at the limit).', g.grid(16, 6, 8, 9),
                g.targets([['vram_allocated_bytes{%s} / %s vram_hard_limit_bytes{%s}' % [S, on, S], 'of hard limit']]), 'percentunit')
        + { fieldConfig+: { defaults+: { min: 0, max: 1.1 } + g.thresholdColors([['green', null], ['yellow', c.softRatioThreshold], ['red', 1]]) } },
        g.stateTimeline(12, 'Pressure level over time', 'ok / soft / hard as latched by the exporter.', g.grid(0, 15, 24, 4),
                        g.targets([['vram_pressure_level{%s}' % S, 'level']]), 'none', g.levelMap, g.levelColors),
        g.timeseries(13, 'Limit episodes', 'New soft and hard limit episodes counted by the exporter.', g.grid(0, 19, 8, 8),
                     g.targets([
                       ['increase(vram_soft_limit_violations_total{%s}[$__rate_interval])' % S, 'soft'],
                       ['increase(vram_hard_limit_violations_total{%s}[$__rate_interval])' % S, 'hard'],
                     ]), 'short', bars=true)
        + { fieldConfig+: { overrides: [fixed('hard', 'red'), fixed('soft', 'yellow')] } },
        g.timeseries(14, 'Leak drift', 'Memory the leak has taken (sustained floor growth rate times how long it has grown, within the leak window), for the GPU and for each of its top processes.', g.grid(8, 19, 16, 8),
                     g.targets([
                       ['vram_leak_drift_bytes{%s}' % S, 'GPU'],
                       ['vram_process_leak_drift_bytes{%s}' % S, '{{process}} ({{pid}})'],
                     ]), 'bytes'),

        g.timeseries(15, 'Leak rate', 'Sustained growth rate of the usage floor for the GPU and for each of its top processes; 0 while the floor is flat.', g.grid(0, 27, 16, 8),
                     g.targets([
                       ['vram_leak_rate_bytes_per_second{%s}' % S, 'GPU'],
                       ['vram_process_leak_rate_bytes_per_second{%s}' % S, '{{process}} ({{pid}})'],
                     ]), 'Bps'),
        g.stat(16, 'Time to hard limit', 'Time until allocation reaches the hard limit at the current leak rate (vram_hard_limit_eta_seconds); "no leak" while the floor is not growing. VramHardLimitPredicted fires under %s.' % p.humanSeconds(c.predictHorizonSeconds), g.grid(16, 27, 8, 8),
               g.targets([['vram_hard_limit_eta_seconds{%s}' % S, 'time to hard limit']]), 's',
               g.thresholdColors([['red', null], ['yellow', c.predictHorizonSeconds], ['green', 4 * c.predictHorizonSeconds]]))
        + { options+: { graphMode: 'none' }, fieldConfig+: { defaults+: { noValue: 'no leak' } } },

        g.row(202, 'Processes', 35),
        g.timeseries(20, 'Allocation by process', 'GPU memory of each of the top processes on this GPU, stacked.', g.grid(0, 36, 14, 9),
                     g.targets([['vram_process_allocated_bytes{%s,namespace=~"$namespace"}' % S, '{{process}} ({{pid}}) {{namespace}}/{{pod}}']]), 'bytes')
        + { fieldConfig+: { defaults+: { custom+: { fillOpacity: 40, stacking: { mode: 'normal', group: 'A' } } } } },
        g.table(21, 'Processes now', 'Processes on this GPU with their memory and leak drift.', g.grid(14, 36, 10, 9),
                g.targets([
                  ['max by (%s, pid, process, namespace, pod, container) (vram_process_allocated_bytes{%s,namespace=~"$namespace"})' % [gpuBy, S]],
                  ['max by (%s, pid, process, namespace, pod, container) (vram_process_leak_drift_bytes{%s,namespace=~"$namespace"})' % [gpuBy, S]],
                ], instant=true, table=true), 'none',
                { excludeByName: { Time: true, __name__: true, job: true, uuid: true, [cl]: true, [inst]: true, gpu: true }, indexByName: { pid: 0, process: 1, namespace: 2, pod: 3, container: 4, 'Value #A': 5, 'Value #B': 6 }, renameByName: { 'Value #A': 'allocated', 'Value #B': 'leak drift' } },
                { displayName: 'allocated', desc: true })
        + {
          fieldConfig+: { overrides: [
            { matcher: { id: 'byName', options: 'allocated' }, properties: [{ id: 'unit', value: 'bytes' }, { id: 'custom.cellOptions', value: { type: 'gauge', mode: 'basic' } }] },
            { matcher: { id: 'byName', options: 'leak drift' }, properties: [{ id: 'unit', value: 'bytes' }] },
          ] },
          transformations: [{ id: 'merge', options: {} }] + super.transformations,
        },

        // What each reporting process's allocator holds (vram_client), stacked so the four parts add up
        // to NVML's bytes for the process: live tensors, cache the allocator cannot hand back (split
        // blocks, blocks awaiting a stream), cache empty_cache() can hand back, and memory outside the
        // allocator (CUDA context, NCCL, cuBLAS workspaces). A single 0 series without allocator reports
        // (every panel has data, as the alerting test checks).
        g.timeseries(22, 'Allocator memory by process', "NVML's bytes of each process with an allocator report, stacked: live tensors, cache held but not releasable, reclaimable cache (what a cleanup signal frees), and memory outside the allocator. One 0 series (process 'no report') unless jobs run vram_client.", g.grid(0, 45, 24, 9),
                     local noReport = 'label_replace(sum by (%s, %s, gpu) (vram_total_bytes{%s}) * 0, "process", "no report", "", "")' % [cl, inst, S];
                     local ns = ',namespace=~"$namespace"';
                     g.targets([
                       ['vram_process_allocator_allocated_bytes{%s%s} or %s' % [S, ns, noReport], '{{process}} ({{pid}}) allocated'],
                       ['clamp_min(vram_process_allocator_reserved_bytes{%(s)s} - vram_process_allocator_allocated_bytes{%(s)s} - vram_process_allocator_reclaimable_bytes{%(s)s}, 0) or %(z)s' % { s: S + ns, z: noReport }, '{{process}} ({{pid}}) held cache'],
                       ['vram_process_allocator_reclaimable_bytes{%s%s} or %s' % [S, ns, noReport], '{{process}} ({{pid}}) reclaimable'],
                       ['clamp_min(vram_process_allocated_bytes{%(s)s} - vram_process_allocator_reserved_bytes{%(s)s}, 0) or %(z)s' % { s: S + ns, z: noReport }, '{{process}} ({{pid}}) non-allocator'],
                     ]), 'bytes')
        + { fieldConfig+: { defaults+: { custom+: { fillOpacity: 40, stacking: { mode: 'normal', group: 'A' } } } } },

        g.row(203, 'Cleanups', 54),
        g.timeseries(30, 'Cleanup actions', 'Cleanup actions run for this GPU by trigger (hard: above the hard limit; predicted: before it), action and result; 0 where cleanup is off.', g.grid(0, 55, 12, 8),
                     g.targets([['sum by (%s, %s, gpu, trigger, action, result) (increase(vram_cleanups_total{%s}[$__rate_interval])) or sum by (%s, %s, gpu) (vram_total_bytes{%s} * 0)' % [cl, inst, S, cl, inst, S], '{{trigger}} {{action}} {{result}}']]), 'short', bars=true)
        + { fieldConfig+: { overrides: [g.colorOverride('failed', 'red')] } },
        g.timeseries(31, 'Reclaimed by cleanup', 'Memory freed after the last cleanup of this GPU; 0 where cleanup is off.', g.grid(12, 55, 8, 8),
                     g.targets([['vram_cleanup_reclaimed_bytes{%s} or (vram_total_bytes{%s} * 0)' % [S, S], 'reclaimed']]), 'bytes'),
        g.stat(32, 'Predictions unmoved', "Predictive cleanup runs in the dashboard's time range after which this GPU's time to its hard limit did not grow. Alert: VramCleanupPredictionUnmoved.", g.grid(20, 55, 4, 8),
               g.targets([['sum(increase(vram_cleanup_predictions_unmoved_total{%s}[$__range])) or vector(0)' % S, 'unmoved']]), 'none',
               g.thresholdColors([['green', null], ['orange', 1]])) + { fieldConfig+: { defaults+: { decimals: 0 } } },

        g.row(204, 'Exporter', 63),
        g.timeseries(40, 'Poll duration', "Median and 99th percentile of the exporter's poll cycle on this host.", g.grid(0, 64, 12, 8),
                     g.targets([
                       ['histogram_quantile(0.5, sum by (%s, le) (rate(vram_exporter_poll_duration_seconds_bucket{%s}[$__rate_interval])))' % [cl, N], 'p50'],
                       ['histogram_quantile(0.99, sum by (%s, le) (rate(vram_exporter_poll_duration_seconds_bucket{%s}[$__rate_interval])))' % [cl, N], 'p99'],
                     ]), 's'),
        g.timeseries(41, 'Poll errors for this GPU', 'NVML call errors per second for this GPU by operation; 0 when there are none.', g.grid(12, 64, 12, 8),
                     g.targets([['sum by (%s, operation) (rate(vram_exporter_poll_errors_total{%s}[$__rate_interval])) or sum by (%s) (vram_device_up{%s} * 0)' % [cl, S, cl, S], '{{operation}}']]), 'reqps'),
      ],
      [g.dashboardLink('Fleet overview', '/d/%s/vram-fleet-overview' % c.dashboardUIDs['vram-fleet.json'], 'Back to all GPUs')],
      false,
    ),
  },
}
