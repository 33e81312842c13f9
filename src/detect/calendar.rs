//! Block calendar: known platform blocks, built in with their sources, plus the user's own.
//!
//! The user file is CSV, one event a line: `country,platform,start,end,method,source[,note]`.
//! - `country`: ISO 3166-1 alpha-2 code (`PK`); stored upper case.
//! - `platform`: platform token (`x`, `instagram`...); several joined with `;`; stored lower case.
//! - `start`, `end`: UTC `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]` with an optional `Z` or
//!   `±HH:MM` offset (a space may replace the `T`). `end` may be empty (open or unknown end).
//! - `method`: how it was done (block, throttling, SNI filtering...), free text, may be empty.
//! - `source`: where the fact comes from (a URL); required.
//! - `note`: optional free text.
//!
//! Fields may be quoted with `"` (a doubled `""` inside is a quote). Blank lines and lines
//! starting with `#` are skipped; a first line starting with `country` is a header.

use serde::{Deserialize, Serialize};

/// One known (or user-declared) block of a platform in a country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEvent {
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: String,
    /// Platform token(s), lower case, `;`-separated.
    pub platform: String,
    /// Start (UTC ns since the epoch).
    pub start_ts: i64,
    /// End (UTC ns), `None` when open or unknown.
    pub end_ts: Option<i64>,
    /// How the block was done, as reported.
    pub method: String,
    /// Source of the facts (URL).
    pub source: String,
    /// Extra context (precision of the start time, other sources).
    pub note: String,
}

impl BlockEvent {
    /// Short label, e.g. `PK x 2024-02-17T17:00:00Z`.
    pub fn label(&self) -> String {
        format!(
            "{} {} {}",
            self.country,
            self.platform,
            format_utc(self.start_ts)
        )
    }

    /// Whether the event concerns `platform` (one of its `;`-separated tokens, case-insensitive).
    pub fn has_platform(&self, platform: &str) -> bool {
        self.platform
            .split(';')
            .any(|p| p.trim().eq_ignore_ascii_case(platform.trim()))
    }
}

