//! Charts as hand-written SVG: time series (lines, stacked areas, stacked bars) with UTC time
//! axes, shaded block-event bands and alert spans, and horizontal bar panels.
//!
//! Contract: every function here returns one well-formed, self-contained `<svg>` element (no
//! scripts, no external fonts or images, presentation attributes only, so it renders the same
//! inline in the HTML report and as a standalone `.svg` file). Any input is accepted: empty or
//! single-point series, NaN and infinite values (drawn as gaps), unsorted or extreme timestamps,
//! zero or negative steps. All text is XML-escaped.
//!
//! Structure for tests and scripts: the root element carries `id`, `class="chart"` and
//! `data-series` (the plotted series names, space-separated); block events are `<rect
//! class="event-band">`, alerts `<rect class="alert-span">`.

use std::fmt::Write as _;

use super::civil_from_days;

/// Width of every chart (SVG user units = CSS pixels at 100 %).
pub const WIDTH: f64 = 900.0;
/// Height of the plot area of a time chart (legend and axes come on top).
const PLOT_HEIGHT: f64 = 220.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_BOTTOM: f64 = 44.0;
/// More windows than this are averaged into buckets before drawing (one per ~0.4 px).
const MAX_POINTS: usize = 2000;
/// Values are clamped to this magnitude so that sums and ranges stay finite.
const VALUE_LIMIT: f64 = 1e18;
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Colours: the five circumvention families, then general-purpose ones.
pub const COLOR_VPN: &str = "#1f77b4";
pub const COLOR_PROXY: &str = "#ff7f0e";
pub const COLOR_TOR: &str = "#7b3fa0";
pub const COLOR_OBFUSCATED: &str = "#d62728";
pub const COLOR_TUNNEL: &str = "#2ca02c";
pub const COLOR_TOTAL: &str = "#222222";
pub const COLOR_PLATFORM: &str = "#c0392b";
pub const COLOR_CONTROL: &str = "#27ae60";
const COLOR_EVENT: &str = "#4a6fa5";
const COLOR_ALERT: &str = "#e4572e";
const COLOR_GRID: &str = "#e3e3e3";
const COLOR_AXIS: &str = "#555555";
const COLOR_TITLE: &str = "#1a1a1a";

/// Escapes text for HTML and XML (element content and quoted attributes alike). Control
/// characters that XML 1.0 forbids become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push('\u{fffd}')
            }
            c => out.push(c),
        }
    }
    out
}

/// UTC time of `nanos` as `YYYY-MM-DDTHH:MM:SSZ` (seconds precision, for labels).
pub fn fmt_utc(nanos: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(nanos);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// (year, month, day, hour, minute, second) of UTC nanoseconds.
fn civil(nanos: i64) -> (i64, u32, u32, i64, i64, i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, sod / 3600, (sod % 3600) / 60, sod % 60)
}

/// How values on an axis are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// Plain numbers with k / M / G suffixes.
    Count,
    /// A ratio in [0, 1] shown as a percentage.
    Ratio,
    /// Byte counts with kB / MB / GB / TB suffixes (powers of 1000).
    Bytes,
}

impl ValueFormat {
    /// Formats `v` for a label; `step` (the tick spacing, or 0) decides the decimals.
    pub fn format(self, v: f64, step: f64) -> String {
        if !v.is_finite() {
            return "–".to_string();
        }
        match self {
            ValueFormat::Ratio => {
                let pct = v * 100.0;
                let decimals = decimals_for(step * 100.0);
                format!("{pct:.decimals$}%")
            }
            ValueFormat::Count => with_suffix(v, step, &["", "k", "M", "G", "T", "P"], ""),
            ValueFormat::Bytes => with_suffix(v, step, &["", "k", "M", "G", "T", "P"], "B"),
        }
    }
}

fn decimals_for(step: f64) -> usize {
    if !step.is_finite() || step <= 0.0 || step >= 1.0 {
        0
    } else if step >= 0.1 {
        1
    } else if step >= 0.01 {
        2
    } else {
        3
    }
}

fn with_suffix(v: f64, step: f64, suffixes: &[&str], unit: &str) -> String {
    let mut scale = 1.0;
    let mut idx = 0;
    while idx + 1 < suffixes.len() && v.abs() >= scale * 1000.0 {
        scale *= 1000.0;
        idx += 1;
    }
    let scaled = v / scale;
    let decimals = if step > 0.0 {
        decimals_for(step / scale)
    } else if scaled.fract() == 0.0 {
        0
    } else {
        2
    };
    let suffix = suffixes.get(idx).copied().unwrap_or("");
    let space = if unit.is_empty() { "" } else { " " };
    format!("{scaled:.decimals$}{space}{suffix}{unit}")
}

/// How one series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    /// A line; NaN / infinite values are gaps; isolated points get a dot.
    Line,
    /// An area stacked on the previous `StackedArea` plots (non-finite values count as 0).
    StackedArea,
    /// A bar per window stacked on the previous `StackedBar` plots (non-finite values count as 0).
    StackedBar,
}

/// One named series of a time chart, one value per timestamp.
#[derive(Debug, Clone, Copy)]
pub struct Plot<'a> {
    pub name: &'a str,
    pub values: &'a [f64],
    pub color: &'a str,
    pub kind: PlotKind,
}

/// A shaded time span: a block event or an alert. `end_ts: None` = open until the chart's end.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start_ts: i64,
    pub end_ts: Option<i64>,
    pub label: String,
}

/// A chart over time. Window `i` covers `[timestamps[i], timestamps[i] + step_nanos)`.
#[derive(Debug, Clone)]
pub struct TimeChart<'a> {
    /// Element id (also the standalone file's stem).
    pub id: &'a str,
    pub title: &'a str,
    pub y_label: &'a str,
    pub y_format: ValueFormat,
    pub timestamps: &'a [i64],
    pub step_nanos: i64,
    pub plots: Vec<Plot<'a>>,
    /// Drawn as `class="event-band"` when they overlap the chart's time range.
    pub events: &'a [Span],
    /// Drawn as `class="alert-span"` when they overlap the chart's time range.
    pub alerts: &'a [Span],
}

/// A placed legend entry: x, y, name, colour, drawn as a band swatch.
type LegendEntry = (f64, f64, String, String, bool);

/// Legend entries laid out in rows; returns (entries with x, y) and the height used.
fn legend_layout(items: &[(String, String, bool)], top: f64) -> (Vec<LegendEntry>, f64) {
    let mut out = Vec::new();
    let (mut x, mut y) = (MARGIN_LEFT, top);
    for (name, color, band) in items {
        let w = 22.0 + 6.6 * name.chars().count() as f64 + 14.0;
        if x + w > WIDTH - MARGIN_RIGHT && x > MARGIN_LEFT {
            x = MARGIN_LEFT;
            y += 16.0;
        }
        out.push((x, y, name.clone(), color.clone(), *band));
        x += w;
    }
    let height = if items.is_empty() {
        0.0
    } else {
        y - top + 16.0
    };
    (out, height)
}

fn write_legend(svg: &mut String, entries: &[LegendEntry]) {
    for (x, y, name, color, band) in entries {
        let opacity = if *band { "0.35" } else { "1" };
        let _ = write!(
            svg,
            r#"<g class="legend-item"><rect x="{:.1}" y="{:.1}" width="14" height="10" fill="{}" fill-opacity="{opacity}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="{COLOR_AXIS}">{}</text></g>"#,
            x,
            y - 9.0,
            escape(color),
            x + 18.0,
            y,
            escape(name)
        );
    }
}

/// A clean copy of the values: non-finite -> NaN, clamped to ±VALUE_LIMIT, length `n`.
fn sanitize(values: &[f64], n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| match values.get(i) {
            Some(v) if v.is_finite() => v.clamp(-VALUE_LIMIT, VALUE_LIMIT),
            _ => f64::NAN,
        })
        .collect()
}

/// Averages every `k` windows into one (NaN when a bucket has no finite value).
fn bucket_mean(values: &[f64], k: usize) -> Vec<f64> {
    values
        .chunks(k.max(1))
        .map(|c| {
            let (sum, n) = c
                .iter()
                .filter(|v| v.is_finite())
                .fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
            if n == 0 {
                f64::NAN
            } else {
                sum / f64::from(n)
            }
        })
        .collect()
}

