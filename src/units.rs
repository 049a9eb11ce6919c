//! Human-sized quantities: durations such as `30s`, sizes such as `4GiB` and memory limits
//! such as `0.5` or `80%`, parsed from what users type (flags, graph files); sizes and counts
//! formatted for what they read (logs, status lines: `1 task`, `2 tasks`).
//!
//! Pure functions only. Nothing here reads the clock, the environment or a file, and nothing
//! here panics on user input: every rejection is a [`UnitError`] that quotes the input.

use std::fmt;
use std::time::Duration;

/// A quantity that could not be parsed. Its message is one line that quotes the input and says
/// what would have been accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Input to [`parse_duration`].
    #[error("invalid duration {input:?}: {problem}expected a number with a unit such as 250ms, 30s, 2m or 1h")]
    Duration {
        /// What the user wrote, so the message can quote it.
        input: String,
        /// What is wrong with it beyond "not of the accepted form", if anything.
        problem: UnitProblem,
    },
    /// Input to [`parse_bytes`].
    #[error(
        "invalid size {input:?}: {problem}expected a number of bytes with an optional unit such as 512, 10kB, 512MiB or 4GiB"
    )]
    Bytes {
        /// What the user wrote, so the message can quote it.
        input: String,
        /// What is wrong with it beyond "not of the accepted form", if anything.
        problem: UnitProblem,
    },
    /// Input to [`parse_memory_limit`].
    #[error(
        "invalid memory limit {input:?}: {problem}expected auto, 0 (no limit), a fraction of system memory up to 1 (0.5; 1 is all of it), a percentage (80%) or a size (4GiB, 5GB, 4e9)"
    )]
    MemoryLimit {
        /// What the user wrote, so the message can quote it.
        input: String,
        /// What is wrong with it beyond "not of the accepted form", if anything.
        problem: UnitProblem,
    },
}

/// Why a quantity was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitProblem {
    /// Not a number followed by a known unit (empty, junk, unknown unit, NaN, ...). The list of
    /// accepted forms in the message says all there is to say.
    Malformed,
    /// A well-formed but negative number.
    Negative,
    /// A well-formed number too large for the type it must fit in.
    TooLarge,
    /// A percentage of memory above 100%: more than there is.
    OverHundredPercent,
    /// `0%` of memory: nothing at all (`0` alone means no limit).
    ZeroPercent,
}

impl fmt::Display for UnitProblem {
    /// A clause ending in "; " that the error message puts before the accepted forms.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitProblem::Malformed => Ok(()),
            UnitProblem::Negative => f.write_str("it is negative; "),
            UnitProblem::TooLarge => f.write_str("it is too large; "),
            UnitProblem::OverHundredPercent => f.write_str("more than 100% of the memory there is; "),
            UnitProblem::ZeroPercent => f.write_str("0% leaves no memory at all (0 alone means no limit); "),
        }
    }
}

/// Parses a duration: a non-negative decimal number, optional whitespace, then a unit among
/// `ns`, `us` (or `µs`), `ms`, `s`, `m` (or `min`) and `h`; a bare number means seconds.
/// Units are case-insensitive.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let fail = |problem| UnitError::Duration {
        input: s.to_owned(),
        problem,
    };
    let (number, unit) = split_quantity(s).map_err(fail)?;
    let unit_nanos: u64 = match unit.to_ascii_lowercase().as_str() {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return Err(fail(UnitProblem::Malformed)),
    };
    if number.integral {
        // Exact arithmetic when we can: no float rounding for "90s" or "500us".
        let count: u64 = number.text.parse().map_err(|_| fail(UnitProblem::TooLarge))?;
        let nanos = u128::from(count) * u128::from(unit_nanos);
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| fail(UnitProblem::TooLarge))?;
        // The remainder of a division by 10^9 always fits in a u32.
        let subsec = (nanos % 1_000_000_000) as u32;
        Ok(Duration::new(secs, subsec))
    } else {
        let value: f64 = number.text.parse().map_err(|_| fail(UnitProblem::Malformed))?;
        let secs = value * unit_nanos as f64 / 1e9;
        // `value` is non-negative by the grammar; it may still be infinite ("1e999s").
        Duration::try_from_secs_f64(secs).map_err(|_| fail(UnitProblem::TooLarge))
    }
}

