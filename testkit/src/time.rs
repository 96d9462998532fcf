//! Audit timestamps: the API server writes RFC 3339 in UTC with
//! microseconds (`2026-11-20T10:00:00.123456Z`), objects' own times to the
//! second.

use jiff::Timestamp;

/// `2026-11-20T10:00:00.123456Z`, as in `requestReceivedTimestamp`.
pub fn rfc3339_micros(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// `2026-11-20T10:00:00Z`, as in `metadata.creationTimestamp`.
pub fn rfc3339_secs(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `YEAR-MONTH-DAY` at `hour`:00:00 UTC.
pub fn utc(year: i16, month: i8, day: i8, hour: i8) -> Timestamp {
    jiff::civil::date(year, month, day)
        .at(hour, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or_else(|e| panic!("{year}-{month}-{day} {hour}:00 UTC: {e}"))
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    #[test]
    fn micros_and_seconds_in_utc() {
        let t = utc(2026, 11, 20, 10) + SignedDuration::from_micros(3_723_000_042);
        assert_eq!(rfc3339_micros(t), "2026-11-20T11:02:03.000042Z");
        assert_eq!(rfc3339_secs(t), "2026-11-20T11:02:03Z");
        // Across a month end.
        let t = utc(2026, 11, 30, 23) + SignedDuration::from_secs(3600);
        assert_eq!(rfc3339_micros(t), "2026-12-01T00:00:00.000000Z");
    }
}
