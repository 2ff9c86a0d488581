//! `/metrics`: what the controller counts, and the one writer of its exposition.
//!
//! Owns the counters (store commits, REST requests and their latency) and the exposition of
//! everything `/metrics` shows, written by `prometheus-client` in the OpenMetrics text format
//! ([`CONTENT_TYPE`]). Gauges of the cluster's state (nodes, pools, resources) are read from the
//! model and the satellites' reports at each scrape, not kept here. The HTTP route only calls
//! [`Metrics::exposition`].

use std::time::Duration;

use ferrite_types::ConnectionStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::app::placement::Runtime;
use crate::model::Cluster;

/// The exposition's media type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the REST latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    status: u16,
}

/// What the controller counts.
pub struct Metrics {
    commits: Counter,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            commits: Counter::default(),
            requests: Family::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl Metrics {
    pub fn record_commit(&self) {
        self.commits.inc();
    }

    pub fn record_request(&self, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                status,
            })
            .inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Everything `/metrics` shows: the counters, then the cluster's state as `cluster` and
    /// `runtime` have it now.
    pub fn exposition(&self, cluster: &Cluster, runtime: &Runtime) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ClusterGauges::read(cluster, runtime)));
        // prometheus-client names a counter's samples `<name>_total` and ends each help text
        // with a full stop.
        registry.register(
            "ferrite_store_commits",
            "Changes committed to the store since start",
            self.commits.clone(),
        );
        registry.register(
            "ferrite_rest_requests",
            "REST requests by method and status",
            self.requests.clone(),
        );
        registry.register(
            "ferrite_rest_request_duration_seconds",
            "REST request latency",
            self.latency.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String does not fail");
        out
    }
}

