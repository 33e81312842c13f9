//! Endpoint lists: Tor relays (all relays, not only exits) and VPN provider or app address
//! ranges. Two sources, merged at lookup:
//! - built in: the server (ingress) addresses commercial VPN providers publish for their apps,
//!   as data files under `src/intel/data/providers/` (one per provider; see its README for
//!   where each comes from and how to regenerate it). `--no-builtin-endpoints` turns them off.
//! - the user's: `--endpoints FILE` and `--tor-relays FILE`, loaded at startup. On an equal
//!   prefix length a user entry wins over a built-in one; a longer prefix wins either way.
//!
//! Formats, one entry per line, `#` comments:
//! - `--endpoints FILE` (and the built-in files): `PREFIX,TOKEN` — TOKEN `tor` for a relay,
//!   else a provider or app token (`mullvad`, `nordvpn`, `psiphon`...); PREFIX an address or
//!   CIDR prefix.
//! - `--tor-relays FILE`: a Tor network-status consensus (its `r ` lines carry each relay's
//!   address, dir-spec §3.4.1) or plain addresses, one per line.
//!
//! A lookup runs once per flow against thousands of prefixes, so prefixes are kept per address
//! family in one hash map per prefix length (masked network -> token) and probed from the
//! longest length down: a handful of hash probes, whatever the list size.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use foldhash::fast::FixedState;

use super::cidr::Cidr;

/// The built-in provider lists: `(provider token, file text)`. Each file holds `PREFIX,TOKEN`
/// lines with that token only.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    ("mullvad", include_str!("data/providers/mullvad.txt")),
    ("nordvpn", include_str!("data/providers/nordvpn.txt")),
    ("protonvpn", include_str!("data/providers/protonvpn.txt")),
    ("surfshark", include_str!("data/providers/surfshark.txt")),
];

/// An address family's bits as an integer, masked to a prefix length.
trait AddressBits: Copy + Eq + Hash {
    /// The address with every bit after the first `len` cleared.
    fn masked(self, len: u8) -> Self;
}

impl AddressBits for u32 {
    fn masked(self, len: u8) -> Self {
        match len {
            0 => 0,
            l => self & (u32::MAX << (32 - u32::from(l.min(32)))),
        }
    }
}

impl AddressBits for u128 {
    fn masked(self, len: u8) -> Self {
        match len {
            0 => 0,
            l => self & (u128::MAX << (128 - u32::from(l.min(128)))),
        }
    }
}

/// Longest-prefix index for one address family: one map per prefix length present, longest
/// length first.
#[derive(Debug, Clone)]
struct PrefixIndex<K, V> {
    by_len: Vec<(u8, HashMap<K, V, FixedState>)>,
}

impl<K, V> Default for PrefixIndex<K, V> {
    fn default() -> Self {
        PrefixIndex { by_len: Vec::new() }
    }
}

impl<K: AddressBits, V> PrefixIndex<K, V> {
    /// Adds (or replaces) the value of a prefix.
    fn insert(&mut self, network: K, len: u8, value: V) {
        let slot = match self.by_len.iter().position(|(l, _)| *l <= len) {
            Some(i) if self.by_len[i].0 == len => i,
            Some(i) => {
                self.by_len.insert(i, (len, HashMap::default()));
                i
            }
            None => {
                self.by_len.push((len, HashMap::default()));
                self.by_len.len() - 1
            }
        };
        self.by_len[slot].1.insert(network.masked(len), value);
    }

    /// The longest prefix holding `addr`, with its length.
    fn longest(&self, addr: K) -> Option<(u8, &V)> {
        self.by_len
            .iter()
            .find_map(|(len, map)| map.get(&addr.masked(*len)).map(|v| (*len, v)))
    }

    fn len(&self) -> usize {
        self.by_len.iter().map(|(_, m)| m.len()).sum()
    }
}

/// IPv4 and IPv6 prefixes with a value each.
#[derive(Debug, Clone)]
struct Prefixes<V> {
    v4: PrefixIndex<u32, V>,
    v6: PrefixIndex<u128, V>,
}

