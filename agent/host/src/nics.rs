//! Network interfaces: links and addresses from rtnetlink, speed and driver from sysfs.
//!
//! - Every link the kernel lists is reported, `lo` included, in interface-index order.
//! - `mac` is the link-layer address in `aa:bb:…` form; `None` when the link has none or it is
//!   all zeros (as on `lo`).
//! - `state` is the operational state in lowercase (`up`, `down`, `unknown`, `lowerlayerdown`,
//!   `notpresent`, `testing`, `dormant`), as `ip link` and `/sys/class/net/<name>/operstate` say it.
//! - `addresses` are `address/prefix` (IPv4 from `IFA_LOCAL`, the interface's own address, IPv6
//!   from `IFA_ADDRESS`), in the kernel's order.
//! - `speed_mbps` is `/sys/class/net/<name>/speed`; `None` when missing, unreadable (a link that is
//!   down answers `EINVAL`) or negative (`-1` is "unknown").
//! - `driver` is the basename of the `/sys/class/net/<name>/device/driver` symlink; virtual
//!   interfaces have none.
//!
//! When netlink cannot be used, the links come from `/sys/class/net` instead, with IPv6
//! addresses from `/proc/net/if_inet6` and no IPv4 addresses; a warning says so.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use cortex_model::inventory::NicInfo;
use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, State};

const SYS_CLASS_NET: &str = "/sys/class/net";
const IF_INET6_PATH: &str = "/proc/net/if_inet6";
/// The longest the netlink queries may take before falling back to sysfs.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);

/// The interfaces, and what could not be read about them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NicList {
    pub nics: Vec<NicInfo>,
    pub warnings: Vec<String>,
}

