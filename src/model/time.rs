//! Times as audit events carry them (RFC 3339 with microseconds) and the
//! durations users type (`30d`, `12h`, `90m`): one parser for each.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with the text it is shown as: RFC 3339 in UTC with
/// microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Time {
    pub us: i64,
    pub text: String,
}

impl Time {
    /// Reads an event's time; `None` when it is not one (decoding rejects
    /// such events, see [`parse_us`]).
    pub fn of_event(raw: &str) -> Option<Time> {
        parse_us(raw).map(Time::from_us)
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

    /// A time of [`parse_us`]'s range, which is wider than a
    /// `jiff::Timestamp`'s (it ends on 9999-12-30).
    pub fn from_us(us: i64) -> Time {
        Time {
            us,
            text: format_us(us),
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
        let us = parse_us(&text).unwrap_or(0);
        Ok(Time { us, text })
    }
}

/// 1970-01-01T00:00:00, from which microseconds are counted.
const EPOCH: jiff::civil::DateTime = jiff::civil::DateTime::constant(1970, 1, 1, 0, 0, 0, 0);

/// An audit time as Unix microseconds: RFC 3339 (`T`, `t` or a space
/// between date and time; `Z`, `z` or a numeric offset; a fraction of any
/// length, cut to microseconds; a leap second read as :59), any year from
/// 0000 to 9999 once in UTC. Besides RFC 3339, only `YYYY-MM-DD HH:MM:SS`
/// without an offset, taken as UTC (Panther's fixtures write that). `None`
/// for anything else: `yesterday`, `""`, a Unix number.
///
/// This is the one reader of times for ingest and for query bounds, so a
/// query can name every time an event may carry.
pub fn parse_us(raw: &str) -> Option<i64> {
    let b = raw.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let date = parse_date(&b[..10])?;
    let (time, rest) = parse_clock(&b[11..])?;
    let offset_secs = match rest {
        [] if b[10] == b' ' => 0,
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = i64::from(two_digits(*h1, *h2)?);
            let m = i64::from(two_digits(*m1, *m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let local = date.to_datetime(time).duration_since(EPOCH);
    let us = i64::try_from(local.as_micros()).ok()?;
    let utc = us.checked_sub(offset_secs.checked_mul(1_000_000)?)?;
    // The day in UTC must still be a day of years 0000-9999.
    (MIN_US..=MAX_US).contains(&utc).then_some(utc)
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z, in µs.
const MIN_US: i64 = -62_167_219_200_000_000;
const MAX_US: i64 = 253_402_300_799_999_999;

/// `YYYY-MM-DD`.
fn parse_date(b: &[u8]) -> Option<jiff::civil::Date> {
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i16::try_from(digits(&b[..4])?).ok()?;
    let month = i8::try_from(digits(&b[5..7])?).ok()?;
    let day = i8::try_from(digits(&b[8..10])?).ok()?;
    jiff::civil::Date::new(year, month, day).ok()
}

/// `HH:MM:SS[.fraction]`, and what follows it.
fn parse_clock(b: &[u8]) -> Option<(jiff::civil::Time, &[u8])> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let hour = two_digits(b[0], b[1])?;
    let minute = two_digits(b[3], b[4])?;
    // RFC 3339 allows a leap second; the microsecond count has none.
    let second = two_digits(b[6], b[7])?.min(59);
    let mut rest = &b[8..];
    let mut nanos = 0i32;
    if let [b'.', frac @ ..] = rest {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, d) in frac[..n.min(9)].iter().enumerate() {
            nanos += i32::from(d - b'0') * 10i32.pow(8 - i as u32);
        }
        // Microseconds are what is kept.
        nanos -= nanos % 1000;
        rest = &frac[n..];
    }
    let time = jiff::civil::Time::new(
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Some((time, rest))
}

fn two_digits(a: u8, b: u8) -> Option<u32> {
    digits(&[a, b])
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

pub fn format(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// RFC 3339 in UTC with microseconds, for any time [`parse_us`] returns.
pub fn format_us(us: i64) -> String {
    match EPOCH.checked_add(jiff::SignedDuration::from_micros(us)) {
        Ok(dt) => dt.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
        // Outside years -9999..9999: no time parse_us gives.
        Err(_) => us.to_string(),
    }
}

/// RFC 3339 in UTC with microseconds, whatever the source wrote.
/// Unparseable times pass through.
pub fn normalize(raw: &str) -> String {
    match parse_us(raw) {
        Some(us) => format_us(us),
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

/// A query bound: a time as events carry them ([`parse_us`]), or a
/// duration before now. As Unix µs.
pub fn parse_bound(value: &str) -> Result<i64, String> {
    if let Some(us) = parse_us(value) {
        return Ok(us);
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
        let t = Time::of_event("2026-11-20T10:00:00.5Z").unwrap();
        assert_eq!(t.text, "2026-11-20T10:00:00.500000Z");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-20T10:00:00.500000Z\""
        );
        let back: Time = serde_json::from_str("\"2026-11-20T10:00:00.500000Z\"").unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn rfc_3339_times_parse_across_years_0000_to_9999() {
        let us = |s: &str| parse_us(s);
        assert_eq!(us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(us("1970-01-01T00:00:01.5z"), Some(1_500_000));
        assert_eq!(us("1970-01-01t01:00:00+01:00"), Some(0));
        assert_eq!(us("1969-12-31T23:00:00-01:00"), Some(0));
        assert_eq!(
            us("2026-11-20T10:00:00.123456789Z"),
            us("2026-11-20T10:00:00.123456Z")
        );
        assert_eq!(us("2016-12-31T23:59:60Z"), us("2016-12-31T23:59:59Z"));
        assert_eq!(us("9999-12-31T23:59:59.999999Z"), Some(MAX_US));
        assert_eq!(us("0000-01-01T00:00:00Z"), Some(MIN_US));
        assert_eq!(
            format_us(us("9999-12-31T23:59:59Z").unwrap()),
            "9999-12-31T23:59:59.000000Z"
        );
        assert_eq!(format_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_us(-1), "1969-12-31T23:59:59.999999Z");
        // What jiff's Timestamp reads agrees where both read.
        let ts: jiff::Timestamp = "2026-11-20T10:00:00.123456+02:00".parse().unwrap();
        assert_eq!(
            us("2026-11-20T10:00:00.123456+02:00"),
            Some(ts.as_microsecond())
        );
        for bad in [
            "yesterday",
            "",
            "1700000000",
            "2026-11-20",
            "2026-11-20T10:00:00",
            "2026-11-20T10:00Z",
            "2026-02-30T10:00:00Z",
            "2026-11-20T24:00:00Z",
            "2026-11-20T10:00:00.Z",
            "2026-11-20T10:00:00+2:00",
            "2026-11-20T10:00:00+24:00",
            "2026-11-20T10:00:00Z ",
            "9999-12-31T23:59:59-01:00",
            "0000-01-01T00:00:00+01:00",
            "+002026-11-20T10:00:00Z",
            "2026-11-20T10:00:00Z[UTC]",
            "２０２６-11-20T10:00:00Z",
        ] {
            assert_eq!(us(bad), None, "{bad:?}");
        }
        // Panther's fixtures: no offset, a space, taken as UTC.
        assert_eq!(us("1970-01-01 00:00:02"), Some(2_000_000));
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
        // Every time ingest accepts is a bound.
        assert_eq!(
            parse_bound("9999-12-31T23:59:59Z"),
            Ok(253_402_300_799_000_000)
        );
        assert_eq!(parse_bound("1970-01-01T00:00:00Z"), Ok(0));
    }
}