/// A bad calendar line: which line (1-based) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("events file{}: {message}", if *.line > 0 { format!(" line {}", .line) } else { String::new() })]
pub struct CalendarError {
    /// 1-based line number (0 when the problem is a TOML event's field, named in `message`).
    pub line: usize,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Built-in events as CSV, in the user file format. Times are the best public estimate of when
/// the block took effect (local times converted to UTC, the conversion in the note); a date
/// without a time means the hour is not known. Facts from the cited pages.
pub const BUILTIN_EVENTS_CSV: &str = r#"country,platform,start,end,method,source,note
PK,x,2024-02-17T17:00Z,2025-05-07,national block (restricted on all major ISPs; access via VPN only),https://www.arabnews.pk/node/2468056,"Went down 17 Feb 2024 (Downdetector reports from 16:45 PKT = 11:45 UTC; NetBlocks confirmed the national-scale restriction that evening; ~17:00 UTC per issue 5); restored 7 May 2025: https://www.thenews.com.pk/amp/1309487-authorities-lift-year-long-ban-on-social-media-site-x"
PK,x;facebook;youtube;whatsapp,2023-05-09T15:00Z,,platform blocks by PTA on Interior Ministry order + mobile broadband suspension,https://www.nation.com.pk/09-May-2023/social-media-internet-services-suspended-across-pakistan,"After Imran Khan's arrest; curbs seen from about 20:00 PKT (15:00 UTC); briefly restored 12 May and blocked again 13 May (https://www.brecorder.com/news/40241960/facebook-youtube-twitter-down-again); end not pinned"
BR,x,2024-08-30,2024-10-08,court-ordered suspension enforced by ISPs (Anatel),https://www.ctvnews.ca/world/elon-musk-s-x-to-be-reinstated-in-brazil-after-complying-with-supreme-court-demands-1.7066793,"Order of 30 Aug 2024; ISPs blocked from the night of 30-31 Aug (https://dunyanews.tv/en/World/834922-brazils-supreme-court-confirms-x-suspension); restoration authorised 8 Oct 2024"
VE,x,2024-08-09T01:00Z,,block ordered via CONATEL (announced as 10 days),https://www.thehindu.com/news/international/venezuelas-maduro-signs-decree-blocking-x-access-for-10-days/article68504145.ece/amp/,"Announced 8 Aug 2024; blocking from 21:00 VET (UTC-4) that night (https://agoraalagoas.com/?p=41489); still blocked after the 10 days"
TR,x,2023-02-08,2023-02-09T02:00Z,SNI filtering on TTNet and Turkcell then other ISPs (NetBlocks),https://www.cnbc.com/2023/02/09/twitter-restored-in-turkey-after-meeting-with-government-officials.html,"Two days after the 6 Feb earthquakes; blocked at least 12 h, accessible again about 02:00 GMT 9 Feb (https://spacedaily.com/reports/Twitter_back_online_in_Turkey_after_block_999.html)"
TR,instagram,2024-08-02,2024-08-10,access block by the ICT Authority (BTK),https://arynews.tv/instagram-unblocked-in-turkiye-after-nine-days/,"Blocked from the morning of 2 Aug 2024; restored 10 Aug after nine days"
RU,x,2021-03-10T07:00Z,,throttling (100% of mobile and 50% of fixed devices; photos and videos),https://news.yahoo.com/russian-government-websites-down-amid-094943279.html,"Roskomnadzor announced it on the morning of 10 Mar 2021 (about 10:00 MSK = 07:00 UTC); fixed-line throttling eased later in 2021, end not pinned"
RU,facebook,2022-03-04,,block by Roskomnadzor,https://www.vice.com/en/article/akva3g/russia-says-it-will-block-facebook,"Decision announced 4 Mar 2022"
RU,x,2022-03-04,,block by Roskomnadzor,https://dig.watch/updates/russia-blocks-facebook-and-twitter,"Blocked alongside Facebook after the invasion of Ukraine"
RU,instagram,2022-03-13T21:00Z,,block by Roskomnadzor,http://www.today.az/news/regions/217103.html,"From 00:00 MSK 14 Mar 2022 (21:00 UTC 13 Mar), announced 11 Mar"
IR,instagram;whatsapp,2022-09-21,,nation-wide platform blocks amid mobile shutdowns (NetBlocks),https://www.i24news.tv/en/news/middle-east/iran-eastern-states/1663842163-iran-curbs-internet-access-as-protest-death-toll-rises,"Instagram blocked from the evening of Wed 21 Sep 2022, WhatsApp disrupted; Mahsa Amini protests"
NG,x,2021-06-05,2022-01-12T23:00Z,indefinite suspension enforced by ISPs,https://en.wikipedia.org/wiki/Blocking_of_Twitter_in_Nigeria,"Lifted from 00:00 WAT 13 Jan 2022 (23:00 UTC 12 Jan): https://techpadi.africa/2022/01/twitterban-nigerian-government-lifts-twitter-ban"
MU,facebook;instagram;tiktok;x,2024-11-01,2024-11-02,regulator ordered ISPs to suspend social media until 11 Nov,https://www.jpost.com/breaking-news/article-827120,"Lifted after about 24 h on Sat 2 Nov 2024 (https://www.krone.at/3580873)"
"#;

/// The built-in calendar (parsed from [`BUILTIN_EVENTS_CSV`]).
pub fn builtin_events() -> Vec<BlockEvent> {
    // The built-in text is tested to parse; never panic regardless.
    parse_events_csv(BUILTIN_EVENTS_CSV).unwrap_or_default()
}

/// Parses the calendar CSV format (module docs). Stops at the first bad line.
pub fn parse_events_csv(text: &str) -> Result<Vec<BlockEvent>, CalendarError> {
    let mut out = Vec::new();
    let mut seen_content = false;
    for (n, raw) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let err = |message: String| CalendarError {
            line: line_no,
            message,
        };
        let fields = crate::csv_line::split_csv_line(line).map_err(err)?;
        let first = !seen_content;
        seen_content = true;
        if first
            && fields
                .first()
                .is_some_and(|f| f.trim().eq_ignore_ascii_case("country"))
        {
            continue;
        }
        if fields.len() < 6 || fields.len() > 7 {
            return Err(err(format!(
                "expected 6 or 7 fields (country,platform,start,end,method,source[,note]), found {}",
                fields.len()
            )));
        }
        let f = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
        out.push(event_from_fields(f(0), f(1), f(2), f(3), f(4), f(5), f(6)).map_err(err)?);
    }
    Ok(out)
}

