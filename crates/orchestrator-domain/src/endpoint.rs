//! Which droplet endpoints the orchestrator calls. A droplet chooses its
//! endpoint, and anyone who may send it a message reads the answer: an
//! endpoint on the orchestrator's own host (loopback), on the link
//! (link-local) or at a cloud's metadata service would turn `/send` into a
//! way to read what only the orchestrator's host may reach. Those are
//! refused unless the mesh runs on one host and says so
//! (`ALLOW_PRIVATE_DROPLET_ENDPOINTS`). The networks droplets normally live
//! on (10/8, 172.16/12, 192.168/16, fc00::/7 and public addresses) are
//! always allowed.
//!
//! URLs are read with the `url` crate, as the HTTP client reads them, so
//! that every spelling of an address (`http://0x7f.1`, `http://2130706433`,
//! `http://[::ffff:127.0.0.1]`) is judged by the address it means.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Whether droplet endpoints may be private to the orchestrator's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointPolicy {
    /// Loopback, link-local and metadata addresses are refused.
    #[default]
    RefusePrivate,
    /// Any address: a mesh whose droplets run on the orchestrator's host.
    AllowPrivate,
}

impl EndpointPolicy {
    pub fn allowing_private(allow: bool) -> Self {
        if allow {
            EndpointPolicy::AllowPrivate
        } else {
            EndpointPolicy::RefusePrivate
        }
    }

    /// Why `endpoint` may not be called, or `None` when it may.
    pub fn refusal(self, endpoint: &str) -> Option<String> {
        if self == EndpointPolicy::AllowPrivate {
            return None;
        }
        let Ok(url) = Url::parse(endpoint) else {
            return Some(format!("{endpoint} is not a valid URL"));
        };
        let why = match url.host()? {
            Host::Ipv4(ip) => private_address(IpAddr::V4(ip)),
            Host::Ipv6(ip) => private_address(IpAddr::V6(ip)),
            Host::Domain(name) => private_name(name),
        }?;
        Some(refused(&url, why))
    }

    /// Why a droplet's host, which resolved to `ip`, may not be called.
    pub fn address_refusal(self, host: &str, ip: IpAddr) -> Option<String> {
        if self == EndpointPolicy::AllowPrivate {
            return None;
        }
        private_address(ip).map(|why| format!("{host} resolves to {ip}, {why}; {ALLOW_HINT}"))
    }
}

const ALLOW_HINT: &str =
    "droplet endpoints on the orchestrator's host are refused unless ALLOW_PRIVATE_DROPLET_ENDPOINTS=true";

fn refused(url: &Url, why: &str) -> String {
    let host = url.host_str().unwrap_or_default();
    format!("{host} is {why}; {ALLOW_HINT}")
}

/// What `ip` is when it is private to this host or its cloud.
pub fn private_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => private_v4(ip),
        IpAddr::V6(ip) => private_v6(ip).or_else(|| embedded_v4(ip).and_then(private_v4)),
    }
}

/// The IPv4 address an IPv6 one carries: IPv4-mapped and -compatible
/// (`::ffff:a.b.c.d`, `::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002::/16`), each a way to the IPv4 address it names.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => ip.to_ipv4(),
    }
}

/// Cloud metadata services outside the link-local range: Alibaba Cloud's,
/// Oracle Cloud's older one and Azure's platform address (WireServer).
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS's metadata service over IPv6.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn private_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if METADATA_V4.contains(&ip) || ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.octets()[0] == 0 {
        // 0.0.0.0 reaches this host's listeners on Linux.
        Some("an address of this host")
    } else if ip.is_broadcast() || ip.is_multicast() {
        Some("not a single host's address")
    } else {
        None
    }
}

fn private_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip == METADATA_V6 {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an address of this host")
    } else if ip.is_unicast_link_local() {
        Some("a link-local address")
    } else if ip.segments()[0] & 0xffc0 == 0xfec0 {
        Some("a site-local address")
    } else if ip.is_multicast() {
        Some("not a single host's address")
    } else {
        None
    }
}

/// Names that mean this host or a cloud's metadata service wherever they
/// are resolved; any other name is judged by the addresses it resolves to
/// when it is called.
fn private_name(name: &str) -> Option<&'static str> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        Some("a loopback name")
    } else if matches!(
        name.as_str(),
        "metadata" | "metadata.google.internal" | "instance-data"
    ) {
        Some("a cloud metadata name")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(endpoint: &str) -> bool {
        EndpointPolicy::RefusePrivate.refusal(endpoint).is_some()
    }

    #[test]
    fn every_spelling_of_a_local_address_is_refused() {
        for endpoint in [
            "http://127.0.0.1:8000",
            "http://127.1",
            "http://2130706433",
            "http://0x7f.0.0.1",
            "http://0177.0.0.1",
            "http://0.0.0.0:80",
            "http://[::1]:8080",
            "http://[::]",
            "http://[::ffff:127.0.0.1]",
            "http://[::ffff:7f00:1]",
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.1.1",
            "http://[fe80::1]",
            "http://[fd00:ec2::254]",
            "http://100.100.100.200",
            "http://168.63.129.16",
            "http://[::127.0.0.1]",
            "http://[64:ff9b::a9fe:a9fe]",
            "http://[2002:7f00:1::1]",
            "http://[fec0::1]",
            "http://localhost:9000",
            "http://LOCALHOST.",
            "http://api.localhost",
            "http://metadata.google.internal",
            "https://user:pw@127.0.0.1@example.com",
        ] {
            // The last one is example.com's user `user:pw@127.0.0.1`.
            let expected = !endpoint.ends_with("example.com");
            assert_eq!(refused(endpoint), expected, "{endpoint}");
        }
    }

    #[test]
    fn the_networks_droplets_live_on_are_allowed() {
        for endpoint in [
            "http://10.0.3.7:8021",
            "http://172.18.0.5",
            "http://192.168.1.20",
            "http://[fd12:3456::1]",
            "https://droplets.example.com/scanner",
            "http://echo:8021",
            "http://203.0.113.9",
            "http://[64:ff9b::808:808]",
            "http://[2001:db8::1]",
        ] {
            assert!(!refused(endpoint), "{endpoint}");
        }
    }

    #[test]
    fn a_mesh_on_one_host_may_allow_them() {
        assert_eq!(EndpointPolicy::AllowPrivate.refusal("http://127.0.0.1:9"), None);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(EndpointPolicy::AllowPrivate.address_refusal("a", ip), None);
    }

    #[test]
    fn refusals_say_what_and_how_to_allow_it() {
        let why = EndpointPolicy::RefusePrivate
            .refusal("http://169.254.169.254/x")
            .expect("refused");
        assert!(
            why.contains("169.254.169.254 is a cloud metadata address"),
            "{why}"
        );
        assert!(why.contains("ALLOW_PRIVATE_DROPLET_ENDPOINTS"), "{why}");
        let ip: IpAddr = "::1".parse().expect("ip");
        let why = EndpointPolicy::RefusePrivate
            .address_refusal("echo", ip)
            .expect("refused");
        assert!(
            why.starts_with("echo resolves to ::1, a loopback address"),
            "{why}"
        );
    }
}
