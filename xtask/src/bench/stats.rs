//! Latency statistics and the report: printed as tables, written as JSON.

use std::time::Duration;

use serde_json::{Value, json};

/// Percentiles of a sample, nearest-rank.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Stats {
    pub fn of(mut sample: Vec<Duration>) -> Option<Self> {
        if sample.is_empty() {
            return None;
        }
        sample.sort();
        let at = |p: f64| {
            let rank = ((p / 100.0) * sample.len() as f64).ceil() as usize;
            sample[rank.clamp(1, sample.len()) - 1]
        };
        Some(Self {
            n: sample.len(),
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
            max: *sample.last().expect("not empty"),
        })
    }

    pub fn json(&self) -> Value {
        json!({"n": self.n, "p50_ms": ms_f(self.p50), "p95_ms": ms_f(self.p95), "p99_ms": ms_f(self.p99), "max_ms": ms_f(self.max)})
    }

    pub fn row(&self, name: &str) -> String {
        format!(
            "  {name:<46} {:>5}  {:>9}  {:>9}  {:>9}  {:>9}",
            self.n,
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max)
        )
    }
}

pub fn ms_f(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn header(title: &str) {
    println!("\n{title}");
    println!(
        "  {:<46} {:>5}  {:>9}  {:>9}  {:>9}  {:>9}",
        "", "n", "p50", "p95", "p99", "max"
    );
}

/// What the run measured, for `target/bench/*.json`, and the targets it is held to.
#[derive(Default)]
pub struct Report {
    pub results: serde_json::Map<String, Value>,
    pub targets: Vec<(String, bool, String)>,
    /// Raw samples (ms) by what they measure, in the order taken: the latency distributions.
    pub samples: Vec<(String, Vec<f64>)>,
}

impl Report {
    pub fn put(&mut self, key: &str, value: Value) {
        self.results.insert(key.into(), value);
    }

    /// Keeps `sample` (each in ms) for the latency-distribution plot and the JSON.
    pub fn sample(&mut self, what: &str, sample: &[Duration]) {
        self.samples.push((
            what.into(),
            sample.iter().map(|d| d.as_secs_f64() * 1000.0).collect(),
        ));
    }

    /// A target: what it says, whether it is met, the numbers behind it.
    pub fn target(&mut self, what: impl Into<String>, met: bool, numbers: impl Into<String>) {
        self.targets.push((what.into(), met, numbers.into()));
    }

    pub fn print_targets(&self) {
        println!("\nTargets (local stack, this machine, release builds)");
        for (what, met, numbers) in &self.targets {
            println!("  {} {what}: {numbers}", if *met { "met " } else { "MISS" });
        }
    }

    pub fn json(&self) -> Value {
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|(what, met, numbers)| json!({"target": what, "met": met, "measured": numbers}))
            .collect();
        let samples: serde_json::Map<String, Value> =
            self.samples.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        json!({"results": self.results, "targets": targets, "samples_ms": samples})
    }
}
