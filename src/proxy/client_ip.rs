//! The client's IP address: what the proxy tells the API server (`X-Forwarded-For`, which the
//! API server records as the audit event's first `sourceIPs` entry) and puts in the
//! `remote-client-ip` extra.
//!
//! The rule (`--trusted-proxies`, empty by default):
//! - the TCP peer, unless the peer is a trusted proxy;
//! - for a trusted peer, `X-Forwarded-For` is read from the right (the entry the trusted peer
//!   appended last): trusted entries are skipped, and the first untrusted entry is the client;
//! - an entry that is not an IP address (with or without a port) ends the walk: the client is
//!   then the last address a trusted hop vouched for;
//! - when every entry is trusted, the left-most one.
//!
//! Nothing a client writes in `X-Forwarded-For` counts unless every hop after it is trusted, so
//! without `--trusted-proxies` the header is ignored (the Go proxy believed the first public
//! address in it, peers.md §3.5).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare address is a
/// single-host network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxies` entry is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `address` or `address/prefix`.
    #[error("{0:?} is not an IP address or CIDR network")]
    Invalid(String),
    /// More than 32 (IPv4) or 128 (IPv6) prefix bits.
    #[error("{0:?}: the prefix length is too long for the address family")]
    PrefixTooLong(String),
    /// Bits set after the prefix: almost always a typo, so refused rather than masked.
    #[error("{0:?}: host bits are set (did you mean {1}?)")]
    HostBits(String, String),
}

fn to_bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let ones = u128::MAX << (128 - u32::from(prefix));
        ones >> (128 - u32::from(width))
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let invalid = || CidrError::Invalid(text.to_string());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let network = network.to_canonical();
        let width = to_bits(network).1;
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
            None => width,
        };
        if prefix > width {
            return Err(CidrError::PrefixTooLong(text.to_string()));
        }
        let (bits, _) = to_bits(network);
        if bits & !mask(prefix, width) != 0 {
            let masked = bits & mask(prefix, width);
            let base = match network {
                IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(masked as u32)),
                IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(masked)),
            };
            return Err(CidrError::HostBits(
                text.to_string(),
                format!("{base}/{prefix}"),
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// True when `ip` (IPv4-mapped IPv6 counts as IPv4) is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let ((bits, width), (network, network_width)) = (to_bits(ip), to_bits(self.network));
        width == network_width && (bits & mask(self.prefix, width)) == network
    }
}

/// The `--trusted-proxies` networks; empty (the default) trusts no peer's `X-Forwarded-For`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

/// One `X-Forwarded-For` entry as an address: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, or any
/// of those with a port.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse().ok())
}

impl TrustedProxies {
    /// True when `ip` is in one of the trusted networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client's address for a request from `peer` (see the module documentation).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().unwrap_or("\u{0}"))
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .collect();
        let mut client = peer;
        for entry in entries.into_iter().rev() {
            let Some(ip) = forwarded_address(entry) else {
                return client;
            };
            client = ip.to_canonical();
            if !self.contains(client) {
                return client;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(cidrs: &[&str]) -> TrustedProxies {
        TrustedProxies(cidrs.iter().map(|c| c.parse().unwrap()).collect())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.200.1.1")));
        assert!(net.contains(ip("::ffff:10.0.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::a00:1")));
        let host: Cidr = "192.0.2.1".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.1/32");
        assert!(host.contains(ip("192.0.2.1")) && !host.contains(ip("192.0.2.2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::9")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")) && !all.contains(ip("::1")));

        assert!(
            matches!("10.0.0.1/8".parse::<Cidr>(), Err(CidrError::HostBits(_, s)) if s == "10.0.0.0/8")
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong(_))
        ));
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/-1",
            "example.com",
            "10.0.0/8",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("192.0.2.9"), &xff(&["203.0.113.7"])),
            ip("192.0.2.9")
        );
        let some = trusted(&["10.0.0.0/8"]);
        assert_eq!(
            some.client_ip(ip("192.0.2.9"), &xff(&["203.0.113.7"])),
            ip("192.0.2.9")
        );
        assert_eq!(
            some.client_ip(ip("::ffff:192.0.2.9"), &xff(&[])),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn trusted_peer_right_most_untrusted_entry() {
        let t = trusted(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        // Client-written entries on the left are never believed past an untrusted hop.
        assert_eq!(
            t.client_ip(peer, &xff(&["198.51.100.1, 203.0.113.7, 10.0.0.5"])),
            ip("203.0.113.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            t.client_ip(peer, &xff(&["198.51.100.1", "203.0.113.7:4711"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.client_ip(peer, &xff(&["[2001:db8::7]:443"])),
            ip("2001:db8::7")
        );
        // No header: the peer itself.
        assert_eq!(t.client_ip(peer, &xff(&[])), peer);
        // Every hop trusted: the left-most.
        assert_eq!(
            t.client_ip(peer, &xff(&["10.1.1.1, 10.2.2.2"])),
            ip("10.1.1.1")
        );
        // Garbage stops the walk at the last vouched-for address.
        assert_eq!(
            t.client_ip(peer, &xff(&["203.0.113.7, unknown, 10.3.3.3"])),
            ip("10.3.3.3")
        );
        assert_eq!(t.client_ip(peer, &xff(&["unknown"])), peer);
    }
}
