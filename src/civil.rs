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
}