/// One gauge and its series, each a label set and a value.
#[derive(Debug)]
struct GaugeFamily {
    name: &'static str,
    help: &'static str,
    series: Vec<(Vec<(&'static str, String)>, i64)>,
}

impl GaugeFamily {
    fn single(name: &'static str, help: &'static str, value: usize) -> GaugeFamily {
        GaugeFamily {
            name,
            help,
            series: vec![(Vec::new(), i64::try_from(value).unwrap_or(i64::MAX))],
        }
    }
}

/// The gauges of the cluster's state, read at one scrape, in a fixed order (series by node, then
/// pool name).
#[derive(Debug)]
struct ClusterGauges(Vec<GaugeFamily>);

impl ClusterGauges {
    fn read(cluster: &Cluster, runtime: &Runtime) -> ClusterGauges {
        let resources: usize = cluster
            .resource_definitions
            .values()
            .map(|rd| rd.resources.len())
            .sum();
        let mut online = Vec::new();
        let mut free = Vec::new();
        let mut total = Vec::new();
        for node in cluster.nodes.values() {
            let report = runtime.get(&node.name);
            let is_online = report.is_some_and(|n| n.status == ConnectionStatus::Online);
            online.push((vec![("node", node.name.to_string())], i64::from(is_online)));
            for pool in node.storage_pools.values().filter(|p| !p.is_diskless()) {
                let Some(pool_report) = report.and_then(|n| n.pools.get(pool.name.key())) else {
                    continue;
                };
                let labels = vec![
                    ("node", node.name.to_string()),
                    ("storage_pool", pool.name.to_string()),
                ];
                let kib = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
                if let Some(value) = pool_report.free_capacity_kib {
                    free.push((labels.clone(), kib(value)));
                }
                if let Some(value) = pool_report.total_capacity_kib {
                    total.push((labels, kib(value)));
                }
            }
        }
        ClusterGauges(vec![
            GaugeFamily {
                name: "ferrite_controller_info",
                help: "Controller version.",
                series: vec![(
                    vec![
                        ("version", crate::VERSION.to_string()),
                        (
                            "rest_api_version",
                            ferrite_types::REST_API_VERSION.to_string(),
                        ),
                    ],
                    1,
                )],
            },
            GaugeFamily {
                name: "ferrite_store_revision",
                help: "Revision of the controller store.",
                series: vec![(
                    Vec::new(),
                    i64::try_from(cluster.revision).unwrap_or(i64::MAX),
                )],
            },
            GaugeFamily::single("ferrite_nodes", "Registered nodes.", cluster.nodes.len()),
            GaugeFamily::single(
                "ferrite_resource_groups",
                "Resource groups.",
                cluster.resource_groups.len(),
            ),
            GaugeFamily::single(
                "ferrite_resource_definitions",
                "Resource definitions.",
                cluster.resource_definitions.len(),
            ),
            GaugeFamily::single(
                "ferrite_resources",
                "Resources (placements of a definition on a node).",
                resources,
            ),
            GaugeFamily {
                name: "ferrite_node_online",
                help: "Whether the node's satellite is online.",
                series: online,
            },
            GaugeFamily {
                name: "ferrite_storage_pool_free_kib",
                help: "Free capacity reported by the satellite.",
                series: free,
            },
            GaugeFamily {
                name: "ferrite_storage_pool_total_kib",
                help: "Total capacity reported by the satellite.",
                series: total,
            },
        ])
    }
}

impl Collector for ClusterGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, MetricType::Gauge)?;
            match family.series.as_slice() {
                [(labels, value)] if labels.is_empty() => ConstGauge::new(*value).encode(metric)?,
                series => {
                    for (labels, value) in series {
                        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ferrite_proto::PoolReport;
    use ferrite_types::ProviderKind;

    use super::*;
    use crate::app::testing::{add_resource, all_up_to_date, tutorial_cluster};

    /// The tutorial's four nodes with one resource on node1; node1 and node3 online, node1's
    /// pool reported; two commits and one REST request of 3 ms.
    fn known_state() -> (Cluster, Runtime, Metrics) {
        let mut cluster = tutorial_cluster();
        add_resource(&mut cluster, "web", "node1", "pool_ssd");
        cluster.revision = 7;
        let mut runtime = all_up_to_date(&cluster);
        runtime.remove(&"node2".parse().unwrap());
        runtime.remove(&"node4".parse().unwrap());
        runtime
            .get_mut(&"node1".parse().unwrap())
            .unwrap()
            .pools
            .insert(
                "POOL_SSD".to_string(),
                PoolReport {
                    name: "pool_ssd".to_string(),
                    provider_kind: ProviderKind::FileThin,
                    free_capacity_kib: Some(1024),
                    total_capacity_kib: Some(4096),
                    errors: Vec::new(),
                },
            );
        let metrics = Metrics::default();
        metrics.record_commit();
        metrics.record_commit();
        metrics.record_request("GET", 200, Duration::from_millis(3));
        (cluster, runtime, metrics)
    }

    #[test]
    fn the_exposition_of_a_known_state() {
        let (cluster, runtime, metrics) = known_state();
        let expected = format!(
            "\
# HELP ferrite_store_commits Changes committed to the store since start.
# TYPE ferrite_store_commits counter
ferrite_store_commits_total 2
# HELP ferrite_rest_requests REST requests by method and status.
# TYPE ferrite_rest_requests counter
ferrite_rest_requests_total{{method=\"GET\",status=\"200\"}} 1
# HELP ferrite_rest_request_duration_seconds REST request latency.
# TYPE ferrite_rest_request_duration_seconds histogram
ferrite_rest_request_duration_seconds_sum 0.003
ferrite_rest_request_duration_seconds_count 1
ferrite_rest_request_duration_seconds_bucket{{le=\"0.001\"}} 0
ferrite_rest_request_duration_seconds_bucket{{le=\"0.0025\"}} 0
ferrite_rest_request_duration_seconds_bucket{{le=\"0.005\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"0.01\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"0.025\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"0.05\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"0.1\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"0.25\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"0.5\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"1.0\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"2.5\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"10.0\"}} 1
ferrite_rest_request_duration_seconds_bucket{{le=\"+Inf\"}} 1
# HELP ferrite_controller_info Controller version.
# TYPE ferrite_controller_info gauge
ferrite_controller_info{{version=\"{version}\",rest_api_version=\"{rest}\"}} 1
# HELP ferrite_store_revision Revision of the controller store.
# TYPE ferrite_store_revision gauge
ferrite_store_revision 7
# HELP ferrite_nodes Registered nodes.
# TYPE ferrite_nodes gauge
ferrite_nodes 4
# HELP ferrite_resource_groups Resource groups.
# TYPE ferrite_resource_groups gauge
ferrite_resource_groups 2
# HELP ferrite_resource_definitions Resource definitions.
# TYPE ferrite_resource_definitions gauge
ferrite_resource_definitions 1
# HELP ferrite_resources Resources (placements of a definition on a node).
# TYPE ferrite_resources gauge
ferrite_resources 1
# HELP ferrite_node_online Whether the node's satellite is online.
# TYPE ferrite_node_online gauge
ferrite_node_online{{node=\"node1\"}} 1
ferrite_node_online{{node=\"node2\"}} 0
ferrite_node_online{{node=\"node3\"}} 1
ferrite_node_online{{node=\"node4\"}} 0
# HELP ferrite_storage_pool_free_kib Free capacity reported by the satellite.
# TYPE ferrite_storage_pool_free_kib gauge
ferrite_storage_pool_free_kib{{node=\"node1\",storage_pool=\"pool_ssd\"}} 1024
# HELP ferrite_storage_pool_total_kib Total capacity reported by the satellite.
# TYPE ferrite_storage_pool_total_kib gauge
ferrite_storage_pool_total_kib{{node=\"node1\",storage_pool=\"pool_ssd\"}} 4096
# EOF
",
            version = crate::VERSION,
            rest = ferrite_types::REST_API_VERSION,
        );
        let got = metrics.exposition(&cluster, &runtime);
        assert_eq!(got, expected, "got:\n{got}");
    }

    #[test]
    fn every_request_series_is_counted_apart() {
        let metrics = Metrics::default();
        metrics.record_request("GET", 200, Duration::from_millis(1));
        metrics.record_request("GET", 200, Duration::from_millis(1));
        metrics.record_request("POST", 400, Duration::from_secs(20));
        let got = metrics.exposition(&Cluster::default(), &Runtime::new());
        let lines: Vec<&str> = got.lines().collect();
        assert!(lines.contains(&"ferrite_rest_requests_total{method=\"GET\",status=\"200\"} 2"));
        assert!(lines.contains(&"ferrite_rest_requests_total{method=\"POST\",status=\"400\"} 1"));
        // 20 s is above every bound: only +Inf counts it.
        assert!(lines.contains(&"ferrite_rest_request_duration_seconds_bucket{le=\"10.0\"} 2"));
        assert!(lines.contains(&"ferrite_rest_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(lines.contains(&"ferrite_nodes 0"));
    }
}