/// One event from its field values (trimmed); `Err` names the field.
fn event_from_fields(
    country: &str,
    platform: &str,
    start: &str,
    end: &str,
    method: &str,
    source: &str,
    note: &str,
) -> Result<BlockEvent, String> {
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "country: expected a two-letter ISO code, found {country:?}"
        ));
    }
    if platform.is_empty() || platform.split(';').any(|p| p.trim().is_empty()) {
        return Err(format!(
            "platform: expected one or more `;`-separated tokens, found {platform:?}"
        ));
    }
    let start_ts = parse_timestamp(start).map_err(|m| format!("start: {m}"))?;
    let end_ts = if end.is_empty() {
        None
    } else {
        Some(parse_timestamp(end).map_err(|m| format!("end: {m}"))?)
    };
    if end_ts.is_some_and(|e| e < start_ts) {
        return Err(format!("end {end} is before start {start}"));
    }
    if source.is_empty() {
        return Err("source: required (where the facts come from, e.g. a URL)".to_string());
    }
    Ok(BlockEvent {
        country: country.to_ascii_uppercase(),
        platform: platform
            .split(';')
            .map(|p| p.trim().to_lowercase())
            .collect::<Vec<_>>()
            .join(";"),
        start_ts,
        end_ts,
        method: method.to_string(),
        source: source.to_string(),
        note: note.to_string(),
    })
}

/// One `[[event]]` table of an events TOML file (field meanings as in the CSV format).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEvent {
    country: String,
    platform: String,
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    method: String,
    source: String,
    #[serde(default)]
    note: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEvents {
    #[serde(default)]
    event: Vec<TomlEvent>,
}

/// Parses user events in TOML: `[[event]]` tables with `country`, `platform`, `start`,
/// optional `end`, `method`, `source` and optional `note` (strings, as in the CSV format).
/// Errors give the line (for syntax) or the event's index and field.
pub fn parse_events_toml(text: &str) -> Result<Vec<BlockEvent>, CalendarError> {
    let doc: TomlEvents = toml::from_str(text).map_err(|e| CalendarError {
        line: e.span().map_or(0, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        }),
        message: e.message().to_string(),
    })?;
    doc.event
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let t = |s: &str| s.trim().to_string();
            event_from_fields(
                &t(&e.country),
                &t(&e.platform),
                &t(&e.start),
                &t(&e.end),
                &t(&e.method),
                &t(&e.source),
                &t(&e.note),
            )
            .map_err(|m| CalendarError {
                line: 0,
                message: format!("event[{i}]: {m}"),
            })
        })
        .collect()
}

/// User events in either format: TOML when the text has an `[[event]]` table, else CSV.
pub fn parse_events(text: &str) -> Result<Vec<BlockEvent>, CalendarError> {
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("[[event]]"))
    {
        parse_events_toml(text)
    } else {
        parse_events_csv(text)
    }
}

