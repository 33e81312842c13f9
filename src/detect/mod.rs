//! Detect: turns per-window series (VPN host share, VPN hosts, new adopters, platform and control
//! success ratios) into alerts, and lines the alerts up with a calendar of known blocks.
//!
//! Pure Rust, no polars: the stats stage hands over plain [`Series`] values.
//!
//! - [`baseline`]: robust seasonal / trailing baseline, frozen while an event is open.
//! - [`spike`]: point spikes (robust z-score) and sustained shifts (two-sided CUSUM) on the
//!   residual against the baseline -> [`Alert`]s, with per-window minimum absolute changes
//!   ([`DetectContext`]) and, inside detected blocks, a Poisson test of event counts such as
//!   new VPN adopters ([`EventCountConfig`]). Entry point: [`detect`] / [`detect_in_context`].
//! - [`reachability`]: platform success ratio drops while controls hold -> `BlockSuspected`;
//!   both drop -> `Outage`. Judged per platform, the alert naming it (`platform` evidence).
//! - [`calendar`]: built-in, sourced block events plus the user's CSV file.
//! - [`align`](mod@align): scores how alerts line up with calendar events.
//! - [`nab`]: Numenta Anomaly Benchmark reader and scorer (evaluation of [`detect`]). With
//!   [`nab::nab_config`] (the detector's novelty mode) on all 58 files (116 windows): standard
//!   56.0, reward_low_FP 43.2, reward_low_FN 62.0; precision 0.272, recall 0.741
//!   (`tunnelwatch eval-nab` prints them beside the published scores).
//!
//! Contract: nothing here panics on any input (empty, constant, NaN, infinite or gappy series);
//! time stamps are UTC nanoseconds since the Unix epoch, as elsewhere in the crate.

pub mod align;
pub mod baseline;
pub mod calendar;
pub mod nab;
pub mod reachability;
pub mod spike;

use serde::{Deserialize, Serialize};

pub use align::{align, AlignConfig, Alignment, AlignmentReport};
pub use calendar::{
    builtin_events, parse_events, parse_events_csv, parse_events_toml, BlockEvent, CalendarError,
    VpnDemand,
};
pub use reachability::{
    detect_blocks, detect_platform_blocks, BlockConfig, PlatformSeries, ReachabilityInput,
};
pub use spike::{
    detect, detect_in_context, detect_with_events, DetectConfig, DetectContext, Detection,
    EventCountConfig,
};

/// Version of the JSON shape of [`Alert`] / [`AlignmentReport`]; bump on any breaking change.
pub const ALERTS_SCHEMA_VERSION: u32 = 1;

/// A regular time series: window `i` starts at `start_ts_nanos + i * step_nanos`.
/// `NaN` marks a missing window (no data), which is skipped, never treated as zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Start of window 0 (UTC ns since the epoch).
    pub start_ts_nanos: i64,
    /// Window length in ns (> 0).
    pub step_nanos: i64,
    /// One value per window; `NaN` = missing.
    pub values: Vec<f64>,
}

impl Series {
    /// Start time of window `index` (saturating).
    pub fn ts(&self, index: usize) -> i64 {
        let i = i64::try_from(index).unwrap_or(i64::MAX);
        self.start_ts_nanos
            .saturating_add(i.saturating_mul(self.step_nanos))
    }

    /// Index of the window holding `ts`, if inside the series.
    pub fn index_of(&self, ts: i64) -> Option<usize> {
        if self.step_nanos <= 0 || ts < self.start_ts_nanos {
            return None;
        }
        let i = usize::try_from((ts - self.start_ts_nanos) / self.step_nanos).ok()?;
        (i < self.values.len()).then_some(i)
    }
}

/// What an alert says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertKind {
    /// A short burst above the baseline (robust z-score).
    Spike,
    /// A short drop below the baseline.
    Dip,
    /// A sustained rise (CUSUM), e.g. VPN use surging after a block.
    LevelShiftUp,
    /// A sustained fall (CUSUM).
    LevelShiftDown,
    /// The platform's success ratio fell while the control sites' did not.
    BlockSuspected,
    /// The platform's and the control sites' success ratios fell together.
    Outage,
}

/// One detected event on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What happened.
    pub kind: AlertKind,
    /// The metric's name as given by the caller (`vpn_host_share`, ...).
    pub metric: String,
    /// Estimated onset (UTC ns): the first window of a spike, or for a shift the window after
    /// the CUSUM statistic last stood at zero.
    pub start_ts: i64,
    /// End (exclusive, UTC ns); `None` while the event is still open at the end of the series.
    pub end_ts: Option<i64>,
    /// Window of the largest deviation.
    pub peak_ts: i64,
    /// When the detector could first have raised it, streaming (UTC ns). Used for fair
    /// (causal) scoring: `start_ts` of a shift is estimated in hindsight.
    pub detected_ts: i64,
    /// Peak value divided by the baseline value at the peak (3.4 = "3.4x"; below 1 for drops).
    /// The baseline is floored at the scale floor, so a zero baseline gives a large finite ratio.
    pub magnitude: f64,
    /// Strength relative to the alarm threshold: peak `|z| / spike_z` for spikes, peak CUSUM
    /// statistic `/ h` for shifts (>= 1 means it alarmed).
    pub score: f64,
    /// Facts behind the alert, name -> value (baseline model, expected and observed values...).
    pub evidence: Vec<(String, String)>,
}

/// Formats UTC ns as `YYYY-MM-DDTHH:MM:SSZ` (for evidence and reports).
pub fn format_ts(nanos: i64) -> String {
    calendar::format_utc(nanos)
}
