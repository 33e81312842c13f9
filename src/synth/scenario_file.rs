//! Scenario files: a [`Config`] as TOML, read with every field checked (`synth --scenario`) and
//! written back out with comments (`synth --print-preset`) as a template.
//!
//! A file starts from `base` (a preset name, default `pk-x-2024-small`) and overrides any field;
//! the `[block]` and `[outage]` tables are taken from the file only (no table, no block). Unknown
//! tables and keys are rejected, and every error names the field it is about, e.g.
//! `block.methods[1]: unknown method "dnss" (expected dns_nxdomain, ...)`. The format is
//! documented, key by key, in `samples/scenario.toml`.

use std::fmt::Write as _;

use toml::{Table, Value};

use super::catalog;
use super::scenario::{self, BlockCfg, Config, OutageCfg};
use super::session::{BlockMethod, Tool};
use super::time;

/// Version of the scenario file format (`format = 1`).
pub const FORMAT: i64 = 1;

/// Block methods by their scenario-file names.
pub const METHODS: &[(&str, BlockMethod)] = &[
    ("dns_nxdomain", BlockMethod::Dns),
    ("dns_bogus", BlockMethod::DnsBogus),
    ("reset_after_client_hello", BlockMethod::Reset),
    ("drop", BlockMethod::Drop),
    ("throttle", BlockMethod::Throttle),
];

/// Platforms the generator can block (their sites and prefixes are in `catalog`).
pub const PLATFORMS: &[&str] = &["x"];

/// What is wrong with a scenario file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct ScenarioError {
    /// Dotted path of the offending field (`block.methods[1]`); empty for syntax errors.
    pub field: String,
    pub message: String,
}

type Result<T> = std::result::Result<T, ScenarioError>;

fn err<T>(field: &str, message: impl Into<String>) -> Result<T> {
    Err(ScenarioError {
        field: field.to_string(),
        message: message.into(),
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Rejects keys outside `allowed`.
fn known_keys(t: &Table, path: &str, allowed: &[&str]) -> Result<()> {
    for key in t.keys() {
        if !allowed.contains(&key.as_str()) {
            return err(
                &join(path, key),
                format!("unknown field (expected one of: {})", allowed.join(", ")),
            );
        }
    }
    Ok(())
}

fn number(v: &Value, field: &str) -> Result<f64> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Integer(i) => Ok(*i as f64),
        other => err(
            field,
            format!("expected a number, found {}", other.type_str()),
        ),
    }
}

/// A finite number in `[lo, hi]`.
fn ranged(v: &Value, field: &str, lo: f64, hi: f64) -> Result<f64> {
    let x = number(v, field)?;
    if x.is_finite() && (lo..=hi).contains(&x) {
        Ok(x)
    } else {
        err(field, format!("must be in [{lo}, {hi}], got {x}"))
    }
}

/// A finite number in `(lo, hi]`.
fn positive(v: &Value, field: &str, hi: f64) -> Result<f64> {
    let x = ranged(v, field, 0.0, hi)?;
    if x > 0.0 {
        Ok(x)
    } else {
        err(field, format!("must be above 0 (at most {hi})"))
    }
}

fn integer(v: &Value, field: &str, lo: i64, hi: i64) -> Result<i64> {
    match v {
        Value::Integer(i) if (lo..=hi).contains(i) => Ok(*i),
        Value::Integer(i) => err(field, format!("must be in [{lo}, {hi}], got {i}")),
        other => err(
            field,
            format!("expected an integer, found {}", other.type_str()),
        ),
    }
}

fn string<'a>(v: &'a Value, field: &str) -> Result<&'a str> {
    match v {
        Value::String(s) => Ok(s),
        other => err(
            field,
            format!("expected a string, found {}", other.type_str()),
        ),
    }
}

fn table<'a>(v: &'a Value, field: &str) -> Result<&'a Table> {
    match v {
        Value::Table(t) => Ok(t),
        other => err(
            field,
            format!("expected a table, found {}", other.type_str()),
        ),
    }
}

fn array<'a>(v: &'a Value, field: &str) -> Result<&'a [Value]> {
    match v {
        Value::Array(a) => Ok(a),
        other => err(
            field,
            format!("expected an array, found {}", other.type_str()),
        ),
    }
}

