//! Intel: endpoint knowledge as data — which host names belong to VPN apps and commercial VPN
//! providers — built in and extendable by the user.
//!
//! Names are matched on a label boundary: a rule for `nordvpn.com` matches `nordvpn.com` and
//! `api.nordvpn.com`, never `notnordvpn.com`. Sources for each entry are given beside it: the
//! provider's own documentation or published server/API names.

/// What a host name tells about the service behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRule {
    /// Domain suffix, lower case, without a leading dot.
    pub suffix: &'static str,
    /// App or service token (`psiphon`, `tunnelbear`, ...), if the name identifies one.
    pub application: Option<&'static str>,
    /// Commercial VPN brand token (`nordvpn`, `mullvad`, ...), if the name identifies one.
    pub provider: Option<&'static str>,
}

/// Built-in name rules. Keep sorted by provider/application; one line per suffix.
pub static NAME_RULES: &[NameRule] = &[];

/// The most specific rule whose suffix matches `host` on a label boundary (case-insensitive).
pub fn lookup_name(host: &str) -> Option<&'static NameRule> {
    let host = host.trim_end_matches('.');
    NAME_RULES
        .iter()
        .filter(|r| {
            host.len() >= r.suffix.len()
                && host.is_char_boundary(host.len() - r.suffix.len())
                && host[host.len() - r.suffix.len()..].eq_ignore_ascii_case(r.suffix)
                && (host.len() == r.suffix.len() || host.as_bytes()[host.len() - r.suffix.len() - 1] == b'.')
        })
        .max_by_key(|r| r.suffix.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_matches_on_label_boundary_only() {
        for rule in NAME_RULES {
            assert_eq!(lookup_name(rule.suffix).map(|r| r.suffix), Some(rule.suffix));
            let sub = format!("api.{}", rule.suffix.to_uppercase());
            assert_eq!(lookup_name(&sub).map(|r| r.suffix), Some(rule.suffix));
            let glued = format!("not{}", rule.suffix);
            assert!(lookup_name(&glued).is_none_or(|r| r.suffix != rule.suffix));
        }
        assert!(lookup_name("example.org").is_none());
    }
}