pub use crate::civil::{civil_from_days, days_from_civil, format_seconds as format_utc};

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

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH:MM]` as UTC nanoseconds.
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
                let padded = format!("{frac:0<9}");
                frac_nanos = padded.parse::<i64>().map_err(|_| bad())?;
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
    fn toml_events_parse_like_csv_and_name_bad_fields() {
        let toml = r#"
# My own events
[[event]]
country = "pk"
platform = "x"
start = "2024-02-17T17:00Z"
end = "2025-05-07"
method = "national block"
source = "https://example.org/report"

[[event]]
country = "TR"
platform = "instagram"
start = "2024-08-02"
source = "https://example.org/tr"
"#;
        let events = parse_events(toml).expect("valid TOML");
        let csv = parse_events(
            "PK,x,2024-02-17T17:00Z,2025-05-07,national block,https://example.org/report\nTR,instagram,2024-08-02,,,https://example.org/tr\n",
        )
        .expect("valid CSV");
        assert_eq!(events, csv);
        assert_eq!(events[0].country, "PK");
        assert_eq!(events[1].end_ts, None);
        let bad = parse_events_toml("[[event]]\ncountry = \"PK\"\nplatform = \"x\"\nstart = \"yesterday\"\nsource = \"s\"\n")
            .unwrap_err();
        assert!(bad.message.starts_with("event[0]: start:"), "{bad}");
        let unknown = parse_events_toml("[[event]]\ncountri = \"PK\"\n").unwrap_err();
        assert!(unknown.message.contains("countri"), "{unknown}");
        assert_eq!(unknown.line, 2);
    }
    use proptest::prelude::*;

    #[test]
    fn timestamps_parse_and_format() {
        assert_eq!(parse_timestamp("1970-01-01"), Ok(0));
        assert_eq!(
            parse_timestamp("2024-02-17T17:00Z").map(format_utc),
            Ok("2024-02-17T17:00:00Z".to_string())
        );
        assert_eq!(
            parse_timestamp("2024-02-17 22:00:00+05:00").map(format_utc),
            Ok("2024-02-17T17:00:00Z".to_string())
        );
        assert_eq!(
            parse_timestamp("2024-08-08T21:00-04:00").map(format_utc),
            Ok("2024-08-09T01:00:00Z".to_string())
        );
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.000000").map(format_utc),
            Ok("2014-04-10T07:15:00Z".to_string())
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

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn builtin_calendar_parses_and_has_the_required_events() {
        let events = parse_events_csv(BUILTIN_EVENTS_CSV).expect("built-in calendar parses");
        assert_eq!(builtin_events(), events);
        let find = |c: &str, p: &str, start: &str| {
            let ts = parse_timestamp(start).unwrap();
            events.iter().find(|e| {
                e.country == c
                    && e.has_platform(p)
                    && e.start_ts / 86_400_000_000_000 == ts / 86_400_000_000_000
            })
        };
        let pk = find("PK", "x", "2024-02-17").expect("Pakistan X");
        assert_eq!(format_utc(pk.start_ts), "2024-02-17T17:00:00Z");
        assert_eq!(
            pk.end_ts.map(format_utc).as_deref(),
            Some("2025-05-07T00:00:00Z")
        );
        assert!(find("PK", "youtube", "2023-05-09").is_some());
        assert!(find("BR", "x", "2024-08-30")
            .is_some_and(|e| e.end_ts == parse_timestamp("2024-10-08").ok()));
        assert!(find("VE", "x", "2024-08-09").is_some());
        assert!(find("TR", "x", "2023-02-08").is_some());
        assert!(find("TR", "instagram", "2024-08-02").is_some());
        assert!(find("RU", "x", "2021-03-10").is_some());
        assert!(find("RU", "facebook", "2022-03-04").is_some());
        assert!(find("RU", "instagram", "2022-03-13").is_some());
        assert!(find("IR", "whatsapp", "2022-09-21").is_some());
        assert!(find("NG", "x", "2021-06-05").is_some());
        assert!(find("MU", "facebook", "2024-11-01").is_some());
        for e in &events {
            assert!(
                e.source.starts_with("http"),
                "{} has no source URL",
                e.label()
            );
            assert!(e.end_ts.is_none_or(|end| end >= e.start_ts));
        }
    }

    #[test]
    fn user_csv_good_lines() {
        let text = "\u{feff}country,platform,start,end,method,source\r\n\
                    # a comment\n\
                    \n\
                    pk , X;YouTube ,2024-02-17T17:00Z,,block,\"https://example.org/a,b\"\n\
                    TR,instagram,2024-08-02,2024-08-10,\"SNI \"\"filtering\"\"\",https://example.org/b,nine days\n";
        let ev = parse_events_csv(text).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].country, "PK");
        assert_eq!(ev[0].platform, "x;youtube");
        assert!(ev[0].has_platform("YouTube"));
        assert_eq!(ev[0].end_ts, None);
        assert_eq!(ev[0].source, "https://example.org/a,b");
        assert_eq!(ev[1].method, "SNI \"filtering\"");
        assert_eq!(ev[1].note, "nine days");
        assert_eq!(parse_events_csv(""), Ok(vec![]));
    }

    #[test]
    fn user_csv_bad_lines_say_line_and_field() {
        let cases = [
            ("PK,x,2024-02-17,,block", 1, "expected 6 or 7 fields"),
            (
                "country,platform,start,end,method,source\nPK,x,2024-02-30,,block,src",
                2,
                "start: no such date",
            ),
            ("PK,x,2024-02-17,yesterday,block,src", 1, "end: expected"),
            ("PK,x,2024-02-17,2024-01-01,block,src", 1, "is before start"),
            (
                "Pakistan,x,2024-02-17,,block,src",
                1,
                "country: expected a two-letter ISO code",
            ),
            ("PK,,2024-02-17,,block,src", 1, "platform:"),
            ("PK,x;,2024-02-17,,block,src", 1, "platform:"),
            ("PK,x,2024-02-17,,block,", 1, "source: required"),
            ("\n\nPK,x,2024-02-17,,block,\"src", 3, "unterminated quote"),
            (
                "PK,x,2024-02-17,,bl\"ock,src",
                1,
                "a quote may only open a field",
            ),
            (
                "PK,x,2024-02-17,,\"block\"x,src",
                1,
                "text after the closing quote",
            ),
        ];
        for (text, line, want) in cases {
            let e = parse_events_csv(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(want), "{text:?}: {e}");
            assert!(e
                .to_string()
                .starts_with(&format!("events file line {line}: ")));
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "[ -~\n\r\"]{0,300}") {
            let _ = parse_events_csv(&text);
            let _ = parse_timestamp(&text);
        }

        #[test]
        fn format_never_panics(ts in any::<i64>()) {
            let _ = format_utc(ts);
        }
    }
}
