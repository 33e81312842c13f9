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
//! Five more optional columns carry the VPN-demand rise published at the time of the event
//! (leave them off, or empty, when there is none):
//! `...,note,demand_percent,demand_text,demand_by,demand_baseline,demand_source`.
//! - `demand_percent`: the largest published increase in percent (`131` or `+131%` for +131%,
//!   i.e. demand 2.31 times its baseline, to set beside the measured peak ratio); a number above
//!   -100, may be empty when the figure is not a number ("doubled").
//! - `demand_text`: the figure as published (dates, several days); required with a figure.
//! - `demand_by`: who measured it (Top10VPN, Proton VPN...).
//! - `demand_baseline`: what the rise is relative to, as published.
//! - `demand_source`: where it was published (a URL); required with a figure.
//!
//! So a line has 6, 7 or up to 12 fields. Fields may be quoted with `"` (a doubled `""` inside
//! is a quote). Blank lines and lines starting with `#` are skipped; a first line starting with
//! `country` is a header.

use serde::{Deserialize, Serialize};

/// The rise in VPN demand published at the time of an event (module docs, `demand_*` columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpnDemand {
    /// Largest published increase in percent (`131.0` = +131 %); `None` when not a number.
    pub peak_percent: Option<f64>,
    /// The figure as published.
    pub text: String,
    /// Who measured it.
    pub measured_by: String,
    /// What the increase is relative to, as published.
    pub baseline: String,
    /// Where it was published (URL).
    pub source: String,
}

impl VpnDemand {
    /// The published peak as a ratio to its baseline (`+131 %` is 2.31), comparable with the
    /// pre-event ratio measured from a capture.
    pub fn peak_ratio(&self) -> Option<f64> {
        self.peak_percent.map(|p| 1.0 + p / 100.0)
    }

    /// Short form for tables: `+131% (Top10VPN)`, or the text when there is no number.
    pub fn short(&self) -> String {
        match self.peak_percent {
            Some(p) if self.measured_by.is_empty() => format!("{p:+}%"),
            Some(p) => format!("{p:+}% ({})", self.measured_by),
            None => self.text.clone(),
        }
    }
}

/// One known (or user-declared) block of a platform in a country.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// VPN demand published at the time, when known.
    #[serde(default)]
    pub vpn_demand: Option<VpnDemand>,
}

/// `source` of the events made from blocks detected in the capture itself (country `XX`,
/// unknown).
pub const DETECTED_SOURCE: &str = "tunnelwatch: detected in this capture";

