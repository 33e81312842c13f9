//! Attempts per platform and control site over a whole run, by how they ended: the run
//! summary's `platforms` (terminal line and `summary.json`). The per-window series count the
//! same attempts ([`super::flow_attempt`], [`super::StatsConfig::attempt`]); this is their total, for a reader who wants to
//! know at a glance whether X was reachable in the capture at all.

use std::collections::BTreeMap;

use super::AttemptResult;
use crate::intel::platforms::{Platform, PlatformMatcher};

/// Every [`AttemptResult`], in the order of [`PlatformAttempts::by_result`] (and of the JSON
/// keys).
pub const ALL_RESULTS: [AttemptResult; 7] = [
    AttemptResult::Success,
    AttemptResult::DnsFailure,
    AttemptResult::ResetAfterSyn,
    AttemptResult::ResetAfterClientData,
    AttemptResult::NoReply,
    AttemptResult::Throttled,
    AttemptResult::Other,
];

impl AttemptResult {
    /// Place in [`ALL_RESULTS`].
    pub fn index(self) -> usize {
        match self {
            AttemptResult::Success => 0,
            AttemptResult::DnsFailure => 1,
            AttemptResult::ResetAfterSyn => 2,
            AttemptResult::ResetAfterClientData => 3,
            AttemptResult::NoReply => 4,
            AttemptResult::Throttled => 5,
            AttemptResult::Other => 6,
        }
    }
}

/// One platform's attempts over the run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlatformAttempts {
    /// A control site ([`Platform::control`]).
    pub control: bool,
    /// Attempts by result, in [`ALL_RESULTS`] order.
    pub by_result: [u64; 7],
}

impl PlatformAttempts {
    pub fn attempts(&self) -> u64 {
        self.by_result.iter().sum()
    }

    pub fn count(&self, result: AttemptResult) -> u64 {
        self.by_result.get(result.index()).copied().unwrap_or(0)
    }
}

/// A flow's attempt as the thread that ended it can hand it on without a string: the
/// platform's place in its [`PlatformMatcher`] and the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptTag {
    pub platform: u32,
    pub result: AttemptResult,
}

impl AttemptTag {
    /// The tag of `platform` (one of `matcher`'s) and `result`.
    pub fn new(
        matcher: &PlatformMatcher,
        platform: &Platform,
        result: AttemptResult,
    ) -> Option<Self> {
        let i = matcher
            .platforms()
            .iter()
            .position(|p| std::ptr::eq(p, platform))?;
        Some(AttemptTag {
            platform: u32::try_from(i).ok()?,
            result,
        })
    }
}

/// Attempts per platform or control site, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlatformTally {
    platforms: BTreeMap<String, PlatformAttempts>,
}

impl PlatformTally {
    /// Adds `n` attempts on `platform` that ended in `result`.
    pub fn add(&mut self, platform: &Platform, result: AttemptResult, n: u64) {
        let entry = match self.platforms.get_mut(platform.name.as_str()) {
            Some(entry) => entry,
            None => self
                .platforms
                .entry(platform.name.clone())
                .or_insert(PlatformAttempts {
                    control: platform.control,
                    by_result: [0; 7],
                }),
        };
        if let Some(c) = entry.by_result.get_mut(result.index()) {
            *c += n;
        }
    }

    /// Adds `n` attempts of `tag`, whose platform is one of `matcher`'s.
    pub fn add_tag(&mut self, matcher: &PlatformMatcher, tag: AttemptTag, n: u64) {
        if let Some(p) = usize::try_from(tag.platform)
            .ok()
            .and_then(|i| matcher.platforms().get(i))
        {
            self.add(p, tag.result, n);
        }
    }

