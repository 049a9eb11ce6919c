//! The functions a worker can run by name, and the built-ins distd ships.
//!
//! A registry is plain data handed to the worker at start; Rust users extend the built-in
//! one with their own functions and run the same CLI entry point from their own binary.

use crate::protocol::codec;
use crate::protocol::{ArgsForm, Data};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A task function: its argument bytes and its inputs' results in, its result out.
pub type TaskFn = dyn Fn(&[u8], &[Data]) -> Result<Vec<u8>, String> + Send + Sync;

/// A registered function: how it is called with arguments as bytes, and with arguments
/// written as JSON (a graph file's `args = 10`).
#[derive(Clone)]
pub struct Function {
    call: Arc<TaskFn>,
    /// Decodes JSON arguments by the function's own argument type; `None` for a function on
    /// bytes, which gets a string's text or another value's JSON text ([`bytes_from_json`]).
    call_json: Option<Arc<TaskFn>>,
}

impl Function {
    /// Calls it with `args` written as `form`.
    pub fn call(&self, args: &[u8], form: ArgsForm, inputs: &[Data]) -> Result<Vec<u8>, String> {
        match (form, &self.call_json) {
            (ArgsForm::Bytes, _) => (self.call)(args, inputs),
            (ArgsForm::Json, Some(call_json)) => call_json(args, inputs),
            (ArgsForm::Json, None) => (self.call)(&bytes_from_json(args)?, inputs),
        }
    }
}

/// Functions by name.
#[derive(Clone, Default)]
pub struct Registry {
    functions: HashMap<String, Function>,
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
    /// JSON arguments reach it as a string's text, or as any other value's JSON text.
    pub fn register<F>(self, name: &str, f: F) -> Registry
    where
        F: Fn(&[u8], &[Data]) -> Result<Vec<u8>, String> + Send + Sync + 'static,
    {
        self.insert(name, Arc::new(f), None)
    }

    fn insert(mut self, name: &str, call: Arc<TaskFn>, call_json: Option<Arc<TaskFn>>) -> Registry {
        self.functions.insert(name.to_string(), Function { call, call_json });
        self
    }

    /// Adds a function on typed values: arguments of type `A`, inputs each of type `I`, a
    /// result of type `R`, all carried as bytes by the typed layer. Arguments written as JSON
    /// (from a graph file) are decoded as an `A`.
    pub fn register_typed<A, I, R, F>(self, name: &str, f: F) -> Registry
    where
        A: DeserializeOwned,
        I: DeserializeOwned,
        R: Serialize,
        F: Fn(A, Vec<I>) -> Result<R, String> + Send + Sync + 'static,
    {
        let run = Arc::new(move |a: A, inputs: &[Data]| {
            let ins = inputs
                .iter()
                .enumerate()
                .map(|(i, d)| codec::from_bytes::<I>(d).map_err(|e| format!("input {i}: {e}")))
                .collect::<Result<Vec<I>, String>>()?;
            let r = f(a, ins)?;
            codec::to_bytes(&r).map_err(|e| e.to_string())
        });
        let run_json = run.clone();
        let call = move |args: &[u8], inputs: &[Data]| {
            let a: A = codec::from_bytes(args).map_err(|e| format!("arguments: {e}"))?;
            run(a, inputs)
        };
        let call_json = move |json: &[u8], inputs: &[Data]| run_json(typed_from_json::<A>(json)?, inputs);
        self.insert(name, Arc::new(call), Some(Arc::new(call_json)))
    }

    pub fn get(&self, name: &str) -> Option<&Function> {
        self.functions.get(name)
    }

    /// Function names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.functions.keys().map(|s| s.as_str()).collect();
        v.sort_unstable();
        v
    }
}

/// JSON arguments of a function on bytes: a string gives its text, any other value its JSON
/// text (`args = 10` gives `10`).
fn bytes_from_json(json: &[u8]) -> Result<Vec<u8>, String> {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(text)) => Ok(text.into_bytes()),
        Ok(_) => Ok(json.to_vec()),
        Err(e) => Err(format!("arguments are not JSON: {e}")),
    }
}

/// JSON arguments of a typed function, decoded as its argument type `A`.
fn typed_from_json<A: DeserializeOwned>(json: &[u8]) -> Result<A, String> {
    serde_json::from_slice(json).map_err(|e| {
        let given = String::from_utf8_lossy(json);
        format!(
            "arguments {given} do not fit the function's argument type {}: {e}",
            std::any::type_name::<A>()
        )
    })
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
        let sum = |args: &[u8], inputs: &[Data]| f.call(args, ArgsForm::Bytes, inputs);
        assert_eq!(sum(b"1", &[data("2 3\n4"), data("10")]).unwrap(), b"20");
        assert_eq!(sum(b"", &[data("1.5"), data("1")]).unwrap(), b"2.5");
        assert!(sum(b"", &[data("x")]).unwrap_err().contains("\"x\""));
    }

    #[test]
    fn typed_functions_decode_and_encode() {
        let r = Registry::empty().register_typed("scale", |k: u64, xs: Vec<u64>| {
            Ok(xs.iter().map(|x| x * k).sum::<u64>())
        });
        let f = r.get("scale").unwrap();
        let two = [Arc::new(codec::to_bytes(&2u64).unwrap())];
        let out = f.call(&codec::to_bytes(&3u64).unwrap(), ArgsForm::Bytes, &two).unwrap();
        assert_eq!(codec::from_bytes::<u64>(&out).unwrap(), 6);
        assert!(f.call(b"", ArgsForm::Bytes, &[]).unwrap_err().contains("arguments"));
    }

    #[test]
    fn json_arguments_are_decoded_by_the_functions_own_type() {
        #[derive(serde::Deserialize)]
        struct Scale {
            k: u64,
            plus: Vec<u64>,
        }
        let r = Registry::builtin()
            .register_typed("scale", |k: u64, xs: Vec<u64>| {
                Ok(xs.iter().map(|x| x * k).sum::<u64>())
            })
            .register_typed("table", |s: Scale, _: Vec<u64>| Ok(s.k + s.plus.iter().sum::<u64>()));
        let two = [Arc::new(codec::to_bytes(&2u64).unwrap())];
        let scale = r.get("scale").unwrap();
        let out = scale.call(b"10", ArgsForm::Json, &two).unwrap();
        assert_eq!(codec::from_bytes::<u64>(&out).unwrap(), 20);
        let table = r.get("table").unwrap();
        let out = table.call(br#"{"k":1,"plus":[2,3]}"#, ArgsForm::Json, &[]).unwrap();
        assert_eq!(codec::from_bytes::<u64>(&out).unwrap(), 6);
        // The text "10" for a number is refused in words, not decoded as garbage.
        let e = scale.call(br#""10""#, ArgsForm::Json, &two).unwrap_err();
        assert!(
            e.starts_with("arguments \"10\" do not fit the function's argument type u64"),
            "{e}"
        );
        // A function on bytes gets a string's text, and other values as JSON text.
        let sum = r.get("sum").unwrap();
        assert_eq!(sum.call(br#""1 2""#, ArgsForm::Json, &[]).unwrap(), b"3");
        assert_eq!(sum.call(b"7", ArgsForm::Json, &[]).unwrap(), b"7");
    }
}