/// Unix seconds of a date-time: a TOML date-time or an RFC 3339 string (no zone = UTC).
fn datetime(v: &Value, field: &str) -> Result<i64> {
    let text = match v {
        Value::Datetime(d) => d.to_string(),
        Value::String(s) => s.clone(),
        other => {
            return err(
                field,
                format!("expected a date-time, found {}", other.type_str()),
            )
        }
    };
    time::parse_datetime(&text).map_or_else(
        || {
            err(
                field,
                format!("cannot read {text:?} as a date-time (YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])"),
            )
        },
        Ok,
    )
}

/// A moment: hours after the capture start (a number, or a string like `"20h"`) or a date-time.
fn moment(v: &Value, field: &str, capture_start: i64) -> Result<i64> {
    match v {
        Value::Integer(_) | Value::Float(_) => {
            let h = ranged(v, field, -87_600.0, 87_600.0)?;
            Ok(capture_start + (h * 3600.0).round() as i64)
        }
        Value::String(s) => time::parse_moment(s, capture_start).map_or_else(
            || {
                err(
                    field,
                    format!("cannot read {s:?} as hours after the capture start (\"20h\") or a date-time"),
                )
            },
            Ok,
        ),
        _ => datetime(v, field),
    }
}

/// `N` numbers, each at least 0, at least one above 0.
fn curve<const N: usize>(v: &Value, field: &str) -> Result<[f64; N]> {
    let a = array(v, field)?;
    if a.len() != N {
        return err(field, format!("expected {N} numbers, found {}", a.len()));
    }
    let mut out = [0.0; N];
    for (i, (slot, x)) in out.iter_mut().zip(a).enumerate() {
        *slot = ranged(x, &format!("{field}[{i}]"), 0.0, 1e6)?;
    }
    if out.iter().all(|x| *x == 0.0) {
        return err(field, "at least one value must be above 0");
    }
    Ok(out)
}

fn method(v: &Value, field: &str) -> Result<BlockMethod> {
    let name = string(v, field)?;
    METHODS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
        .map_or_else(
            || {
                let known: Vec<&str> = METHODS.iter().map(|(n, _)| *n).collect();
                err(
                    field,
                    format!("unknown method {name:?} (expected {})", known.join(", ")),
                )
            },
            Ok,
        )
}

/// The scenario-file name of a block method.
pub fn method_name(m: BlockMethod) -> &'static str {
    METHODS
        .iter()
        .find(|(_, x)| *x == m)
        .map_or("drop", |(n, _)| n)
}

