//! The operator's view in `template.yml`: the dashboard's body is a valid CloudWatch dashboard
//! once CloudFormation has substituted it, every widget fits the grid without overlapping
//! another, and every metric it draws and every alarm watches is one the functions emit: in the
//! functions' namespace, by `tgsearch::metrics::CATALOG` (name, unit, function, dimension values)
//! and by the dimension sets the writer declares (`Function` alone, or with one more); Lambda's
//! and SQS's own by a function or queue of this template. The template comes through cfn-lint's
//! decoder (`cargo xtask stack up --test-tools`).

use std::collections::BTreeMap;

use serde_json::Value;

/// What `${...}` becomes: the namespace parameter's default, placeholders for the rest (each
/// checked to name a parameter, a resource or a pseudo parameter).
fn substitute(template: &Value, body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        let name = &rest[start + 2..end];
        let value = if name == "MetricsNamespace" {
            template["Parameters"]["MetricsNamespace"]["Default"]
                .as_str()
                .expect("MetricsNamespace has a default")
                .to_owned()
        } else if let Some(pseudo) = name.strip_prefix("AWS::") {
            assert!(
                ["Region", "StackName", "AccountId", "Partition", "URLSuffix"].contains(&pseudo),
                "unknown pseudo parameter {name}"
            );
            format!("<{name}>")
        } else {
            let (resource, attribute) = name.split_once('.').unwrap_or((name, ""));
            let declared = template["Resources"].get(resource).is_some()
                || template["Parameters"].get(resource).is_some();
            assert!(
                declared,
                "the dashboard names `{name}`, which the template does not declare"
            );
            if !attribute.is_empty() {
                assert!(
                    ["Arn", "QueueName"].contains(&attribute),
                    "`{name}`: an attribute the dashboard should not need"
                );
            }
            format!("<{name}>")
        };
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn dashboard(template: &Value) -> Value {
    let sub = &template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"];
    let body = sub.as_str().expect("DashboardBody is a !Sub of one string");
    let json = substitute(template, body);
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}\n{json}"))
}

const STATS: &[&str] = &["Sum", "Average", "Maximum", "Minimum", "SampleCount"];

fn valid_stat(stat: &str) -> bool {
    STATS.contains(&stat)
        || stat
            .strip_prefix('p')
            .and_then(|p| p.parse::<f64>().ok())
            .is_some_and(|p| (0.0..=100.0).contains(&p))
}

/// Why a metric reference (namespace, name, dimensions) is not one this stack produces.
fn unknown(template: &Value, namespace: &str, name: &str, dims: &BTreeMap<String, String>) -> Option<String> {
    let ours = template["Parameters"]["MetricsNamespace"]["Default"]
        .as_str()
        .unwrap();
    match namespace {
        ns if ns == ours => {
            // The writer declares `Function` alone, `Function` with each other dimension, and
            // all together: a reference must pick one of those sets.
            let datum = testkit::emf::Datum {
                namespace: ns.into(),
                name: name.into(),
                unit: tgsearch::metrics::spec(name).map(|s| s.unit.as_str().to_owned()),
                dims: dims.clone(),
                values: vec![0.0],
                timestamp_ms: 0,
            };
            let extra = dims.len().saturating_sub(1);
            let spec_dims = tgsearch::metrics::spec(name).map_or(0, |s| s.dims.len());
            if extra > 1 && extra != spec_dims {
                return Some(format!(
                    "{name}: a dimension set the functions never declare: {dims:?}"
                ));
            }
            testkit::emf::off_catalog(&datum)
        }
        "AWS/Lambda" => {
            let function = dims.get("FunctionName")?;
            let resource = function.trim_start_matches('<').trim_end_matches('>');
            (template["Resources"][resource]["Type"] != "AWS::Serverless::Function")
                .then(|| format!("AWS/Lambda {name} of `{function}`, not a function of the template"))
        }
        "AWS/SQS" => {
            let queue = dims.get("QueueName")?;
            let resource = queue.trim_start_matches('<').trim_end_matches(".QueueName>");
            (template["Resources"][resource]["Type"] != "AWS::SQS::Queue")
                .then(|| format!("AWS/SQS {name} of `{queue}`, not a queue of the template"))
        }
        other => Some(format!("namespace {other}")),
    }
}

