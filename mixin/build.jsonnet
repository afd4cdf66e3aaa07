// What scripts/gen-mixin.py writes into the repository: every generated file, keyed by its path, from the
// mixin with its default _config. Override the config the same way to render your own:
//   jsonnet -J mixin -e '(import "mixin.libsonnet") + {_config+:: {clusterLabel: "k8s_cluster"}}'
local mixin = import 'mixin.libsonnet';
local groups = mixin.prometheusRules.groups + mixin.prometheusAlerts.groups;
{
  'alerts/vram-exporter.rules.yml': { groups: groups },
  'deploy/kubernetes/prometheusrule.yaml': {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'vram-exporter',
      labels: { 'app.kubernetes.io/name': 'vram-exporter', 'app.kubernetes.io/component': 'alerts' },
    },
    spec: { groups: groups },
  },
  'deploy/kubernetes/components/grafana-dashboards/dashboards.yaml': {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'vram-exporter-dashboards',
      labels: { grafana_dashboard: '1', 'app.kubernetes.io/name': 'vram-exporter', 'app.kubernetes.io/component': 'dashboards' },
    },
    // The sidecar writes each key as a file. gen-mixin.py writes object values as compact JSON strings
    // (std.manifestJsonMinified is slow in the C++ jsonnet), well under a ConfigMap's 1 MiB.
    data: mixin.grafanaDashboards,
  },
} + {
  ['dashboards/' + name]: mixin.grafanaDashboards[name]
  for name in std.objectFields(mixin.grafanaDashboards)
}