/// Why the netlink listing failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("it needs a tokio runtime and none is running")]
    NoRuntime,
    #[error("opening a netlink socket failed: {0}")]
    Connect(#[source] std::io::Error),
    #[error("listing links failed: {0}")]
    Links(#[source] rtnetlink::Error),
    #[error("listing addresses failed: {0}")]
    Addresses(#[source] rtnetlink::Error),
    #[error("the kernel did not answer within {0:?}")]
    Timeout(Duration),
}

/// Lists the network interfaces (see the module docs).
///
/// Netlink needs a tokio runtime with timers enabled (what `#[tokio::main]` builds); without a
/// runtime the sysfs fallback is used.
pub async fn collect() -> NicList {
    let mut warnings = Vec::new();
    let mut nics = match from_netlink().await {
        Ok(nics) => nics,
        Err(e) => {
            warnings.push(format!(
                "listing network interfaces through netlink failed ({e}), so they come from \
                 {SYS_CLASS_NET} without IPv4 addresses"
            ));
            from_sysfs(&mut warnings)
        }
    };
    // sysfs attributes are generated from kernel memory and never block on a device, so these
    // few reads are done inline rather than on the blocking pool.
    for nic in &mut nics {
        if !is_plain_name(&nic.name) {
            continue;
        }
        let dir = Path::new(SYS_CLASS_NET).join(&nic.name);
        nic.speed_mbps = std::fs::read_to_string(dir.join("speed"))
            .ok()
            .and_then(|t| parse_speed(&t));
        nic.driver = std::fs::read_link(dir.join("device/driver"))
            .ok()
            .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    NicList { nics, warnings }
}

/// Aborts the spawned netlink connection task however the listing ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Links and their addresses from one rtnetlink connection (speed and driver left empty).
///
/// # Errors
///
/// When no tokio runtime is running, the netlink socket cannot be opened, the kernel rejects a
/// dump request, or it does not answer within a few seconds.
pub async fn from_netlink() -> Result<Vec<NicInfo>, NetlinkError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
    let (connection, handle, _messages) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
    let _connection = AbortOnDrop(runtime.spawn(connection));

    let query = async {
        let links: Vec<_> = handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(NetlinkError::Links)?;
        let addresses: Vec<_> = handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(NetlinkError::Addresses)?;
        Ok::<_, NetlinkError>((links, addresses))
    };
    let (links, addresses) = tokio::time::timeout(NETLINK_TIMEOUT, query)
        .await
        .map_err(|_| NetlinkError::Timeout(NETLINK_TIMEOUT))??;

    let mut nics: Vec<(u32, NicInfo)> = links
        .into_iter()
        .map(|link| {
            let index = link.header.index;
            let mut nic = NicInfo {
                name: format!("if{index}"),
                state: "unknown".into(),
                ..NicInfo::default()
            };
            for attribute in link.attributes {
                match attribute {
                    LinkAttribute::IfName(name) => nic.name = name,
                    LinkAttribute::Address(bytes) => nic.mac = format_mac(&bytes),
                    LinkAttribute::Mtu(mtu) => nic.mtu = Some(mtu),
                    LinkAttribute::OperState(state) => nic.state = state_name(state),
                    _ => {}
                }
            }
            (index, nic)
        })
        .collect();
    nics.sort_by_key(|(index, _)| *index);

    for message in addresses {
        let mut local = None;
        let mut address = None;
        for attribute in message.attributes {
            match attribute {
                AddressAttribute::Local(ip) => local = Some(ip),
                AddressAttribute::Address(ip) => address = Some(ip),
                _ => {}
            }
        }
        let Some(ip) = local.or(address) else {
            continue;
        };
        if let Some((_, nic)) = nics.iter_mut().find(|(index, _)| *index == message.header.index) {
            push_unique(&mut nic.addresses, cidr(ip, message.header.prefix_len));
        }
    }

    Ok(nics.into_iter().map(|(_, nic)| nic).collect())
}

/// The fallback: links from `/sys/class/net`, IPv6 addresses from `/proc/net/if_inet6`.
pub fn from_sysfs(warnings: &mut Vec<String>) -> Vec<NicInfo> {
    let entries = match std::fs::read_dir(SYS_CLASS_NET) {
        Ok(entries) => entries,
        Err(e) => {
            warnings.push(format!("listing {SYS_CLASS_NET} failed: {e}"));
            return Vec::new();
        }
    };
    let ipv6 = match std::fs::read_to_string(IF_INET6_PATH) {
        Ok(text) => parse_if_inet6(&text),
        // No IPv6 in this kernel: nothing to add.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warnings.push(format!("reading {IF_INET6_PATH} for IPv6 addresses failed: {e}"));
            Vec::new()
        }
    };

    let mut nics: Vec<(u32, NicInfo)> = entries
        .filter_map(Result::ok)
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            let read = |file: &str| {
                std::fs::read_to_string(dir.join(file))
                    .map(|t| t.trim().to_owned())
                    .ok()
            };
            let index = read("ifindex").and_then(|t| t.parse().ok()).unwrap_or(u32::MAX);
            let addresses = ipv6
                .iter()
                .filter(|(nic, _)| *nic == name)
                .map(|(_, cidr)| cidr.clone())
                .collect();
            let nic = NicInfo {
                mac: read("address").and_then(|t| parse_mac_text(&t)),
                mtu: read("mtu").and_then(|t| t.parse().ok()),
                state: read("operstate")
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown".into()),
                addresses,
                name,
                ..NicInfo::default()
            };
            (index, nic)
        })
        .collect();
    nics.sort_by(|(a, nic_a), (b, nic_b)| a.cmp(b).then_with(|| nic_a.name.cmp(&nic_b.name)));
    nics.into_iter().map(|(_, nic)| nic).collect()
}

