//! Civil time <-> Unix time for the scenario clock (proleptic Gregorian, after H. Hinnant's
//! `days_from_civil` algorithm), and the `--block-start` syntax.

pub use crate::civil::{civil_from_days, days_from_civil};

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for microseconds since the epoch.
pub fn rfc3339_us(us: u64) -> String {
    crate::civil::format_ts(i64::try_from(us).unwrap_or(i64::MAX).saturating_mul(1000))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn rfc3339_s(secs: i64) -> String {
    crate::civil::format_seconds(secs.saturating_mul(1_000_000_000))
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

/// Parses `YYYY-MM-DD[T| ]HH:MM[:SS][Z|±HH:MM]` (no zone = UTC) into Unix seconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.trim();
    let date = s.get(..10)?;
    let mut dp = date.split('-');
    let (y, m, d): (i64, u32, u32) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let rest = s.get(10..)?;
    let rest = rest.strip_prefix(['T', 't', ' ']).unwrap_or(rest);
    let (clock, offset) = if rest.is_empty() {
        ("00:00:00", 0)
    } else if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (c, z) = rest.split_at(pos);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let mut zp = z.get(1..)?.split(':');
        let zh: i64 = num(zp.next()?)?;
        let zm: i64 = zp.next().map_or(Some(0), num)?;
        (c, sign * (zh * 3600 + zm * 60))
    } else {
        (rest, 0)
    };
    let mut cp = clock.split(':');
    let h: i64 = num(cp.next()?)?;
    let mi: i64 = num(cp.next()?)?;
    let sec: f64 = cp.next().map_or(Some(0.0), num)?;
    if h > 23 || mi > 59 || !(0.0..61.0).contains(&sec) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + sec as i64 - offset)
}

/// A moment given either as an offset in hours from `start` (`20`, `20.5h`, `+20h`) or as a
/// date-time ([`parse_datetime`]). Returns Unix seconds.
pub fn parse_moment(s: &str, start: i64) -> Option<i64> {
    let t = s.trim();
    let hours = t.strip_suffix(['h', 'H']).unwrap_or(t);
    let hours = hours.strip_prefix('+').unwrap_or(hours);
    if let Ok(h) = hours.parse::<f64>() {
        if h.is_finite() {
            return Some(start + (h * 3600.0).round() as i64);
        }
    }
    parse_datetime(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(
            parse_datetime("2024-02-17T20:00:00+05:00"),
            Some(1_708_182_000)
        );
        assert_eq!(parse_datetime("2024-02-17 15:00Z"), Some(1_708_182_000));
        assert_eq!(rfc3339_s(1_708_182_000), "2024-02-17T15:00:00Z");
        assert_eq!(
            rfc3339_us(1_708_182_000_000_001),
            "2024-02-17T15:00:00.000001Z"
        );
        assert_eq!(parse_moment("20h", 100), Some(100 + 72_000));
        assert_eq!(parse_moment("1.5", 0), Some(5_400));
        assert_eq!(parse_moment("nonsense", 0), None);
        assert_eq!(parse_datetime("2024-13-01T00:00Z"), None);
    }
}
