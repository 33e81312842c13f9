//! Civil time <-> Unix time for the scenario clock (proleptic Gregorian, after H. Hinnant's
//! `days_from_civil` algorithm), and the `--block-start` syntax.

/// Days since 1970-01-01 for a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date for days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for microseconds since the epoch.
pub fn rfc3339_us(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        us % 1_000_000
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn rfc3339_s(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
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