/// "Nice" tick spacing (1, 2, 5 x 10^k) for about `target` ticks over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    if !range.is_finite() || range <= 0.0 {
        return 1.0;
    }
    let raw = range / target.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    let step = nice * mag;
    if step.is_finite() && step > 0.0 {
        step
    } else {
        1.0
    }
}

/// Time axis tick spacing (ns) and label style for a span of `span` ns.
fn time_step(span: i128) -> (i128, TimeLabel) {
    const S: i128 = NANOS_PER_SEC;
    const DAY: i128 = 86_400 * S;
    let candidates: [(i128, TimeLabel); 24] = [
        (S, TimeLabel::Seconds),
        (2 * S, TimeLabel::Seconds),
        (5 * S, TimeLabel::Seconds),
        (10 * S, TimeLabel::Seconds),
        (15 * S, TimeLabel::Seconds),
        (30 * S, TimeLabel::Seconds),
        (60 * S, TimeLabel::Minutes),
        (120 * S, TimeLabel::Minutes),
        (300 * S, TimeLabel::Minutes),
        (600 * S, TimeLabel::Minutes),
        (900 * S, TimeLabel::Minutes),
        (1800 * S, TimeLabel::Minutes),
        (3600 * S, TimeLabel::Minutes),
        (7200 * S, TimeLabel::Minutes),
        (3 * 3600 * S, TimeLabel::Minutes),
        (6 * 3600 * S, TimeLabel::Minutes),
        (12 * 3600 * S, TimeLabel::Minutes),
        (DAY, TimeLabel::Days),
        (2 * DAY, TimeLabel::Days),
        (7 * DAY, TimeLabel::Days),
        (14 * DAY, TimeLabel::Days),
        (30 * DAY, TimeLabel::Days),
        (91 * DAY, TimeLabel::Days),
        (365 * DAY, TimeLabel::Days),
    ];
    for (step, label) in candidates {
        if span / step <= 7 {
            return (step, label);
        }
    }
    let years = (span / (365 * DAY) / 6).max(1);
    let nice = nice_step(years as f64, 1.0).max(1.0) as i128;
    (nice.saturating_mul(365 * DAY), TimeLabel::Days)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeLabel {
    Seconds,
    Minutes,
    Days,
}

fn time_label(ts: i64, style: TimeLabel, multi_day: bool) -> String {
    let (y, mo, d, h, mi, s) = civil(ts);
    match style {
        TimeLabel::Days => format!("{y:04}-{mo:02}-{d:02}"),
        TimeLabel::Minutes if multi_day => format!("{mo:02}-{d:02} {h:02}:{mi:02}"),
        TimeLabel::Minutes => format!("{h:02}:{mi:02}"),
        TimeLabel::Seconds => format!("{h:02}:{mi:02}:{s:02}"),
    }
}

/// Maps time to x within the plot area.
struct XScale {
    t0: i128,
    span: f64,
    left: f64,
    width: f64,
}

impl XScale {
    fn x(&self, ts: i128) -> f64 {
        let frac = (ts - self.t0) as f64 / self.span;
        (self.left + frac.clamp(-0.01, 1.01) * self.width)
            .clamp(self.left - 5.0, self.left + self.width + 5.0)
    }
}

struct YScale {
    lo: f64,
    hi: f64,
    top: f64,
    height: f64,
}

impl YScale {
    fn y(&self, v: f64) -> f64 {
        let frac = if self.hi > self.lo {
            (v - self.lo) / (self.hi - self.lo)
        } else {
            0.0
        };
        let frac = if frac.is_finite() {
            frac.clamp(-0.05, 1.05)
        } else {
            0.0
        };
        self.top + self.height * (1.0 - frac)
    }
}

fn svg_open(svg: &mut String, id: &str, series: &[&str], height: f64, title: &str) {
    let names: Vec<String> = series.iter().map(|s| escape(s)).collect();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" class="chart" data-series="{}" viewBox="0 0 {WIDTH:.0} {height:.0}" width="{WIDTH:.0}" height="{height:.0}" role="img" aria-labelledby="{id}-title" font-family="Helvetica, Arial, sans-serif"><title id="{id}-title">{}</title><rect class="background" x="0" y="0" width="{WIDTH:.0}" height="{height:.0}" fill="white"/><text x="{MARGIN_LEFT:.0}" y="18" font-size="14" font-weight="bold" fill="{COLOR_TITLE}">{}</text>"#,
        names.join(" "),
        escape(title),
        escape(title),
        id = escape(id),
    );
}

/// The windows a chart draws: `n` windows bucketed `k` to a point (at most [`MAX_POINTS`]
/// points), each point `bucket_step` wide, starting at `ts`.
struct WindowGrid {
    n: usize,
    k: usize,
    bucket_step: i64,
    ts: Vec<i64>,
}

impl WindowGrid {
    fn of(timestamps: &[i64], step_nanos: i64) -> WindowGrid {
        let n = timestamps.len();
        let k = n.div_ceil(MAX_POINTS).max(1);
        let step = if step_nanos > 0 {
            step_nanos
        } else {
            1_000_000_000
        };
        WindowGrid {
            n,
            k,
            bucket_step: i64::try_from(i128::from(step) * k as i128).unwrap_or(i64::MAX),
            ts: timestamps.iter().step_by(k).copied().collect(),
        }
    }
}

/// The time range the points cover, end of the last bucket included (`None`: no point).
fn x_range(ts: &[i64], bucket_step: i64) -> Option<(i128, i128)> {
    match (ts.iter().min(), ts.iter().max()) {
        (Some(a), Some(b)) => Some((i128::from(*a), i128::from(*b) + i128::from(bucket_step))),
        _ => None,
    }
}

/// Whether a span (open-ended when it has no end) reaches into `range`.
fn span_overlaps(range: Option<(i128, i128)>, s: &Span) -> bool {
    match range {
        Some((a, b)) => i128::from(s.start_ts) < b && s.end_ts.is_none_or(|e| i128::from(e) >= a),
        None => false,
    }
}

/// Horizontal grid lines with tick labels from `lo` to `hi` every `step`, and the rotated
/// y-axis label.
fn draw_y_axis(
    svg: &mut String,
    ys: &YScale,
    (left, width): (f64, f64),
    (lo, hi, step): (f64, f64, f64),
    format: ValueFormat,
    label: &str,
) {
    let mut v = lo;
    for _ in 0..=40 {
        if v > hi + step * 0.01 {
            break;
        }
        let y = ys.y(v);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{left:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{COLOR_GRID}" stroke-width="1"/><text class="tick" x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="{COLOR_AXIS}">{}</text>"#,
            left + width,
            left - 6.0,
            y + 4.0,
            escape(&format.format(v, step))
        );
        v += step;
    }
    let mid = ys.top + ys.height / 2.0;
    let _ = write!(
        svg,
        r#"<text class="axis-label" x="14" y="{mid:.1}" font-size="11" fill="{COLOR_AXIS}" transform="rotate(-90 14 {mid:.1})" text-anchor="middle">{}</text>"#,
        escape(label)
    );
}