    /// Platforms by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PlatformAttempts)> {
        self.platforms.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// `summary.json`'s `platforms`: per platform `control`, `attempts` and a count per
    /// result ([`AttemptResult::name`]).
    pub fn to_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .iter()
            .map(|(name, a)| {
                let mut fields = serde_json::Map::new();
                fields.insert("control".into(), a.control.into());
                fields.insert("attempts".into(), a.attempts().into());
                for result in ALL_RESULTS {
                    fields.insert(result.name().into(), a.count(result).into());
                }
                (name.to_string(), serde_json::Value::Object(fields))
            })
            .collect();
        serde_json::Value::Object(map)
    }

    /// A line per platform (then per control site), most attempts first, at most `limit` of
    /// each: `x 412 attempts, 61 % reached (reset_after_syn 40, no_reply 120)`.
    pub fn summary_lines(&self, limit: usize) -> (Vec<String>, Vec<String>) {
        let mut by_attempts: Vec<_> = self.iter().collect();
        by_attempts.sort_by(|a, b| b.1.attempts().cmp(&a.1.attempts()).then(a.0.cmp(b.0)));
        let describe = |(name, a): &(&str, &PlatformAttempts)| {
            let attempts = a.attempts();
            let reached = a.count(AttemptResult::Success) as f64 * 100.0 / attempts.max(1) as f64;
            let failures: Vec<String> = super::FAILURE_KINDS
                .into_iter()
                .filter(|&k| a.count(k) > 0)
                .map(|k| format!("{} {}", k.name(), a.count(k)))
                .collect();
            let plural = if attempts == 1 { "" } else { "s" };
            if a.count(AttemptResult::Other) == attempts {
                // One-way records (most flow exports) and flows reset by their clients tell
                // neither success nor failure: `0 % reached` would read as a block.
                return format!(
                    "{name} {attempt} attempt{plural}, none judged (one-way flows, or reset by the client)",
                    attempt = attempts
                );
            }
            let mut text = format!("{name} {attempts} attempt{plural}, {reached:.0} % reached");
            if !failures.is_empty() {
                text.push_str(&format!(" ({})", failures.join(", ")));
            }
            text
        };
        let pick = |control: bool| {
            by_attempts
                .iter()
                .filter(|(_, a)| a.control == control)
                .take(limit)
                .map(describe)
                .collect()
        };
        (pick(false), pick(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(name: &str, control: bool) -> Platform {
        Platform {
            name: name.into(),
            domains: vec![format!("{name}.example")],
            prefixes: Vec::new(),
            control,
        }
    }

    #[test]
    fn results_have_their_own_places() {
        for (i, r) in ALL_RESULTS.into_iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn tallies_count_by_platform_and_result() {
        let x = platform("x", false);
        let wiki = platform("wikipedia", true);
        let mut t = PlatformTally::default();
        t.add(&x, AttemptResult::Success, 3);
        t.add(&x, AttemptResult::NoReply, 1);
        t.add(&x, AttemptResult::ResetAfterSyn, 4);
        t.add(&wiki, AttemptResult::Success, 1);
        let (platforms, controls) = t.summary_lines(8);
        assert_eq!(
            platforms,
            ["x 8 attempts, 38 % reached (reset_after_syn 4, no_reply 1)"]
        );
        assert_eq!(controls, ["wikipedia 1 attempt, 100 % reached"]);
        // Attempts that tell neither success nor failure are not shown as 0 % reached.
        let mut one_way = PlatformTally::default();
        one_way.add(&x, AttemptResult::Other, 4);
        let (lines, _) = one_way.summary_lines(8);
        assert!(
            lines[0].starts_with("x 4 attempts, none judged"),
            "{lines:?}"
        );
        let json = t.to_json();
        assert_eq!(json["x"]["attempts"], 8);
        assert_eq!(json["x"]["success"], 3);
        assert_eq!(json["x"]["reset_after_syn"], 4);
        assert_eq!(json["x"]["control"], false);
        assert_eq!(json["wikipedia"]["control"], true);
    }

    #[test]
    fn tags_name_the_matchers_platforms() {
        let matcher = PlatformMatcher::new(vec![platform("a", false), platform("b", true)]);
        let b = matcher.platforms().get(1).expect("two platforms");
        let tag = AttemptTag::new(&matcher, b, AttemptResult::DnsFailure).expect("its own");
        assert_eq!(tag.platform, 1);
        // A platform that is not one of the matcher's has no tag.
        assert_eq!(
            AttemptTag::new(&matcher, &platform("b", true), AttemptResult::Success),
            None
        );
        let mut t = PlatformTally::default();
        t.add_tag(&matcher, tag, 5);
        t.add_tag(&matcher, AttemptTag { platform: 9, ..tag }, 5);
        assert_eq!(t.iter().count(), 1);
        assert_eq!(t.to_json()["b"]["dns_failure"], 5);
    }
}
