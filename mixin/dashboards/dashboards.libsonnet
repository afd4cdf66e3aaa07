// All dashboards of the mixin, keyed by file name (the monitoring-mixins `grafanaDashboards` field).
(import 'fleet.libsonnet') + (import 'gpu.libsonnet')
