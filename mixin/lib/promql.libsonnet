// PromQL helpers shared by the rules, the alerts and the dashboards of the mixin, so the cluster label
// and the selector reach every expression the same way.
{
  // `on (cluster, job, instance, gpu, uuid)`
  onGpu(config):: 'on (%s)' % std.join(', ', [config.clusterLabel] + config.gpuLabels),
  // `by (cluster, job, instance, gpu, uuid, extra...)`
  byGpu(config, extra=[]):: 'by (%s)' % std.join(', ', [config.clusterLabel] + config.gpuLabels + extra),
  // `by (cluster, job)` and `by (cluster, job, instance)`: the fleet and node aggregation levels.
  byCluster(config):: 'by (%s, job)' % config.clusterLabel,
  byNode(config):: 'by (%s, job, %s)' % [config.clusterLabel, config.instanceLabel],
  // `metric{selector}` or `metric{selector,extra}`
  sel(config, metric, extra=''):: '%s{%s}' % [metric, std.join(',', [config.vramExporterSelector] + (if extra == '' then [] else [extra]))],

  // A Prometheus duration for people: '5m' -> '5 minutes', '1h' -> '1 hour' (one unit only, else as is).
  human(d)::
    local units = { s: 'second', m: 'minute', h: 'hour', d: 'day' };
    local n = std.substr(d, 0, std.length(d) - 1);
    local u = d[std.length(d) - 1];
    if std.objectHas(units, u) && std.all([std.member('0123456789', ch) for ch in std.stringChars(n)])
    then '%s %s%s' % [n, units[u], if n == '1' then '' else 's']
    else d,

  // A number of seconds for people, in its largest whole unit: 3600 -> '1 hour', 90 -> '90 seconds'.
  humanSeconds(n)::
    self.human(if n % 3600 == 0 then '%dh' % (n / 3600) else if n % 60 == 0 then '%dm' % (n / 60) else '%ds' % n),
}
