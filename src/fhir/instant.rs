//! instant: FHIR instants as stored (microseconds since the Unix epoch) and as written.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, in microseconds since the epoch.
pub fn now_us() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// `2026-11-23T19:36:00.123456Z`
pub fn format_us(us: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses a FHIR instant/dateTime with a time zone, or a date (taken as 00:00 UTC),
/// into microseconds since the epoch.
pub fn parse_us(text: &str) -> Option<i64> {
    let full = match text.len() {
        4 => format!("{text}-01-01T00:00:00Z"),
        7 => format!("{text}-01T00:00:00Z"),
        10 => format!("{text}T00:00:00Z"),
        _ => text.to_string(),
    };
    OffsetDateTime::parse(&full, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1000) as i64)
}

/// The `SystemTime` of a stored instant (for HTTP dates).
pub fn system_time(us: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        let us = 1_795_000_000_123_456;
        assert_eq!(parse_us(&format_us(us)), Some(us));
        assert_eq!(parse_us("2026-11-23"), parse_us("2026-11-23T00:00:00Z"));
        assert_eq!(
            parse_us("2026-11-23T01:00:00+01:00"),
            parse_us("2026-11-23T00:00:00Z")
        );
        assert_eq!(parse_us("yesterday"), None);
    }
}
