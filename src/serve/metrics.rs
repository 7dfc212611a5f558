//! Prometheus metrics of the server (`/v1/metrics`, text exposition format), kept with the
//! `prometheus-client` crate: requests and errors by endpoint and status, request latency
//! histograms by endpoint, encoder batch sizes, forward-pass time, queue depth, and where
//! query vectors came from (index or encoder).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

/// Every series the server exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    errors: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    batch_size: Histogram,
    forward: Histogram,
    queue_depth: Gauge<i64, std::sync::atomic::AtomicI64>,
    sources: Family<SourceLabels, Counter<u64, AtomicU64>>,
    unanswered: Family<KindLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty set of metrics, registered under the `relbert_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("relbert");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<RequestLabels, Counter>::default();
        // 100 µs to ~26 s: above the default 10 s request limit, so a timed-out request
        // lands in a finite bucket, not only in +Inf.
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 19))
        });
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        let forward = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let queue_depth = Gauge::default();
        let sources = Family::<SourceLabels, Counter>::default();
        let unanswered = Family::<KindLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_errors",
            "HTTP requests answered with a 4xx or 5xx status",
            errors.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response",
            latency.clone(),
        );
        registry.register(
            "encoder_batch_size",
            "Pairs per encoder forward pass",
            batch_size.clone(),
        );
        registry.register(
            "encoder_forward_seconds",
            "Time per encoder forward pass",
            forward.clone(),
        );
        registry.register(
            "encoder_queue_depth",
            "Pairs waiting for the encoder, as of the last scrape of /v1/metrics or the last batch formed",
            queue_depth.clone(),
        );
        registry.register(
            "query_vectors",
            "Query vectors by where they came from (index or encoded)",
            sources.clone(),
        );
        registry.register(
            "http_unanswered",
            "Connections the HTTP layer ended with no answer on a request it could not parse, \
             by kind (http2_preface, parse_status, parse_internal); not client errors",
            unanswered.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            latency,
            batch_size,
            forward,
            queue_depth,
            sources,
            unanswered,
        }
    }

    /// Records one answered request.
    pub fn request(&self, endpoint: &str, status: u16, took: Duration) {
        let labels = RequestLabels {
            endpoint: endpoint.to_string(),
            status,
        };
        if status >= 400 {
            self.errors.get_or_create(&labels).inc();
        }
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a connection the HTTP layer ended with no answer, by `kind` of parse error:
    /// kept apart from [`Metrics::request`]'s statuses, which are answers a client got.
    pub fn unanswered(&self, kind: &str) {
        self.unanswered
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Records a batch formed by the encoder thread and the queue left behind it.
    pub fn encoder_batch(&self, size: usize, left_waiting: usize) {
        self.batch_size.observe(size as f64);
        self.queue_depth.set(left_waiting as i64);
    }

    /// Sets the queue-depth gauge to the pairs waiting now.
    pub fn set_queue_depth(&self, waiting: usize) {
        self.queue_depth.set(waiting as i64);
    }

    /// Records one forward pass's time.
    pub fn encoder_forward(&self, took: Duration) {
        self.forward.observe(took.as_secs_f64());
    }

    /// Counts a query vector by its source (`index` or `encoded`).
    pub fn query_source(&self, source: &str) {
        self.sources
            .get_or_create(&SourceLabels {
                source: source.to_string(),
            })
            .inc();
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
