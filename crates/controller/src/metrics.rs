//! Counters for `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the REST latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// What the controller counts.
#[derive(Default)]
pub struct Metrics {
    commits: AtomicU64,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<Histogram>,
}

impl Metrics {
    pub fn record_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_request(&self, method: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((method.to_string(), status))
            .or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().expect("metrics lock");
        for (bucket, bound) in latency.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        latency.count += 1;
        latency.sum_seconds += seconds;
    }

    /// Appends the counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP ferrite_store_commits_total Changes committed to the store since start."
        );
        let _ = writeln!(out, "# TYPE ferrite_store_commits_total counter");
        let _ = writeln!(
            out,
            "ferrite_store_commits_total {}",
            self.commits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ferrite_rest_requests_total REST requests by method and status."
        );
        let _ = writeln!(out, "# TYPE ferrite_rest_requests_total counter");
        for ((method, status), count) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "ferrite_rest_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}"
            );
        }
        let latency = self.latency.lock().expect("metrics lock");
        let _ = writeln!(
            out,
            "# HELP ferrite_rest_request_duration_seconds REST request latency."
        );
        let _ = writeln!(
            out,
            "# TYPE ferrite_rest_request_duration_seconds histogram"
        );
        for (count, bound) in latency.buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "ferrite_rest_request_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "ferrite_rest_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            latency.count
        );
        let _ = writeln!(
            out,
            "ferrite_rest_request_duration_seconds_sum {}",
            latency.sum_seconds
        );
        let _ = writeln!(
            out,
            "ferrite_rest_request_duration_seconds_count {}",
            latency.count
        );
    }
}