/// Parses a size in bytes: a non-negative decimal number (exponents allowed, as in `8e9`),
/// optional whitespace, then an optional case-insensitive unit: `B`; decimal `kB`/`K`,
/// `MB`/`M`, `GB`/`G`, `TB`/`T`; binary `KiB`, `MiB`, `GiB`, `TiB`. A fraction of a byte left
/// after scaling is dropped.
pub fn parse_bytes(s: &str) -> Result<u64, UnitError> {
    let fail = |problem| UnitError::Bytes {
        input: s.to_owned(),
        problem,
    };
    let (number, unit) = split_quantity(s).map_err(fail)?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(fail(UnitProblem::Malformed)),
    };
    if number.integral {
        let count: u64 = number.text.parse().map_err(|_| fail(UnitProblem::TooLarge))?;
        count.checked_mul(scale).ok_or_else(|| fail(UnitProblem::TooLarge))
    } else {
        let value: f64 = number.text.parse().map_err(|_| fail(UnitProblem::Malformed))?;
        let bytes = value * scale as f64;
        // 2^64 is the first value a u64 cannot hold. `bytes` is never NaN: the grammar has no
        // NaN and no sign, so it is a non-negative number or infinity, which this also refuses.
        if bytes >= 18_446_744_073_709_551_616.0 {
            return Err(fail(UnitProblem::TooLarge));
        }
        // Truncation is the documented rounding: down to a whole byte.
        Ok(bytes as u64)
    }
}

/// `--memory-limit` as written, before the machine it applies to is known. The rule is dask's
/// (`distributed.worker_memory.parse_memory_limit`), so that what dask users type means the
/// same: see [`MEMORY_LIMIT_FORMS`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryLimit {
    /// `auto`: the machine's memory shared by the cores the worker's threads use.
    Auto,
    /// `0` (or any zero size): no limit.
    Unlimited,
    /// A share of the machine's memory in (0, 1]: `0.5`, `1`, `1.0`, `80%`.
    Fraction(f64),
    /// A number of bytes: `4GiB`, `5GB`, `4e9`, or a number above 1 (`2000`, `2.0`).
    Bytes(u64),
}

/// The forms `--memory-limit` takes, as (example, meaning): the help text, the man pages and
/// the README show this table.
pub const MEMORY_LIMIT_FORMS: &[(&str, &str)] = &[
    ("auto", "system memory * nthreads / cores (the default)"),
    ("0", "no limit"),
    ("0.5, 1, 1.0", "a fraction of system memory, up to 1 (all of it)"),
    ("80%", "a percentage of system memory, up to 100%"),
    ("4GiB, 512MiB, 5GB", "a size (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"),
    (
        "4e9, 2000, 2.0",
        "a number above 1: bytes (as in dask: 2.0 is two bytes)",
    ),
];

/// Parses a memory limit by dask's rule: `auto`; a bare number is a fraction of system memory
/// when at most 1 (so `1` and `1.0` are all of it) and bytes above 1; a percentage up to 100%;
/// a size with a unit, as [`parse_bytes`]; zero (`0`, `0.0`, `0GB`) is no limit. Dask has no
/// percentages; here they are one more way to write a fraction, and `0%` (no memory) and
/// above `100%` are refused.
pub fn parse_memory_limit(s: &str) -> Result<MemoryLimit, UnitError> {
    let fail = |problem| UnitError::MemoryLimit {
        input: s.to_owned(),
        problem,
    };
    let t = s.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(MemoryLimit::Auto);
    }
    let (number, unit) = split_quantity(t).map_err(fail)?;
    let value: f64 = number.text.parse().map_err(|_| fail(UnitProblem::Malformed))?;
    if !value.is_finite() {
        return Err(fail(UnitProblem::TooLarge));
    }
    match unit {
        "%" if value == 0.0 => Err(fail(UnitProblem::ZeroPercent)),
        "%" if value > 100.0 => Err(fail(UnitProblem::OverHundredPercent)),
        "%" => Ok(MemoryLimit::Fraction(value / 100.0)),
        _ if value == 0.0 => Ok(MemoryLimit::Unlimited),
        "" if value <= 1.0 => Ok(MemoryLimit::Fraction(value)),
        _ => match parse_bytes(t) {
            Ok(0) => Ok(MemoryLimit::Unlimited),
            Ok(bytes) => Ok(MemoryLimit::Bytes(bytes)),
            Err(UnitError::Bytes { problem, .. }) => Err(fail(problem)),
            Err(_) => Err(fail(UnitProblem::Malformed)),
        },
    }
}

