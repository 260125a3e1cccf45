//! Counters and histograms for `GET /metrics`, and the Prometheus text exposition format.
//!
//! Layer: pure. Owns the metric value types ([`Histogram`], [`LabelCounter`], [`HttpMetrics`])
//! and [`Exposition`], which renders them as Prometheus text format 0.0.4. Reads no clock:
//! callers measure durations in their drivers and pass them in. Values are shared between
//! tasks behind small mutexes (a scrape or a request touches each once).
//!
//! Label values are always low-cardinality and chosen by the appliance (a route template, a
//! status code, a peer name, a fixed cause), never a raw request path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Bucket bounds (seconds) for request and commit latencies.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds (seconds) for how late a scheduled run started.
pub const LATENESS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Observations of one histogram (not shared; see [`Histogram`] for the shared one).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramData {
    bounds: &'static [f64],
    /// Per-bucket counts (not cumulative); one more than `bounds` for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
}

impl HistogramData {
    /// An empty histogram with these bucket upper bounds (seconds).
    pub fn new(bounds: &'static [f64]) -> HistogramData {
        HistogramData {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Records one observation of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += seconds;
    }

    /// Counts one observation of `d`.
    pub fn observe_duration(&mut self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A histogram shared between tasks.
#[derive(Debug)]
pub struct Histogram(Mutex<HistogramData>);

impl Histogram {
    /// An empty shared histogram with these bucket upper bounds (seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram(Mutex::new(HistogramData::new(bounds)))
    }

    /// Counts one observation of `d`.
    pub fn observe_duration(&self, d: Duration) {
        self.0.lock().unwrap().observe_duration(d);
    }

    /// A copy of the counts so far.
    pub fn snapshot(&self) -> HistogramData {
        self.0.lock().unwrap().clone()
    }
}

/// Counters keyed by one label value (e.g. webhook attempts by result).
#[derive(Debug, Default)]
pub struct LabelCounter(Mutex<BTreeMap<&'static str, u64>>);

impl LabelCounter {
    /// Adds one to `label`'s count.
    pub fn inc(&self, label: &'static str) {
        *self.0.lock().unwrap().entry(label).or_default() += 1;
    }

    /// A copy of every label's count.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap().clone()
    }
}

/// HTTP requests by route template, method and status, with a latency histogram per route.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    inner: Mutex<HttpInner>,
}

#[derive(Debug, Default)]
struct HttpInner {
    requests: BTreeMap<(&'static str, &'static str, u16), u64>,
    latency: BTreeMap<&'static str, HistogramData>,
}

impl HttpMetrics {
    /// Records one answered request. `route` must be a template (`/api/v1/jobs/{id}`), never a
    /// raw path: label values are kept forever.
    pub fn record(&self, route: &'static str, method: &'static str, status: u16, took: Duration) {
        let mut m = self.inner.lock().unwrap();
        *m.requests.entry((route, method, status)).or_default() += 1;
        m.latency
            .entry(route)
            .or_insert_with(|| HistogramData::new(LATENCY_BUCKETS))
            .observe_duration(took);
    }

    /// Writes both families into `out`.
    pub fn expose(&self, out: &mut Exposition) {
        let m = self.inner.lock().unwrap();
        out.family(
            "appliance_http_requests_total",
            "HTTP requests answered on the tunnel, by route template, method and status.",
            "counter",
        );
        for ((route, method, status), n) in &m.requests {
            out.sample(
                "appliance_http_requests_total",
                &[
                    ("route", route),
                    ("method", method),
                    ("status", &status.to_string()),
                ],
                *n as f64,
            );
        }
        out.family(
            "appliance_http_request_duration_seconds",
            "Time from a request's headers to its response, by route template.",
            "histogram",
        );
        for (route, h) in &m.latency {
            out.histogram(
                "appliance_http_request_duration_seconds",
                &[("route", route)],
                h,
            );
        }
    }
}

/// Prometheus text format 0.0.4, built family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// The Content-Type of [`Exposition::finish`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Call once per name, before its samples.
    pub fn family(&mut self, name: &str, help: &str, kind: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: &str, value: f64) {
        self.family(name, help, kind);
        self.sample(name, &[], value);
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram (family already started).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramData) {
        let mut cumulative = 0;
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = match h.bounds.get(i) {
                Some(b) => number(*b),
                None => "+Inf".to_string(),
            };
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(h.sum));
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// A sample value as Prometheus writes it: integers without a fraction.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut h = HistogramData::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.1);
        h.observe(0.5);
        h.observe(7.0);
        let mut e = Exposition::new();
        e.family("x_seconds", "X.", "histogram");
        e.histogram("x_seconds", &[("route", "/a")], &h);
        assert_eq!(
            e.finish(),
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{route=\"/a\",le=\"0.1\"} 2\n\
             x_seconds_bucket{route=\"/a\",le=\"1\"} 3\n\
             x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n\
             x_seconds_sum{route=\"/a\"} 7.65\n\
             x_seconds_count{route=\"/a\"} 4\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new();
        e.sample("y", &[("peer", "a\"b\\c\nd")], 1.5);
        assert_eq!(e.finish(), "y{peer=\"a\\\"b\\\\c\\nd\"} 1.5\n");
    }

    #[test]
    fn http_requests_are_counted_by_template_and_status() {
        let m = HttpMetrics::default();
        m.record("/api/v1/jobs/{id}", "GET", 200, Duration::from_millis(3));
        m.record("/api/v1/jobs/{id}", "GET", 200, Duration::from_millis(30));
        m.record("/api/v1/jobs/{id}", "GET", 404, Duration::from_millis(1));
        let mut e = Exposition::new();
        m.expose(&mut e);
        let text = e.finish();
        assert!(text.contains(
            "appliance_http_requests_total{route=\"/api/v1/jobs/{id}\",method=\"GET\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "appliance_http_requests_total{route=\"/api/v1/jobs/{id}\",method=\"GET\",status=\"404\"} 1\n"
        ));
        assert!(text.contains(
            "appliance_http_request_duration_seconds_count{route=\"/api/v1/jobs/{id}\"} 3\n"
        ));
        assert!(text.contains(
            "appliance_http_request_duration_seconds_bucket{route=\"/api/v1/jobs/{id}\",le=\"0.005\"} 2\n"
        ));
    }
}
