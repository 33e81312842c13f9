//! User-supplied endpoint lists: Tor relays (all relays, not only exits) and VPN provider or
//! app address ranges. Addresses are facts a user brings (a Tor consensus, a provider's published
//! server list); nothing here is built in, so no address from a test capture can leak into it.
//!
//! Formats, one entry per line, `#` comments:
//! - `--endpoints FILE`: `PREFIX,TOKEN` — TOKEN `tor` for a relay, else a provider or app token
//!   (`mullvad`, `nordvpn`, `psiphon`...); PREFIX an address or CIDR prefix.
//! - `--tor-relays FILE`: a Tor network-status consensus (its `r ` lines carry each relay's
//!   address, dir-spec §3.4.1) or plain addresses, one per line.

use std::net::IpAddr;
use std::sync::OnceLock;

use super::cidr::Cidr;

/// Address lists loaded at startup.
#[derive(Debug, Default, Clone)]
pub struct EndpointList {
    tor: Vec<Cidr>,
    services: Vec<(Cidr, &'static str)>,
}

/// What an address is known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    TorRelay,
    /// A provider or app token.
    Service(&'static str),
}

static USER_LIST: OnceLock<EndpointList> = OnceLock::new();

/// Installs the run's endpoint list (once per process; later calls are ignored).
pub fn install(list: EndpointList) {
    let _ = USER_LIST.set(list);
}

/// What the installed list says about an address.
pub fn lookup(ip: IpAddr) -> Option<Endpoint> {
    USER_LIST.get()?.lookup(ip)
}

impl EndpointList {
    pub fn is_empty(&self) -> bool {
        self.tor.is_empty() && self.services.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tor.len() + self.services.len()
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<Endpoint> {
        if self.tor.iter().any(|c| c.contains(ip)) {
            return Some(Endpoint::TorRelay);
        }
        self.services
            .iter()
            .filter(|(c, _)| c.contains(ip))
            .max_by_key(|(c, _)| c.prefix_len())
            .map(|(_, t)| Endpoint::Service(t))
    }

    /// Adds `PREFIX,TOKEN` lines.
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
            let cidr: Cidr = prefix
                .trim()
                .parse()
                .map_err(|e| format!("line {}: {e}", i + 1))?;
            let token = token.trim().to_ascii_lowercase();
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
            if token == "tor" {
                self.tor.push(cidr);
            } else {
                // Tokens live for the whole run and are few (one per distinct name).
                let interned: &'static str = match self.services.iter().find(|(_, t)| **t == token)
                {
                    Some((_, t)) => t,
                    None => Box::leak(token.into_boxed_str()),
                };
                self.services.push((cidr, interned));
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
            let cidr: Cidr = addr.parse().map_err(|e| format!("line {}: {e}", i + 1))?;
            self.tor.push(cidr);
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            l.lookup("198.51.100.7".parse().unwrap()),
            Some(Endpoint::Service("nordvpn")),
            "longest prefix"
        );
        assert_eq!(
            l.lookup("198.51.100.8".parse().unwrap()),
            Some(Endpoint::Service("mullvad"))
        );
        assert_eq!(
            l.lookup("2001:db8::1".parse().unwrap()),
            Some(Endpoint::TorRelay)
        );
        assert_eq!(l.lookup("192.0.2.1".parse().unwrap()), None);
        let consensus = "network-status-version 3\nr moria1 lpXfw1/+uGEym58asExGOXAgzjE IpcU7dolas8+Q+oAzwgvZIWx7PA 2024-02-17 12:00:00 192.0.2.44 9101 9131\ns Authority Fast Running Stable V2Dir Valid\n";
        assert_eq!(l.load_tor_relays(consensus).unwrap(), 1);
        assert_eq!(
            l.lookup("192.0.2.44".parse().unwrap()),
            Some(Endpoint::TorRelay)
        );
        assert!(l
            .load_endpoints("10.0.0.0/8")
            .unwrap_err()
            .contains("line 1"));
        assert!(l
            .load_endpoints("10.0.0.0/8,bad token")
            .unwrap_err()
            .contains("token"));
        assert!(l
            .load_tor_relays("r only two")
            .unwrap_err()
            .contains("line 1"));
    }
}
