//! Robust baselines: what a window's value "should" be, learnt only from accepted history.
//!
//! Two models, chosen per series by [`BaselineKind::for_series`]:
//! - **seasonal**: when the series covers at least [`SEASONAL_MIN_DAYS`] days and the step divides
//!   a day, the expected value of window `i` is the median of the accepted values at the same time
//!   of day on up to `seasonal_days` earlier days (older days are used when recent ones are
//!   missing or frozen). Until two such days exist, the trailing model is used.
//! - **trailing**: the median of the last `level_points` accepted values, moved along the robust
//!   slope of those values (newer-half median minus older-half median), so it follows a daily
//!   cycle instead of lagging behind it. It therefore also follows a slow ramp: slow ramps are
//!   found against the seasonal model only.
//!
//! The scale is `1.4826 * MAD` of the last `trailing_points` accepted residuals (the MAD of a
//! normal sample times 1.4826 estimates its standard deviation), floored so that a constant series
//! does not give an infinite z-score.
//!
//! "Accepted" is the caller's decision ([`Baseline::accept`]): the detectors do not accept the
//! windows of an open event, so the baseline stays **frozen** while a block lasts and a months-long
//! block never becomes the new normal.

/// Nanoseconds in a day.
pub const DAY_NANOS: i64 = 86_400_000_000_000;

/// A series must cover this many days before the seasonal model is chosen.
pub const SEASONAL_MIN_DAYS: i64 = 3;

/// Which baseline model a series gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineKind {
    /// Same time-of-day median over trailing days; `period` windows make one day.
    Seasonal { period: usize },
    /// Trailing median of recent windows.
    Trailing,
}

impl BaselineKind {
    /// Seasonal when `len * step` covers [`SEASONAL_MIN_DAYS`] days and `step` divides a day.
    pub fn for_series(len: usize, step_nanos: i64) -> BaselineKind {
        if step_nanos <= 0 || DAY_NANOS % step_nanos != 0 {
            return BaselineKind::Trailing;
        }
        let period = DAY_NANOS / step_nanos;
        let covered = i64::try_from(len)
            .unwrap_or(i64::MAX)
            .saturating_mul(step_nanos);
        if period >= 2 && covered >= SEASONAL_MIN_DAYS.saturating_mul(DAY_NANOS) {
            BaselineKind::Seasonal {
                period: usize::try_from(period).unwrap_or(usize::MAX),
            }
        } else {
            BaselineKind::Trailing
        }
    }

    /// Short name for evidence.
    pub fn name(self) -> &'static str {
        match self {
            BaselineKind::Seasonal { .. } => "seasonal",
            BaselineKind::Trailing => "trailing",
        }
    }
}

/// Tuning of the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineConfig {
    /// At most this many earlier days feed the same-time-of-day median.
    pub seasonal_days: usize,
    /// Trailing window (in windows) of the trailing median.
    pub level_points: usize,
    /// Trailing window (in windows) of the residual MAD.
    pub trailing_points: usize,
    /// Scale floor relative to the expected value (`0.02` = 2 %).
    pub rel_scale_floor: f64,
    /// Absolute scale floor.
    pub abs_scale_floor: f64,
    /// Residuals needed before a scale (and so a z-score) is given.
    pub min_residuals: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig {
            seasonal_days: 7,
            level_points: 12,
            trailing_points: 72,
            rel_scale_floor: 0.02,
            abs_scale_floor: 1e-9,
            min_residuals: 12,
        }
    }
}

/// Online baseline state over one series. Feed indices in increasing order.
#[derive(Debug, Clone)]
pub struct Baseline {
    kind: BaselineKind,
    cfg: BaselineConfig,
    /// Accepted values in order (compact: frozen and missing windows are absent).
    accepted: Vec<f64>,
    /// Window index of each accepted value.
    accepted_at: Vec<usize>,
    /// Accepted values per time-of-day phase (seasonal only).
    by_phase: Vec<Vec<f64>>,
    /// Residuals of accepted values against their expectation, in order.
    residuals: Vec<f64>,
    scratch: Vec<f64>,
}