/// Renders a time chart as one `<svg>` element.
pub fn time_chart(c: &TimeChart<'_>) -> String {
    // Window grid, bucketed when there are too many windows to draw.
    let WindowGrid {
        n,
        k,
        bucket_step,
        ts,
    } = WindowGrid::of(c.timestamps, c.step_nanos);
    let values: Vec<Vec<f64>> = c
        .plots
        .iter()
        .map(|p| bucket_mean(&sanitize(p.values, n), k))
        .collect();
    let m = ts.len();

    // Stacks: cumulative lower/upper bounds per stacked plot.
    let mut area_base = vec![0.0f64; m];
    let mut bar_base = vec![0.0f64; m];
    let mut bounds: Vec<Option<(Vec<f64>, Vec<f64>)>> = Vec::with_capacity(values.len());
    for (plot, vals) in c.plots.iter().zip(&values) {
        let base = match plot.kind {
            PlotKind::Line => {
                bounds.push(None);
                continue;
            }
            PlotKind::StackedArea => &mut area_base,
            PlotKind::StackedBar => &mut bar_base,
        };
        let lower = base.clone();
        for (b, v) in base.iter_mut().zip(vals) {
            if v.is_finite() {
                *b = (*b + v).clamp(-VALUE_LIMIT * 8.0, VALUE_LIMIT * 8.0);
            }
        }
        bounds.push(Some((lower, base.clone())));
    }

    // Y domain: 0 and every drawn value.
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for (vals, b) in values.iter().zip(&bounds) {
        let it: Box<dyn Iterator<Item = &f64>> = match b {
            Some((_, upper)) => Box::new(upper.iter()),
            None => Box::new(vals.iter()),
        };
        for v in it.filter(|v| v.is_finite()) {
            lo = lo.min(*v);
            hi = hi.max(*v);
        }
    }
    if c.y_format == ValueFormat::Ratio && hi <= 0.0 {
        hi = 1.0;
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let y_step = nice_step(hi - lo, 5.0);
    let lo = (lo / y_step).floor() * y_step;
    let hi = (hi / y_step).ceil() * y_step;
    let (lo, hi) = if hi > lo && hi.is_finite() && lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };

    // Legend above the plot.
    let mut legend: Vec<(String, String, bool)> = c
        .plots
        .iter()
        .map(|p| (p.name.to_string(), p.color.to_string(), false))
        .collect();
    let x_range = x_range(&ts, bucket_step);
    let overlaps = |s: &Span| span_overlaps(x_range, s);
    let events: Vec<&Span> = c.events.iter().filter(|s| overlaps(s)).collect();
    let alerts: Vec<&Span> = c.alerts.iter().filter(|s| overlaps(s)).collect();
    if !events.is_empty() {
        legend.push(("block event".to_string(), COLOR_EVENT.to_string(), true));
    }
    if !alerts.is_empty() {
        legend.push(("detected alert".to_string(), COLOR_ALERT.to_string(), true));
    }
    let (legend, legend_h) = legend_layout(&legend, 38.0);
    let top = 38.0 + legend_h + 6.0;
    let height = top + PLOT_HEIGHT + MARGIN_BOTTOM;
    let left = MARGIN_LEFT;
    let width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let bottom = top + PLOT_HEIGHT;

    let names: Vec<&str> = c.plots.iter().map(|p| p.name).collect();
    let mut svg = String::with_capacity(8192 + m * 40 * c.plots.len().max(1));
    svg_open(&mut svg, c.id, &names, height, c.title);
    write_legend(&mut svg, &legend);

    let ys = YScale {
        lo,
        hi,
        top,
        height: PLOT_HEIGHT,
    };
    draw_y_axis(
        &mut svg,
        &ys,
        (left, width),
        (lo, hi, y_step),
        c.y_format,
        c.y_label,
    );

    match x_range {
        None => {
            let _ = write!(
                svg,
                r#"<text class="no-data" x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="{COLOR_AXIS}">no data</text>"#,
                left + width / 2.0,
                top + PLOT_HEIGHT / 2.0
            );
        }
        Some((t0, t1)) => {
            let xs = XScale {
                t0,
                span: ((t1 - t0).max(1)) as f64,
                left,
                width,
            };
            draw_time_axis(&mut svg, &xs, t0, t1, bottom);
            for s in &events {
                draw_span(&mut svg, &xs, s, t1, top, "event-band", COLOR_EVENT, 0.18);
            }
            for s in &alerts {
                draw_span(&mut svg, &xs, s, t1, top, "alert-span", COLOR_ALERT, 0.15);
            }
            let half = i128::from(bucket_step) / 2;
            let centers: Vec<f64> = ts.iter().map(|t| xs.x(i128::from(*t) + half)).collect();
            // Areas and bars first, lines on top.
            for (plot, b) in c.plots.iter().zip(&bounds) {
                match (plot.kind, b) {
                    (PlotKind::StackedArea, Some((lower, upper))) => {
                        draw_area(&mut svg, plot, &centers, lower, upper, &ys)
                    }
                    (PlotKind::StackedBar, Some((lower, upper))) => {
                        draw_bars(&mut svg, plot, &ts, bucket_step, lower, upper, &xs, &ys)
                    }
                    _ => {}
                }
            }
            for (plot, vals) in c.plots.iter().zip(&values) {
                if plot.kind == PlotKind::Line {
                    draw_line(&mut svg, plot, &centers, vals, &ys);
                }
            }
            // Event labels on top of the data, in rows so that close events stay legible.
            let placed: Vec<SpanLabel> = events.iter().map(|s| span_label(&xs, s)).collect();
            let rows = label_rows(&placed, 3);
            for (label, row) in placed.iter().zip(rows) {
                draw_span_label(&mut svg, label, top + 11.0 + 12.0 * row as f64);
            }
        }
    }
    // Axes frame.
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{left:.1}" y1="{top:.1}" x2="{left:.1}" y2="{bottom:.1}" stroke="{COLOR_AXIS}" stroke-width="1"/><line class="axis" x1="{left:.1}" y1="{bottom:.1}" x2="{:.1}" y2="{bottom:.1}" stroke="{COLOR_AXIS}" stroke-width="1"/>"#,
        left + width
    );
    svg.push_str("</svg>");
    svg
}

fn draw_time_axis(svg: &mut String, xs: &XScale, t0: i128, t1: i128, bottom: f64) {
    let span = (t1 - t0).max(1);
    let (step, style) = time_step(span);
    let step = step.max(1);
    let multi_day = span > 86_400 * NANOS_PER_SEC || civil_day(t0) != civil_day(t1 - 1);
    let mut tick = t0.div_euclid(step) * step;
    if tick < t0 {
        tick += step;
    }
    let mut first_label: Option<i64> = None;
    for _ in 0..16 {
        if tick > t1 {
            break;
        }
        let Ok(t) = i64::try_from(tick) else { break };
        first_label.get_or_insert(t);
        let x = xs.x(tick);
        let _ = write!(
            svg,
            r#"<line class="tick" x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="{COLOR_AXIS}" stroke-width="1"/><text class="tick" x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{COLOR_AXIS}">{}</text>"#,
            bottom + 4.0,
            bottom + 16.0,
            escape(&time_label(t, style, multi_day))
        );
        tick += step;
    }
    // Axis title says UTC, and the date when the tick labels omit it.
    let start = i64::try_from(t0).unwrap_or(i64::MIN);
    let title = if style == TimeLabel::Days || multi_day {
        "time (UTC)".to_string()
    } else {
        let (y, mo, d, ..) = civil(start);
        format!("time (UTC), {y:04}-{mo:02}-{d:02}")
    };
    let _ = write!(
        svg,
        r#"<text class="axis-label" x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{COLOR_AXIS}">{}</text>"#,
        xs.left + xs.width / 2.0,
        bottom + 34.0,
        escape(&title)
    );
}

fn civil_day(ns: i128) -> i128 {
    ns.div_euclid(86_400 * NANOS_PER_SEC)
}

#[allow(clippy::too_many_arguments)]
fn draw_span(
    svg: &mut String,
    xs: &XScale,
    s: &Span,
    t1: i128,
    top: f64,
    class: &str,
    color: &str,
    opacity: f64,
) {
    let x1 = xs.x(i128::from(s.start_ts));
    let x2 = xs.x(s.end_ts.map_or(t1, i128::from));
    let (a, b) = if x2 >= x1 { (x1, x2) } else { (x2, x1) };
    let w = (b - a).max(2.0);
    let _ = write!(
        svg,
        r#"<rect class="{class}" x="{a:.1}" y="{top:.1}" width="{w:.1}" height="{PLOT_HEIGHT:.1}" fill="{color}" fill-opacity="{opacity}" stroke="{color}" stroke-opacity="0.5" stroke-width="0.5"><title>{}</title></rect>"#,
        escape(&s.label)
    );
}

/// An event label placed at its span's start: text, x, anchor and the x extent it covers.
struct SpanLabel {
    text: String,
    title: String,
    x: f64,
    anchor: &'static str,
    extent: (f64, f64),
}

/// The label of `s` beside its start (shortened; to the left near the right edge).
fn span_label(xs: &XScale, s: &Span) -> SpanLabel {
    let x = xs.x(i128::from(s.start_ts)).max(xs.left);
    let text: String = if s.label.chars().count() > 32 {
        s.label.chars().take(31).chain(['…']).collect()
    } else {
        s.label.clone()
    };
    // Helvetica at 10 px averages about 5.6 px a character.
    let w = 5.6 * text.chars().count() as f64;
    let (x, anchor, extent) = if x > xs.left + xs.width - 180.0 {
        (x - 3.0, "end", (x - 3.0 - w, x - 3.0))
    } else {
        (x + 3.0, "start", (x + 3.0, x + 3.0 + w))
    };
    SpanLabel {
        text,
        title: s.label.clone(),
        x,
        anchor,
        extent,
    }
}