impl<V> Default for Prefixes<V> {
    fn default() -> Self {
        Prefixes {
            v4: PrefixIndex::default(),
            v6: PrefixIndex::default(),
        }
    }
}

impl<V> Prefixes<V> {
    fn insert(&mut self, network: IpAddr, len: u8, value: V) {
        match network {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), len, value),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), len, value),
        }
    }

    /// The longest prefix holding `ip`. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) that no
    /// IPv6 prefix holds is looked up as the IPv4 address it carries.
    fn longest(&self, ip: IpAddr) -> Option<(u8, &V)> {
        match ip {
            IpAddr::V4(a) => self.v4.longest(u32::from(a)),
            IpAddr::V6(a) => self
                .v6
                .longest(u128::from(a))
                .or_else(|| a.to_ipv4_mapped().and_then(|v4| self.v4.longest(v4.into()))),
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// An address list: Tor relays and provider/app ranges.
#[derive(Debug, Default, Clone)]
pub struct EndpointList {
    tor: Prefixes<()>,
    services: Prefixes<&'static str>,
    /// Tokens seen so far, each leaked once: they live for the whole run and are few.
    tokens: Vec<&'static str>,
}

/// What an address is known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    TorRelay,
    /// A provider or app token.
    Service(&'static str),
}

static USER_LIST: OnceLock<EndpointList> = OnceLock::new();
static BUILTIN_LIST: OnceLock<EndpointList> = OnceLock::new();
static BUILTIN_DISABLED: AtomicBool = AtomicBool::new(false);

/// Installs the run's user endpoint list (once per process; later calls are ignored).
pub fn install(list: EndpointList) {
    let _ = USER_LIST.set(list);
}

/// Stops consulting the built-in provider lists for the rest of the process.
pub fn disable_builtin() {
    BUILTIN_DISABLED.store(true, Ordering::Relaxed);
}

/// The built-in provider lists, parsed on first use.
pub fn builtin() -> &'static EndpointList {
    BUILTIN_LIST.get_or_init(|| {
        let mut list = EndpointList::default();
        for (_, text) in BUILTIN_FILES {
            // The files are part of the source and a test parses each one; a bad line (which
            // that test would catch) ends that file's entries instead of the run.
            let _ = list.load_endpoints(text);
        }
        list
    })
}

/// What the user's list and the built-in lists say about an address: a user's Tor relay first,
/// then the longest matching provider/app prefix of either list (the user's on a tie).
pub fn lookup(ip: IpAddr) -> Option<Endpoint> {
    let built_in = (!BUILTIN_DISABLED.load(Ordering::Relaxed)).then(builtin);
    lookup_in(USER_LIST.get(), built_in, ip)
}

/// [`lookup`] over given lists.
fn lookup_in(
    user: Option<&EndpointList>,
    built_in: Option<&EndpointList>,
    ip: IpAddr,
) -> Option<Endpoint> {
    if user.is_some_and(|u| u.is_tor_relay(ip)) {
        return Some(Endpoint::TorRelay);
    }
    // `max_by_key` keeps the last of equal keys: the user's entry, listed second.
    [
        built_in.and_then(|b| b.service(ip)),
        user.and_then(|u| u.service(ip)),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|(len, _)| *len)
    .map(|(_, token)| Endpoint::Service(token))
}

impl EndpointList {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct prefixes held (relays and ranges).
    pub fn len(&self) -> usize {
        self.tor.len() + self.services.len()
    }

    /// What this list alone says about an address: a Tor relay first, else the token of the
    /// longest matching range.
    pub fn lookup(&self, ip: IpAddr) -> Option<Endpoint> {
        if self.is_tor_relay(ip) {
            return Some(Endpoint::TorRelay);
        }
        self.service(ip).map(|(_, t)| Endpoint::Service(t))
    }

    fn is_tor_relay(&self, ip: IpAddr) -> bool {
        self.tor.longest(ip).is_some()
    }

    /// The longest provider/app range holding `ip`: its length and token.
    fn service(&self, ip: IpAddr) -> Option<(u8, &'static str)> {
        self.services.longest(ip).map(|(len, t)| (len, *t))
    }

    /// Provider/app prefixes per token, for summaries and tests.
    pub fn service_counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = self.tokens.iter().map(|t| (*t, 0)).collect();
        let v4 = self.services.v4.by_len.iter().flat_map(|(_, m)| m.values());
        let v6 = self.services.v6.by_len.iter().flat_map(|(_, m)| m.values());
        for token in v4.chain(v6) {
            if let Some(c) = counts.iter_mut().find(|(t, _)| t == token) {
                c.1 += 1;
            }
        }
        counts.retain(|(_, n)| *n > 0);
        counts
    }

    /// The interned lower-case form of `token`: a few distinct tokens, each leaked once, for
    /// thousands of lines (no allocation per line).
    fn intern(&mut self, token: &str) -> &'static str {
        match self.tokens.iter().find(|t| t.eq_ignore_ascii_case(token)) {
            Some(t) => t,
            None => {
                let t: &'static str = Box::leak(token.to_ascii_lowercase().into_boxed_str());
                self.tokens.push(t);
                t
            }
        }
    }

    /// Adds `PREFIX,TOKEN` lines; returns how many entries were read. A later line for the same
    /// prefix replaces an earlier one.
    pub fn load_endpoints(&mut self, text: &str) -> Result<usize, String> {
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (prefix, token) = line
                .split_once(',')
                .ok_or_else(|| format!("line {}: expected PREFIX,TOKEN", i + 1))?;
            let (network, len) =
                parse_prefix(prefix).map_err(|e| format!("line {}: {e}", i + 1))?;
            let token = token.trim();
            if token.is_empty()
                || !token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "line {}: token {token:?} must be letters, digits, _ or -",
                    i + 1
                ));
            }
            if token.eq_ignore_ascii_case("tor") {
                self.tor.insert(network, len, ());
            } else {
                let token = self.intern(token);
                self.services.insert(network, len, token);
            }
            n += 1;
        }
        Ok(n)
    }

    /// Adds relays from a consensus (`r` lines) or a plain address list.
    pub fn load_tor_relays(&mut self, text: &str) -> Result<usize, String> {
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let addr = if let Some(rest) = line.strip_prefix("r ") {
                // r nickname identity digest publication-date publication-time IP ORPort DirPort
                match rest.split_whitespace().nth(5) {
                    Some(a) => a,
                    None => {
                        return Err(format!(
                            "line {}: consensus r line without an address",
                            i + 1
                        ))
                    }
                }
            } else if line.contains(' ') {
                continue; // other consensus lines (s, v, w, p, ...)
            } else {
                line
            };
            let (network, len) = parse_prefix(addr).map_err(|e| format!("line {}: {e}", i + 1))?;
            self.tor.insert(network, len, ());
            n += 1;
        }
        Ok(n)
    }
}