impl Baseline {
    /// A fresh baseline of the given kind.
    pub fn new(kind: BaselineKind, cfg: BaselineConfig) -> Baseline {
        let phases = match kind {
            BaselineKind::Seasonal { period } => period,
            BaselineKind::Trailing => 0,
        };
        Baseline {
            kind,
            cfg,
            accepted: Vec::new(),
            accepted_at: Vec::new(),
            by_phase: vec![Vec::new(); phases],
            residuals: Vec::new(),
            scratch: Vec::with_capacity(cfg.trailing_points.max(cfg.seasonal_days)),
        }
    }

    /// The model in use.
    pub fn kind(&self) -> BaselineKind {
        self.kind
    }

    /// Expected value of window `index` and the model that gave it, from accepted history only.
    /// `None` during warm-up. Unless `frozen` (an event is open), the trailing model only uses
    /// values from the last `2 x level_points` windows, so it warms up again after a data gap.
    pub fn expected(&mut self, index: usize, frozen: bool) -> Option<(f64, &'static str)> {
        self.expected_with(index, frozen, true)
    }

    /// As [`Baseline::expected`] while a block found in the data lasts: the trailing model gives
    /// its level without the slope, since a slope learnt before the event would be carried on
    /// unchanged for the whole event (hours or months) instead of one window ahead.
    pub fn expected_during_event(&mut self, index: usize) -> Option<(f64, &'static str)> {
        self.expected_with(index, true, false)
    }

    fn expected_with(
        &mut self,
        index: usize,
        frozen: bool,
        with_slope: bool,
    ) -> Option<(f64, &'static str)> {
        if let BaselineKind::Seasonal { period } = self.kind {
            if let Some(hist) = self.by_phase.get(index % period.max(1)) {
                if hist.len() >= 2 {
                    let from = hist.len().saturating_sub(self.cfg.seasonal_days.max(1));
                    self.scratch.clear();
                    self.scratch
                        .extend_from_slice(hist.get(from..).unwrap_or(&[]));
                    return median(&mut self.scratch).map(|m| (m, "seasonal"));
                }
            }
        }
        let mut from = self
            .accepted
            .len()
            .saturating_sub(self.cfg.level_points.max(1));
        if !frozen {
            let horizon = index.saturating_sub(self.cfg.level_points.max(1).saturating_mul(2));
            from = from.max(self.accepted_at.partition_point(|&at| at < horizon));
            if self.accepted.len().saturating_sub(from) < 3 {
                return None;
            }
        }
        let recent = self.accepted.get(from..).unwrap_or(&[]);
        self.scratch.clear();
        self.scratch.extend_from_slice(recent);
        let level = median(&mut self.scratch)?;
        // Robust slope: median of the newer half minus median of the older half, per window;
        // the median sits mid-window, the next window is (len + 1) / 2 windows further on.
        let half = recent.len() / 2;
        if half < 3 || !with_slope {
            return Some((level, "trailing"));
        }
        self.scratch.clear();
        self.scratch
            .extend_from_slice(recent.get(..half).unwrap_or(&[]));
        let older = median(&mut self.scratch);
        self.scratch.clear();
        self.scratch
            .extend_from_slice(recent.get(recent.len() - half..).unwrap_or(&[]));
        let newer = median(&mut self.scratch);
        let slope = match (older, newer) {
            (Some(o), Some(n)) => (n - o) / (recent.len() - half) as f64,
            _ => 0.0,
        };
        let e = level + slope * (recent.len() + 1) as f64 / 2.0;
        Some((if e.is_finite() { e } else { level }, "trailing"))
    }

    /// Robust scale (sd estimate) of the residuals, floored; `None` until enough residuals exist.
    pub fn scale(&mut self, expected: f64) -> Option<f64> {
        if self.residuals.len() < self.cfg.min_residuals.max(1) {
            return None;
        }
        let from = self
            .residuals
            .len()
            .saturating_sub(self.cfg.trailing_points.max(self.cfg.min_residuals).max(1));
        self.scratch.clear();
        self.scratch
            .extend_from_slice(self.residuals.get(from..).unwrap_or(&[]));
        let mad = mad(&mut self.scratch)?;
        let floor = (self.cfg.rel_scale_floor * expected.abs()).max(self.cfg.abs_scale_floor);
        Some((1.4826 * mad).max(floor))
    }