impl MemoryLimit {
    /// The limit in bytes (0 for none) of a worker with `nthreads` threads on a machine with
    /// `total` bytes of memory and `cores` cores.
    pub fn bytes(self, total: u64, cores: usize, nthreads: usize) -> u64 {
        match self {
            MemoryLimit::Auto => total / cores.max(1) as u64 * nthreads.min(cores) as u64,
            MemoryLimit::Unlimited => 0,
            MemoryLimit::Fraction(f) => (total as f64 * f) as u64,
            MemoryLimit::Bytes(b) => b,
        }
    }
}

/// `n` and the noun, plural unless `n` is 1: `plural(1, "task")` is `1 task`, `plural(2,
/// "task")` is `2 tasks`. Every count in a message goes through it.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    // "retry", "copy": "retries", "copies"; but "key": "keys".
    match noun.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// Formats a size with binary units and one decimal, e.g. `512 B`, `1.5 KiB`, `1.0 GiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the one-decimal rendering would read 1024.0 or more.
    while (value * 10.0).round() >= 10240.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Writes a duration the way a user types it, exactly, in its largest whole unit: `10s`,
/// `250ms`, `1500us`, `7ns`. [`parse_duration`] reads it back to the same value; the CLI's
/// help shows defaults in this form.
pub fn duration_flag(d: Duration) -> String {
    let nanos = d.as_nanos();
    for (unit, per) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if nanos.is_multiple_of(per) {
            return format!("{}{unit}", nanos / per);
        }
    }
    format!("{nanos}ns")
}

/// The number at the start of a quantity.
struct Number<'a> {
    /// Its text, as `str::parse` accepts it.
    text: &'a str,
    /// Whether it is plain digits, so exact integer arithmetic applies.
    integral: bool,
}

/// Splits `s` (surrounding whitespace ignored) into its leading non-negative number and the
/// unit after it (whitespace between the two ignored).
fn split_quantity(s: &str) -> Result<(Number<'_>, &str), UnitProblem> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return Err(match split_number(rest) {
            Some(_) => UnitProblem::Negative,
            None => UnitProblem::Malformed,
        });
    }
    let (number, unit) = split_number(s).ok_or(UnitProblem::Malformed)?;
    Ok((number, unit.trim_start()))
}