/// A row per label so that labels sharing a row do not overlap: each takes the first row free
/// at its extent (in order of x); beyond `max_rows` rows, the last row is shared.
fn label_rows(labels: &[SpanLabel], max_rows: usize) -> Vec<usize> {
    let max_rows = max_rows.max(1);
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|a, b| labels[*a].extent.0.total_cmp(&labels[*b].extent.0));
    let mut row_end: Vec<f64> = Vec::new();
    let mut rows = vec![0; labels.len()];
    for i in order {
        let (start, end) = labels[i].extent;
        let row = row_end
            .iter()
            .position(|e| *e + 6.0 <= start)
            .unwrap_or(row_end.len())
            .min(max_rows - 1);
        match row_end.get_mut(row) {
            Some(e) => *e = e.max(end),
            None => row_end.push(end),
        }
        rows[i] = row;
    }
    rows
}

fn draw_span_label(svg: &mut String, label: &SpanLabel, y: f64) {
    let _ = write!(
        svg,
        r#"<text class="event-label" x="{:.1}" y="{y:.1}" font-size="10" text-anchor="{}" fill="{COLOR_TITLE}" stroke="white" stroke-width="3" paint-order="stroke"><title>{}</title>{}</text>"#,
        label.x,
        label.anchor,
        escape(&label.title),
        escape(&label.text)
    );
}

fn draw_area(
    svg: &mut String,
    plot: &Plot<'_>,
    centers: &[f64],
    lower: &[f64],
    upper: &[f64],
    ys: &YScale,
) {
    if centers.is_empty() {
        return;
    }
    let mut d = String::new();
    for (i, (x, u)) in centers.iter().zip(upper).enumerate() {
        let _ = write!(
            d,
            "{}{x:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            ys.y(*u)
        );
    }
    for (x, l) in centers.iter().zip(lower).rev() {
        let _ = write!(d, "L{x:.1},{:.1} ", ys.y(*l));
    }
    d.push('Z');
    let _ = write!(
        svg,
        r#"<path class="area" data-name="{}" d="{d}" fill="{}" fill-opacity="0.55" stroke="{}" stroke-width="1"/>"#,
        escape(plot.name),
        escape(plot.color),
        escape(plot.color)
    );
}

#[allow(clippy::too_many_arguments)]
fn draw_bars(
    svg: &mut String,
    plot: &Plot<'_>,
    ts: &[i64],
    step: i64,
    lower: &[f64],
    upper: &[f64],
    xs: &XScale,
    ys: &YScale,
) {
    let _ = write!(
        svg,
        r#"<g class="bars" data-name="{}" fill="{}">"#,
        escape(plot.name),
        escape(plot.color)
    );
    for ((t, l), u) in ts.iter().zip(lower).zip(upper) {
        if (u - l).abs() <= 0.0 {
            continue;
        }
        let x1 = xs.x(i128::from(*t));
        let x2 = xs.x(i128::from(*t) + i128::from(step));
        let w = ((x2 - x1) * 0.85).max(0.5);
        let (y_top, y_bot) = (ys.y(u.max(*l)), ys.y(u.min(*l)));
        let _ = write!(
            svg,
            r#"<rect x="{x1:.1}" y="{y_top:.1}" width="{w:.1}" height="{:.1}"/>"#,
            (y_bot - y_top).max(0.0)
        );
    }
    svg.push_str("</g>");
}

fn draw_line(svg: &mut String, plot: &Plot<'_>, centers: &[f64], vals: &[f64], ys: &YScale) {
    let mut d = String::new();
    let mut dots = String::new();
    let mut pen_down = false;
    for (i, (x, v)) in centers.iter().zip(vals).enumerate() {
        if !v.is_finite() {
            pen_down = false;
            continue;
        }
        let y = ys.y(*v);
        let _ = write!(d, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
        let prev = i
            .checked_sub(1)
            .and_then(|j| vals.get(j))
            .is_some_and(|p| p.is_finite());
        let next = vals.get(i + 1).is_some_and(|p| p.is_finite());
        if !prev && !next {
            let _ = write!(dots, r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5"/>"#);
        }
        pen_down = true;
    }
    let _ = write!(svg, r#"<g class="line" data-name="{}">"#, escape(plot.name));
    if !d.is_empty() {
        let _ = write!(
            svg,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.8" stroke-linejoin="round"/>"#,
            d.trim_end(),
            escape(plot.color)
        );
    }
    if !dots.is_empty() {
        let _ = write!(svg, r#"<g fill="{}">{dots}</g>"#, escape(plot.color));
    }
    svg.push_str("</g>");
}

/// The Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"): eight colours that stay
/// distinct under the common colour-vision deficiencies. Ordered for white paper: the yellow,
/// weakest against white, last.
pub const OKABE_ITO: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];
/// The control sites' line in [`platform_chart`]: grey and dashed, so it never reads as one
/// more platform whatever the palette.
const COLOR_CONTROL_LINE: &str = "#7a7a7a";
const DASH_CONTROL: &str = "7 4";
const DASH_SPARSE: &str = "1.5 3";
/// Height of one alert lane above the plot of [`platform_chart`].
const LANE_HEIGHT: f64 = 9.0;

/// One line of [`platform_chart`]: a success ratio and the attempts behind each window.
#[derive(Debug, Clone, Copy)]
pub struct RatioLine<'a> {
    /// Legend name (`x`, `control sites`).
    pub name: &'a str,
    /// Column name, listed in the chart's `data-series`.
    pub series: &'a str,
    pub ratio: &'a [f64],
    /// Attempts per window; empty = unknown (bucketed windows are then averaged unweighted and
    /// never drawn as sparse).
    pub attempts: &'a [f64],
    pub color: &'a str,
}

/// A reachability alert shaded on [`platform_chart`]: in the colour of `platform` (an index
/// into [`PlatformChart::platforms`]), or grey when it concerns all platforms pooled (`None`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformAlert {
    pub platform: Option<usize>,
    pub span: Span,
}

/// Success ratio per platform over time against the control sites' ratio.
#[derive(Debug, Clone)]
pub struct PlatformChart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub timestamps: &'a [i64],
    pub step_nanos: i64,
    /// One solid line each, coloured by the caller (see [`OKABE_ITO`]).
    pub platforms: Vec<RatioLine<'a>>,
    /// Drawn grey and dashed (its own colour is ignored).
    pub control: Option<RatioLine<'a>>,
    /// Windows of a platform with fewer attempts than this (but some) are drawn dotted: the
    /// block detector leaves them out as too noisy to judge.
    pub min_attempts: f64,
    /// Shaded in the plot and drawn as a lane per platform above it.
    pub alerts: &'a [PlatformAlert],
    /// Marked by a vertical line at their start, labelled.
    pub events: &'a [Span],
}

/// Bucketed ratio and attempts: attempt-weighted (the pooled ratio of the bucket) when attempts
/// are known, else the plain mean.
fn bucket_ratio(ratio: &[f64], attempts: &[f64], n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let ratio = sanitize(ratio, n);
    if attempts.is_empty() {
        let r = bucket_mean(&ratio, k);
        let a = vec![f64::NAN; r.len()];
        return (r, a);
    }
    let attempts = sanitize(attempts, n);
    let mut r_out = Vec::with_capacity(n.div_ceil(k.max(1)));
    let mut a_out = Vec::with_capacity(r_out.capacity());
    for (rc, ac) in ratio.chunks(k.max(1)).zip(attempts.chunks(k.max(1))) {
        let (mut ok, mut tried) = (0.0, 0.0);
        for (r, a) in rc.iter().zip(ac) {
            if r.is_finite() && a.is_finite() && *a > 0.0 {
                ok += r * a;
                tried += a;
            }
        }
        let pooled = if tried > 0.0 { ok / tried } else { f64::NAN };
        r_out.push(if pooled.is_finite() { pooled } else { f64::NAN });
        a_out.push(tried);
    }
    (r_out, a_out)
}

/// An SVG path through the finite points whose `keep` is true, lifting the pen at the others.
fn polyline(centers: &[f64], vals: &[f64], ys: &YScale, keep: impl Fn(usize) -> bool) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for (i, (x, v)) in centers.iter().zip(vals).enumerate() {
        if !v.is_finite() || !keep(i) {
            pen_down = false;
            continue;
        }
        let _ = write!(
            d,
            "{}{x:.1},{:.1} ",
            if pen_down { "L" } else { "M" },
            ys.y(*v)
        );
        pen_down = true;
    }
    d.trim_end().to_string()
}

