//! Metrics in CloudWatch's embedded metric format (EMF): one JSON line on stdout per event, the
//! `_aws` block naming the namespace, the dimension sets and the metrics, each dimension and
//! value a top-level member. CloudWatch Logs turns the lines into metrics; no metrics API is
//! called, so nothing is added to the hot path but a write to stdout.
//!
//! Every line carries the dimension `Function` (the function's role, e.g. `post-confirmation`,
//! not its deployed name) and at most two more of a closed set ([`Dim`]), each with a small,
//! fixed set of values ([`CATALOG`]): never a tenant id, never free text. A line without a
//! `level` is an INFO line to Lambda's log-level filter, so the functions' application log
//! level must stay at INFO or below (the template does not raise it).
//!
//! [`init`] is called once by each Lambda's `main`; until then, and in the CLI and unit tests,
//! [`Record::emit`] writes nothing.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::deadline::{Step, StepError};

/// The namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "TGSearch";

/// A CloudWatch unit, as EMF spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Percent,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Percent => "Percent",
        }
    }
}

/// A dimension besides `Function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dim {
    Outcome,
    Step,
    Reason,
    Resource,
    Cause,
    Status,
}

impl Dim {
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Outcome => "Outcome",
            Dim::Step => "Step",
            Dim::Reason => "Reason",
            Dim::Resource => "Resource",
            Dim::Cause => "Cause",
            Dim::Status => "Status",
        }
    }
}

mod catalog;

pub use catalog::*;

/// `METRICS_NAMESPACE` that CloudWatch would refuse.
#[derive(Debug, thiserror::Error)]
#[error(
    "METRICS_NAMESPACE is invalid: {0} (1 to 255 characters of letters, digits and . - _ / # : and space; not starting with `AWS/`)"
)]
pub struct NamespaceError(&'static str);

fn check_namespace(namespace: &str) -> Result<(), NamespaceError> {
    if namespace.is_empty() || namespace.len() > 255 {
        return Err(NamespaceError("wrong length"));
    }
    if namespace.starts_with("AWS/") {
        return Err(NamespaceError("`AWS/` is reserved for AWS's own metrics"));
    }
    if !namespace
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c))
    {
        return Err(NamespaceError("it holds a character CloudWatch refuses"));
    }
    Ok(())
}

struct Sink {
    namespace: String,
    function: &'static str,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Turns metrics on for this process: `function` is the value of the `Function` dimension,
/// the namespace is `METRICS_NAMESPACE` (default [`DEFAULT_NAMESPACE`]).
pub fn init(function: &'static str) -> Result<(), NamespaceError> {
    let namespace = std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| DEFAULT_NAMESPACE.into());
    check_namespace(&namespace)?;
    let _ = SINK.set(Sink { namespace, function });
    Ok(())
}

/// One event's metrics: values sharing one set of dimensions.
#[derive(Debug, Clone, Default)]
pub struct Record {
    dims: Vec<(Dim, &'static str)>,
    values: Vec<(&'static str, Unit, f64)>,
}

impl Record {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a dimension; `value` must be one of the catalog's for it (a debug assertion checks).
    pub fn dim(mut self, dim: Dim, value: &'static str) -> Self {
        self.dims.push((dim, value));
        self
    }

    /// Adds a value of the catalog's metric `name`.
    pub fn value(mut self, name: &'static str, value: f64) -> Self {
        let spec = spec(name);
        debug_assert!(spec.is_some(), "metric {name} is not in the catalog");
        self.values
            .push((name, spec.map_or(Unit::Count, |s| s.unit), value));
        self
    }

    /// A count of one.
    pub fn one(self, name: &'static str) -> Self {
        self.value(name, 1.0)
    }

    pub fn millis(self, name: &'static str, elapsed: Duration) -> Self {
        self.value(name, elapsed.as_secs_f64() * 1000.0)
    }

    /// The EMF document: the dimension sets are `Function` alone, `Function` with each other
    /// dimension, and all of them together, so a metric can be graphed in total and by each.
    pub fn document(&self, namespace: &str, function: &str, timestamp_ms: u64) -> Value {
        let mut sets: Vec<Vec<&str>> = vec![vec!["Function"]];
        for (dim, _) in &self.dims {
            sets.push(vec!["Function", dim.as_str()]);
        }
        if self.dims.len() > 1 {
            let mut all = vec!["Function"];
            all.extend(self.dims.iter().map(|(d, _)| d.as_str()));
            sets.push(all);
        }
        let metrics: Vec<Value> = self
            .values
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": sets,
                    "Metrics": metrics,
                }],
            }),
        );
        doc.insert("Function".into(), function.into());
        for (dim, value) in &self.dims {
            doc.insert(dim.as_str().into(), (*value).into());
        }
        for (name, _, value) in &self.values {
            doc.insert((*name).into(), json!(value));
        }
        Value::Object(doc)
    }

    /// Writes the record as one line on stdout (one write, so it never interleaves with a log
    /// line); nothing when metrics are off or the record holds no value.
    pub fn emit(self) {
        let Some(sink) = SINK.get() else { return };
        if self.values.is_empty() {
            return;
        }
        let mut line = self
            .document(&sink.namespace, sink.function, epoch_millis())
            .to_string();
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// Now, in milliseconds since the Unix epoch (EMF's `Timestamp`, SQS's `SentTimestamp`).
pub fn epoch_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The catalog's own spelling of `value` for `metric`'s dimension `dim` (`None` when it is not
/// one of its values): a dimension value from data, as the `'static` string a record takes.
pub fn dim_value(metric: &str, dim: Dim, value: &str) -> Option<&'static str> {
    spec(metric)?
        .dims
        .iter()
        .find(|(d, _)| *d == dim)?
        .1
        .iter()
        .find(|v| **v == value)
        .copied()
}

/// Why a step did not complete, as a [`Dim::Reason`] value.
pub fn failure_reason(error: &StepError) -> &'static str {
    match error {
        StepError::TimedOut { .. } => "timeout",
        _ if error.is_foreign() => "foreign",
        StepError::Failed { source, .. } if crate::ports::Transient::of(source).is_some() => "transient",
        StepError::Failed { .. } => "error",
    }
}

