// Small Grafana builders for the mixin's dashboards (no grafonnet dependency: the mixin renders with a
// plain `jsonnet` and no jsonnet-bundler). Each builder fills what every panel of a type shares; a panel
// adds only what differs with `+`.
{
  ds:: { type: 'prometheus', uid: '${datasource}' },

  target(expr, legend='', refId='A', instant=false, table=false):: {
    datasource: $.ds,
    refId: refId,
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    format: if table then 'table' else 'time_series',
    editorMode: 'code',
  },
  // Targets A, B, C... from [expr, legend] pairs.
  targets(pairs, instant=false, table=false):: [
    $.target(pairs[i][0], if std.length(pairs[i]) > 1 then pairs[i][1] else '', std.char(65 + i), instant, table)
    for i in std.range(0, std.length(pairs) - 1)
  ],

  grid(x, y, w, h):: { x: x, y: y, w: w, h: h },

  row(id, title, y):: { id: id, type: 'row', title: title, collapsed: false, panels: [], gridPos: $.grid(0, y, 24, 1) },

  panel(type, id, title, description, gridPos, targets, unit):: {
    id: id,
    type: type,
    title: title,
    description: description,
    gridPos: gridPos,
    datasource: $.ds,
    targets: targets,
    fieldConfig: { defaults: { unit: unit }, overrides: [] },
    options: {},
  },

  steps(pairs):: { mode: 'absolute', steps: [{ color: s[0], value: s[1] } for s in pairs] },
  thresholdColors(pairs):: { color: { mode: 'thresholds' }, thresholds: $.steps(pairs) },
  valueMap(texts):: [{
    type: 'value',
    options: {
      [std.toString(i)]: { text: texts[i][0], color: texts[i][1], index: i }
      for i in std.range(0, std.length(texts) - 1)
    },
  }],
  levelMap:: $.valueMap([['ok', 'green'], ['soft', 'yellow'], ['hard', 'red']]),
  levelColors:: $.thresholdColors([['green', null], ['yellow', 1], ['red', 2]]),
  upMap(down='down'):: $.valueMap([[down, 'red'], ['up', 'green']]),
  upColors:: $.thresholdColors([['red', null], ['green', 1]]),
  reduce:: { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false } },

  timeseries(id, title, description, gridPos, targets, unit, bars=false):: $.panel('timeseries', id, title, description, gridPos, targets, unit) + {
    fieldConfig+: { defaults+: {
      custom: {
        drawStyle: if bars then 'bars' else 'line',
        lineWidth: 1,
        fillOpacity: if bars then 80 else 10,
        showPoints: 'never',
        spanNulls: false,
        stacking: { mode: 'none', group: 'A' },
      },
      color: { mode: 'palette-classic' },
    } + (if bars then { decimals: 0 } else {}) },
    options: {
      legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: ['lastNotNull', 'max'] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  },

  stat(id, title, description, gridPos, targets, unit, colors, background=false):: $.panel('stat', id, title, description, gridPos, targets, unit) + {
    fieldConfig+: { defaults+: colors },
    options: $.reduce + {
      colorMode: if background then 'background' else 'value',
      graphMode: if background then 'none' else 'area',
      justifyMode: 'auto',
      textMode: 'auto',
      orientation: 'auto',
    },
  },

  table(id, title, description, gridPos, targets, unit, organize, sortBy=null):: $.panel('table', id, title, description, gridPos, targets, unit) + {
    fieldConfig+: { defaults+: { custom: { align: 'auto', cellOptions: { type: 'auto' } } } },
    options: { showHeader: true, cellHeight: 'sm' } + (if sortBy == null then {} else { sortBy: [sortBy] }),
    transformations: [{ id: 'organize', options: organize }],
  },

  bargauge(id, title, description, gridPos, targets, unit):: $.panel('bargauge', id, title, description, gridPos, targets, unit) + {
    fieldConfig+: { defaults+: { min: 0 } },
    options: $.reduce + { displayMode: 'gradient', orientation: 'horizontal', showUnfilled: true, valueMode: 'color' },
  },

  gauge(id, title, description, gridPos, targets, unit):: $.panel('gauge', id, title, description, gridPos, targets, unit) + {
    options: $.reduce + { showThresholdMarkers: true, showThresholdLabels: false },
  },

  stateTimeline(id, title, description, gridPos, targets, unit, mappings, colors):: $.panel('state-timeline', id, title, description, gridPos, targets, unit) + {
    fieldConfig+: { defaults+: { mappings: mappings, custom: { fillOpacity: 80, lineWidth: 0 } } + colors },
    options: {
      showValue: 'never',
      mergeValues: true,
      alignValue: 'left',
      rowHeight: 0.9,
      legend: { showLegend: false, displayMode: 'list', placement: 'bottom' },
      tooltip: { mode: 'single', sort: 'none' },
    },
  },

  // Series name ending in `suffix` drawn in a fixed colour, dashed where `dash` is given.
  colorOverride(suffix, color, dash=null):: {
    matcher: { id: 'byRegexp', options: '.*%s$' % suffix },
    properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: color } }]
                + (if dash == null then [] else [
                     { id: 'custom.lineStyle', value: { fill: 'dash', dash: dash } },
                     { id: 'custom.fillOpacity', value: 0 },
                   ]),
  },

  variable(name, label, query, multi, sort=1):: {
    name: name,
    label: label,
    type: 'query',
    datasource: $.ds,
    query: { query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    definition: query,
    refresh: 2,
    sort: sort,
    regex: '',
    hide: 0,
    multi: multi,
    includeAll: multi,
    current: {},
    options: [],
  } + (if multi then { allValue: '.*' } else {}),

  // The variables every vram dashboard has: data source, cluster, job, node (the instance label), GPU,
  // and the Kubernetes namespace of the per-process series (All by default; empty outside Kubernetes).
  variables(config, multi):: [
    {
      name: 'datasource',
      label: 'Data source',
      type: 'datasource',
      query: 'prometheus',
      current: {},
      hide: 0,
      refresh: 1,
      regex: config.datasourceRegex,
      includeAll: false,
      multi: false,
      options: [],
    },
    $.variable('cluster', 'Cluster', 'label_values(vram_nvml_up{%s}, %s)' % [config.vramExporterSelector, config.clusterLabel], multi),
    $.variable('job', 'Job', 'label_values(vram_nvml_up{%s,%s=~"$cluster"}, job)' % [config.vramExporterSelector, config.clusterLabel], multi),
    $.variable('node', 'Node', 'label_values(vram_nvml_up{%s=~"$cluster",job=~"$job"}, %s)' % [config.clusterLabel, config.instanceLabel], multi),
    $.variable('gpu', 'GPU', 'label_values(vram_gpu_info{%s=~"$cluster",job=~"$job",%s=~"$node"}, gpu)' % [config.clusterLabel, config.instanceLabel], multi, 3),
    $.variable('namespace', 'Namespace', 'label_values(vram_process_allocated_bytes{%s=~"$cluster",job=~"$job"}, namespace)' % [config.clusterLabel], true),
  ],

  dashboard(config, file, title, description, panels, links, multi):: {
    uid: config.dashboardUIDs[file],
    title: title,
    description: description,
    tags: config.grafanaDashboardTags,
    editable: true,
    graphTooltip: 1,
    timezone: config.dashboardTimezone,
    refresh: config.dashboardRefresh,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-6h', to: 'now' },
    timepicker: {},
    fiscalYearStartMonth: 0,
    liveNow: false,
    weekStart: '',
    annotations: { list: [{
      builtIn: 1,
      datasource: { type: 'grafana', uid: '-- Grafana --' },
      enable: true,
      hide: true,
      iconColor: 'rgba(0, 211, 255, 1)',
      name: 'Annotations & Alerts',
      type: 'dashboard',
    }] },
    templating: { list: $.variables(config, multi) },
    links: links + [{
      title: 'Runbook',
      type: 'link',
      url: config.runbookURLBase,
      icon: 'doc',
      tooltip: 'What each VRAM alert means and what to do',
      includeVars: false,
      keepTime: false,
      targetBlank: true,
      asDropdown: false,
      tags: [],
    }],
    panels: panels,
  },

  dashboardLink(title, url, tooltip):: {
    title: title,
    type: 'link',
    url: url,
    icon: 'dashboard',
    tooltip: tooltip,
    includeVars: true,
    keepTime: true,
    targetBlank: false,
    asDropdown: false,
    tags: [],
  },
}
