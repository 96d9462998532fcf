//! Times as audit events carry them (RFC 3339 with microseconds) and the
//! durations users type (`30d`, `12h`, `90m`): one parser for each.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with the text it is shown as. The text is RFC 3339 in UTC
/// with microseconds, or, for a time that does not parse, the text as the
/// event wrote it (and `us` the time it was read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Time {
    pub us: i64,
    pub text: String,
}

impl Time {
    /// Reads an event's time; an unparseable one keeps its text and takes
    /// the current time for ordering.
    pub fn of_event(raw: &str) -> Time {
        match parse(raw) {
            Some(ts) => Time::from_timestamp(ts),
            None => Time {
                us: jiff::Timestamp::now().as_microsecond(),
                text: raw.to_owned(),
            },
        }
    }

    pub fn now() -> Time {
        Time::from_timestamp(jiff::Timestamp::now())
    }

    pub fn from_timestamp(ts: jiff::Timestamp) -> Time {
        Time {
            us: ts.as_microsecond(),
            text: format(ts),
        }
    }

    /// A stored pair, trusted as written.
    pub fn stored(us: i64, text: String) -> Time {
        Time { us, text }
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let us = parse(&text).map_or(0, |ts| ts.as_microsecond());
        Ok(Time { us, text })
    }
}

/// An audit time: RFC 3339, or `YYYY-MM-DD HH:MM:SS` taken as UTC (Panther's
/// fixtures write that).
pub fn parse(raw: &str) -> Option<jiff::Timestamp> {
    if let Ok(ts) = raw.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    let dt = raw.parse::<jiff::civil::DateTime>().ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

pub fn format(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// RFC 3339 in UTC with microseconds, whatever the source wrote.
/// Unparseable times pass through.
pub fn normalize(raw: &str) -> String {
    match parse(raw) {
        Some(ts) => format(ts),
        None => raw.to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?}: expected a number and a unit, such as 30d, 12h, 90m or 45s")]
    Form(String),
    #[error("{0:?}: unit must be s, m, h, d or w")]
    Unit(String),
    #[error("{0:?}: too large")]
    TooLarge(String),
}

/// `45s`, `90m`, `12h`, `30d`, `2w`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::Form(s.to_owned()))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| DurationError::Form(s.to_owned()))?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(DurationError::Unit(s.to_owned())),
    };
    // Microseconds must fit an i64 too: time bounds are computed with them.
    n.checked_mul(unit_secs)
        .filter(|secs| *secs <= (i64::MAX as u64) / 1_000_000)
        .map(Duration::from_secs)
        .ok_or_else(|| DurationError::TooLarge(s.to_owned()))
}

/// A query bound: an RFC 3339 time, or a duration before now. As Unix µs.
pub fn parse_bound(value: &str) -> Result<i64, String> {
    if let Some(ts) = parse(value) {
        return Ok(ts.as_microsecond());
    }
    let ago = parse_duration(value).map_err(|e| match e {
        DurationError::Form(_) => {
            format!("{value:?}: expected a duration such as 7d, 24h, 30m or an RFC 3339 time")
        }
        other => other.to_string(),
    })?;
    i64::try_from(ago.as_micros())
        .ok()
        .and_then(|us| jiff::Timestamp::now().as_microsecond().checked_sub(us))
        .ok_or_else(|| format!("{value:?}: too far in the past"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_normalized() {
        assert_eq!(
            normalize("2018-10-26T13:38:34Z"),
            "2018-10-26T13:38:34.000000Z"
        );
        assert_eq!(
            normalize("2026-11-20T10:00:00.123456Z"),
            "2026-11-20T10:00:00.123456Z"
        );
        assert_eq!(
            normalize("2022-12-01 20:27:06"),
            "2022-12-01T20:27:06.000000Z"
        );
        assert_eq!(normalize("<ts>"), "<ts>");
        let t = Time::of_event("2026-11-20T10:00:00.5Z");
        assert_eq!(t.text, "2026-11-20T10:00:00.500000Z");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-20T10:00:00.500000Z\""
        );
        let back: Time = serde_json::from_str("\"2026-11-20T10:00:00.500000Z\"").unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert!(matches!(parse_duration("10"), Err(DurationError::Form(_))));
        assert!(matches!(parse_duration("h"), Err(DurationError::Form(_))));
        assert!(matches!(parse_duration("5y"), Err(DurationError::Unit(_))));
        assert!(matches!(
            parse_duration("99999999999999w"),
            Err(DurationError::TooLarge(_))
        ));
    }

    #[test]
    fn huge_bounds_are_rejected_not_overflowed() {
        for v in [
            "1000000000d",
            "99999999999999w",
            "9223372036854775807s",
            "x",
        ] {
            assert!(parse_bound(v).is_err(), "{v}");
        }
        let week = parse_bound("7d").unwrap();
        let now = jiff::Timestamp::now().as_microsecond();
        assert!((now - week - 7 * 86_400_000_000).abs() < 60_000_000);
        assert_eq!(
            parse_bound("2026-11-20T10:00:00Z").unwrap(),
            1_795_168_800_000_000
        );
    }
}