/// Legend swatch styles of [`platform_chart`].
#[derive(Clone, Copy)]
enum Swatch {
    Line,
    Dashed,
    Dotted,
    Band,
    Marker,
}

/// Renders a per-platform reachability chart as one `<svg>` element: y is the success ratio
/// (0-100 %), x UTC time. Each platform is one `<path class="platform-ratio"
/// data-platform=NAME>` (windows with at least `min_attempts`), plus at most one dotted
/// `<path class="platform-ratio-sparse">` through all its windows with attempts; the control
/// sites a `<path class="control-ratio">`. Alerts are `<rect class="alert-span"
/// data-platform=NAME>` (no `data-platform` when pooled) and `<rect class="alert-lane">`.
pub fn platform_chart(c: &PlatformChart<'_>) -> String {
    let WindowGrid {
        n,
        k,
        bucket_step,
        ts,
    } = WindowGrid::of(c.timestamps, c.step_nanos);
    let lines: Vec<(Vec<f64>, Vec<f64>)> = c
        .platforms
        .iter()
        .map(|p| bucket_ratio(p.ratio, p.attempts, n, k))
        .collect();
    let control = c.control.map(|l| bucket_ratio(l.ratio, l.attempts, n, k).0);
    let min_attempts = if c.min_attempts.is_finite() {
        c.min_attempts.max(0.0)
    } else {
        0.0
    };

    let x_range = x_range(&ts, bucket_step);
    let overlaps = |s: &Span| span_overlaps(x_range, s);
    let alerts: Vec<&PlatformAlert> = c.alerts.iter().filter(|a| overlaps(&a.span)).collect();
    let events: Vec<&Span> = c
        .events
        .iter()
        .filter(|s| x_range.is_some_and(|(a, b)| (a..b).contains(&i128::from(s.start_ts))))
        .collect();
    let alert_color = |p: Option<usize>| {
        p.and_then(|i| c.platforms.get(i))
            .map_or(COLOR_CONTROL_LINE, |l| l.color)
    };
    // One lane per platform with an alert in range (pooled last), in platform order.
    let mut lanes: Vec<Option<usize>> = Vec::new();
    for a in &alerts {
        if !lanes.contains(&a.platform) {
            lanes.push(a.platform);
        }
    }
    lanes.sort_by_key(|p| p.unwrap_or(usize::MAX));
    let lane_name = |p: Option<usize>| {
        p.and_then(|i| c.platforms.get(i))
            .map_or("all platforms (pooled)".to_string(), |l| l.name.to_string())
    };

    // Legend: lines, the sparse style, alerts, events.
    let mut items: Vec<(String, String, Swatch)> = c
        .platforms
        .iter()
        .map(|p| (p.name.to_string(), p.color.to_string(), Swatch::Line))
        .collect();
    if let Some(l) = c.control {
        items.push((
            l.name.to_string(),
            COLOR_CONTROL_LINE.to_string(),
            Swatch::Dashed,
        ));
    }
    let any_sparse = lines.iter().any(|(r, a)| {
        r.iter()
            .zip(a)
            .any(|(r, a)| r.is_finite() && *a > 0.0 && *a < min_attempts)
    });
    if any_sparse {
        items.push((
            format!(
                "fewer than {} attempts in the window",
                fmt_plain(min_attempts)
            ),
            COLOR_AXIS.to_string(),
            Swatch::Dotted,
        ));
    }
    for p in &lanes {
        items.push((
            format!("alert: {}", lane_name(*p)),
            alert_color(*p).to_string(),
            Swatch::Band,
        ));
    }
    if !events.is_empty() {
        items.push((
            "calendar event (start)".to_string(),
            COLOR_EVENT.to_string(),
            Swatch::Marker,
        ));
    }
    let layout_items: Vec<(String, String, bool)> = items
        .iter()
        .map(|(n, c, _)| (n.clone(), c.clone(), false))
        .collect();
    let (legend, legend_h) = legend_layout(&layout_items, 38.0);
    let left = MARGIN_LEFT;
    let width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let xs = x_range.map(|(t0, t1)| XScale {
        t0,
        span: ((t1 - t0).max(1)) as f64,
        left,
        width,
    });
    // Event labels above the plot, clear of the data, in as many rows as they need (up to 3).
    let event_labels: Vec<SpanLabel> = match &xs {
        Some(xs) => events.iter().map(|s| span_label(xs, s)).collect(),
        None => Vec::new(),
    };
    let label_row = label_rows(&event_labels, 3);
    let label_rows_used = label_row.iter().map(|r| r + 1).max().unwrap_or(0);
    let labels_top = 38.0 + legend_h + 2.0;
    let lanes_top = labels_top + 12.0 * label_rows_used as f64 + 2.0;
    let lanes_h = LANE_HEIGHT * lanes.len() as f64;
    let top = lanes_top + lanes_h + if lanes.is_empty() { 2.0 } else { 6.0 };
    let height = top + PLOT_HEIGHT + MARGIN_BOTTOM;
    let bottom = top + PLOT_HEIGHT;

    let mut names: Vec<&str> = c.platforms.iter().map(|p| p.series).collect();
    if let Some(l) = c.control {
        names.push(l.series);
    }
    let mut svg = String::with_capacity(8192 + ts.len() * 24 * (lines.len() + 1));
    svg_open(&mut svg, c.id, &names, height, c.title);
    for ((x, y, name, color, _), (_, _, swatch)) in legend.iter().zip(&items) {
        let color = escape(color);
        let _ = write!(svg, r#"<g class="legend-item">"#);
        let (mid, x2) = (y - 4.0, x + 16.0);
        match swatch {
            Swatch::Line => {
                let _ = write!(
                    svg,
                    r#"<line x1="{x:.1}" y1="{mid:.1}" x2="{x2:.1}" y2="{mid:.1}" stroke="{color}" stroke-width="2.2"/>"#
                );
            }
            Swatch::Dashed | Swatch::Dotted => {
                let dash = if matches!(swatch, Swatch::Dashed) {
                    DASH_CONTROL
                } else {
                    DASH_SPARSE
                };
                let _ = write!(
                    svg,
                    r#"<line x1="{x:.1}" y1="{mid:.1}" x2="{x2:.1}" y2="{mid:.1}" stroke="{color}" stroke-width="1.8" stroke-dasharray="{dash}"/>"#
                );
            }
            Swatch::Band => {
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{:.1}" width="14" height="10" fill="{color}" fill-opacity="0.3"/><rect x="{x:.1}" y="{:.1}" width="14" height="3" fill="{color}"/>"#,
                    y - 9.0,
                    y - 9.0
                );
            }
            Swatch::Marker => {
                let _ = write!(
                    svg,
                    r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.5" stroke-dasharray="3 2"/>"#,
                    x + 7.0,
                    y - 10.0,
                    x + 7.0,
                    y + 1.0
                );
            }
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{y:.1}" font-size="11" fill="{COLOR_AXIS}">{}</text></g>"#,
            x + 20.0,
            escape(name)
        );
    }

    let ys = YScale {
        lo: 0.0,
        hi: 1.0,
        top,
        height: PLOT_HEIGHT,
    };
    draw_y_axis(
        &mut svg,
        &ys,
        (left, width),
        (0.0, 1.0, 0.2),
        ValueFormat::Ratio,
        "connection success ratio",
    );

    match (x_range, xs) {
        (Some((t0, t1)), Some(xs)) => {
            draw_time_axis(&mut svg, &xs, t0, t1, bottom);
            // Alerts: a light band in the plot, a solid bar in the platform's lane.
            for a in &alerts {
                let color = escape(alert_color(a.platform));
                let x1 = xs.x(i128::from(a.span.start_ts));
                let x2 = xs.x(a.span.end_ts.map_or(t1, i128::from));
                let (x1, x2) = if x2 >= x1 { (x1, x2) } else { (x2, x1) };
                let w = (x2 - x1).max(2.0);
                let platform_attr = a
                    .platform
                    .and_then(|i| c.platforms.get(i))
                    .map_or(String::new(), |l| {
                        format!(r#" data-platform="{}""#, escape(l.name))
                    });
                let lane = lanes.iter().position(|p| *p == a.platform).unwrap_or(0);
                let lane_y = lanes_top + LANE_HEIGHT * lane as f64 + 1.0;
                let title = escape(&a.span.label);
                let _ = write!(
                    svg,
                    r#"<rect class="alert-span"{platform_attr} x="{x1:.1}" y="{top:.1}" width="{w:.1}" height="{PLOT_HEIGHT:.1}" fill="{color}" fill-opacity="0.12"><title>{title}</title></rect><rect class="alert-lane"{platform_attr} x="{x1:.1}" y="{lane_y:.1}" width="{w:.1}" height="{:.1}" fill="{color}"><title>{title}</title></rect>"#,
                    LANE_HEIGHT - 3.0
                );
            }
            for (i, p) in lanes.iter().enumerate() {
                let _ = write!(
                    svg,
                    r#"<text class="lane-label" x="{:.1}" y="{:.1}" font-size="9" text-anchor="end" fill="{COLOR_AXIS}">{}</text>"#,
                    left - 6.0,
                    lanes_top + LANE_HEIGHT * i as f64 + LANE_HEIGHT - 2.0,
                    escape(&lane_name(*p))
                );
            }
            for ((s, label), row) in events.iter().zip(&event_labels).zip(&label_row) {
                let x = xs.x(i128::from(s.start_ts));
                let y = labels_top + 10.0 + 12.0 * *row as f64;
                let _ = write!(
                    svg,
                    r#"<g class="event-marker"><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{COLOR_EVENT}" stroke-width="1.5" stroke-dasharray="3 2"><title>{}</title></line>"#,
                    y + 2.0,
                    escape(&s.label),
                );
                draw_span_label(&mut svg, label, y);
                svg.push_str("</g>");
            }
            let half = i128::from(bucket_step) / 2;
            let centers: Vec<f64> = ts.iter().map(|t| xs.x(i128::from(*t) + half)).collect();
            if let (Some(l), Some(vals)) = (c.control, &control) {
                let d = polyline(&centers, vals, &ys, |_| true);
                let _ = write!(
                    svg,
                    r#"<path class="control-ratio" data-name="{}" d="{d}" fill="none" stroke="{COLOR_CONTROL_LINE}" stroke-width="1.6" stroke-dasharray="{DASH_CONTROL}"/>"#,
                    escape(l.name)
                );
            }
            for (p, (vals, attempts)) in c.platforms.iter().zip(&lines) {
                let color = escape(p.color);
                let name = escape(p.name);
                let known = !p.attempts.is_empty();
                let enough =
                    |i: usize| !known || attempts.get(i).is_some_and(|a| *a >= min_attempts);
                let sparse = known
                    && vals
                        .iter()
                        .enumerate()
                        .any(|(i, v)| v.is_finite() && !enough(i));
                let _ = write!(svg, r#"<g class="platform" data-platform="{name}">"#);
                if sparse {
                    let d = polyline(&centers, vals, &ys, |_| true);
                    let _ = write!(
                        svg,
                        r#"<path class="platform-ratio-sparse" data-platform="{name}" d="{d}" fill="none" stroke="{color}" stroke-width="1.2" stroke-opacity="0.8" stroke-dasharray="{DASH_SPARSE}"/>"#
                    );
                }
                let d = polyline(&centers, vals, &ys, enough);
                let _ = write!(
                    svg,
                    r#"<path class="platform-ratio" data-platform="{name}" d="{d}" fill="none" stroke="{color}" stroke-width="2.2" stroke-linejoin="round"/>"#
                );
                // A window of enough attempts between two sparse ones would vanish as a lone
                // move-to: give it a dot.
                for (i, (x, v)) in centers.iter().zip(vals.iter()).enumerate() {
                    let lone = v.is_finite()
                        && enough(i)
                        && !(i.checked_sub(1).is_some_and(|j| {
                            vals.get(j).is_some_and(|p| p.is_finite()) && enough(j)
                        }))
                        && !(vals.get(i + 1).is_some_and(|p| p.is_finite()) && enough(i + 1));
                    if lone {
                        let _ = write!(
                            svg,
                            r#"<circle cx="{x:.1}" cy="{:.1}" r="2.6" fill="{color}"/>"#,
                            ys.y(*v)
                        );
                    }
                }
                svg.push_str("</g>");
            }
        }
        _ => {
            let _ = write!(
                svg,
                r#"<text class="no-data" x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="{COLOR_AXIS}">no data</text>"#,
                left + width / 2.0,
                top + PLOT_HEIGHT / 2.0
            );
        }
    }
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{left:.1}" y1="{top:.1}" x2="{left:.1}" y2="{bottom:.1}" stroke="{COLOR_AXIS}" stroke-width="1"/><line class="axis" x1="{left:.1}" y1="{bottom:.1}" x2="{:.1}" y2="{bottom:.1}" stroke="{COLOR_AXIS}" stroke-width="1"/>"#,
        left + width
    );
    svg.push_str("</svg>");
    svg
}

/// A count for a label: no decimals when whole.
fn fmt_plain(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// One measure of a bar chart: a value per category.
#[derive(Debug, Clone, Copy)]
pub struct Measure<'a> {
    pub name: &'a str,
    pub values: &'a [f64],
    pub format: ValueFormat,
    pub color: &'a str,
}

/// Horizontal bars: one panel per measure, one row per category.
#[derive(Debug, Clone)]
pub struct BarChart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub categories: &'a [String],
    pub measures: Vec<Measure<'a>>,
}

