//! Human-sized quantities: durations such as `30s` and sizes such as `4GiB`, parsed from what
//! users type (flags, graph files) and formatted for what they read (logs, status lines).
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
}

impl fmt::Display for UnitProblem {
    /// A clause ending in "; " that the error message puts before the accepted forms.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitProblem::Malformed => Ok(()),
            UnitProblem::Negative => f.write_str("it is negative; "),
            UnitProblem::TooLarge => f.write_str("it is too large; "),
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
}
