//! Civil (proleptic Gregorian) dates and RFC 3339 UTC text for Unix times: the one place the
//! calendar arithmetic lives (after H. Hinnant's `days_from_civil` / `civil_from_days`, with
//! 400-year eras of 146 097 days and years starting in March).

/// Days since 1970-01-01 of a proleptic Gregorian date (the usual era-based civil calendar
/// arithmetic: 400-year eras of 146 097 days, years starting in March).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 -> (year, month, day); inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 UTC with microseconds, e.g. `2024-02-17T17:02:03.123456Z`.
pub fn format_ts(nanos: i64) -> String {
    match ts_digits(nanos) {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => {
            let (y, m, d, sod, micros) = ts_parts(nanos);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                sod / 3600,
                (sod % 3600) / 60,
                sod % 60
            )
        }
    }
}

/// Length of [`ts_digits`]' output: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const TS_LEN: usize = 27;

/// [`format_ts`] as fixed-width ASCII on the stack, for years 0..=9999 (`None` outside them).
/// Hot in flow output: digits placed without the formatting machinery or an allocation.
pub fn ts_digits(nanos: i64) -> Option<[u8; TS_LEN]> {
    let (y, m, d, sod, micros) = ts_parts(nanos);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (0..width).rev() {
            b[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, i64::from(m));
    put(8, 2, i64::from(d));
    put(11, 2, sod / 3600);
    put(14, 2, (sod % 3600) / 60);
    put(17, 2, sod % 60);
    put(20, 6, micros);
    Some(b)
}

/// (year, month, day, second of day, microseconds) of a nanosecond UTC timestamp.
fn ts_parts(nanos: i64) -> (i64, u32, u32, i64, i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let micros = nanos.rem_euclid(1_000_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, sod, micros)
}

/// Formats UTC ns as `YYYY-MM-DDTHH:MM:SSZ` (sub-second part dropped).
pub fn format_seconds(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn num(s: &str, what: &str, max: u32) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what}: expected digits, found {s:?}"));
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{what}: out of range: {s:?}"))?;
    if v > max {
        return Err(format!("{what}: {v} is out of range (max {max})"));
    }
    Ok(v)
}

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH:MM]` as UTC nanoseconds: the one timestamp
/// parser, for event calendars, NAB series, flow logs (nfdump's `YYYY-MM-DD HH:MM:SS.fff`) and
/// the stats tables read back (RFC 3339 as [`format_ts`] writes it). The error names the field.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || format!("expected YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM], found {s:?}");
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(p) => (s.get(..p).ok_or_else(bad)?, s.get(p + 1..).ok_or_else(bad)?),
        None => (s, ""),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let year = i64::from(num(y, "year", 9999)?);
    let month = num(m, "month", 12)?;
    let day = num(d, "day", 31)?;
    if month == 0 || day == 0 || day > days_in_month(year, month) {
        return Err(format!("no such date: {date}"));
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    let mut frac_nanos = 0i64;
    let rest = rest.trim();
    if !rest.is_empty() {
        // Split off a zone suffix.
        let (time, offset) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
            (t, 0i64)
        } else if let Some(p) = rest.rfind(['+', '-']) {
            let (t, off) = rest.split_at(p);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let off = off.get(1..).unwrap_or("");
            let (oh, om) = off
                .split_once(':')
                .ok_or_else(|| format!("offset: expected ±HH:MM, found {off:?}"))?;
            (
                t,
                sign * (i64::from(num(oh, "offset hours", 23)?) * 3600
                    + i64::from(num(om, "offset minutes", 59)?) * 60),
            )
        } else {
            (rest, 0)
        };
        let mut tp = time.split(':');
        let hh = num(tp.next().unwrap_or(""), "hour", 23)?;
        let mm = num(tp.next().ok_or_else(bad)?, "minute", 59)?;
        let mut ss = 0;
        if let Some(sec) = tp.next() {
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            ss = num(whole, "second", 60)?;
            if !frac.is_empty() {
                if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("fraction of a second: {frac:?}"));
                }
                // Nine digits or fewer: scaled to nanoseconds without a padded copy (flow logs
                // parse two stamps a line).
                let scale = 10i64.pow(9 - frac.len() as u32);
                frac_nanos = frac.parse::<i64>().map_err(|_| bad())? * scale;
            }
        }
        if tp.next().is_some() {
            return Err(bad());
        }
        secs += i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss) - offset;
    }
    secs.checked_mul(NANOS_PER_SEC)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_format() {
        for days in [-719_468, -1, 0, 19_770, 47_482, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(
            format_seconds(1_708_189_200_999_999_999),
            "2024-02-17T17:00:00Z"
        );
    }

    #[test]
    fn timestamps_parse_and_format() {
        assert_eq!(parse_timestamp("1970-01-01"), Ok(0));
        for (text, utc) in [
            ("2024-02-17T17:00Z", "2024-02-17T17:00:00Z"),
            ("2024-02-17 22:00:00+05:00", "2024-02-17T17:00:00Z"),
            ("2024-08-08T21:00-04:00", "2024-08-09T01:00:00Z"),
            // nfdump's CSV and the stats tables read back (fractions kept to the nanosecond).
            ("2014-04-10 07:15:00.000000", "2014-04-10T07:15:00Z"),
            ("2024-02-17T17:00:00.123456Z", "2024-02-17T17:00:00Z"),
        ] {
            assert_eq!(
                parse_timestamp(text).map(format_seconds),
                Ok(utc.into()),
                "{text}"
            );
        }
        assert_eq!(
            parse_timestamp("2000-03-01T00:00:00.001"),
            Ok(951_868_800_001_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-02-17T17:00:00.123456789Z").map(|n| n % NANOS_PER_SEC),
            Ok(123_456_789)
        );
        assert_eq!(
            parse_timestamp("2000-02-29"),
            Ok(951_782_400 * NANOS_PER_SEC)
        );
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Ok(-NANOS_PER_SEC));
        for bad in [
            "",
            "2024",
            "2024-13-01",
            "2023-02-29",
            "2024-02-30",
            "24-02-01",
            "2024-02-17T25:00",
            "2024-02-17T10",
            "2024-02-17Tab:cd",
            "2024-02-17T10:00+0500",
            "2024-02-17T10:00:00:00",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
