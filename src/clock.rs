//! Wall-clock helpers shared by the envelope, the CLI and the audit trail: Unix seconds,
//! RFC 3339 timestamps and human durations (`15m`, `1h30m`, `90s`).
//!
//! Kept apart from the envelope so that verification can take `now` as a plain integer and
//! stay deterministic under test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since the Unix epoch, as the JWT `iat`/`nbf`/`exp` claims count them.
pub fn now_unix() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        // A clock before 1970 is a broken host; treating it as the epoch makes every
        // envelope look expired-or-future rather than silently valid.
        Err(_) => 0,
    }
}

/// Parses an RFC 3339 timestamp (`2026-05-12T18:30:00Z`) into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            format!("`{s}` is not an RFC 3339 timestamp ({e}); expected e.g. 2026-05-12T18:30:00Z")
        })
}

/// Formats Unix seconds as an RFC 3339 UTC timestamp with a `Z` suffix.
pub fn format_rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Appends `2026-05-12T18:30:00.123456Z` for a Unix time in microseconds, without
/// allocating (the audit trail formats one per decision).
pub fn push_rfc3339_micros(out: &mut Vec<u8>, unix_us: u64) {
    let secs = unix_us / 1_000_000;
    let micros = unix_us % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Digits go into a stack buffer and out in one copy: a push per byte (each with its
    // capacity check) cost ~400 instructions per audit record.
    let mut t = *b"0000-00-00T00:00:00.000000Z";
    fn put(t: &mut [u8], mut v: u64) {
        for d in t.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    put(&mut t[0..4], year.max(0) as u64);
    put(&mut t[5..7], month as u64);
    put(&mut t[8..10], day as u64);
    put(&mut t[11..13], rem / 3600);
    put(&mut t[14..16], rem % 3600 / 60);
    put(&mut t[17..19], rem % 60);
    put(&mut t[20..26], micros);
    out.extend_from_slice(&t);
}

/// Unix time in microseconds.
pub fn now_unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Parses a human duration: one or more `<number><unit>` groups with units `ms`, `s`, `m`,
/// `h`, `d` (for example `15m`, `1h30m`, `90s`). A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration; expected e.g. 15m, 1h30m or 90s".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration; expected e.g. 15m, 1h30m or 90s"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "`{s}`: unknown unit `{unit}`; use ms, s, m, h or d"
                ));
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("15x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn micros_formatting_matches_the_library() {
        for t in [
            0u64,
            951_782_400_000_001,
            1_778_610_600_123_456,
            4_102_444_799_999_999,
        ] {
            let mut out = Vec::new();
            push_rfc3339_micros(&mut out, t);
            let s = String::from_utf8(out).unwrap();
            let whole = format_rfc3339((t / 1_000_000) as i64);
            assert_eq!(
                s,
                format!("{}.{:06}Z", whole.trim_end_matches('Z'), t % 1_000_000)
            );
        }
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = parse_rfc3339("2026-05-12T18:30:00Z").unwrap();
        assert_eq!(t, 1_778_610_600);
        assert_eq!(format_rfc3339(t), "2026-05-12T18:30:00Z");
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