impl BlockEvent {
    /// Short label, e.g. `PK x 2024-02-17T17:00:00Z`; `detected x 2024-02-17T15:00:00Z` for a
    /// block detected in the capture ([`DETECTED_SOURCE`]), whose country is not known.
    pub fn label(&self) -> String {
        let place = if self.source == DETECTED_SOURCE {
            "detected"
        } else {
            &self.country
        };
        format!("{place} {} {}", self.platform, format_utc(self.start_ts))
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
/// without a time means the hour is not known. Facts from the cited pages. The VPN-demand
/// figures are as the cited pages published them (several measurers and baselines: Top10VPN's
/// daily demand against a trailing average is the one closest to the pre-event ratio; provider
/// sign-ups and web traffic are not comparable with it); Russia's 2021 throttling has none.
pub const BUILTIN_EVENTS_CSV: &str = r#"country,platform,start,end,method,source,note,demand_percent,demand_text,demand_by,demand_baseline,demand_source
PK,x,2024-02-17T17:00Z,2025-05-07,national block (restricted on all major ISPs; access via VPN only),https://www.arabnews.pk/node/2468056,"Went down 17 Feb 2024 (Downdetector reports from 16:45 PKT = 11:45 UTC; NetBlocks confirmed the national-scale restriction that evening; ~17:00 UTC per issue 5); restored 7 May 2025: https://www.thenews.com.pk/amp/1309487-authorities-lift-year-long-ban-on-social-media-site-x",131,"+131% on Sun 18 Feb 2024, the first full day of the X outage; +91% on Mon 19 Feb",Top10VPN,average demand (as reported),https://forbesafrica.com/current-affairs/2024/02/23/x-outage-in-pakistan-triggers-surge-in-vpn-use/
PK,x;facebook;youtube;whatsapp,2023-05-09T15:00Z,,platform blocks by PTA on Interior Ministry order + mobile broadband suspension,https://www.nation.com.pk/09-May-2023/social-media-internet-services-suspended-across-pakistan,"After Imran Khan's arrest; curbs seen from about 20:00 PKT (15:00 UTC); briefly restored 12 May and blocked again 13 May (https://www.brecorder.com/news/40241960/facebook-youtube-twitter-down-again); end not pinned",846,"+311% on 9 May 2023; +846% by the late afternoon of 10 May",Top10VPN,average daily demand of the preceding 28 days,https://www.fugenservices.com/vpn-demand-increases-by-846-in-pakistan-following-social-media-blockage/
BR,x,2024-08-30,2024-10-08,court-ordered suspension enforced by ISPs (Anatel),https://www.ctvnews.ca/world/elon-musk-s-x-to-be-reinstated-in-brazil-after-complying-with-supreme-court-demands-1.7066793,"Order of 30 Aug 2024; ISPs blocked from the night of 30-31 Aug (https://dunyanews.tv/en/World/834922-brazils-supreme-court-confirms-x-suspension); restoration authorised 8 Oct 2024",1600,"+469% in the hours after the block; +1600% on the next day, 31 Aug 2024",vpnMentor,not stated,https://sociedadeonline.com/uso-de-vpn-no-brasil-aumenta-1600-apos-bloqueio-do-x/
VE,x,2024-08-09T01:00Z,,block ordered via CONATEL (announced as 10 days),https://www.thehindu.com/news/international/venezuelas-maduro-signs-decree-blocking-x-access-for-10-days/article68504145.ece/amp/,"Announced 8 Aug 2024; blocking from 21:00 VET (UTC-4) that night (https://agoraalagoas.com/?p=41489); still blocked after the 10 days",494,"+494% starting Thu 8 Aug 2024; demand kept growing to its peak on Fri 9 Aug",vpnMentor,not stated,https://www.thehindu.com/sci-tech/technology/vpn-usage-surges-by-494-in-venezuela-after-access-to-x-is-blocked/article68524021.ece/amp/
TR,x,2023-02-08,2023-02-09T02:00Z,SNI filtering on TTNet and Turkcell then other ISPs (NetBlocks),https://www.cnbc.com/2023/02/09/twitter-restored-in-turkey-after-meeting-with-government-officials.html,"Two days after the 6 Feb earthquakes; blocked at least 12 h, accessible again about 02:00 GMT 9 Feb (https://spacedaily.com/reports/Twitter_back_online_in_Turkey_after_block_999.html)",30000,"peak in hourly sign-ups over 30,000% above normal levels; usage still ten times the usual Turkish baseline after the restore",Proton VPN,normal levels of hourly sign-ups (not a demand index),https://nybreaking.com/vpn-downloads-soar-in-turkey-as-government-blocks-twitter/amp
TR,instagram,2024-08-02,2024-08-10,access block by the ICT Authority (BTK),https://arynews.tv/instagram-unblocked-in-turkiye-after-nine-days/,"Blocked from the morning of 2 Aug 2024; restored 10 Aug after nine days",4500,"+4500% increase over baseline (Turkey, 3 Aug 2024: Instagram blocked by the BTK)",Proton VPN,Proton VPN's baseline (sign-ups),https://protonvpn.com/es-419/internet-censorship-observatory/2024
RU,x,2021-03-10T07:00Z,,throttling (100% of mobile and 50% of fixed devices; photos and videos),https://news.yahoo.com/russian-government-websites-down-amid-094943279.html,"Roskomnadzor announced it on the morning of 10 Mar 2021 (about 10:00 MSK = 07:00 UTC); fixed-line throttling eased later in 2021, end not pinned"
RU,facebook,2022-03-04,,block by Roskomnadzor,https://www.vice.com/en/article/akva3g/russia-says-it-will-block-facebook,"Decision announced 4 Mar 2022",1092,"peak +1,092% on 5 Mar 2022, the day after Facebook was blocked (+1,033% before)",Top10VPN,daily average over the week before the 24 Feb 2022 invasion,https://theepochtimes.com/world/demand-for-vpns-surge-in-russia-to-bypass-countrywide-internet-news-blockade-4325974
RU,x,2022-03-04,,block by Roskomnadzor,https://dig.watch/updates/russia-blocks-facebook-and-twitter,"Blocked alongside Facebook after the invasion of Ukraine",1092,"peak +1,092% on 5 Mar 2022, the day after Facebook and Twitter were blocked (+1,033% before)",Top10VPN,daily average over the week before the 24 Feb 2022 invasion,https://theepochtimes.com/world/demand-for-vpns-surge-in-russia-to-bypass-countrywide-internet-news-blockade-4325974
RU,instagram,2022-03-13T21:00Z,,block by Roskomnadzor,http://www.today.az/news/regions/217103.html,"From 00:00 MSK 14 Mar 2022 (21:00 UTC 13 Mar), announced 11 Mar",2088,"+1,394% on Fri 11 Mar, +1,814% on Sat 12 Mar, peak +2,088% on Sun 13 Mar 2022 (the day before the block took effect)",Top10VPN,"the baseline (for Russia in 2022 Top10VPN used the daily average of the week before the invasion)",https://techcircle.in/2022/03/15/-russia-sees-demand-for-private-networks-up-2-088-after-tightened-internet-norms
IR,instagram;whatsapp,2022-09-21,,nation-wide platform blocks amid mobile shutdowns (NetBlocks),https://www.i24news.tv/en/news/middle-east/iran-eastern-states/1663842163-iran-curbs-internet-access-as-protest-death-toll-rises,"Instagram blocked from the evening of Wed 21 Sep 2022, WhatsApp disrupted; Mahsa Amini protests",3082,"+2,164% on 22 Sep 2022, the day after the blocks, vs the preceding 28 days (https://news-24.fr/lutilisation-du-vpn-monte-en-fleche-en-iran-alors-que-les-citoyens-naviguent-dans-la-censure-dinternet/); +3,082% at its peak",Top10VPN,average daily demand of the preceding 28 days,https://beta.cnbctv18.com/technology/vpn-demand-surges-across-the-world-finds-report-14890111.htm
NG,x,2021-06-05,2022-01-12T23:00Z,indefinite suspension enforced by ISPs,https://en.wikipedia.org/wiki/Blocking_of_Twitter_in_Nigeria,"Lifted from 00:00 WAT 13 Jan 2022 (23:00 UTC 12 Jan): https://techpadi.africa/2022/01/twitterban-nigerian-government-lifts-twitter-ban",250,"ExpressVPN.com web traffic from Nigeria up more than 200%; biggest spike on 'Saturday, June 6th' (sic; Saturday was 5 June), around 250% above the day before",ExpressVPN,"its website's traffic from Nigeria the day before (not a demand index)",https://osprimetv.com/as-nigeria-bans-twitter-express-vpn-records-200-increase-in-web-traffic-harold-li
MU,facebook;instagram;tiktok;x,2024-11-01,2024-11-02,regulator ordered ISPs to suspend social media until 11 Nov,https://www.jpost.com/breaking-news/article-827120,"Lifted after about 24 h on Sat 2 Nov 2024 (https://www.krone.at/3580873)",9547,"+9,547% on 1 Nov 2024 vs the daily average over the past 28 days",Top10VPN,daily average over the preceding 28 days,https://lbnntv.com/mauritius-lifts-social-media-ban
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
        if fields.len() < 6 || fields.len() > 12 {
            return Err(err(format!(
                "expected 6 to 12 fields (country,platform,start,end,method,source[,note\
                 [,demand_percent,demand_text,demand_by,demand_baseline,demand_source]]), found {}",
                fields.len()
            )));
        }
        let f = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
        let raw = RawEvent {
            country: f(0),
            platform: f(1),
            start: f(2),
            end: f(3),
            method: f(4),
            source: f(5),
            note: f(6),
            demand_percent: f(7),
            demand_text: f(8),
            demand_by: f(9),
            demand_baseline: f(10),
            demand_source: f(11),
        };
        out.push(event_from_fields(&raw).map_err(err)?);
    }
    Ok(out)
}