/// An address or `ADDRESS/LEN` prefix, read (and its errors worded) by [`Cidr`]: its network
/// address, host bits cleared, and its length.
fn parse_prefix(text: &str) -> Result<(IpAddr, u8), String> {
    let cidr: Cidr = text.trim().parse()?;
    Ok((cidr.network(), cidr.prefix_len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn endpoints_and_consensus() {
        let mut l = EndpointList::default();
        assert_eq!(
            l.load_endpoints(
                "# mine\n198.51.100.0/24,mullvad\n198.51.100.7,nordvpn\n2001:db8::/32,tor\n"
            )
            .unwrap(),
            3
        );
        assert_eq!(
            l.lookup(ip("198.51.100.7")),
            Some(Endpoint::Service("nordvpn")),
            "longest prefix"
        );
        assert_eq!(
            l.lookup(ip("198.51.100.8")),
            Some(Endpoint::Service("mullvad"))
        );
        assert_eq!(l.lookup(ip("2001:db8::1")), Some(Endpoint::TorRelay));
        assert_eq!(l.lookup(ip("192.0.2.1")), None);
        let consensus = "network-status-version 3\nr moria1 lpXfw1/+uGEym58asExGOXAgzjE IpcU7dolas8+Q+oAzwgvZIWx7PA 2024-02-17 12:00:00 192.0.2.44 9101 9131\ns Authority Fast Running Stable V2Dir Valid\n";
        assert_eq!(l.load_tor_relays(consensus).unwrap(), 1);
        assert_eq!(l.lookup(ip("192.0.2.44")), Some(Endpoint::TorRelay));
        assert!(l
            .load_endpoints("10.0.0.0/8")
            .unwrap_err()
            .contains("line 1"));
        assert!(l
            .load_endpoints("10.0.0.0/8,bad token")
            .unwrap_err()
            .contains("token"));
        assert!(l
            .load_endpoints("10.0.0.0/33,x")
            .unwrap_err()
            .contains("line 1"));
        assert!(l
            .load_tor_relays("r only two")
            .unwrap_err()
            .contains("line 1"));
    }

    #[test]
    fn tokens_are_lower_case_whatever_their_case_in_the_file() {
        let mut l = EndpointList::default();
        let text = "198.51.100.0/24,MullVad\n203.0.113.0/24,mullvad\n192.0.2.0/24,TOR\n";
        assert_eq!(l.load_endpoints(text).unwrap(), 3);
        let first = l.lookup(ip("198.51.100.1"));
        assert_eq!(first, Some(Endpoint::Service("mullvad")));
        assert_eq!(l.lookup(ip("203.0.113.1")), first);
        assert_eq!(l.tokens.len(), 1, "one interned token for both spellings");
        assert_eq!(l.lookup(ip("192.0.2.1")), Some(Endpoint::TorRelay));
    }

    #[test]
    fn longest_prefix_wins_in_both_families_whatever_the_order() {
        let mut l = EndpointList::default();
        // Shorter prefixes after longer ones, host bits set on a prefix, and a /0.
        l.load_endpoints(
            "203.0.113.128/25,b\n203.0.113.77/24,a\n0.0.0.0/0,any\n\
             2001:db8:1::/48,v6long\n2001:db8::/32,v6short\n",
        )
        .unwrap();
        let svc = |s: &str| match l.lookup(ip(s)) {
            Some(Endpoint::Service(t)) => Some(t),
            _ => None,
        };
        assert_eq!(svc("203.0.113.200"), Some("b"));
        assert_eq!(svc("203.0.113.5"), Some("a"));
        assert_eq!(svc("8.8.8.8"), Some("any"));
        assert_eq!(svc("2001:db8:1::9"), Some("v6long"));
        assert_eq!(svc("2001:db8:2::9"), Some("v6short"));
        assert_eq!(svc("2001:db9::1"), None, "no IPv6 catch-all");
        // IPv4-mapped IPv6 falls back to the IPv4 prefixes.
        assert_eq!(svc("::ffff:203.0.113.200"), Some("b"));
        assert_eq!(l.len(), 5);
    }

    #[test]
    fn same_prefix_later_line_replaces_and_tokens_are_interned_once() {
        let mut l = EndpointList::default();
        l.load_endpoints("192.0.2.0/24,first\n192.0.2.9/24,second\n198.51.100.1,second\n")
            .unwrap();
        assert_eq!(l.lookup(ip("192.0.2.1")), Some(Endpoint::Service("second")));
        assert_eq!(l.len(), 2);
        assert_eq!(l.service_counts(), vec![("second", 2)]);
    }

    proptest::proptest! {
        /// Any text either loads or is refused with a line number; lookups on whatever loaded
        /// never panic.
        #[test]
        fn any_text_loads_or_is_refused_without_panicking(
            text in "[0-9a-f:./,# \n-]{0,200}",
            a in proptest::prelude::any::<u32>(),
            b in proptest::prelude::any::<u128>(),
        ) {
            let mut l = EndpointList::default();
            if let Err(e) = l.load_endpoints(&text) {
                proptest::prop_assert!(e.starts_with("line "), "{}", e);
            }
            if let Err(e) = l.load_tor_relays(&text) {
                proptest::prop_assert!(e.starts_with("line "), "{}", e);
            }
            let _ = l.lookup(IpAddr::V4(a.into()));
            let _ = l.lookup(IpAddr::V6(b.into()));
        }
    }

    #[test]
    fn builtin_files_parse_with_their_stated_counts() {
        let mut total = 0;
        for (token, text) in BUILTIN_FILES {
            // The header states the count: "# entries: N".
            let stated: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("# entries: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("{token}: no '# entries: N' header"));
            let mut one = EndpointList::default();
            let read = one
                .load_endpoints(text)
                .unwrap_or_else(|e| panic!("{token}: {e}"));
            assert_eq!(read, stated, "{token}: entries read");
            // Distinct prefixes, one token per file, no host bits set (garbage would collapse
            // onto another prefix and lower the count).
            assert_eq!(one.len(), stated, "{token}: duplicate prefixes");
            assert_eq!(one.service_counts(), vec![(*token, stated)], "{token}");
            assert!(one.tor.len() == 0, "{token}: no relays in a provider file");
            for line in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
            {
                let prefix = line.split(',').next().unwrap_or_default();
                let (network, len) = parse_prefix(prefix).unwrap();
                let masked: Cidr = prefix.parse().unwrap();
                assert_eq!(
                    format!("{network}/{len}"),
                    masked.to_string(),
                    "{token}: {line} has host bits set"
                );
                assert!(
                    !network.is_loopback() && !network.is_unspecified(),
                    "{line}"
                );
            }
            total += stated;
        }
        assert_eq!(builtin().len(), total, "no prefix shared between providers");
    }

    #[test]
    fn builtin_names_published_servers_and_user_entries_override() {
        // 198.54.131.98 is a relay address (ipv4_addr_in) in Mullvad's published list.
        assert_eq!(
            builtin().lookup(ip("198.54.131.98")),
            Some(Endpoint::Service("mullvad"))
        );
        assert_eq!(builtin().lookup(ip("192.0.2.1")), None);
        assert_eq!(builtin().lookup(ip("10.0.0.1")), None);
        // NordVPN's list: 2.56.190.2 and .6 are servers, .3 between them is not; 5.180.62.174/31
        // is a prefix nDPI's script merged from two adjacent servers.
        let nord = |a: &str| builtin().lookup(ip(a));
        assert_eq!(nord("2.56.190.2"), Some(Endpoint::Service("nordvpn")));
        assert_eq!(nord("2.56.190.6"), Some(Endpoint::Service("nordvpn")));
        assert_eq!(nord("2.56.190.3"), None);
        assert_eq!(nord("5.180.62.175"), Some(Endpoint::Service("nordvpn")));
        assert_eq!(nord("5.180.62.172"), None);
        // A user's equal-length entry beats the built-in one; a shorter one does not.
        let mut user = EndpointList::default();
        user.load_endpoints("198.54.131.98/32,myvpn\n198.54.131.0/24,other\n")
            .unwrap();
        let merged = |u: &EndpointList, a: IpAddr| match lookup_in(Some(u), Some(builtin()), a) {
            Some(Endpoint::Service(t)) => Some(t),
            _ => None,
        };
        assert_eq!(merged(&user, ip("198.54.131.98")), Some("myvpn"));
        let mut shorter = EndpointList::default();
        shorter.load_endpoints("198.54.131.0/24,other\n").unwrap();
        assert_eq!(merged(&shorter, ip("198.54.131.98")), Some("mullvad"));
        assert_eq!(merged(&shorter, ip("198.54.131.99")), Some("other"));
        // Without the built-in lists only the user's entries count.
        assert_eq!(
            lookup_in(Some(&shorter), None, ip("198.54.131.98")),
            Some(Endpoint::Service("other"))
        );
        assert_eq!(lookup_in(None, None, ip("198.54.131.98")), None);
        // A user's Tor relay beats any provider range.
        let mut relay = EndpointList::default();
        relay.load_tor_relays("198.54.131.98\n").unwrap();
        assert_eq!(
            lookup_in(Some(&relay), Some(builtin()), ip("198.54.131.98")),
            Some(Endpoint::TorRelay)
        );
    }
}