#[test]
fn the_dashboard_is_valid_and_draws_only_what_the_stack_emits() {
    let template = testkit::template::json();
    let board = dashboard(&template);
    let widgets = board["widgets"].as_array().expect("widgets");
    assert!(widgets.len() >= 10, "{} widgets", widgets.len());
    let mut cells: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let mut drawn = 0;
    for (i, widget) in widgets.iter().enumerate() {
        let at = |k: &str| {
            widget[k]
                .as_u64()
                .unwrap_or_else(|| panic!("widget {i}: `{k}` is not a whole number"))
        };
        let (x, y, width, height) = (at("x"), at("y"), at("width"), at("height"));
        assert!(
            width >= 1 && height >= 1 && x + width <= 24,
            "widget {i} leaves the 24-column grid"
        );
        for cx in x..x + width {
            for cy in y..y + height {
                if let Some(other) = cells.insert((cx, cy), i) {
                    panic!("widgets {other} and {i} overlap at ({cx}, {cy})");
                }
            }
        }
        let properties = &widget["properties"];
        match widget["type"].as_str() {
            Some("text") => assert!(
                properties["markdown"].is_string(),
                "widget {i}: text without markdown"
            ),
            Some("alarm") => {
                for alarm in properties["alarms"].as_array().expect("alarms") {
                    let name = alarm.as_str().unwrap();
                    let resource = name.trim_start_matches('<').trim_end_matches(".Arn>");
                    assert_eq!(
                        template["Resources"][resource]["Type"], "AWS::CloudWatch::Alarm",
                        "widget {i} lists {name}, not an alarm of the template"
                    );
                }
            }
            Some("metric") => {
                assert!(properties["title"].is_string(), "widget {i}: no title");
                assert!(properties["region"].is_string(), "widget {i}: no region");
                let stat = properties["stat"].as_str().unwrap_or("Average");
                assert!(valid_stat(stat), "widget {i}: stat {stat}");
                let period = properties["period"].as_u64().unwrap_or(300);
                assert!(period.is_multiple_of(60), "widget {i}: period {period}");
                for row in properties["metrics"].as_array().expect("metrics") {
                    let row = row.as_array().expect("a metric row is an array");
                    let (options, parts) = match row.last() {
                        Some(Value::Object(o)) => (Some(o), &row[..row.len() - 1]),
                        _ => (None, &row[..]),
                    };
                    let parts: Vec<&str> = parts
                        .iter()
                        .map(|p| p.as_str().expect("namespace, name and dimensions are strings"))
                        .collect();
                    assert!(
                        parts.len() >= 2 && parts.len().is_multiple_of(2),
                        "widget {i}: a row of namespace, name, then name/value pairs: {parts:?}"
                    );
                    assert!(!parts.contains(&"."), "widget {i}: no `.` shorthand: {parts:?}");
                    let dims: BTreeMap<String, String> = parts[2..]
                        .chunks(2)
                        .map(|p| (p[0].to_owned(), p[1].to_owned()))
                        .collect();
                    if let Some(why) = unknown(&template, parts[0], parts[1], &dims) {
                        panic!("widget {i} (\"{}\"): {why}", properties["title"]);
                    }
                    if let Some(stat) = options.and_then(|o| o.get("stat")).and_then(Value::as_str) {
                        assert!(valid_stat(stat), "widget {i}: stat {stat}");
                    }
                    drawn += 1;
                }
            }
            other => panic!("widget {i}: type {other:?}"),
        }
    }
    // Every metric of the catalog is drawn somewhere.
    let text = board.to_string();
    for spec in tgsearch::metrics::CATALOG {
        assert!(
            text.contains(&format!("\"{}\"", spec.name)),
            "the dashboard never draws {}",
            spec.name
        );
    }
    assert!(drawn > 50, "{drawn} metrics drawn");
}

/// Every alarm on the functions' own metrics watches a metric they emit, with its dimensions,
/// and says what a person should do.
#[test]
fn every_alarm_watches_an_emitted_metric_and_says_what_to_do() {
    let template = testkit::template::json();
    let mut ours = 0;
    for (name, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let p = &resource["Properties"];
        let description = p["AlarmDescription"].as_str().unwrap_or_default();
        assert!(
            description.len() > 80 && description.len() <= 1024,
            "{name}: a description that says what to do, within CloudWatch's 1024 characters: {description:?}"
        );
        let watched: Vec<&Value> = match p.get("Metrics") {
            Some(Value::Array(metrics)) => metrics
                .iter()
                .filter_map(|m| m.get("MetricStat"))
                .map(|s| &s["Metric"])
                .collect(),
            _ => vec![p],
        };
        for metric in watched {
            let namespace = match &metric["Namespace"] {
                Value::String(ns) => ns.clone(),
                Value::Object(o) if o.get("Ref") == Some(&Value::from("MetricsNamespace")) => {
                    template["Parameters"]["MetricsNamespace"]["Default"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                }
                other => panic!("{name}: namespace {other}"),
            };
            let dims: BTreeMap<String, String> = metric["Dimensions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let value = match &d["Value"] {
                        Value::String(v) => v.clone(),
                        Value::Object(o) => match (o.get("Ref"), o.get("Fn::GetAtt")) {
                            (Some(r), _) => format!("<{}>", r.as_str().unwrap()),
                            (_, Some(Value::Array(a))) => {
                                format!("<{}.{}>", a[0].as_str().unwrap(), a[1].as_str().unwrap())
                            }
                            _ => panic!("{name}: dimension value {o:?}"),
                        },
                        other => panic!("{name}: dimension value {other}"),
                    };
                    (d["Name"].as_str().unwrap().to_owned(), value)
                })
                .collect();
            let metric_name = metric["MetricName"].as_str().unwrap();
            if let Some(why) = unknown(&template, &namespace, metric_name, &dims) {
                panic!("{name}: {why}");
            }
            if namespace != "AWS/Lambda" && namespace != "AWS/SQS" {
                ours += 1;
            }
        }
    }
    assert!(ours >= 6, "{ours} alarms on the functions' own metrics");
}
