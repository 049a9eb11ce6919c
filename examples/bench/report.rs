//! Failures, statistics and the one JSON line each workload prints.
//!
//! stdout carries nothing but these lines; everything else the suite says goes to stderr.

use serde_json::Value;
use std::fmt::Display;

/// Why a workload could not produce its figures, in words that say what failed.
#[derive(Debug)]
pub struct Failure(pub String);

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Outcome<T> = Result<T, Failure>;

/// A failure built from a message.
pub fn fail<T>(message: impl Into<String>) -> Outcome<T> {
    Err(Failure(message.into()))
}

/// Says what was being done when an error came up.
pub trait Context<T> {
    fn context(self, what: impl Display) -> Outcome<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Outcome<T> {
        self.map_err(|e| Failure(format!("{what}: {e}")))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Outcome<T> {
        self.ok_or_else(|| Failure(what.to_string()))
    }
}

/// Median, minimum and maximum of a workload's runs.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stats {
    /// The statistics of `samples`, which must not be empty (every workload runs at least once).
    pub fn of(samples: &[f64]) -> Stats {
        assert!(!samples.is_empty(), "a workload reports at least one run");
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Stats {
            median,
            min: s[0],
            max: s[n - 1],
            runs: n,
        }
    }
}

/// A float rounded to 3 decimals, as a JSON number (NaN and infinities become null).
pub fn num(x: f64) -> Value {
    serde_json::Number::from_f64((x * 1000.0).round() / 1000.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A float rounded to a whole number, as a JSON integer (for byte counts).
pub fn whole(x: f64) -> Value {
    Value::from(x.round().max(0.0) as u64)
}

/// One workload's result line, fields in the order they were added.
pub struct Report {
    name: String,
    params: Vec<(String, Value)>,
    unit: String,
    stats: Stats,
    /// Each run's figure, so passes of the same workload can be joined.
    samples: Vec<f64>,
    fields: Vec<(String, Value)>,
}

impl Report {
    pub fn new(name: &str, unit: &str, samples: &[f64]) -> Report {
        Report {
            name: name.to_string(),
            params: Vec::new(),
            unit: unit.to_string(),
            stats: Stats::of(samples),
            samples: samples.to_vec(),
            fields: Vec::new(),
        }
    }

    /// This pass and a `later` one of the same workload as one report: the statistics of
    /// both passes' runs; params and extra fields stay this pass's.
    pub fn joined(mut self, later: Report) -> Report {
        self.samples.extend(later.samples);
        self.stats = Stats::of(&self.samples);
        self
    }

    pub fn param(mut self, key: &str, value: impl Into<Value>) -> Report {
        self.params.push((key.to_string(), value.into()));
        self
    }

    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Report {
        self.fields.push((key.to_string(), value.into()));
        self
    }

    pub fn median(&self) -> f64 {
        self.stats.median
    }

    /// The JSON line: name, params, unit, median, min, max, runs, cores, then the extra fields.
    pub fn to_line(&self) -> String {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut parts = vec![
            member("name", &self.name.clone().into()),
            format!("\"params\":{}", object_text(&self.params)),
            member("unit", &self.unit.clone().into()),
            member("median", &num(self.stats.median)),
            member("min", &num(self.stats.min)),
            member("max", &num(self.stats.max)),
            member("runs", &self.stats.runs.into()),
            member("cores", &cores.into()),
        ];
        parts.extend(self.fields.iter().map(|(k, v)| member(k, v)));
        format!("{{{}}}", parts.join(","))
    }
}

/// The line printed for a workload that failed, so a reader of stdout sees the gap.
pub fn failure_line(name: &str, failure: &Failure) -> String {
    object_text(&[("name".into(), name.into()), ("error".into(), failure.0.clone().into())])
}

fn member(key: &str, value: &Value) -> String {
    format!("{}:{}", Value::String(key.to_string()), value)
}

/// `{"k":v,...}` with the keys in the given order (serde_json's map would sort them).
fn object_text(fields: &[(String, Value)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| member(k, v)).collect();
    format!("{{{}}}", body.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_runs() {
        assert_eq!(Stats::of(&[3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }
}
