//! The functions a worker can run by name, and the built-ins distd ships.
//!
//! A registry is plain data handed to the worker at start; Rust users extend the built-in
//! one with their own functions and run the same CLI entry point from their own binary.

use crate::protocol::codec;
use crate::protocol::Data;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A task function: its argument bytes and its inputs' results in, its result out.
pub type TaskFn = dyn Fn(&[u8], &[Data]) -> Result<Vec<u8>, String> + Send + Sync;

/// Functions by name.
#[derive(Clone, Default)]
pub struct Registry {
    functions: HashMap<String, Arc<TaskFn>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registry {
    /// A registry with no functions.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// The built-ins: `noop`, `identity`, `sleep`, `sum`, `concat`, `blob`, `fail`.
    pub fn builtin() -> Registry {
        Registry::empty()
            .register("noop", |_, _| Ok(Vec::new()))
            .register("identity", |args, inputs| {
                Ok(match inputs.first() {
                    Some(d) => d.to_vec(),
                    None => args.to_vec(),
                })
            })
            .register("sleep", |args, inputs| {
                let text = std::str::from_utf8(args).map_err(|_| "sleep takes a duration such as 100ms".to_string())?;
                let d = crate::units::parse_duration(text.trim()).map_err(|e| e.to_string())?;
                std::thread::sleep(d);
                Ok(inputs.first().map(|d| d.to_vec()).unwrap_or_default())
            })
            .register("sum", sum)
            .register("concat", |_, inputs| {
                let mut out = Vec::with_capacity(inputs.iter().map(|d| d.len()).sum());
                for d in inputs {
                    out.extend_from_slice(d);
                }
                Ok(out)
            })
            .register("blob", |args, _| {
                let text = std::str::from_utf8(args).map_err(|_| "blob takes a size such as 1MiB".to_string())?;
                let n = crate::units::parse_bytes(text.trim()).map_err(|e| e.to_string())?;
                let n = usize::try_from(n).map_err(|_| format!("blob of {n} bytes is too large"))?;
                Ok((0..n).map(|i| (i % 251) as u8).collect())
            })
            .register("fail", |args, _| Err(String::from_utf8_lossy(args).into_owned()))
    }

    /// Adds (or replaces) a function working on raw bytes.
    pub fn register<F>(mut self, name: &str, f: F) -> Registry
    where
        F: Fn(&[u8], &[Data]) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    {
        self.functions.insert(name.to_string(), Arc::new(f));
        self
    }

    /// Adds a function on typed values: arguments of type `A`, inputs each of type `I`, a
    /// result of type `R`, all carried as bytes by the typed layer.
    pub fn register_typed<A, I, R, F>(self, name: &str, f: F) -> Registry
    where
        A: DeserializeOwned,
        I: DeserializeOwned,
        R: Serialize,
        F: Fn(A, Vec<I>) -> Result<R, String> + Send + Sync + 'static,
    {
        self.register(name, move |args, inputs| {
            let a: A = codec::from_bytes(args).map_err(|e| format!("arguments: {e}"))?;
            let ins = inputs
                .iter()
                .enumerate()
                .map(|(i, d)| codec::from_bytes::<I>(d).map_err(|e| format!("input {i}: {e}")))
                .collect::<Result<Vec<I>, String>>()?;
            let r = f(a, ins)?;
            codec::to_bytes(&r).map_err(|e| e.to_string())
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<TaskFn>> {
        self.functions.get(name).cloned()
    }

    /// Function names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.functions.keys().map(|s| s.as_str()).collect();
        v.sort_unstable();
        v
    }
}

/// Sums every number (whitespace separated, integers or decimals) in `args` and the inputs,
/// and answers in decimal text, so command output such as `seq 1 100` can be summed.
fn sum(args: &[u8], inputs: &[Data]) -> Result<Vec<u8>, String> {
    let mut int: i128 = 0;
    let mut float: f64 = 0.0;
    let mut is_float = false;
    let sources = std::iter::once(args).chain(inputs.iter().map(|d| d.as_slice()));
    for (i, bytes) in sources.enumerate() {
        let text = std::str::from_utf8(bytes).map_err(|_| format!("sum: source {i} is not text"))?;
        for word in text.split_whitespace() {
            if let Ok(n) = word.parse::<i128>() {
                int = int.checked_add(n).ok_or("sum: integer overflow")?;
            } else if let Ok(x) = word.parse::<f64>() {
                is_float = true;
                float += x;
            } else {
                return Err(format!("sum: {word:?} is not a number"));
            }
        }
    }
    Ok(if is_float {
        format!("{}", float + int as f64)
    } else {
        int.to_string()
    }
    .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Data {
        Arc::new(s.as_bytes().to_vec())
    }

    #[test]
    fn sum_adds_numbers_from_args_and_inputs() {
        let r = Registry::builtin();
        let f = r.get("sum").unwrap();
        assert_eq!(f(b"1", &[data("2 3\n4"), data("10")]).unwrap(), b"20");
        assert_eq!(f(b"", &[data("1.5"), data("1")]).unwrap(), b"2.5");
        assert!(f(b"", &[data("x")]).unwrap_err().contains("\"x\""));
    }

    #[test]
    fn typed_functions_decode_and_encode() {
        let r = Registry::empty().register_typed("scale", |k: u64, xs: Vec<u64>| {
            Ok(xs.iter().map(|x| x * k).sum::<u64>())
        });
        let f = r.get("scale").unwrap();
        let out = f(
            &codec::to_bytes(&3u64).unwrap(),
            &[Arc::new(codec::to_bytes(&2u64).unwrap())],
        )
        .unwrap();
        assert_eq!(codec::from_bytes::<u64>(&out).unwrap(), 6);
        assert!(f(b"", &[]).unwrap_err().contains("arguments"));
    }
}