    /// Adds window `index` with `value` to the learnt history; `expected` is what the baseline
    /// said before (its residual feeds the scale), `None` during warm-up.
    pub fn accept(&mut self, index: usize, value: f64, expected: Option<f64>) {
        if !value.is_finite() {
            return;
        }
        self.accepted.push(value);
        self.accepted_at.push(index);
        if let BaselineKind::Seasonal { period } = self.kind {
            if let Some(hist) = self.by_phase.get_mut(index % period.max(1)) {
                hist.push(value);
            }
        }
        if let Some(e) = expected.filter(|e| e.is_finite()) {
            self.residuals.push(value - e);
        }
    }

    /// Adds a value to the level history only (not to the residuals): used when an event is
    /// released after its maximum freeze, so the level is learnt without inflating the scale.
    pub fn accept_level_only(&mut self, index: usize, value: f64) {
        self.accept(index, value, None);
    }
}

/// The last `capacity` finite values of a stream, kept in arrival order and sorted, so that the
/// median, MAD and quantiles of the window cost O(log w) comparisons each (a push costs two
/// binary searches and a shift of at most `w` floats). The streaming (NAB-mode) detector keeps
/// several of these per series; the batch [`median`] / [`mad`] would cost O(w) per point.
#[derive(Debug, Clone)]
pub struct TrailingWindow {
    capacity: usize,
    order: std::collections::VecDeque<f64>,
    sorted: Vec<f64>,
}

impl TrailingWindow {
    /// An empty window holding at most `capacity` values (at least one).
    pub fn new(capacity: usize) -> TrailingWindow {
        let capacity = capacity.max(1);
        TrailingWindow {
            capacity,
            order: std::collections::VecDeque::with_capacity(capacity),
            sorted: Vec::with_capacity(capacity),
        }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True when nothing is held yet.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Adds `x`, dropping the oldest value when full; non-finite values are ignored.
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                let at = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
                if at < self.sorted.len() {
                    self.sorted.remove(at);
                }
            }
        }
        self.order.push_back(x);
        let at = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(at, x);
    }

    /// Median of the window; `None` when empty.
    pub fn median(&self) -> Option<f64> {
        let n = self.sorted.len();
        let upper = *self.sorted.get(n / 2)?;
        if n % 2 == 1 {
            return Some(upper);
        }
        Some((self.sorted.get(n / 2 - 1)? + upper) / 2.0)
    }

    /// Median absolute deviation from the median; `None` when empty.
    pub fn mad(&self) -> Option<f64> {
        let m = self.median()?;
        let n = self.sorted.len();
        let upper = self.kth_distance(m, n / 2)?;
        if n % 2 == 1 {
            return Some(upper);
        }
        Some((self.kth_distance(m, n / 2 - 1)? + upper) / 2.0)
    }

    /// The `q`-quantile (nearest rank, `q` clamped to [0, 1]); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let at = ((q * (n - 1) as f64).round() as usize).min(n - 1);
        self.sorted.get(at).copied()
    }

    /// The `k`-th smallest (0-based) of `|v - m|` over the window. The distances below `m`
    /// (read leftwards from the split) and above it (read rightwards) are two sorted runs; the
    /// k-th of their union is found by bisecting how many come from the lower run.
    fn kth_distance(&self, m: f64, k: usize) -> Option<f64> {
        let a = &self.sorted;
        let split = a.partition_point(|v| *v < m);
        let (n_lo, n_hi) = (split, a.len() - split);
        if k >= a.len() {
            return None;
        }
        let lo_dist = |i: usize| a.get(split.checked_sub(i + 1)?).map(|v| m - v);
        let hi_dist = |j: usize| a.get(split + j).map(|v| v - m);
        // Take `i` from the lower run and `k + 1 - i` from the upper one.
        let (mut lo, mut hi) = ((k + 1).saturating_sub(n_hi), (k + 1).min(n_lo));
        while lo < hi {
            let i = lo + (hi - lo) / 2;
            match (lo_dist(i), hi_dist(k - i)) {
                (Some(l), Some(h)) if l < h => lo = i + 1,
                _ => hi = i,
            }
        }
        let from_lo = lo.checked_sub(1).and_then(lo_dist);
        let from_hi = (k + 1 - lo).checked_sub(1).and_then(hi_dist);
        match (from_lo, from_hi) {
            (Some(l), Some(h)) => Some(l.max(h)),
            (l, h) => l.or(h),
        }
    }
}

