//! How the renderers print a crossing's numbers: UTC times, offsets, latencies and sizes,
//! short and fixed so a column of them lines up.

/// Milliseconds in one day.
const DAY_MS: u64 = 86_400_000;

/// `HH:MM:SS.mmm` of a Unix time in milliseconds, UTC.
pub(crate) fn clock_utc(unix_ms: u64) -> String {
    let in_day = unix_ms % DAY_MS;
    let (h, m, s, ms) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

/// `YYYY-MM-DD` of a Unix time in milliseconds, UTC (proleptic Gregorian calendar).
pub(crate) fn date_utc(unix_ms: u64) -> String {
    let (y, m, d) = civil_from_days(unix_ms / DAY_MS);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in milliseconds, UTC.
pub(crate) fn datetime_utc(unix_ms: u64) -> String {
    let clock = clock_utc(unix_ms);
    format!("{} {}", date_utc(unix_ms), &clock[..8])
}

/// Year, month (1-12) and day (1-31) of a count of days since 1970-01-01: Howard Hinnant's
/// `civil_from_days`, for non-negative day counts only (Unix times here are unsigned).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// `+12.345s` (or `-0.004s` for a crossing recorded before the run's start): an offset in
/// milliseconds, to the millisecond.
pub(crate) fn offset(delta_ms: i128) -> String {
    let sign = if delta_ms < 0 { '-' } else { '+' };
    let abs = delta_ms.unsigned_abs();
    format!("{sign}{}.{:03}s", abs / 1000, abs % 1000)
}

/// A latency at most six characters wide: `0ms`…`999ms`, `1.2s`…`9.9s`, `10s`…`59s`,
/// `1m05s`…`59m59s`, then `1h02m` (hours uncapped).
pub(crate) fn latency(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    // Tenths of a second, rounded half up; below 9.95 s one decimal is shown.
    let tenths = (ms + 50) / 100;
    if tenths < 100 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let s = (ms + 500) / 1000;
    if s < 60 {
        return format!("{s}s");
    }
    if s < 3600 {
        return format!("{}m{:02}s", s / 60, s % 60);
    }
    format!("{}h{:02}m", s / 3600, s / 60 % 60)
}

/// `1 crossing`, `31 crossings`.
pub(crate) fn crossings(n: usize) -> String {
    if n == 1 {
        "1 crossing".to_owned()
    } else {
        format!("{n} crossings")
    }
}

/// A run's length: `9.952s` to the millisecond under a minute, else as [`latency`].
pub(crate) fn span(ms: u64) -> String {
    if ms < 60_000 {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    } else {
        latency(ms)
    }
}

/// A size at most five characters wide: `512B`, `1023B`, `3.4K`, `34K`, `1.2M`, `12G`
/// (binary multiples, rounded half up; the unit grows once a figure would reach 1024).
pub(crate) fn size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut unit_bytes: u128 = 1024;
    for unit in ['K', 'M', 'G', 'T'] {
        let b = u128::from(bytes);
        let tenths = (b * 10 + unit_bytes / 2) / unit_bytes;
        if tenths < 100 {
            return format!("{}.{}{unit}", tenths / 10, tenths % 10);
        }
        let whole = (b + unit_bytes / 2) / unit_bytes;
        if whole < 1024 || unit == 'T' {
            return format!("{whole}{unit}");
        }
        unit_bytes *= 1024;
    }
    unreachable!("the loop returns at its last unit")
}

/// A crossing's sizes: `512B`, or `98B→2.1K` when it has an answer.
pub(crate) fn sizes(bytes: u64, reply_bytes: Option<u64>) -> String {
    match reply_bytes {
        Some(r) => format!("{}→{}", size(bytes), size(r)),
        None => size(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_and_dates() {
        assert_eq!(clock_utc(0), "00:00:00.000");
        assert_eq!(date_utc(0), "1970-01-01");
        // 2000-02-29 (a leap day of a century year divisible by 400), 23:59:59.999.
        assert_eq!(date_utc(951_868_799_999), "2000-02-29");
        assert_eq!(clock_utc(951_868_799_999), "23:59:59.999");
        assert_eq!(datetime_utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(date_utc(4_107_542_400_000), "2100-03-01"); // 2100 is not a leap year
    }

    #[test]
    fn offsets_have_a_sign_and_milliseconds() {
        assert_eq!(offset(0), "+0.000s");
        assert_eq!(offset(12_345), "+12.345s");
        assert_eq!(offset(-4), "-0.004s");
    }

    #[test]
    fn latencies_stay_short() {
        let table = [
            (0, "0ms"),
            (3, "3ms"),
            (999, "999ms"),
            (1000, "1.0s"),
            (1_234, "1.2s"),
            (1_250, "1.3s"),
            (9_949, "9.9s"),
            (9_950, "10s"),
            (59_499, "59s"),
            (59_500, "1m00s"),
            (60_000, "1m00s"),
            (65_400, "1m05s"),
            (3_599_499, "59m59s"),
            (3_599_500, "1h00m"),
            (3_720_000, "1h02m"),
        ];
        for (ms, want) in table {
            assert_eq!(latency(ms), want, "{ms} ms");
            assert!(latency(ms).chars().count() <= 6, "{ms} ms");
        }
    }

    #[test]
    fn sizes_stay_short() {
        let table = [
            (0, "0B"),
            (512, "512B"),
            (1023, "1023B"),
            (1024, "1.0K"),
            (3_482, "3.4K"),
            (10_188, "9.9K"),
            (10_189, "10K"),
            (1_048_063, "1023K"),
            (1_048_064, "1.0M"),
            (1_258_291, "1.2M"),
            (5_368_709_120, "5.0G"),
            (u64::MAX, "16777216T"),
        ];
        for (b, want) in table {
            assert_eq!(size(b), want, "{b} bytes");
        }
        assert_eq!(sizes(98, Some(2_150)), "98B→2.1K");
        assert_eq!(sizes(98, None), "98B");
    }
}
