//! CloudWatch's embedded metric format read back from log lines, by the format's specification
//! rather than by this workspace's writer: every line that is a JSON object with an `_aws` member
//! must be a valid EMF document, and yields one [`Datum`] per metric and dimension set, the way
//! CloudWatch Logs would extract it.

use std::collections::BTreeMap;

use serde_json::Value;

/// One metric value as CloudWatch would store it.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub namespace: String,
    pub name: String,
    pub unit: Option<String>,
    /// The dimension set's names and their values.
    pub dims: BTreeMap<String, String>,
    pub values: Vec<f64>,
    pub timestamp_ms: u64,
}

const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The EMF data in `log`'s lines; `Err` names the first line that has an `_aws` block but is not
/// a valid document, and why.
pub fn parse(log: &str) -> Result<Vec<Datum>, String> {
    let mut data = Vec::new();
    for (n, line) in log.lines().enumerate() {
        let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(line.trim()) else {
            continue;
        };
        if !doc.contains_key("_aws") {
            continue;
        }
        document(&doc, &mut data).map_err(|why| format!("line {}: {why}: {line}", n + 1))?;
    }
    Ok(data)
}

fn document(doc: &serde_json::Map<String, Value>, data: &mut Vec<Datum>) -> Result<(), String> {
    let aws = doc["_aws"].as_object().ok_or("`_aws` is not an object")?;
    let timestamp_ms = aws
        .get("Timestamp")
        .and_then(Value::as_u64)
        .ok_or("`_aws.Timestamp` is not a whole number of milliseconds")?;
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or("`_aws.CloudWatchMetrics` is not a non-empty array")?;
    for directive in directives {
        let namespace = directive
            .get("Namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty() && n.len() <= 255)
            .ok_or("a directive without a valid `Namespace`")?;
        let sets = directive
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("a directive without `Dimensions`")?;
        let metrics = directive
            .get("Metrics")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty() && m.len() <= 100)
            .ok_or("`Metrics` is not an array of 1 to 100 metrics")?;
        let mut dim_sets = Vec::new();
        for set in sets {
            let names = set.as_array().ok_or("a dimension set that is not an array")?;
            if names.len() > 30 {
                return Err("a dimension set of more than 30 dimensions".into());
            }
            let mut dims = BTreeMap::new();
            for name in names {
                let name = name.as_str().ok_or("a dimension name that is not a string")?;
                let value = doc
                    .get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("dimension `{name}` is not a string member of the document"))?;
                if value.is_empty() || value.len() > 1024 {
                    return Err(format!("dimension `{name}` has an empty or over-long value"));
                }
                dims.insert(name.to_owned(), value.to_owned());
            }
            dim_sets.push(dims);
        }
        if dim_sets.is_empty() {
            dim_sets.push(BTreeMap::new());
        }
        for metric in metrics {
            let name = metric
                .get("Name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty() && n.len() <= 1024)
                .ok_or("a metric without a valid `Name`")?;
            let unit = match metric.get("Unit") {
                None => None,
                Some(Value::String(u)) if UNITS.contains(&u.as_str()) => Some(u.clone()),
                Some(other) => {
                    return Err(format!("metric `{name}` has unit {other}, not a CloudWatch unit"));
                }
            };
            let values = match doc.get(name) {
                Some(Value::Number(v)) => vec![v.as_f64().ok_or("a value that is not a number")?],
                Some(Value::Array(vs)) if !vs.is_empty() && vs.len() <= 100 => vs
                    .iter()
                    .map(|v| v.as_f64().ok_or("an array value that is not a number"))
                    .collect::<Result<_, _>>()?,
                _ => return Err(format!("metric `{name}` has no numeric member in the document")),
            };
            if values.iter().any(|v| !v.is_finite()) {
                return Err(format!("metric `{name}` is not finite"));
            }
            for dims in &dim_sets {
                data.push(Datum {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    unit: unit.clone(),
                    dims: dims.clone(),
                    values: values.clone(),
                    timestamp_ms,
                });
            }
        }
    }
    Ok(())
}

/// Why `datum` is not one the functions may emit by `tgsearch::metrics::CATALOG`: its name,
/// unit, function and every dimension's value must be the catalog's, and `Function` is always
/// in the set.
pub fn off_catalog(datum: &Datum) -> Option<String> {
    let Some(spec) = tgsearch::metrics::spec(&datum.name) else {
        return Some(format!("metric `{}` is not in the catalog", datum.name));
    };
    if datum.unit.as_deref() != Some(spec.unit.as_str()) {
        return Some(format!("`{}` has unit {:?}", datum.name, datum.unit));
    }
    let Some(function) = datum.dims.get("Function") else {
        return Some(format!("`{}` without the `Function` dimension", datum.name));
    };
    if !spec.functions.contains(&function.as_str()) {
        return Some(format!("`{}` from function `{function}`", datum.name));
    }
    for (name, value) in &datum.dims {
        if name == "Function" {
            continue;
        }
        let Some((_, allowed)) = spec.dims.iter().find(|(d, _)| d.as_str() == name) else {
            return Some(format!("`{}` with dimension `{name}`", datum.name));
        };
        if !allowed.contains(&value.as_str()) {
            return Some(format!("`{}` with {name}=`{value}`", datum.name));
        }
    }
    None
}