/// An event's field values as written (trimmed), before checking.
struct RawEvent<'a> {
    country: &'a str,
    platform: &'a str,
    start: &'a str,
    end: &'a str,
    method: &'a str,
    source: &'a str,
    note: &'a str,
    demand_percent: &'a str,
    demand_text: &'a str,
    demand_by: &'a str,
    demand_baseline: &'a str,
    demand_source: &'a str,
}

/// `demand_percent`: a plain decimal number, optionally `+`-signed and `%`-suffixed, above
/// -100 (a fall of 100 % or more has no ratio). Exponents, `inf` and `NaN` are refused.
fn parse_demand_percent(s: &str) -> Result<f64, String> {
    let bad = || {
        format!(
            "demand_percent: expected a number of percent above -100 (131 for +131%), found {s:?}"
        )
    };
    let body = s.strip_suffix('%').unwrap_or(s).trim();
    let body = body.strip_prefix('+').unwrap_or(body);
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return Err(bad());
    }
    match body.parse::<f64>() {
        Ok(v) if v.is_finite() && v > -100.0 => Ok(v),
        _ => Err(bad()),
    }
}

/// The `demand_*` fields as a [`VpnDemand`]; `None` when all are empty.
fn demand_from_fields(raw: &RawEvent<'_>) -> Result<Option<VpnDemand>, String> {
    let all = [
        raw.demand_percent,
        raw.demand_text,
        raw.demand_by,
        raw.demand_baseline,
        raw.demand_source,
    ];
    if all.iter().all(|f| f.is_empty()) {
        return Ok(None);
    }
    let peak_percent = if raw.demand_percent.is_empty() {
        None
    } else {
        Some(parse_demand_percent(raw.demand_percent)?)
    };
    if raw.demand_text.is_empty() {
        return Err(
            "demand_text: required with a VPN-demand figure (the figure as published)".to_string(),
        );
    }
    if raw.demand_source.is_empty() {
        return Err(
            "demand_source: required with a VPN-demand figure (where it was published)".to_string(),
        );
    }
    Ok(Some(VpnDemand {
        peak_percent,
        text: raw.demand_text.to_string(),
        measured_by: raw.demand_by.to_string(),
        baseline: raw.demand_baseline.to_string(),
        source: raw.demand_source.to_string(),
    }))
}