/// Median of the finite values in `v` (reorders `v`); `None` when there are none.
pub fn median(v: &mut Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (_, upper, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = v.get(..mid)?.iter().copied().max_by(f64::total_cmp)?;
    Some((lower + upper) / 2.0)
}

/// Median absolute deviation from the median of the finite values in `v` (reorders `v`).
pub fn mad(v: &mut Vec<f64>) -> Option<f64> {
    let m = median(v)?;
    for x in v.iter_mut() {
        *x = (*x - m).abs();
    }
    median(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        assert_eq!(median(&mut vec![]), None);
        assert_eq!(median(&mut vec![f64::NAN]), None);
        assert_eq!(median(&mut vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut vec![1.0, f64::NAN, 5.0]), Some(3.0));
        assert_eq!(mad(&mut vec![1.0, 2.0, 3.0, 4.0, 100.0]), Some(1.0));
    }

    #[test]
    fn trailing_window_matches_batch_median_mad_and_quantile() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for capacity in [1usize, 2, 3, 8, 41] {
            let mut w = TrailingWindow::new(capacity);
            let mut all = Vec::new();
            for step in 0..400 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Few distinct values, so ties (the hard case for the MAD bisection) are common.
                let x = (state % 23) as f64 * 0.5 - 3.0;
                w.push(x);
                all.push(x);
                if step % 50 == 0 {
                    w.push(f64::NAN);
                }
                let tail = &all[all.len().saturating_sub(capacity)..];
                assert_eq!(w.len(), tail.len());
                assert_eq!(w.median(), median(&mut tail.to_vec()), "cap {capacity}");
                assert_eq!(
                    w.mad(),
                    mad(&mut tail.to_vec()),
                    "cap {capacity} step {step}"
                );
                let mut sorted = tail.to_vec();
                sorted.sort_by(f64::total_cmp);
                assert_eq!(w.quantile(1.0), sorted.last().copied());
                assert_eq!(w.quantile(0.0), sorted.first().copied());
            }
        }
        let empty = TrailingWindow::new(0);
        assert!(empty.is_empty());
        assert_eq!(
            (empty.median(), empty.mad(), empty.quantile(0.5)),
            (None, None, None)
        );
    }

    #[test]
    fn kind_depends_on_coverage_and_step() {
        let five_min = 300_000_000_000;
        assert_eq!(
            BaselineKind::for_series(288 * 3, five_min),
            BaselineKind::Seasonal { period: 288 }
        );
        assert_eq!(
            BaselineKind::for_series(288 * 3 - 1, five_min),
            BaselineKind::Trailing
        );
        assert_eq!(
            BaselineKind::for_series(10_000, 7_000_000_000),
            BaselineKind::Trailing
        );
        assert_eq!(BaselineKind::for_series(10_000, 0), BaselineKind::Trailing);
        assert_eq!(BaselineKind::for_series(10_000, -5), BaselineKind::Trailing);
    }

    #[test]
    fn seasonal_expectation_follows_time_of_day() {
        let period = 4;
        let mut b = Baseline::new(BaselineKind::Seasonal { period }, BaselineConfig::default());
        for i in 0..(period * 3) {
            b.accept(i, (i % period) as f64 * 10.0, None);
        }
        let (e, model) = b.expected(period * 3 + 2, false).unwrap();
        assert_eq!((e, model), (20.0, "seasonal"));
    }

    #[test]
    fn frozen_history_keeps_old_level() {
        let mut b = Baseline::new(BaselineKind::Trailing, BaselineConfig::default());
        for i in 0..50 {
            b.accept(i, 10.0, Some(10.0));
        }
        // Windows 50.. are not accepted (an event is open): the expectation stays at 10.
        assert_eq!(b.expected(500, true).map(|x| x.0), Some(10.0));
        assert_eq!(
            b.expected(500, false),
            None,
            "after a gap the trailing model warms up again"
        );
        let s = b.scale(10.0).unwrap();
        assert!(
            (s - 0.2).abs() < 1e-12,
            "relative floor applies to a constant series: {s}"
        );
    }
}
