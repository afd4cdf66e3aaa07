// Alerting rules: they carry the exporter's soft/hard VRAM policy to Prometheus by comparing against the
// exporter's own limit gauges, pressure level and violation counters, so a change of limits in the
// exporter's configuration changes alerting with no edit here. Alert names, labels and semantics are a
// public contract; thresholds and durations come from config.libsonnet.
local p = import '../lib/promql.libsonnet';
{
  prometheusAlerts+:: {
    local c = $._config,
    local on = p.onGpu(c),
    local sel(m, extra='') = p.sel(c, m, extra),
    local runbook(name) = '%s#%s' % [c.runbookURLBase, std.asciiLower(name)],
    // A Go template that looks up another family of the alerting GPU and prints it humanized, e.g.
    // `{{ with printf "vram_hard_limit_bytes{cluster=%q,job=%q,...}" ... | query }}...{{ end }}`.
    // An unset cluster label is "" in $labels, and `cluster=""` matches series without it.
    local lookup(metric) =
      '{{ with printf "' + metric + '{' + c.clusterLabel + '=%q,job=%q,instance=%q,gpu=%q}" $labels.' + c.clusterLabel
      + ' $labels.job $labels.instance $labels.gpu | query }}{{ . | first | value | humanize1024 }}B{{ end }}',
    local gpu = 'GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.instance }}',
    // The GPU's largest process, with its Kubernetes pod when the exporter knows it; nothing when no
    // process is listed.
    local topProcess =
      '{{ with printf "topk(1, vram_process_allocated_bytes{' + c.clusterLabel + '=%q,job=%q,instance=%q,gpu=%q})" $labels.' + c.clusterLabel
      + ' $labels.job $labels.instance $labels.gpu | query }}{{ with first . }} Largest process: pid {{ .Labels.pid }} ({{ .Labels.process }})'
      + '{{ if .Labels.pod }} in pod {{ .Labels.namespace }}/{{ .Labels.pod }}{{ if .Labels.container }}, container {{ .Labels.container }}{{ end }}{{ end }}'
      + ', {{ .Value | humanize1024 }}B.{{ end }}{{ end }}',

    // How much of the GPU the processes' allocators could hand back on a cleanup signal; nothing when no
    // process reports (vram_client).
    local reclaimable =
      '{{ with printf "vram_allocator_reclaimable_bytes{' + c.clusterLabel + '=%q,job=%q,instance=%q,gpu=%q}" $labels.' + c.clusterLabel
      + ' $labels.job $labels.instance $labels.gpu | query }} Reclaimable allocator cache: {{ . | first | value | humanize1024 }}B (a cleanup signal frees it first).{{ end }}',
    local process = 'pid {{ $labels.pid }} ({{ $labels.process }}){{ if $labels.pod }} in pod {{ $labels.namespace }}/{{ $labels.pod }}{{ end }} on GPU {{ $labels.gpu }} ({{ $labels.uuid }}) of {{ $labels.instance }}',

    groups+: [
      {
        name: 'vram-exporter.alerts',
        rules: [
          // Critical: the exporter saw a hard-limit breach. The level catches a breach that lasts; the
          // counter counts episodes (rising edges, latched by the exporter between scrapes), so a breach
          // shorter than the scrape interval still raises it. increase() treats an exporter restart
          // (counter back to 0) as a reset, never as a breach. [2m] stays >= 2 samples wide with a 15s
          // scrape and an eval interval up to 1m; the alert keeps firing up to 2m after the last episode.
          {
            alert: 'VramHardLimitBreached',
            expr: |||
              %(alloc)s
              and %(on)s
              (
                %(level)s == 2
                or
                increase(%(viol)s[%(w)s]) > 0
              )
            ||| % {
              alloc: sel('vram_allocated_bytes'),
              on: on,
              level: sel('vram_pressure_level'),
              viol: sel('vram_hard_limit_violations_total'),
              w: c.hardLimitBreachWindow,
            },
            labels: { severity: c.criticalSeverity },
            annotations: {
              summary: 'GPU memory crossed its hard limit; an out-of-memory error is imminent.',
              description: gpu + ' is at or has just crossed its hard limit: {{ $value | humanize1024 }}B allocated now, hard limit '
                           + lookup('vram_hard_limit_bytes') + ' of ' + lookup('vram_total_bytes') + '.' + topProcess + reclaimable,
              runbook_url: runbook('VramHardLimitBreached'),
            },
          },
          // Warning: the exporter's latched pressure level (with hysteresis) has been at soft or above for
          // softLimitFor. Brief excursions above soft do not fire; it keeps firing while the hard alert
          // fires and Alertmanager inhibits it there.
          {
            alert: 'VramSoftLimitExceeded',
            expr: |||
              %s
              and %s
              %s >= 1
            ||| % [sel('vram_allocated_bytes'), on, sel('vram_pressure_level')],
            'for': c.softLimitFor,
            labels: { severity: c.warningSeverity },
            annotations: {
              summary: 'GPU memory has been above its soft limit for %s.' % p.human(c.softLimitFor),
              description: gpu + ' has been above its soft limit for %s: {{ $value | humanize1024 }}B allocated, soft limit ' % p.human(c.softLimitFor)
                           + lookup('vram_soft_limit_bytes') + ', hard limit ' + lookup('vram_hard_limit_bytes') + '.',
              runbook_url: runbook('VramSoftLimitExceeded'),
            },
          },
          // Warning: the memory a leak has taken (the exporter's drift: sustained growth rate of the usage
          // floor times how long it has grown) is above leakDriftRatio of the GPU's memory, for leakFor. The
          // exporter reports 0 for a training sawtooth and for one-time steps (a job starting), so the hold
          // only has to outlast the exporter's short confirmation span.
          {
            alert: 'VramLeakSuspected',
            expr: |||
              %s
                > %s
              (%g * %s)
            ||| % [sel('vram_leak_drift_bytes'), on, c.leakDriftRatio, sel('vram_total_bytes')],
            'for': c.leakFor,
            labels: { severity: c.warningSeverity },
            annotations: {
              summary: 'GPU memory usage floor keeps rising; a memory leak is suspected.',
              description: 'The usage floor of ' + gpu + ' keeps growing at ' + lookup('vram_leak_rate_bytes_per_second') + '/s; the leak has taken {{ $value | humanize1024 }}B, more than '
                           + ('%g' % (c.leakDriftRatio * 100)) + '% of its ' + lookup('vram_total_bytes') + ', for ' + p.human(c.leakFor) + '.',
              runbook_url: runbook('VramLeakSuspected'),
            },
          },
          // Warning: at the GPU's leak rate (the sustained growth of its usage floor, computed by the
          // exporter) allocation reaches the hard limit within predictHorizonSeconds, and the GPU is not at
          // hard now. The ETA series exists only while the floor grows, so a training sawtooth, a model load
          // or a dip never match, and it needs no Prometheus history (a rollout does not reset it).
          {
            alert: 'VramHardLimitPredicted',
            expr: |||
              %(eta)s < %(h)d
              and %(on)s
              %(level)s < 2
            ||| % {
              eta: sel('vram_hard_limit_eta_seconds'),
              h: c.predictHorizonSeconds,
              on: on,
              level: sel('vram_pressure_level'),
            },
            'for': c.predictFor,
            labels: { severity: c.warningSeverity },
            annotations: {
              summary: 'GPU memory is predicted to reach its hard limit within %s.' % p.humanSeconds(c.predictHorizonSeconds),
              description: gpu + ' leaks ' + lookup('vram_leak_rate_bytes_per_second') + '/s and reaches its hard limit ' + lookup('vram_hard_limit_bytes')
                           + ' in {{ $value | humanizeDuration }} at that rate; allocated now ' + lookup('vram_allocated_bytes') + '.',
              runbook_url: runbook('VramHardLimitPredicted'),
            },
          },
          {
            alert: 'VramGpuLost',
            expr: '%s == 0' % sel('vram_device_up'),
            'for': c.gpuLostFor,
            labels: { severity: c.criticalSeverity },
            annotations: {
              summary: 'A GPU stopped answering NVML.',
              description: gpu + ' has not answered NVML for %s; its memory, limits and processes are no longer observed.' % p.human(c.gpuLostFor),
              runbook_url: runbook('VramGpuLost'),
            },
          },
          {
            alert: 'VramNvmlDown',
            expr: '%s == 0' % sel('vram_nvml_up'),
            'for': c.nvmlDownFor,
            labels: { severity: c.criticalSeverity },
            annotations: {
              summary: 'vram-exporter cannot initialise NVML; no GPU on the host is observed.',
              description: 'vram-exporter on {{ $labels.instance }} has not been able to initialise NVML for %s (driver or libnvidia-ml missing, or no permission); no GPU of that host is watched.' % p.human(c.nvmlDownFor),
              runbook_url: runbook('VramNvmlDown'),
            },
          },
          {
            alert: 'VramExporterDown',
            expr: '%s == 0' % sel('up'),
            'for': c.exporterDownFor,
            labels: { severity: c.criticalSeverity },
            annotations: {
              summary: 'Prometheus cannot scrape vram-exporter.',
              description: 'Prometheus has failed to scrape vram-exporter on {{ $labels.instance }} for %s; the GPU memory of that host is not watched and its alerts cannot fire.' % p.human(c.exporterDownFor),
              runbook_url: runbook('VramExporterDown'),
            },
          },
          // The exporter's own polling: NVML calls failing poll after poll (any operation; the series
          // exist at 0 from start, so the first burst counts), or no poll published at all (a hung
          // driver, or a poller thread that died: vram_exporter_component_up{component="poller"} 0).
          {
            alert: 'VramExporterPollFailing',
            expr: |||
              sum by (%s, job, %s, operation) (
                rate(%s[%s])
              ) > 0
            ||| % [c.clusterLabel, c.instanceLabel, sel('vram_exporter_poll_errors_total'), c.pollErrorsWindow],
            'for': c.pollErrorsFor,
            labels: { severity: c.warningSeverity },
            annotations: {
              summary: "vram-exporter's NVML polls keep failing.",
              description: 'vram-exporter on {{ $labels.instance }} has had failing {{ $labels.operation }} calls for %s ({{ printf "%%.2f" $value }} per second); some GPU readings are missing or stale.' % p.human(c.pollErrorsFor),
              runbook_url: runbook('VramExporterPollFailing'),
            },
          },
          {
            alert: 'VramExporterPollStalled',
            expr: |||
              (time() - %s > %d)
              or
              (min without (component) (%s) == 0)
            ||| % [sel('vram_exporter_last_poll_timestamp_seconds'), c.pollStalledSeconds, sel('vram_exporter_component_up', 'component="poller"')],
            'for': c.pollStalledFor,
            labels: { severity: c.criticalSeverity },
            annotations: {
              summary: 'vram-exporter has stopped polling its GPUs.',
              description: 'vram-exporter on {{ $labels.instance }} has published no poll for over %s, or its poller thread died; its GPU readings are stale and no VRAM alert of that host can fire.' % p.humanSeconds(c.pollStalledSeconds),
              runbook_url: runbook('VramExporterPollStalled'),
            },
          },
          // absent() has no labels to split by cluster: in a central Prometheus it fires only when no
          // cluster has any target; per-cluster absence is what each cluster's own Prometheus alerts on.
          {
            alert: 'VramExporterAbsent',
            expr: 'absent(%s)' % sel('up'),
            'for': c.exporterAbsentFor,
            labels: { severity: c.criticalSeverity },
            annotations: {
              summary: 'Prometheus has no vram-exporter target at all.',
              description: 'No target of job {{ $labels.job }} has been known to Prometheus for %s (service discovery or scrape configuration lost it); no GPU memory is watched and no VRAM alert can fire.' % p.human(c.exporterAbsentFor),
              runbook_url: runbook('VramExporterAbsent'),
            },
          },
          // Warning: a cleanup action (signal, webhook, exec, kill) failed recently. increase() ignores
          // counter resets from exporter restarts.
          {
            alert: 'VramCleanupFailed',
            expr: |||
              sum %s (
                increase(%s[%s])
              ) > 0
            ||| % [p.byGpu(c, ['action']), sel('vram_cleanups_total', 'result="failed"'), c.cleanupFailedWindow],
            labels: { severity: c.warningSeverity },
            annotations: {
              summary: 'An emergency cleanup action on a GPU is failing.',
              description: 'The {{ $labels.action }} cleanup action for GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.instance }} failed {{ printf "%.0f" $value }} time(s) in the last ' + p.human(c.cleanupFailedWindow) + '; the GPU may stay above its hard limit.',
              runbook_url: runbook('VramCleanupFailed'),
            },
          },
          // Warning: a predictive cleanup run (trigger="predicted") did not push the GPU's time to its
          // hard limit away: the job did not give memory back, and the breach is still coming.
          {
            alert: 'VramCleanupPredictionUnmoved',
            expr: |||
              sum %s (
                increase(%s[%s])
              ) > 0
            ||| % [p.byGpu(c), sel('vram_cleanup_predictions_unmoved_total'), c.cleanupUnmovedWindow],
            labels: { severity: c.warningSeverity },
            annotations: {
              summary: 'Cleanup before a predicted hard-limit breach did not move it.',
              description: 'GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.instance }}: {{ printf "%.0f" $value }} predictive cleanup run(s) in the last ' + p.human(c.cleanupUnmovedWindow) + ' left its time to the hard limit no longer; the jobs did not release memory and the breach is still coming.',
              runbook_url: runbook('VramCleanupPredictionUnmoved'),
            },
          },
          // Warning: a process's caching allocator keeps failing allocations, freeing its cache and
          // retrying (PyTorch's num_alloc_retries, reported by vram_client): it is thrashing at the edge of
          // its memory and an OOM is near. increase() ignores a restarted job's counter reset.
          {
            alert: 'VramAllocatorRetries',
            expr: |||
              sum %s (
                increase(%s[%s])
              ) > 0
            ||| % [p.byGpu(c, ['pid', 'process', 'namespace', 'pod']), sel('vram_process_allocator_alloc_retries_total'), c.allocatorRetriesWindow],
            labels: { severity: c.warningSeverity },
            annotations: {
              summary: "A process's GPU memory allocator is retrying allocations; an out-of-memory error is near.",
              description: 'The allocator of ' + process + ' retried {{ printf "%.0f" $value }} allocation(s) in the last ' + p.human(c.allocatorRetriesWindow)
                           + ' after freeing its cache: it runs at the edge of its memory.',
              runbook_url: runbook('VramAllocatorRetries'),
            },
          },
          // Warning: a process's allocator reported out-of-memory errors (PyTorch's num_ooms).
          {
            alert: 'VramAllocatorOOM',
            expr: |||
              sum %s (
                increase(%s[%s])
              ) > 0
            ||| % [p.byGpu(c, ['pid', 'process', 'namespace', 'pod']), sel('vram_process_allocator_ooms_total'), c.allocatorOomWindow],
            labels: { severity: c.warningSeverity },
            annotations: {
              summary: 'A process hit out-of-memory errors on its GPU.',
              description: 'The allocator of ' + process + ' reported {{ printf "%.0f" $value }} out-of-memory error(s) in the last ' + p.human(c.allocatorOomWindow) + '.',
              runbook_url: runbook('VramAllocatorOOM'),
            },
          },
        ],
      },
    ],
  },
}