/// One event from its field values (trimmed); `Err` names the field.
fn event_from_fields(raw: &RawEvent<'_>) -> Result<BlockEvent, String> {
    let RawEvent {
        country,
        platform,
        start,
        end,
        method,
        source,
        note,
        ..
    } = *raw;
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
        vpn_demand: demand_from_fields(raw)?,
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
    #[serde(default)]
    demand_percent: Option<f64>,
    #[serde(default)]
    demand_text: String,
    #[serde(default)]
    demand_by: String,
    #[serde(default)]
    demand_baseline: String,
    #[serde(default)]
    demand_source: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlEvents {
    #[serde(default)]
    event: Vec<TomlEvent>,
}

/// Parses user events in TOML: `[[event]]` tables with `country`, `platform`, `start`,
/// optional `end`, `method`, `source` and optional `note` (strings, as in the CSV format), and
/// the optional VPN-demand keys `demand_percent` (a number), `demand_text`, `demand_by`,
/// `demand_baseline`, `demand_source`. Other keys are refused. Errors give the line (for
/// syntax) or the event's index and field.
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
            // A TOML float prints back to the digits it was read from; NaN and infinities
            // print as words, which `demand_percent` refuses like the CSV text.
            let percent = e.demand_percent.map(|p| p.to_string()).unwrap_or_default();
            let raw = RawEvent {
                country: e.country.trim(),
                platform: e.platform.trim(),
                start: e.start.trim(),
                end: e.end.trim(),
                method: e.method.trim(),
                source: e.source.trim(),
                note: e.note.trim(),
                demand_percent: &percent,
                demand_text: e.demand_text.trim(),
                demand_by: e.demand_by.trim(),
                demand_baseline: e.demand_baseline.trim(),
                demand_source: e.demand_source.trim(),
            };
            event_from_fields(&raw).map_err(|m| CalendarError {
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

pub use crate::civil::{
    civil_from_days, days_from_civil, format_seconds as format_utc, parse_timestamp,
};

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
        assert!(ev.iter().all(|e| e.vpn_demand.is_none()));
        assert_eq!(parse_events_csv(""), Ok(vec![]));
    }

    #[test]
    fn builtin_demand_figures_are_sourced() {
        let events = builtin_events();
        let with_figure: Vec<&BlockEvent> =
            events.iter().filter(|e| e.vpn_demand.is_some()).collect();
        assert!(with_figure.len() >= 12, "{}", with_figure.len());
        for e in &with_figure {
            let Some(d) = &e.vpn_demand else { continue };
            assert!(
                d.source.starts_with("https://") || d.source.starts_with("http://"),
                "{}: demand source {:?}",
                e.label(),
                d.source
            );
            assert!(!d.text.is_empty() && !d.measured_by.is_empty() && !d.baseline.is_empty());
            assert!(
                d.peak_percent.is_some_and(|p| p > 0.0),
                "{}: {:?}",
                e.label(),
                d.peak_percent
            );
            // The peak is one of the figures the text quotes.
            let p = d.peak_percent.unwrap_or_default();
            let plain = d.text.replace(',', "");
            assert!(
                plain.contains(&format!("{p}%")),
                "{}: {}",
                e.label(),
                d.text
            );
        }
        let demand = |c: &str, p: &str, day: &str| {
            let day = parse_timestamp(day).unwrap() / 86_400_000_000_000;
            events
                .iter()
                .find(|e| {
                    e.country == c && e.has_platform(p) && e.start_ts / 86_400_000_000_000 == day
                })
                .and_then(|e| e.vpn_demand.clone())
        };
        let pk = demand("PK", "x", "2024-02-17").expect("Pakistan X figure");
        assert_eq!(
            (pk.peak_percent, pk.measured_by.as_str()),
            (Some(131.0), "Top10VPN")
        );
        assert!((pk.peak_ratio().unwrap() - 2.31).abs() < 1e-12);
        assert_eq!(pk.short(), "+131% (Top10VPN)");
        assert_eq!(
            demand("PK", "youtube", "2023-05-09").and_then(|d| d.peak_percent),
            Some(846.0)
        );
        assert_eq!(
            demand("MU", "x", "2024-11-01").and_then(|d| d.peak_percent),
            Some(9547.0)
        );
        assert!(
            demand("RU", "x", "2021-03-10").is_none(),
            "no figure was found for it"
        );
    }

    fn demand_line(tail: &str) -> String {
        format!("PK,x,2024-02-17T17:00Z,,block,https://example.org/a,a note,{tail}")
    }

    #[test]
    fn demand_columns_parse() {
        let e = parse_events_csv(&demand_line(
            "+131%,\"+131% on 18 Feb, +91% on 19 Feb\",Top10VPN,28-day average,https://example.org/d",
        ))
        .unwrap();
        let d = e[0].vpn_demand.clone().expect("figure");
        assert_eq!(d.peak_percent, Some(131.0));
        assert_eq!(d.text, "+131% on 18 Feb, +91% on 19 Feb");
        assert_eq!(
            (
                d.measured_by.as_str(),
                d.baseline.as_str(),
                d.source.as_str()
            ),
            ("Top10VPN", "28-day average", "https://example.org/d")
        );
        assert_eq!(e[0].note, "a note");
        // Without a number, and with trailing columns left off.
        let e = parse_events_csv(&demand_line(",doubled,Nord,,https://example.org/n")).unwrap();
        let d = e[0].vpn_demand.clone().expect("figure");
        assert_eq!((d.peak_percent, d.peak_ratio()), (None, None));
        assert_eq!(d.short(), "doubled");
        // Empty demand columns (any number of them) mean no figure.
        for tail in ["", ",", ",,,,"] {
            let e = parse_events_csv(&demand_line(tail)).unwrap();
            assert_eq!(e[0].vpn_demand, None, "{tail:?}");
        }
        assert_eq!(
            parse_events_csv(&demand_line("-40,fell,,,https://e.org")).unwrap()[0]
                .vpn_demand
                .as_ref()
                .and_then(VpnDemand::peak_ratio),
            Some(0.6)
        );
    }

    #[test]
    fn bad_demand_values_name_the_field() {
        for percent in [
            "lots", "inf", "NaN", "1e3", "-100", "-150", "12.5.1", "+", "%", "1,5",
        ] {
            let text = demand_line(&format!("\"{percent}\",t,by,base,https://e.org"));
            let e = parse_events_csv(&text).expect_err(percent);
            assert!(
                e.message.starts_with("demand_percent:") && e.message.contains(percent),
                "{percent:?}: {e}"
            );
            assert_eq!(e.line, 1);
        }
        let e = parse_events_csv(&demand_line("131,,by,base,https://e.org")).unwrap_err();
        assert!(e.message.starts_with("demand_text: required"), "{e}");
        let e = parse_events_csv(&demand_line("131,+131%,by,base,")).unwrap_err();
        assert!(e.message.starts_with("demand_source: required"), "{e}");
        let e = parse_events_csv(&demand_line(",,Top10VPN")).unwrap_err();
        assert!(e.message.starts_with("demand_text: required"), "{e}");
    }

    #[test]
    fn toml_demand_keys_round_trip() {
        let toml = r#"
[[event]]
country = "PK"
platform = "x"
start = "2024-02-17T17:00Z"
method = "block"
source = "https://example.org/a"
note = "a note"
demand_percent = 131
demand_text = "+131% on 18 Feb, +91% on 19 Feb"
demand_by = "Top10VPN"
demand_baseline = "28-day average"
demand_source = "https://example.org/d"

[[event]]
country = "TR"
platform = "x"
start = "2023-02-08"
source = "https://example.org/t"
demand_percent = 30000.5
demand_text = "over 30,000.5%"
demand_source = "https://example.org/p"
"#;
        let from_toml = parse_events(toml).expect("valid TOML");
        let from_csv = parse_events(&format!(
            "{}\nTR,x,2023-02-08,,,https://example.org/t,,30000.5,\"over 30,000.5%\",,,https://example.org/p\n",
            demand_line("131,\"+131% on 18 Feb, +91% on 19 Feb\",Top10VPN,28-day average,https://example.org/d")
        ))
        .expect("valid CSV");
        assert_eq!(from_toml, from_csv);
        assert_eq!(
            from_toml[1]
                .vpn_demand
                .as_ref()
                .and_then(|d| d.peak_percent),
            Some(30000.5)
        );
        // JSON round trip, and events written before the field existed still read.
        let json = serde_json::to_string(&from_toml).unwrap();
        let back: Vec<BlockEvent> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, from_toml);
        let mut old = serde_json::to_value(&from_toml[0]).unwrap();
        old.as_object_mut().unwrap().remove("vpn_demand");
        let old: BlockEvent = serde_json::from_value(old).unwrap();
        assert_eq!(old.vpn_demand, None);

        let head = "[[event]]\ncountry = \"PK\"\nplatform = \"x\"\nstart = \"2024-02-17\"\nsource = \"s\"\n";
        let e = parse_events_toml(&format!(
            "{head}demand_percent = nan\ndemand_text = \"t\"\ndemand_source = \"s\"\n"
        ))
        .unwrap_err();
        assert!(e.message.starts_with("event[0]: demand_percent:"), "{e}");
        let e = parse_events_toml(&format!(
            "{head}demand_percent = -100\ndemand_text = \"t\"\ndemand_source = \"s\"\n"
        ))
        .unwrap_err();
        assert!(e.message.starts_with("event[0]: demand_percent:"), "{e}");
        let e = parse_events_toml(&format!("{head}demand_percent = 5\n")).unwrap_err();
        assert!(
            e.message.starts_with("event[0]: demand_text: required"),
            "{e}"
        );
        let e = parse_events_toml(&format!("{head}demand_percent = \"131\"\n")).unwrap_err();
        assert!(e.message.contains("expected f64") && e.line > 0, "{e}");
        let e = parse_events_toml(&format!("{head}demand_percentage = 131\n")).unwrap_err();
        assert!(e.message.contains("demand_percentage"), "{e}");
    }

    #[test]
    fn user_csv_bad_lines_say_line_and_field() {
        let cases = [
            ("PK,x,2024-02-17,,block", 1, "expected 6 to 12 fields"),
            (
                "PK,x,2024-02-17,,block,src,note,1,t,by,base,https://e.org,extra",
                1,
                "expected 6 to 12 fields",
            ),
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

        #[test]
        fn demand_percent_round_trips(p in -99.99f64..1e9) {
            let line = format!("PK,x,2024-02-17,,,src,,{p},as published,,,https://e.org");
            let e = parse_events_csv(&line).unwrap();
            let d = e[0].vpn_demand.clone().unwrap();
            prop_assert_eq!(d.peak_percent, Some(p));
        }

        #[test]
        fn demand_fields_never_panic(tail in "[ -~\"]{0,80}") {
            let _ = parse_events_csv(&format!("PK,x,2024-02-17,,,src,,{tail}"));
        }
    }
}