/// Renders a bar chart as one `<svg>` element.
pub fn bar_chart(c: &BarChart<'_>) -> String {
    const LABEL_W: f64 = 170.0;
    const ROW_H: f64 = 18.0;
    const TOP: f64 = 52.0;
    const GAP: f64 = 14.0;
    const TEXT_W: f64 = 58.0;
    let rows = c.categories.len();
    let height = TOP + ROW_H * rows.max(1) as f64 + 16.0;
    let names: Vec<&str> = c.measures.iter().map(|m| m.name).collect();
    let mut svg = String::with_capacity(2048 + rows * 200 * c.measures.len().max(1));
    svg_open(&mut svg, c.id, &names, height, c.title);
    if rows == 0 {
        let _ = write!(
            svg,
            r#"<text class="no-data" x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="{COLOR_AXIS}">no data</text></svg>"#,
            WIDTH / 2.0,
            TOP + 8.0
        );
        return svg;
    }
    for (i, cat) in c.categories.iter().enumerate() {
        let y = TOP + ROW_H * i as f64 + ROW_H * 0.7;
        let label: String = if cat.chars().count() > 26 {
            cat.chars().take(25).chain(['…']).collect()
        } else {
            cat.clone()
        };
        let _ = write!(
            svg,
            r#"<text class="category" x="{:.1}" y="{y:.1}" font-size="11" text-anchor="end" fill="{COLOR_TITLE}"><title>{}</title>{}</text>"#,
            LABEL_W - 6.0,
            escape(cat),
            escape(&label)
        );
    }
    let panels = c.measures.len().max(1) as f64;
    let panel_w = (WIDTH - LABEL_W - MARGIN_RIGHT - GAP * (panels - 1.0)) / panels;
    for (p, m) in c.measures.iter().enumerate() {
        let x0 = LABEL_W + p as f64 * (panel_w + GAP);
        let vals = sanitize(m.values, rows);
        let max = vals
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |a, b| a.max(*b));
        let bar_w = (panel_w - TEXT_W).max(10.0);
        let _ = write!(
            svg,
            r#"<g class="panel" data-name="{}"><text x="{x0:.1}" y="{:.1}" font-size="12" font-weight="bold" fill="{COLOR_AXIS}">{}</text><line x1="{x0:.1}" y1="{:.1}" x2="{x0:.1}" y2="{:.1}" stroke="{COLOR_AXIS}" stroke-width="1"/>"#,
            escape(m.name),
            TOP - 8.0,
            escape(m.name),
            TOP - 2.0,
            TOP + ROW_H * rows as f64,
        );
        for (i, v) in vals.iter().enumerate() {
            let y = TOP + ROW_H * i as f64 + 2.0;
            let w = if max > 0.0 && v.is_finite() && *v > 0.0 {
                (v / max * bar_w).clamp(0.0, bar_w)
            } else {
                0.0
            };
            let _ = write!(
                svg,
                r#"<rect class="bar" x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10" fill="{COLOR_AXIS}">{}</text>"#,
                ROW_H - 4.0,
                escape(m.color),
                x0 + w + 4.0,
                y + ROW_H * 0.6,
                escape(&m.format.format(*v, 0.0))
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks that every element is closed in order; returns the first problem.
    pub(crate) fn check_balanced(doc: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = doc;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            if let Some(body) = after.strip_prefix("!--") {
                let end = body.find("-->").ok_or("unterminated comment")?;
                rest = &body[end + 3..];
                continue;
            }
            let close = after.find('>').ok_or("unterminated tag")?;
            let tag = &after[..close];
            rest = &after[close + 1..];
            if tag.starts_with('!') || tag.starts_with('?') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                let name = name.trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad tag <{tag}>"));
            }
            let void = matches!(
                name.as_str(),
                "meta" | "br" | "hr" | "img" | "link" | "input" | "col" | "wbr"
            );
            if !tag.ends_with('/') && !void {
                stack.push(name);
            }
        }
        if stack.is_empty() {
            Ok(())
        } else {
            Err(format!("unclosed: {stack:?}"))
        }
    }

    fn chart<'a>(
        ts: &'a [i64],
        plots: Vec<Plot<'a>>,
        events: &'a [Span],
        alerts: &'a [Span],
    ) -> TimeChart<'a> {
        TimeChart {
            id: "chart-test",
            title: "Test <chart>",
            y_label: "share",
            y_format: ValueFormat::Ratio,
            timestamps: ts,
            step_nanos: 300_000_000_000,
            plots,
            events,
            alerts,
        }
    }

    const T0: i64 = 1_708_189_200_000_000_000; // 2024-02-17T17:00:00Z

    #[test]
    fn empty_and_single_point_charts_are_well_formed() {
        let empty = time_chart(&chart(
            &[],
            vec![Plot {
                name: "a",
                values: &[],
                color: "#000",
                kind: PlotKind::Line,
            }],
            &[],
            &[],
        ));
        check_balanced(&empty).unwrap();
        assert!(empty.contains("no data"));
        assert!(empty.contains(r#"data-series="a""#));
        let one = [0.5];
        let single = time_chart(&chart(
            &[T0],
            vec![
                Plot {
                    name: "line",
                    values: &one,
                    color: "#000",
                    kind: PlotKind::Line,
                },
                Plot {
                    name: "area",
                    values: &one,
                    color: "#111",
                    kind: PlotKind::StackedArea,
                },
                Plot {
                    name: "bar",
                    values: &one,
                    color: "#222",
                    kind: PlotKind::StackedBar,
                },
            ],
            &[],
            &[],
        ));
        check_balanced(&single).unwrap();
        assert!(single.contains("<circle"), "an isolated point gets a dot");
        let bars = bar_chart(&BarChart {
            id: "b",
            title: "t",
            categories: &[],
            measures: vec![],
        });
        check_balanced(&bars).unwrap();
    }

    #[test]
    fn bands_spans_and_utc_ticks() {
        let ts: Vec<i64> = (0..24).map(|i| T0 + i * 300_000_000_000).collect();
        let vals: Vec<f64> = (0..24).map(|i| f64::from(i) / 24.0).collect();
        let events = [Span {
            start_ts: T0 + 3_600_000_000_000,
            end_ts: None,
            label: "PK x <b>".into(),
        }];
        let far = [Span {
            start_ts: T0 - 86_400_000_000_000 * 400,
            end_ts: Some(T0 - 86_400_000_000_000 * 300),
            label: "old".into(),
        }];
        let alerts = [Span {
            start_ts: T0 + 4_000_000_000_000,
            end_ts: Some(T0 + 5_000_000_000_000),
            label: "spike".into(),
        }];
        let svg = time_chart(&chart(
            &ts,
            vec![Plot {
                name: "share",
                values: &vals,
                color: "#000",
                kind: PlotKind::Line,
            }],
            &events,
            &alerts,
        ));
        check_balanced(&svg).unwrap();
        assert_eq!(svg.matches(r#"class="event-band""#).count(), 1);
        assert_eq!(svg.matches(r#"class="alert-span""#).count(), 1);
        assert!(svg.contains("PK x &lt;b&gt;"));
        assert!(
            svg.contains(">17:00<") || svg.contains(">17:30<"),
            "UTC tick labels: {svg}"
        );
        assert!(svg.contains("time (UTC), 2024-02-17"));
        let none = time_chart(&chart(&ts, vec![], &far, &[]));
        assert!(
            !none.contains("event-band\""),
            "events outside the span are not drawn"
        );
    }

    #[test]
    fn value_formats() {
        assert_eq!(ValueFormat::Ratio.format(0.25, 0.1), "25%");
        assert_eq!(ValueFormat::Ratio.format(0.255, 0.001), "25.5%");
        assert_eq!(ValueFormat::Count.format(1500.0, 500.0), "1.5k");
        assert_eq!(ValueFormat::Count.format(12.0, 0.0), "12");
        assert_eq!(ValueFormat::Bytes.format(2_000_000.0, 0.0), "2 MB");
        assert_eq!(ValueFormat::Count.format(f64::NAN, 0.0), "–");
        assert_eq!(fmt_utc(T0), "2024-02-17T17:00:00Z");
        assert_eq!(
            escape("<a href='x'>&\"\u{1}"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;\u{fffd}"
        );
    }

    #[test]
    fn many_windows_are_bucketed() {
        let ts: Vec<i64> = (0..50_000).map(|i| T0 + i * 60_000_000_000).collect();
        let vals: Vec<f64> = (0..50_000).map(|i| f64::from(i % 7)).collect();
        let svg = time_chart(&chart(
            &ts,
            vec![Plot {
                name: "a",
                values: &vals,
                color: "#000",
                kind: PlotKind::StackedBar,
            }],
            &[],
            &[],
        ));
        check_balanced(&svg).unwrap();
        assert!(svg.len() < 400_000, "{} bytes", svg.len());
    }

    /// Numbers in every attribute that holds coordinates (`d`, `x`, `y`, `width`...).
    fn coordinates(svg: &str) -> Vec<String> {
        let mut out = Vec::new();
        for attr in [
            " d=\"",
            " x=\"",
            " y=\"",
            " x1=\"",
            " x2=\"",
            " y1=\"",
            " y2=\"",
            " cx=\"",
            " cy=\"",
            " width=\"",
            " height=\"",
        ] {
            let mut rest = svg;
            while let Some(at) = rest.find(attr) {
                let value = &rest[at + attr.len()..];
                let end = value.find('"').unwrap_or(value.len());
                out.push(value[..end].to_string());
                rest = &value[end..];
            }
        }
        out
    }

    fn platform_test_chart<'a>(
        ts: &'a [i64],
        platforms: Vec<RatioLine<'a>>,
        control: Option<RatioLine<'a>>,
        alerts: &'a [PlatformAlert],
        events: &'a [Span],
    ) -> PlatformChart<'a> {
        PlatformChart {
            id: "chart-platforms",
            title: "Reachability <per platform>",
            timestamps: ts,
            step_nanos: 3_600_000_000_000,
            platforms,
            control,
            min_attempts: 10.0,
            alerts,
            events,
        }
    }

    #[test]
    fn platform_chart_draws_a_path_per_platform_sparse_windows_dotted_and_alerts_per_platform() {
        let n = 24usize;
        let ts: Vec<i64> = (0..n as i64).map(|i| T0 + i * 3_600_000_000_000).collect();
        // x: 20 attempts a window, blocked from window 12; at night (4-6) only 3 attempts.
        let x_ratio: Vec<f64> = (0..n).map(|i| if i < 12 { 0.95 } else { 0.1 }).collect();
        let x_att: Vec<f64> = (0..n)
            .map(|i| if (4..7).contains(&i) { 3.0 } else { 20.0 })
            .collect();
        // youtube: always enough attempts, never sparse.
        let yt_ratio = vec![0.9; n];
        let yt_att = vec![15.0; n];
        let control = vec![1.0; n];
        let alerts = [
            PlatformAlert {
                platform: Some(0),
                span: Span {
                    start_ts: ts[12],
                    end_ts: None,
                    label: "alert 0: BlockSuspected on platform_x_success_ratio".into(),
                },
            },
            PlatformAlert {
                platform: None,
                span: Span {
                    start_ts: ts[2],
                    end_ts: Some(ts[3]),
                    label: "pooled".into(),
                },
            },
        ];
        let events = [Span {
            start_ts: ts[13],
            end_ts: None,
            label: "PK x 2024-02-18".into(),
        }];
        let svg = platform_chart(&platform_test_chart(
            &ts,
            vec![
                RatioLine {
                    name: "x",
                    series: "platform_x_success_ratio",
                    ratio: &x_ratio,
                    attempts: &x_att,
                    color: OKABE_ITO[0],
                },
                RatioLine {
                    name: "youtube",
                    series: "platform_youtube_success_ratio",
                    ratio: &yt_ratio,
                    attempts: &yt_att,
                    color: OKABE_ITO[1],
                },
            ],
            Some(RatioLine {
                name: "control sites",
                series: "control_success_ratio",
                ratio: &control,
                attempts: &[],
                color: "#000",
            }),
            &alerts,
            &events,
        ));
        check_balanced(&svg).unwrap();
        assert!(svg.contains(
            r#"data-series="platform_x_success_ratio platform_youtube_success_ratio control_success_ratio""#
        ));
        assert_eq!(svg.matches(r#"<path class="platform-ratio" "#).count(), 2);
        assert_eq!(
            svg.matches(r#"<path class="platform-ratio" data-platform="x""#)
                .count(),
            1
        );
        assert_eq!(
            svg.matches(r#"class="platform-ratio-sparse""#).count(),
            1,
            "only x has sparse windows"
        );
        assert!(svg.contains(r#"<path class="platform-ratio-sparse" data-platform="x""#));
        assert_eq!(svg.matches(r#"<path class="control-ratio""#).count(), 1);
        // x's solid path lifts the pen over the three sparse night windows.
        let x_path = svg
            .split(r#"<path class="platform-ratio" data-platform="x" d=""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("x path");
        assert_eq!(x_path.matches('M').count(), 2, "{x_path}");
        assert_eq!(x_path.matches(['M', 'L']).count(), n - 3);
        assert!(svg.contains(r#"<rect class="alert-span" data-platform="x" x="#));
        assert!(svg.contains(&format!(r#"fill="{}" fill-opacity="0.12""#, OKABE_ITO[0])));
        assert_eq!(svg.matches(r#"class="alert-span""#).count(), 2);
        assert_eq!(svg.matches(r#"class="alert-lane""#).count(), 2);
        assert!(svg.contains(">alert: x<") && svg.contains(">alert: all platforms (pooled)<"));
        assert!(svg.contains(">fewer than 10 attempts in the window<"));
        assert!(svg.contains(r#"class="event-marker""#) && svg.contains(">PK x 2024-02-18<"));
        assert!(svg.contains("connection success ratio") && svg.contains("time (UTC)"));
        assert!(svg.contains(">100%<") && svg.contains(">0%<"));
        for c in coordinates(&svg) {
            assert!(!c.contains("NaN") && !c.contains("inf"), "{c}");
        }
    }

    #[test]
    fn platform_chart_without_sparse_windows_or_data_draws_no_sparse_path() {
        let ts: Vec<i64> = (0..6).map(|i| T0 + i * 3_600_000_000_000).collect();
        let all_nan = [f64::NAN; 6];
        let none = [0.0; 6];
        let svg = platform_chart(&platform_test_chart(
            &ts,
            vec![RatioLine {
                name: "signal",
                series: "platform_signal_success_ratio",
                ratio: &all_nan,
                attempts: &none,
                color: OKABE_ITO[2],
            }],
            None,
            &[],
            &[],
        ));
        check_balanced(&svg).unwrap();
        assert!(!svg.contains("platform-ratio-sparse") && !svg.contains("fewer than"));
        assert!(!svg.contains("NaN"));
        let empty = platform_chart(&platform_test_chart(&[], vec![], None, &[], &[]));
        check_balanced(&empty).unwrap();
        assert!(empty.contains("no data"));
    }

    #[test]
    fn bucketed_ratios_are_pooled_by_attempts() {
        let (r, a) = bucket_ratio(&[1.0, 0.0, f64::NAN, 0.5], &[30.0, 10.0, 0.0, 2.0], 4, 2);
        assert_eq!(r[0], 0.75);
        assert_eq!(a, vec![40.0, 2.0]);
        assert_eq!(r[1], 0.5);
        let (r, _) = bucket_ratio(&[1.0, 0.0], &[], 2, 2);
        assert_eq!(r, vec![0.5]);
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(0.0),
            -10.0f64..10.0,
            any::<f64>(),
        ]
    }

    proptest! {
        #[test]
        fn time_charts_never_panic_and_are_well_formed(
            start in prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), Just(T0), any::<i64>()],
            step in prop_oneof![Just(0i64), Just(-5i64), Just(i64::MAX), Just(300_000_000_000i64), any::<i64>()],
            jitter in proptest::collection::vec(any::<i64>(), 0..3),
            a in proptest::collection::vec(value(), 0..40),
            b in proptest::collection::vec(value(), 0..40),
            span in (any::<i64>(), proptest::option::of(any::<i64>())),
            name in ".{0,12}",
        ) {
            let mut ts: Vec<i64> = (0..a.len().max(b.len())).map(|i| start.saturating_add(step.saturating_mul(i as i64))).collect();
            ts.extend(jitter);
            let events = [Span { start_ts: span.0, end_ts: span.1, label: name.clone() }];
            let plots = vec![
                Plot { name: &name, values: &a, color: "#000", kind: PlotKind::Line },
                Plot { name: "b", values: &b, color: "#111", kind: PlotKind::StackedArea },
                Plot { name: "c", values: &a, color: "#222", kind: PlotKind::StackedArea },
                Plot { name: "d", values: &b, color: "#333", kind: PlotKind::StackedBar },
            ];
            for fmt in [ValueFormat::Ratio, ValueFormat::Count, ValueFormat::Bytes] {
                let c = TimeChart { step_nanos: step, y_format: fmt, ..chart(&ts, plots.clone(), &events, &events) };
                let svg = time_chart(&c);
                prop_assert!(check_balanced(&svg).is_ok(), "{:?}", check_balanced(&svg));
                if !name.contains("NaN") && !name.contains("inf") {
                    prop_assert!(!svg.contains("NaN") && !svg.contains("inf"));
                }
            }
        }

        #[test]
        fn platform_charts_never_panic_and_have_finite_coordinates(
            start in prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(T0), any::<i64>()],
            step in prop_oneof![Just(0i64), Just(-5i64), Just(3_600_000_000_000i64), any::<i64>()],
            ratio in proptest::collection::vec(value(), 0..40),
            attempts in proptest::collection::vec(value(), 0..40),
            min_attempts in value(),
            span in (any::<i64>(), proptest::option::of(any::<i64>())),
            platform in proptest::option::of(0usize..3),
            name in "[a-z<&\"]{0,10}",
        ) {
            let ts: Vec<i64> = (0..ratio.len()).map(|i| start.saturating_add(step.saturating_mul(i as i64))).collect();
            let alerts = [PlatformAlert { platform, span: Span { start_ts: span.0, end_ts: span.1, label: name.clone() } }];
            let events = [Span { start_ts: span.0, end_ts: span.1, label: name.clone() }];
            let line = RatioLine { name: &name, series: &name, ratio: &ratio, attempts: &attempts, color: OKABE_ITO[0] };
            let c = PlatformChart {
                step_nanos: step,
                min_attempts,
                ..platform_test_chart(&ts, vec![line, RatioLine { attempts: &[], ..line }], Some(line), &alerts, &events)
            };
            let svg = platform_chart(&c);
            prop_assert!(check_balanced(&svg).is_ok(), "{:?}", check_balanced(&svg));
            for coordinate in coordinates(&svg) {
                prop_assert!(!coordinate.contains("NaN") && !coordinate.contains("inf"), "{}", coordinate);
            }
        }

        #[test]
        fn bar_charts_never_panic_and_are_well_formed(
            cats in proptest::collection::vec(".{0,40}", 0..12),
            v in proptest::collection::vec(value(), 0..12),
        ) {
            let measures = vec![
                Measure { name: "flows", values: &v, format: ValueFormat::Count, color: "#000" },
                Measure { name: "bytes", values: &v, format: ValueFormat::Bytes, color: "#111" },
            ];
            let svg = bar_chart(&BarChart { id: "x", title: "t", categories: &cats, measures });
            prop_assert!(check_balanced(&svg).is_ok(), "{:?}", check_balanced(&svg));
            if !cats.iter().any(|c| c.contains("NaN") || c.contains("inf")) {
                prop_assert!(!svg.contains("NaN") && !svg.contains("inf"));
            }
        }
    }
}