/// Reads a scenario from TOML text.
pub fn parse(text: &str) -> Result<Config> {
    let doc: Table = toml::from_str(text).map_err(|e| ScenarioError {
        field: String::new(),
        message: format!("not valid TOML: {}", e.to_string().trim_end()),
    })?;
    known_keys(
        &doc,
        "",
        &[
            "format",
            "name",
            "base",
            "seed",
            "capture",
            "population",
            "traffic",
            "activity",
            "platform",
            "block",
            "adoption",
            "outage",
        ],
    )?;
    if let Some(v) = doc.get("format") {
        integer(v, "format", FORMAT, FORMAT)?;
    }
    let base = match doc.get("base") {
        Some(v) => string(v, "base")?,
        None => "pk-x-2024-small",
    };
    let Some(mut cfg) = scenario::preset(base) else {
        return err(
            "base",
            format!(
                "unknown preset {base:?} (expected {})",
                scenario::PRESETS.join(", ")
            ),
        );
    };
    cfg.preset = match doc.get("name") {
        Some(v) => {
            let name = string(v, "name")?;
            if name.is_empty() || name.contains(|c: char| c.is_control()) {
                return err("name", "must be a non-empty single line");
            }
            name.to_string()
        }
        None => "scenario".to_string(),
    };
    if let Some(v) = doc.get("seed") {
        cfg.seed = u64::try_from(integer(v, "seed", 0, i64::MAX)?).unwrap_or(0);
    }
    if let Some(v) = doc.get("capture") {
        read_capture(table(v, "capture")?, &mut cfg)?;
    }
    if let Some(v) = doc.get("population") {
        read_population(table(v, "population")?, &mut cfg)?;
    }
    if let Some(v) = doc.get("traffic") {
        let t = table(v, "traffic")?;
        known_keys(t, "traffic", &["volume", "dns_share", "control_weight"])?;
        if let Some(v) = t.get("volume") {
            cfg.session.volume = positive(v, "traffic.volume", 100.0)?;
        }
        if let Some(v) = t.get("dns_share") {
            cfg.session.dns_share = ranged(v, "traffic.dns_share", 0.0, 1.0)?;
        }
        if let Some(v) = t.get("control_weight") {
            cfg.control_weight = ranged(v, "traffic.control_weight", 0.0, 1e3)?;
        }
    }
    if let Some(v) = doc.get("activity") {
        let t = table(v, "activity")?;
        known_keys(t, "activity", &["hourly", "weekly"])?;
        if let Some(v) = t.get("hourly") {
            cfg.hourly = curve(v, "activity.hourly")?;
        }
        if let Some(v) = t.get("weekly") {
            cfg.weekly = curve(v, "activity.weekly")?;
        }
    }
    if let Some(v) = doc.get("platform") {
        let t = table(v, "platform")?;
        known_keys(t, "platform", &["name"])?;
        if let Some(v) = t.get("name") {
            let name = string(v, "platform.name")?;
            if !PLATFORMS.contains(&name) {
                return err(
                    "platform.name",
                    format!(
                        "unknown platform {name:?} (built in: {})",
                        PLATFORMS.join(", ")
                    ),
                );
            }
        }
    }
    cfg.block = match doc.get("block") {
        Some(v) => Some(read_block(table(v, "block")?, &mut cfg)?),
        None => None,
    };
    cfg.outage = match doc.get("outage") {
        Some(v) => Some(read_outage(table(v, "outage")?, &cfg)?),
        None => None,
    };
    if let Some(v) = doc.get("adoption") {
        read_adoption(table(v, "adoption")?, &mut cfg)?;
    }
    Ok(cfg)
}

fn read_capture(t: &Table, cfg: &mut Config) -> Result<()> {
    known_keys(t, "capture", &["start", "days", "utc_offset_hours"])?;
    if let Some(v) = t.get("start") {
        let s = datetime(v, "capture.start")?;
        if s < 0 {
            return err("capture.start", "must not be before 1970");
        }
        cfg.start_s = s;
    }
    if let Some(v) = t.get("days") {
        cfg.days = positive(v, "capture.days", 366.0)?;
    }
    if let Some(v) = t.get("utc_offset_hours") {
        cfg.utc_offset_h = ranged(v, "capture.utc_offset_hours", -14.0, 14.0)?;
    }
    Ok(())
}

fn read_population(t: &Table, cfg: &mut Config) -> Result<()> {
    known_keys(
        t,
        "population",
        &[
            "hosts",
            "ipv6_share",
            "cgnat_share",
            "sessions_per_day",
            "platform_user_share",
            "platform_session_share",
        ],
    )?;
    if let Some(v) = t.get("hosts") {
        cfg.hosts = u32::try_from(integer(v, "population.hosts", 1, 4_000_000)?).unwrap_or(1);
    }
    let share = |key: &str| -> Result<Option<f64>> {
        t.get(key)
            .map(|v| ranged(v, &join("population", key), 0.0, 1.0))
            .transpose()
    };
    if let Some(x) = share("ipv6_share")? {
        cfg.ipv6_share = x;
    }
    if let Some(x) = share("cgnat_share")? {
        cfg.cgnat_share = x;
    }
    if let Some(x) = share("platform_user_share")? {
        cfg.x_user_share = x;
    }
    if let Some(x) = share("platform_session_share")? {
        cfg.x_session_share = x;
    }
    if let Some(v) = t.get("sessions_per_day") {
        cfg.sessions_per_day = ranged(v, "population.sessions_per_day", 0.0, 10_000.0)?;
    }
    Ok(())
}