/// A provisioning that stopped at `error`'s step.
pub fn provision_failed(error: &StepError) {
    let record = Record::new()
        .dim(Dim::Step, error.step().as_str())
        .dim(Dim::Reason, failure_reason(error))
        .one("ProvisionFailures");
    record.emit();
    if error.is_foreign() {
        resource_count("ForeignResources", error.step(), 1);
    }
}

/// `count` of `name` (a per-resource metric) for `step`'s resource.
pub fn resource_count(name: &'static str, step: Step, count: usize) {
    resource_record(name, step, count).emit();
}

/// The record of [`resource_count`].
pub fn resource_record(name: &'static str, step: Step, count: usize) -> Record {
    Record::new()
        .dim(Dim::Resource, step.as_str())
        .value(name, count as f64)
}

/// What a completed provisioning did: each step's time, and what it repaired or left for a
/// person.
pub fn provisioned(done: &crate::provision::Provisioned) {
    for timing in &done.timings {
        Record::new()
            .dim(Dim::Step, timing.step.as_str())
            .value("StepDuration", timing.micros as f64 / 1000.0)
            .emit();
    }
    for (step, change) in &done.changes {
        match change {
            crate::ports::Converged::Repaired(_) => resource_count("DriftRepaired", *step, 1),
            crate::ports::Converged::NeedsPerson(_) => resource_count("NeedsPerson", *step, 1),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_an_emf_document() {
        let doc = Record::new()
            .dim(Dim::Step, "vhost")
            .dim(Dim::Reason, "timeout")
            .one("HandOffs")
            .document("TGSearch", "post-confirmation", 1_700_000_000_000);
        let aws = &doc["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_000u64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "TGSearch");
        assert_eq!(
            directive["Dimensions"],
            json!([
                ["Function"],
                ["Function", "Step"],
                ["Function", "Reason"],
                ["Function", "Step", "Reason"]
            ])
        );
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "HandOffs", "Unit": "Count"}])
        );
        assert_eq!(doc["Function"], "post-confirmation");
        assert_eq!(doc["Step"], "vhost");
        assert_eq!(doc["Reason"], "timeout");
        assert_eq!(doc["HandOffs"], 1.0);
    }

    #[test]
    fn the_catalog_is_consistent() {
        let mut names = std::collections::BTreeSet::new();
        for m in CATALOG {
            assert!(names.insert(m.name), "{} twice", m.name);
            assert!(
                m.dims.len() <= 2,
                "{}: at most two dimensions besides Function",
                m.name
            );
            assert!(!m.functions.is_empty());
        }
        for step in Step::ALL {
            assert!(STEPS.contains(&step.as_str()), "{step:?}");
        }
    }

    #[test]
    fn a_namespace_cloudwatch_refuses_is_refused() {
        assert!(check_namespace("TGSearch").is_ok());
        assert!(check_namespace("TGSearch/prod-1").is_ok());
        assert!(check_namespace("AWS/Lambda").is_err());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("a\nb").is_err());
        assert!(check_namespace(&"x".repeat(256)).is_err());
    }
}
