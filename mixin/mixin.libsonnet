// The vram-exporter monitoring mixin (monitoring-mixins layout): prometheusAlerts, prometheusRules and
// grafanaDashboards, configured through _config (config.libsonnet). Import it, override _config, and
// render it with your usual mixin tooling, or see build.jsonnet for the files shipped in this repository.
(import 'config.libsonnet')
+ (import 'alerts/alerts.libsonnet')
+ (import 'rules/rules.libsonnet')
+ (import 'dashboards/dashboards.libsonnet')