/// A link-layer address as `aa:bb:…`; `None` when empty or all zeros. Pure.
pub fn format_mac(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|b| *b == 0) {
        return None;
    }
    Some(
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// A sysfs `address` file's text, with the same rules as [`format_mac`]. Pure.
fn parse_mac_text(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() || text.chars().all(|c| c == '0' || c == ':') {
        None
    } else {
        Some(text)
    }
}

/// The lowercase word for an operational state. Pure.
pub fn state_name(state: State) -> String {
    match state {
        State::Unknown => "unknown".into(),
        State::NotPresent => "notpresent".into(),
        State::Down => "down".into(),
        State::LowerLayerDown => "lowerlayerdown".into(),
        State::Testing => "testing".into(),
        State::Dormant => "dormant".into(),
        State::Up => "up".into(),
        State::Other(code) => format!("state {code}"),
        // `State` is non-exhaustive: a state this code does not know yet.
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// `address/prefix`. Pure.
pub fn cidr(ip: IpAddr, prefix_len: u8) -> String {
    format!("{ip}/{prefix_len}")
}

/// The text of `/sys/class/net/<name>/speed` as Mb/s; `None` when it is not a non-negative
/// number that fits. Pure.
pub fn parse_speed(text: &str) -> Option<u32> {
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|speed| u32::try_from(speed).ok())
}

/// `(interface, "address/prefix")` pairs from the text of `/proc/net/if_inet6`, whose lines are
/// `<32 hex digits> <ifindex> <prefix, hex> <scope> <flags> <name>`. Pure.
pub fn parse_if_inet6(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [hex, _index, prefix, _scope, _flags, name] = fields.as_slice() else {
                return None;
            };
            let ip = u128::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 32)?;
            let prefix = u8::from_str_radix(prefix, 16).ok()?;
            Some(((*name).to_owned(), cidr(IpAddr::V6(Ipv6Addr::from(ip)), prefix)))
        })
        .collect()
}

/// Whether a name is safe to join under `/sys/class/net` (interface names cannot hold `/`).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn macs_are_lowercase_colon_hex_and_zero_means_none() {
        assert_eq!(
            format_mac(&[0x52, 0x54, 0x00, 0xAB, 0x0c, 0x01]).as_deref(),
            Some("52:54:00:ab:0c:01")
        );
        assert_eq!(format_mac(&[0; 6]), None);
        assert_eq!(format_mac(&[]), None);
        assert_eq!(
            parse_mac_text("52:54:00:AB:0C:01\n").as_deref(),
            Some("52:54:00:ab:0c:01")
        );
        assert_eq!(parse_mac_text("00:00:00:00:00:00\n"), None);
        assert_eq!(parse_mac_text(""), None);
    }

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("10000\n"), Some(10_000));
        assert_eq!(parse_speed("-1\n"), None);
        assert_eq!(parse_speed(""), None);
        assert_eq!(parse_speed("fast"), None);
        assert_eq!(parse_speed("99999999999"), None);
    }

    #[test]
    fn states_are_lowercase_words() {
        assert_eq!(state_name(State::Up), "up");
        assert_eq!(state_name(State::LowerLayerDown), "lowerlayerdown");
        assert_eq!(state_name(State::Other(42)), "state 42");
    }

    #[test]
    fn cidr_form() {
        assert_eq!(cidr(IpAddr::V4(Ipv4Addr::LOCALHOST), 8), "127.0.0.1/8");
        assert_eq!(cidr(IpAddr::V6(Ipv6Addr::LOCALHOST), 128), "::1/128");
    }

    #[test]
    fn if_inet6_lines() {
        let text = "00000000000000000000000000000001 01 80 10 80       lo\n\
                    fe800000000000005054fffe123456 02 40 20 80     eth0\n\
                    fe80000000000000505400fffe123456 02 40 20 80     eth0\n\
                    garbage\n";
        assert_eq!(
            parse_if_inet6(text),
            [
                ("lo".to_owned(), "::1/128".to_owned()),
                ("eth0".to_owned(), "fe80::5054:ff:fe12:3456/64".to_owned()),
            ]
        );
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name("eth0"));
        assert!(!is_plain_name(".."));
        assert!(!is_plain_name("a/b"));
        assert!(!is_plain_name(""));
    }

    #[tokio::test]
    async fn netlink_lists_loopback() {
        let nics = from_netlink().await.unwrap();
        let lo = nics.iter().find(|nic| nic.name == "lo").unwrap();
        assert!(lo.addresses.iter().any(|a| a == "127.0.0.1/8"), "{lo:?}");
        assert_eq!(lo.mac, None);
    }

    #[test]
    fn sysfs_fallback_lists_loopback() {
        let mut warnings = Vec::new();
        let nics = from_sysfs(&mut warnings);
        assert!(nics.iter().any(|nic| nic.name == "lo"), "{nics:?} {warnings:?}");
    }

    #[test]
    fn outside_a_runtime_netlink_is_not_used() {
        let result = futures::executor::block_on(from_netlink());
        assert!(matches!(result, Err(NetlinkError::NoRuntime)));
    }
}