/// Splits off `digits [. digits] [e [+-] digits]` (at least one digit before the exponent).
fn split_number(s: &str) -> Option<(Number<'_>, &str)> {
    let bytes = s.as_bytes();
    let skip_digits = |from: usize| from + bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut end = skip_digits(0);
    let mut digits = end;
    let mut integral = true;
    if bytes.get(end) == Some(&b'.') {
        let after = skip_digits(end + 1);
        digits += after - (end + 1);
        end = after;
        integral = false;
    }
    if digits == 0 {
        return None;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exponent = end + 1;
        if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        let after = skip_digits(exponent);
        // "5e" is the number 5 with unit "e" (rejected later), not a broken exponent.
        if after > exponent {
            end = after;
            integral = false;
        }
    }
    let (text, rest) = s.split_at(end);
    Some((Number { text, integral }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("500µs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("3min"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5"), Ok(ms(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn duration_flags_are_exact_and_read_back() {
        assert_eq!(duration_flag(Duration::from_secs(10)), "10s");
        assert_eq!(duration_flag(ms(250)), "250ms");
        assert_eq!(duration_flag(Duration::from_micros(1500)), "1500us");
        assert_eq!(duration_flag(Duration::from_nanos(7)), "7ns");
        assert_eq!(duration_flag(Duration::ZERO), "0s");
        for d in [Duration::from_secs(60), ms(1001), Duration::from_nanos(1_000_000_001)] {
            assert_eq!(parse_duration(&duration_flag(d)), Ok(d), "{d:?}");
        }
    }

    #[test]
    fn durations_allow_whitespace_and_any_case() {
        assert_eq!(parse_duration("250 ms"), Ok(ms(250)));
        assert_eq!(parse_duration("  30 S "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.1ms"), Ok(Duration::from_micros(1100)));
        assert_eq!(parse_duration("1e3ms"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
    }

    #[test]
    fn bad_durations_are_rejected_with_the_reason() {
        for bad in [
            "", "  ", "s", "3x", "1.5.2s", "NaN", "nan s", "inf", "1 s s", "+3s", "5e",
        ] {
            assert_eq!(
                parse_duration(bad).map_err(|e| match e {
                    UnitError::Duration { problem, .. } => problem,
                    other => panic!("wrong variant {other:?}"),
                }),
                Err(UnitProblem::Malformed),
                "{bad:?}"
            );
        }
        let negative = parse_duration("-1s").unwrap_err();
        assert_eq!(
            negative.to_string(),
            r#"invalid duration "-1s": it is negative; expected a number with a unit such as 250ms, 30s, 2m or 1h"#
        );
        for huge in [
            "99999999999999999999999h",
            "1e400s",
            "18446744073709551616",
            "6000000000000000h",
        ] {
            assert!(
                matches!(
                    parse_duration(huge),
                    Err(UnitError::Duration {
                        problem: UnitProblem::TooLarge,
                        ..
                    })
                ),
                "{huge:?}"
            );
        }
    }

    #[test]
    fn a_duration_error_is_one_line_quoting_the_input() {
        let message = parse_duration("3x").unwrap_err().to_string();
        assert_eq!(
            message,
            r#"invalid duration "3x": expected a number with a unit such as 250ms, 30s, 2m or 1h"#
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("8e9"), Ok(8_000_000_000));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert_eq!(parse_bytes("10kB"), Ok(10_000));
        assert_eq!(parse_bytes("2TiB"), Ok(2 << 40));
        assert_eq!(parse_bytes("3 T"), Ok(3_000_000_000_000));
        assert_eq!(parse_bytes("7b"), Ok(7));
        assert_eq!(parse_bytes("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn size_units_are_case_insensitive() {
        for text in ["10kB", "10KB", "10K", "10k", "10 kb"] {
            assert_eq!(parse_bytes(text), Ok(10_000), "{text:?}");
        }
        assert_eq!(parse_bytes("1gib"), Ok(1 << 30));
        assert_eq!(parse_bytes("1M"), Ok(1_000_000));
    }

    #[test]
    fn fractions_of_a_byte_are_rounded_down() {
        assert_eq!(parse_bytes("1.9"), Ok(1));
        assert_eq!(parse_bytes("0.5B"), Ok(0));
        assert_eq!(parse_bytes("1.0001KiB"), Ok(1024));
    }

    #[test]
    fn bad_sizes_are_rejected() {
        let message = parse_bytes("-5GB").unwrap_err().to_string();
        assert!(
            message.starts_with(r#"invalid size "-5GB": it is negative; expected"#),
            "{message}"
        );
        for bad in ["", "GB", "5XB", "5 GiBs", "NaN", "1..5"] {
            assert!(
                matches!(
                    parse_bytes(bad),
                    Err(UnitError::Bytes {
                        problem: UnitProblem::Malformed,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        for huge in ["18446744073709551616", "20000000TiB", "1e20", "1e999"] {
            assert!(
                matches!(
                    parse_bytes(huge),
                    Err(UnitError::Bytes {
                        problem: UnitProblem::TooLarge,
                        ..
                    })
                ),
                "{huge:?}"
            );
        }
    }

    #[test]
    fn sizes_format_with_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes((1 << 20) - 1), "1.0 MiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn plurals_are_singular_for_one() {
        assert_eq!(plural(1, "task"), "1 task");
        assert_eq!(plural(0, "task"), "0 tasks");
        assert_eq!(plural(2, "thread"), "2 threads");
        assert_eq!(plural(1, "retry"), "1 retry");
        assert_eq!(plural(3, "retry"), "3 retries");
        assert_eq!(plural(2, "key"), "2 keys");
    }

    fn fraction(s: &str) -> f64 {
        match parse_memory_limit(s) {
            Ok(MemoryLimit::Fraction(f)) => f,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    /// Regression: `--memory-limit 1` meant one byte and `2.0` two bytes, and the worker then
    /// paused for ever; in dask `1` and `1.0` are all of the memory.
    #[test]
    fn memory_limits_read_as_dask_reads_them() {
        assert_eq!(parse_memory_limit("auto"), Ok(MemoryLimit::Auto));
        assert_eq!(parse_memory_limit("AUTO"), Ok(MemoryLimit::Auto));
        assert_eq!(fraction("1"), 1.0);
        assert_eq!(fraction("1.0"), 1.0);
        assert_eq!(fraction("0.5"), 0.5);
        assert_eq!(fraction(".25"), 0.25);
        assert_eq!(fraction("1e-1"), 0.1);
        assert_eq!(fraction("80%"), 0.8);
        assert_eq!(fraction("100%"), 1.0);
        assert_eq!(fraction("12.5 %"), 0.125);
        for none in ["0", "0.0", "0GB", "0 B"] {
            assert_eq!(parse_memory_limit(none), Ok(MemoryLimit::Unlimited), "{none:?}");
        }
        // Above 1, a bare number is bytes, as in dask.
        assert_eq!(parse_memory_limit("2.0"), Ok(MemoryLimit::Bytes(2)));
        assert_eq!(parse_memory_limit("2000"), Ok(MemoryLimit::Bytes(2000)));
        assert_eq!(parse_memory_limit("4e9"), Ok(MemoryLimit::Bytes(4_000_000_000)));
        assert_eq!(parse_memory_limit("4GiB"), Ok(MemoryLimit::Bytes(4 << 30)));
        assert_eq!(parse_memory_limit("5GB"), Ok(MemoryLimit::Bytes(5_000_000_000)));
        assert_eq!(parse_memory_limit("0.5GB"), Ok(MemoryLimit::Bytes(500_000_000)));
    }

    #[test]
    fn memory_limits_that_mean_nothing_are_refused() {
        let problem = |s: &str| match parse_memory_limit(s) {
            Err(UnitError::MemoryLimit { problem, .. }) => problem,
            other => panic!("{s:?}: {other:?}"),
        };
        assert_eq!(problem("-1"), UnitProblem::Negative);
        assert_eq!(problem("-0.5"), UnitProblem::Negative);
        assert_eq!(problem("-5GB"), UnitProblem::Negative);
        assert_eq!(problem("150%"), UnitProblem::OverHundredPercent);
        assert_eq!(problem("0%"), UnitProblem::ZeroPercent);
        assert_eq!(problem("1e400"), UnitProblem::TooLarge);
        assert_eq!(problem("1e30"), UnitProblem::TooLarge);
        for bad in ["", "lots", "GB", "5 parsecs", "NaN", "inf", "%", "50%%", "auto5"] {
            assert_eq!(problem(bad), UnitProblem::Malformed, "{bad:?}");
        }
        assert_eq!(
            parse_memory_limit("150%").unwrap_err().to_string(),
            "invalid memory limit \"150%\": more than 100% of the memory there is; expected auto, 0 (no \
             limit), a fraction of system memory up to 1 (0.5; 1 is all of it), a percentage (80%) or a \
             size (4GiB, 5GB, 4e9)"
        );
    }

    #[test]
    fn memory_limits_resolve_on_a_machine() {
        let gib = 1u64 << 30;
        // 16 GiB, 8 cores, a worker of 2 threads.
        assert_eq!(MemoryLimit::Auto.bytes(16 * gib, 8, 2), 4 * gib);
        assert_eq!(MemoryLimit::Auto.bytes(16 * gib, 8, 20), 16 * gib);
        assert_eq!(MemoryLimit::Fraction(1.0).bytes(16 * gib, 8, 2), 16 * gib);
        assert_eq!(MemoryLimit::Fraction(0.25).bytes(16 * gib, 8, 2), 4 * gib);
        assert_eq!(MemoryLimit::Bytes(123).bytes(16 * gib, 8, 2), 123);
        assert_eq!(MemoryLimit::Unlimited.bytes(16 * gib, 8, 2), 0);
    }

    /// The README's table of `--memory-limit` is [`MEMORY_LIMIT_FORMS`].
    #[test]
    fn the_readme_has_the_memory_limit_table() {
        let readme = include_str!("../README.md");
        for (form, meaning) in MEMORY_LIMIT_FORMS {
            let row = format!("| {form} | {meaning} |");
            assert!(readme.contains(&row), "README.md lacks the row {row:?}");
        }
    }
}