fn read_block(t: &Table, cfg: &mut Config) -> Result<BlockCfg> {
    known_keys(
        t,
        "block",
        &["start", "end", "methods", "throttle_bytes_per_s"],
    )?;
    let Some(start) = t.get("start") else {
        return err(
            "block.start",
            "missing (hours after the capture start, or a date-time)",
        );
    };
    let start_s = moment(start, "block.start", cfg.start_s)?;
    let end_s = match t.get("end") {
        Some(v) => {
            let e = moment(v, "block.end", cfg.start_s)?;
            if e <= start_s {
                return err("block.end", "must follow block.start");
            }
            Some(e)
        }
        None => None,
    };
    let Some(methods) = t.get("methods") else {
        return err(
            "block.methods",
            "missing (e.g. [\"reset_after_client_hello\"])",
        );
    };
    let methods = array(methods, "block.methods")?
        .iter()
        .enumerate()
        .map(|(i, v)| method(v, &format!("block.methods[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    if methods.is_empty() {
        return err("block.methods", "name at least one method");
    }
    if let Some(v) = t.get("throttle_bytes_per_s") {
        cfg.session.throttle_rate = ranged(v, "block.throttle_bytes_per_s", 100.0, 1e9)?;
    }
    Ok(BlockCfg {
        start_s,
        end_s,
        methods,
    })
}

fn read_outage(t: &Table, cfg: &Config) -> Result<OutageCfg> {
    known_keys(t, "outage", &["start", "end"])?;
    let (Some(start), Some(end)) = (t.get("start"), t.get("end")) else {
        return err("outage", "needs both start and end");
    };
    let start_s = moment(start, "outage.start", cfg.start_s)?;
    let end_s = moment(end, "outage.end", cfg.start_s)?;
    if end_s <= start_s {
        return err("outage.end", "must follow outage.start");
    }
    Ok(OutageCfg { start_s, end_s })
}

fn read_adoption(t: &Table, cfg: &mut Config) -> Result<()> {
    known_keys(
        t,
        "adoption",
        &[
            "share",
            "ramp_median_hours",
            "ramp_sigma",
            "baseline_share",
            "tunnel_use",
            "tunnel_median_seconds",
            "mix",
        ],
    )?;
    if let Some(v) = t.get("share") {
        cfg.adoption_share = ranged(v, "adoption.share", 0.0, 1.0)?;
    }
    if let Some(v) = t.get("ramp_median_hours") {
        cfg.ramp_median_h = positive(v, "adoption.ramp_median_hours", 10_000.0)?;
    }
    if let Some(v) = t.get("ramp_sigma") {
        cfg.ramp_sigma = ranged(v, "adoption.ramp_sigma", 0.0, 5.0)?;
    }
    if let Some(v) = t.get("baseline_share") {
        cfg.baseline_share = ranged(v, "adoption.baseline_share", 0.0, 1.0)?;
    }
    if let Some(v) = t.get("tunnel_use") {
        cfg.tunnel_use = ranged(v, "adoption.tunnel_use", 0.0, 1.0)?;
    }
    if let Some(v) = t.get("tunnel_median_seconds") {
        cfg.tunnel_median_s = ranged(v, "adoption.tunnel_median_seconds", 1.0, 86_400.0)?;
    }
    if let Some(v) = t.get("mix") {
        let m = table(v, "adoption.mix")?;
        let names: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
        known_keys(m, "adoption.mix", &names)?;
        for (slot, tool) in cfg.mix.iter_mut().zip(Tool::ALL) {
            if let Some(v) = m.get(tool.name()) {
                *slot = ranged(v, &format!("adoption.mix.{}", tool.name()), 0.0, 1e6)?;
            }
        }
        if cfg.mix.iter().all(|w| *w == 0.0) {
            return err("adoption.mix", "at least one tool needs a weight above 0");
        }
    }
    Ok(())
}

fn floats(xs: &[f64]) -> String {
    let items: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// The scenario as a complete, commented TOML file (every field, no `base`), which
/// [`parse`] reads back to the same [`Config`].
pub fn to_toml(cfg: &Config) -> String {
    let mut s = String::new();
    let when = time::rfc3339_s;
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "# tunnelwatch synth scenario (format {FORMAT}); see samples/scenario.toml for every key.\n\
         # Generate with: tunnelwatch synth --scenario FILE.toml --out NAME.pcap\n\
         format = {FORMAT}\n\
         name = {:?}\n\
         seed = {}\n",
        cfg.preset, cfg.seed
    );
    let _ = writeln!(
        s,
        "[capture]\nstart = {:?}\ndays = {:?}\nutc_offset_hours = {:?}\n",
        when(cfg.start_s),
        cfg.days,
        cfg.utc_offset_h
    );
    let _ = writeln!(
        s,
        "[population]\nhosts = {}\nipv6_share = {:?}\ncgnat_share = {:?}\n\
         sessions_per_day = {:?}\nplatform_user_share = {:?}\nplatform_session_share = {:?}\n",
        cfg.hosts,
        cfg.ipv6_share,
        cfg.cgnat_share,
        cfg.sessions_per_day,
        cfg.x_user_share,
        cfg.x_session_share
    );
    let _ = writeln!(
        s,
        "[traffic]\nvolume = {:?}\ndns_share = {:?}\ncontrol_weight = {:?}\n",
        cfg.session.volume, cfg.session.dns_share, cfg.control_weight
    );
    let _ = writeln!(
        s,
        "[activity]\n# local hours 0..23\nhourly = {}\n# Sunday first\nweekly = {}\n",
        floats(&cfg.hourly),
        floats(&cfg.weekly)
    );
    let _ = writeln!(s, "[platform]\nname = {:?}\n", PLATFORMS[0]);
    match &cfg.block {
        Some(b) => {
            let methods: Vec<String> = b
                .methods
                .iter()
                .map(|m| format!("{:?}", method_name(*m)))
                .collect();
            let _ = writeln!(s, "[block]\nstart = {:?}", when(b.start_s));
            if let Some(e) = b.end_s {
                let _ = writeln!(s, "end = {:?}", when(e));
            }
            let _ = writeln!(
                s,
                "methods = [{}]\nthrottle_bytes_per_s = {:?}\n",
                methods.join(", "),
                cfg.session.throttle_rate
            );
        }
        None => {
            let _ = writeln!(
                s,
                "# No [block] table: the platform is not blocked.\n# throttle rate if one is added: {:?} bytes/s\n",
                cfg.session.throttle_rate
            );
        }
    }
    if let Some(o) = cfg.outage {
        let _ = writeln!(
            s,
            "[outage]\nstart = {:?}\nend = {:?}\n",
            when(o.start_s),
            when(o.end_s)
        );
    }
    let _ = writeln!(
        s,
        "[adoption]\nshare = {:?}\nramp_median_hours = {:?}\nramp_sigma = {:?}\n\
         baseline_share = {:?}\ntunnel_use = {:?}\ntunnel_median_seconds = {:?}\n\n[adoption.mix]",
        cfg.adoption_share,
        cfg.ramp_median_h,
        cfg.ramp_sigma,
        cfg.baseline_share,
        cfg.tunnel_use,
        cfg.tunnel_median_s
    );
    for (tool, w) in Tool::ALL.iter().zip(cfg.mix) {
        let _ = writeln!(s, "{} = {w:?}", tool.name());
    }
    debug_assert!(catalog::PLATFORM.iter().all(|p| p.app == PLATFORMS[0]));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_preset_round_trips() {
        for name in scenario::PRESETS {
            let cfg = scenario::preset(name).unwrap();
            let text = to_toml(&cfg);
            assert_eq!(parse(&text), Ok(cfg), "{name}:\n{text}");
        }
    }

    #[test]
    fn the_documented_example_is_the_sample_preset() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/scenario.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut want = scenario::preset("pk-x-2024-small").unwrap();
        want.preset = "pk-x-2024-small".into();
        assert_eq!(parse(&text), Ok(want));
    }

    #[test]
    fn a_small_file_overrides_its_base() {
        let cfg = parse(
            "base = \"bench\"\nname = \"mine\"\nseed = 9\n\
             [population]\nhosts = 12\n\
             [block]\nstart = \"6h\"\nend = 2024-02-17T09:00:00+05:00\nmethods = [\"throttle\", \"drop\"]\n\
             [outage]\nstart = 30\nend = 31.5\n\
             [adoption.mix]\ntor = 0\n",
        )
        .unwrap();
        let bench = scenario::preset("bench").unwrap();
        assert_eq!(cfg.preset, "mine");
        assert_eq!((cfg.seed, cfg.hosts), (9, 12));
        assert_eq!(cfg.days, bench.days);
        let b = cfg.block.unwrap();
        assert_eq!(b.start_s, bench.start_s + 6 * 3600);
        assert_eq!(b.end_s, Some(bench.start_s + 9 * 3600));
        assert_eq!(b.methods, vec![BlockMethod::Throttle, BlockMethod::Drop]);
        let o = cfg.outage.unwrap();
        assert_eq!(o.end_s - o.start_s, 5_400);
        assert_eq!(cfg.mix[7], 0.0);
        assert_eq!(cfg.mix[0], bench.mix[0]);
        // No [block] table: no block, whatever the base had.
        assert_eq!(parse("").unwrap().block, None);
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            message("[block]\nstart = 20\nmethods = [\"drop\", \"dnss\"]\n"),
            "block.methods[1]: unknown method \"dnss\" (expected dns_nxdomain, dns_bogus, \
             reset_after_client_hello, drop, throttle)"
        );
        assert!(message("hosts = 3").starts_with("hosts: unknown field (expected one of: format,"));
        assert!(message("[population]\nhost = 3").starts_with("population.host: unknown field"));
        assert_eq!(
            message("[population]\nhosts = 0"),
            "population.hosts: must be in [1, 4000000], got 0"
        );
        assert_eq!(
            message("[population]\nipv6_share = \"lots\""),
            "population.ipv6_share: expected a number, found string"
        );
        assert_eq!(
            message("[activity]\nweekly = [1, 1]"),
            "activity.weekly: expected 7 numbers, found 2"
        );
        assert_eq!(
            message("[activity]\nhourly = [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,-1]"),
            "activity.hourly[23]: must be in [0, 1000000], got -1"
        );
        assert_eq!(
            message("[block]\nstart = \"soon\"\nmethods = [\"drop\"]"),
            "block.start: cannot read \"soon\" as hours after the capture start (\"20h\") or a date-time"
        );
        assert_eq!(
            message("[block]\nstart = 5\nend = 4\nmethods = [\"drop\"]"),
            "block.end: must follow block.start"
        );
        assert_eq!(
            message("[block]\nstart = 5\nmethods = []"),
            "block.methods: name at least one method"
        );
        assert!(message("[block]\nmethods = [\"drop\"]").starts_with("block.start: missing"));
        assert_eq!(
            message("[outage]\nstart = 1"),
            "outage: needs both start and end"
        );
        assert!(message("[adoption.mix]\nexpressvpn = 1")
            .starts_with("adoption.mix.expressvpn: unknown field"));
        assert_eq!(
            message("[platform]\nname = \"youtube\""),
            "platform.name: unknown platform \"youtube\" (built in: x)"
        );
        assert!(message("base = \"nope\"").starts_with("base: unknown preset \"nope\""));
        assert_eq!(message("format = 2"), "format: must be in [1, 1], got 2");
        assert!(message("seed = ").starts_with("not valid TOML"));
        assert_eq!(
            message("[capture]\nstart = 12"),
            "capture.start: expected a date-time, found integer"
        );
    }

    proptest! {
        #[test]
        fn never_panics(text in "[a-z_\\[\\]=\"0-9.\\n -]{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn any_valid_override_round_trips(hosts in 1u32..5000, share in 0.0f64..1.0,
                                          start_h in 0.0f64..40.0, len_h in 0.5f64..30.0) {
            let text = format!(
                "name = \"p\"\n[population]\nhosts = {hosts}\nipv6_share = {share:?}\n\
                 [block]\nstart = {start_h:?}\nend = {:?}\nmethods = [\"throttle\"]\n",
                start_h + len_h
            );
            let cfg = parse(&text).unwrap();
            prop_assert_eq!(cfg.hosts, hosts);
            prop_assert_eq!(parse(&to_toml(&cfg)).unwrap(), cfg);
        }
    }
}
