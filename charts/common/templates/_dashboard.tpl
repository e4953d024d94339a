{{/*
The Grafana dashboard of a personscore service (__SERVICE__ is replaced by the chart name),
as a raw string: the JSON holds Grafana's own {{...}} legend templates.
*/}}
{{- define "common.dashboard.json" -}}
{{ `{
  "uid": "personscore-__SERVICE__",
  "title": "personscore / __SERVICE__ events",
  "description": "Outbox, broker and consumer metrics of the __SERVICE__ service (eventbus_*), plus its HTTP API.",
  "tags": [
    "personscore",
    "__SERVICE__",
    "rabbitmq",
    "eventbus"
  ],
  "editable": true,
  "graphTooltip": 1,
  "schemaVersion": 39,
  "version": 1,
  "refresh": "30s",
  "time": {
    "from": "now-1h",
    "to": "now"
  },
  "templating": {
    "list": [
      {
        "name": "datasource",
        "type": "datasource",
        "query": "prometheus",
        "label": "Data source",
        "current": {}
      },
      {
        "name": "namespace",
        "type": "query",
        "datasource": {
          "type": "prometheus",
          "uid": "${datasource}"
        },
        "label": "Namespace",
        "query": {
          "query": "label_values(eventbus_published_total, namespace)",
          "refId": "ns"
        },
        "definition": "label_values(eventbus_published_total, namespace)",
        "includeAll": true,
        "multi": true,
        "refresh": 2,
        "current": {}
      },
      {
        "name": "job",
        "type": "query",
        "datasource": {
          "type": "prometheus",
          "uid": "${datasource}"
        },
        "label": "Job",
        "query": {
          "query": "label_values(up{namespace=~\"$namespace\"}, job)",
          "refId": "job"
        },
        "definition": "label_values(up{namespace=~\"$namespace\"}, job)",
        "regex": ".*__SERVICE__.*",
        "includeAll": true,
        "multi": true,
        "refresh": 2,
        "current": {}
      }
    ]
  },
  "annotations": {
    "list": []
  },
  "panels": [
    {
      "id": 1,
      "type": "timeseries",
      "title": "Events published / confirmed / returned",
      "description": "Publisher side of the outbox relay: publishes, broker confirms and mandatory returns per second.",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 0
      },
      "fieldConfig": {
        "defaults": {
          "unit": "ops"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "sum by (type) (rate(eventbus_published_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "published {{type}}",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "expr": "sum by (type) (rate(eventbus_confirmed_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "confirmed {{type}}",
          "refId": "B",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "expr": "sum by (type) (rate(eventbus_returned_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "returned (unroutable) {{type}}",
          "refId": "C",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 2,
      "type": "timeseries",
      "title": "Events consumed / retried / dead-lettered",
      "description": "Consumer side: handled deliveries, retries via the delay queues, and parking-lot dead letters.",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 0
      },
      "fieldConfig": {
        "defaults": {
          "unit": "ops"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "sum by (queue) (rate(eventbus_consumed_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "consumed {{queue}}",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "expr": "sum by (queue) (rate(eventbus_retried_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "retried {{queue}}",
          "refId": "B",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "expr": "sum by (queue, reason) (rate(eventbus_dead_lettered_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "dead-lettered {{queue}} ({{reason}})",
          "refId": "C",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 3,
      "type": "timeseries",
      "title": "Handler duration (p50 / p95 / p99)",
      "description": "Time spent in the event handler per delivery.",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "histogram_quantile(0.50, sum by (le) (rate(eventbus_handler_seconds_bucket{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "p50",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "expr": "histogram_quantile(0.95, sum by (le) (rate(eventbus_handler_seconds_bucket{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "p95",
          "refId": "B",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "expr": "histogram_quantile(0.99, sum by (le) (rate(eventbus_handler_seconds_bucket{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "p99",
          "refId": "C",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 4,
      "type": "timeseries",
      "title": "End-to-end lag, event time to handled (p50 / p95 / p99)",
      "description": "How far the consumer's view trails the writes (eventbus_lag_seconds).",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 8
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "histogram_quantile(0.50, sum by (le) (rate(eventbus_lag_seconds_bucket{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "p50",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "expr": "histogram_quantile(0.95, sum by (le) (rate(eventbus_lag_seconds_bucket{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "p95",
          "refId": "B",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        },
        {
          "expr": "histogram_quantile(0.99, sum by (le) (rate(eventbus_lag_seconds_bucket{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "p99",
          "refId": "C",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 5,
      "type": "timeseries",
      "title": "Outbox backlog: events not yet confirmed by the broker",
      "description": "eventbus_outbox_pending per pod: the events this replica counts as stored and not yet confirmed (its own writes, and what its sweeps found). It grows while the broker is unreachable; person refuses writes (503) once it reaches OUTBOX_MAX_PENDING.",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 8,
        "x": 0,
        "y": 16
      },
      "fieldConfig": {
        "defaults": {
          "unit": "short"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "sum by (pod) (eventbus_outbox_pending{job=~\"$job\", namespace=~\"$namespace\"})",
          "legendFormat": "{{pod}}",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 6,
      "type": "timeseries",
      "title": "Oldest pending outbox event (age)",
      "description": "eventbus_outbox_oldest_pending_seconds per pod (0 when the backlog is empty); person refuses writes once it reaches OUTBOX_MAX_AGE.",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 8,
        "x": 8,
        "y": 16
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "max by (pod) (eventbus_outbox_oldest_pending_seconds{job=~\"$job\", namespace=~\"$namespace\"})",
          "legendFormat": "{{pod}}",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 10,
      "type": "timeseries",
      "title": "Outbox drain rate",
      "description": "rate(eventbus_outbox_drained_total): backlog events published late (left by a broker outage, a full relay or a crash), per second. Non-zero after an outage until the backlog is empty.",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 8,
        "x": 16,
        "y": 16
      },
      "fieldConfig": {
        "defaults": {
          "unit": "ops"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "sum by (pod) (rate(eventbus_outbox_drained_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "{{pod}}",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 7,
      "type": "timeseries",
      "title": "HTTP requests by route and code",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 0,
        "y": 24
      },
      "fieldConfig": {
        "defaults": {
          "unit": "reqps"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "sum by (method, route, code) (rate(http_requests_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval]))",
          "legendFormat": "{{method}} {{route}} {{code}}",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 8,
      "type": "timeseries",
      "title": "HTTP latency p95 by route",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 12,
        "x": 12,
        "y": 24
      },
      "fieldConfig": {
        "defaults": {
          "unit": "s"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval])))",
          "legendFormat": "{{route}}",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    },
    {
      "id": 9,
      "type": "timeseries",
      "title": "HTTP 5xx ratio",
      "description": "",
      "datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos": {
        "h": 8,
        "w": 24,
        "x": 0,
        "y": 32
      },
      "fieldConfig": {
        "defaults": {
          "unit": "percentunit"
        },
        "overrides": []
      },
      "options": {
        "legend": {
          "displayMode": "list",
          "placement": "bottom",
          "showLegend": true
        },
        "tooltip": {
          "mode": "multi",
          "sort": "none"
        }
      },
      "targets": [
        {
          "expr": "sum(rate(http_requests_total{job=~\"$job\", namespace=~\"$namespace\", code=~\"5..\"}[$__rate_interval])) / clamp_min(sum(rate(http_requests_total{job=~\"$job\", namespace=~\"$namespace\"}[$__rate_interval])), 1e-9)",
          "legendFormat": "5xx ratio",
          "refId": "A",
          "datasource": {
            "type": "prometheus",
            "uid": "${datasource}"
          }
        }
      ]
    }
  ]
}` }}
{{- end -}}
