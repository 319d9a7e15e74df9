//! Optional proxyDHCP responder (PXE spec, "proxy DHCP service"): beside an existing DHCP server
//! that hands out the addresses, it tells PXE clients where to boot from.
//!
//! It answers only DHCPDISCOVER (UDP 67, broadcast reply) and DHCPREQUEST (UDP 4011, unicast
//! reply) that carry option 60 `PXEClient…`. Option 93 picks the loader: BIOS → `undionly.kpxe`,
//! x86 UEFI → `snponly.efi` (or `ipxe.efi`). A client that is already iPXE (option 77 user class
//! `iPXE`) gets the HTTP URL of `boot.ipxe` instead, which breaks the PXE → iPXE → PXE loop.
//! Replies carry `siaddr`/next-server and the boot file and **never** an address (`yiaddr` is
//! 0.0.0.0), a lease time, a mask or a router: this service cannot hand out addresses.
//! Anything else, including packets that do not decode, is ignored (logged at debug).

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use dhcproto::v4::{Architecture, DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};
use tokio::net::UdpSocket;

/// The DHCP server port (DISCOVER arrives here as broadcast).
pub const DHCP_PORT: u16 = 67;
/// The PXE boot-server port (the client's REQUEST after the proxy offer).
pub const PXE_PORT: u16 = 4011;
const CLIENT_PORT: u16 = 68;

/// What the responder tells clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// This server's address: next-server (`siaddr`), server identifier, TFTP server.
    pub server: Ipv4Addr,
    /// Loader for BIOS PXE ROMs (TFTP path), e.g. `undionly.kpxe`; `None` = don't answer them.
    pub bios_loader: Option<String>,
    /// Loader for x86 UEFI PXE, e.g. `snponly.efi`; `None` = don't answer them.
    pub uefi_loader: Option<String>,
    /// Full URL handed to iPXE clients, e.g. `http://10.0.0.5:7072/boot.ipxe`.
    pub ipxe_url: String,
}

/// What kind of client a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Bios,
    Uefi,
    Ipxe,
}

/// The proxyDHCP decision: the reply to send for `request`, or `None` to stay silent. Pure: no
/// IO, never panics on any decoded message.
pub fn respond(request: &Message, cfg: &ProxyConfig) -> Option<Message> {
    // `Message::chaddr` slices by `hlen` and would panic past 16.
    if request.opcode() != Opcode::BootRequest || request.hlen() > 16 {
        return None;
    }
    let reply_type = match request.opts().msg_type()? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => MessageType::Ack,
        _ => return None,
    };
    // A REQUEST that names another server (the one handing out the address) is not for us.
    if let Some(DhcpOption::ServerIdentifier(id)) = request.opts().get(OptionCode::ServerIdentifier) {
        if *id != cfg.server {
            return None;
        }
    }
    match request.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(class)) if class.starts_with(b"PXEClient") => {}
        _ => return None,
    }
    let client = classify(request)?;
    let boot_file = match client {
        Client::Ipxe => cfg.ipxe_url.clone(),
        Client::Bios => cfg.bios_loader.clone()?,
        Client::Uefi => cfg.uefi_loader.clone()?,
    };
    // The fixed-size `file` field holds 128 bytes with its NUL; longer names go only in option 67.
    let fits_in_file = boot_file.len() < 128 && boot_file.is_ascii();
    let chaddr = request.chaddr();
    let mut reply = Message::new_with_id(
        request.xid(),
        request.ciaddr(),
        Ipv4Addr::UNSPECIFIED,
        cfg.server,
        request.giaddr(),
        chaddr,
    );
    reply
        .set_opcode(Opcode::BootReply)
        .set_htype(request.htype())
        .set_flags(request.flags());
    if fits_in_file {
        reply.set_fname_str(&boot_file);
    }
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(reply_type));
    opts.insert(DhcpOption::ServerIdentifier(cfg.server));
    opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    // PXE vendor options: sub-option 6 (discovery control) = 8: boot the file named here, no
    // boot-server discovery or menu. Then the end marker.
    opts.insert(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
    if client != Client::Ipxe {
        opts.insert(DhcpOption::TFTPServerName(cfg.server.to_string().into_bytes()));
    }
    opts.insert(DhcpOption::BootfileName(boot_file.into_bytes()));
    // A client-machine identifier (97) is echoed back, as the PXE spec asks.
    if let Some(DhcpOption::ClientMachineIdentifier(id)) =
        request.opts().get(OptionCode::ClientMachineIdentifier)
    {
        opts.insert(DhcpOption::ClientMachineIdentifier(id.clone()));
    }
    Some(reply)
}

fn classify(request: &Message) -> Option<Client> {
    if let Some(DhcpOption::UserClass(class)) = request.opts().get(OptionCode::UserClass) {
        // iPXE sends the bare bytes "iPXE"; RFC 3004 form is length-prefixed. Accept both.
        if class.windows(4).any(|w| w == b"iPXE") {
            return Some(Client::Ipxe);
        }
    }
    match request.opts().get(OptionCode::ClientSystemArchitecture) {
        None => Some(Client::Bios),
        Some(DhcpOption::ClientSystemArchitecture(a)) => match *a {
            Architecture::X86_Bios => Some(Client::Bios),
            Architecture::X86 | Architecture::X64 | Architecture::BC => Some(Client::Uefi),
            _ => None,
        },
        Some(_) => None,
    }
}

/// Options a PXE request needs for the decision; everything else is dropped before decoding.
const KEPT_OPTIONS: [u8; 9] = [53, 54, 55, 57, 60, 61, 77, 93, 97];
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// Checks a datagram's structure with explicit bounds and rebuilds it with only
/// [`KEPT_OPTIONS`]. dhcproto 0.15's decoder has `debug_assert!`s and unchecked subtractions on
/// some option lengths (and `Message::chaddr` panics when `hlen` > 16), so hostile bytes never
/// reach it unfiltered.
fn sanitize(packet: &[u8]) -> Result<Vec<u8>, &'static str> {
    if packet.len() < 240 {
        return Err("shorter than a BOOTP header");
    }
    if packet[2] > 16 {
        return Err("hardware address longer than 16 bytes");
    }
    if packet[236..240] != MAGIC {
        return Err("no DHCP magic cookie");
    }
    let mut out = packet[..240].to_vec();
    let mut i = 240;
    loop {
        let Some(&code) = packet.get(i) else {
            return Err("options end without an end marker");
        };
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let len = usize::from(*packet.get(i + 1).ok_or("option without a length")?);
                let value = packet
                    .get(i + 2..i + 2 + len)
                    .ok_or("option runs past the packet")?;
                let ok = match code {
                    53 => len == 1,
                    54 => len == 4,
                    57 => len == 2,
                    93 => len >= 2 && len % 2 == 0,
                    _ => true,
                };
                if KEPT_OPTIONS.contains(&code) && ok {
                    out.push(code);
                    out.push(len as u8);
                    out.extend_from_slice(value);
                }
                i += 2 + len;
            }
        }
    }
    out.push(255);
    Ok(out)
}

/// Decodes one datagram and applies [`respond`]; `None` (logged at debug) for anything that
/// does not decode or needs no answer.
pub fn respond_bytes(packet: &[u8], cfg: &ProxyConfig) -> Option<Vec<u8>> {
    let clean = match sanitize(packet) {
        Ok(c) => c,
        Err(why) => {
            tracing::debug!(why, len = packet.len(), "proxyDHCP: malformed packet ignored");
            return None;
        }
    };
    let request = match Message::from_bytes(&clean) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, len = packet.len(), "proxyDHCP: malformed packet ignored");
            return None;
        }
    };
    let reply = respond(&request, cfg)?;
    match reply.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "proxyDHCP: cannot encode the reply");
            None
        }
    }
}

/// True if an encoded reply is a DHCPOFFER (option 53 = 2).
fn is_offer(reply: &[u8]) -> bool {
    Message::from_bytes(reply).is_ok_and(|m| m.opts().msg_type() == Some(MessageType::Offer))
}

/// Where a reply goes: a relay (`giaddr`) gets it on port 67; on the DHCP port a client without
/// an address gets a broadcast; on the PXE port the reply goes back to the sender.
fn destination(packet: &[u8], from: SocketAddr, on_pxe_port: bool) -> SocketAddr {
    let giaddr = packet
        .get(24..28)
        .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    if !giaddr.is_unspecified() {
        SocketAddr::from((giaddr, DHCP_PORT))
    } else if on_pxe_port {
        from
    } else {
        SocketAddr::from((Ipv4Addr::BROADCAST, CLIENT_PORT))
    }
}

/// Binds `0.0.0.0:67` and `0.0.0.0:4011` (broadcasts only reach a wildcard bind).
pub async fn bind() -> io::Result<(UdpSocket, UdpSocket)> {
    Ok((bind_one(DHCP_PORT).await?, bind_one(PXE_PORT).await?))
}

async fn bind_one(port: u16) -> io::Result<UdpSocket> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let s = UdpSocket::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen for proxyDHCP on {addr}: {e}")))?;
    s.set_broadcast(true)?;
    Ok(s)
}

/// Answers on both sockets until `shutdown` completes. `dhcp` behaves as port 67 (broadcast
/// replies), `pxe` as port 4011 (unicast replies).
pub async fn serve(dhcp: UdpSocket, pxe: UdpSocket, cfg: ProxyConfig, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut a = vec![0u8; 2048];
    let mut b = vec![0u8; 2048];
    loop {
        let (sock, n, from, on_pxe) = tokio::select! {
            _ = &mut shutdown => break,
            r = dhcp.recv_from(&mut a) => match r {
                Ok((n, from)) => (&dhcp, n, from, false),
                Err(e) => { tracing::debug!(error = %e, "proxyDHCP receive failed"); continue }
            },
            r = pxe.recv_from(&mut b) => match r {
                Ok((n, from)) => (&pxe, n, from, true),
                Err(e) => { tracing::debug!(error = %e, "proxyDHCP receive failed"); continue }
            },
        };
        let packet = if on_pxe { &b[..n] } else { &a[..n] };
        let Some(reply) = respond_bytes(packet, &cfg) else {
            continue;
        };
        // On port 67 only DISCOVER gets an answer (an OFFER); the client's REQUEST there is
        // for the server that hands out its address.
        if !on_pxe && !is_offer(&reply) {
            continue;
        }
        let to = destination(packet, from, on_pxe);
        tracing::info!(%from, %to, "proxyDHCP: answered a PXE client");
        if let Err(e) = sock.send_to(&reply, to).await {
            tracing::warn!(%to, error = %e, "proxyDHCP: cannot send the reply");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::Flags;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn cfg() -> ProxyConfig {
        ProxyConfig {
            server: Ipv4Addr::new(10, 231, 0, 1),
            bios_loader: Some("undionly.kpxe".into()),
            uefi_loader: Some("snponly.efi".into()),
            ipxe_url: "http://10.231.0.1:7072/boot.ipxe".into(),
        }
    }

    /// An encoded request as a PXE ROM would send it.
    fn request(
        kind: MessageType,
        class: Option<&[u8]>,
        arch: Option<u16>,
        user_class: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut m = Message::new_with_id(
            0xdead_beef,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &MAC,
        );
        m.set_flags(Flags::default().set_broadcast());
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        if let Some(c) = class {
            o.insert(DhcpOption::ClassIdentifier(c.to_vec()));
        }
        if let Some(a) = arch {
            o.insert(DhcpOption::ClientSystemArchitecture(Architecture::from(a)));
        }
        if let Some(u) = user_class {
            o.insert(DhcpOption::UserClass(u.to_vec()));
        }
        o.insert(DhcpOption::ClientMachineIdentifier(vec![0; 17]));
        m.to_vec().unwrap()
    }

    fn answer(bytes: &[u8]) -> Option<Message> {
        respond_bytes(bytes, &cfg()).map(|b| Message::from_bytes(&b).unwrap())
    }

    fn boot_file(m: &Message) -> String {
        match m.opts().get(OptionCode::BootfileName) {
            Some(DhcpOption::BootfileName(f)) => String::from_utf8(f.clone()).unwrap(),
            other => panic!("no boot file option: {other:?}"),
        }
    }

    /// The fixed `file` field up to its NUL.
    fn fname(m: &Message) -> String {
        let f = m.fname().unwrap_or_default();
        let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
        String::from_utf8(f[..end].to_vec()).unwrap()
    }

    fn assert_never_an_address(m: &Message) {
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        for code in [
            OptionCode::AddressLeaseTime,
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::Renewal,
            OptionCode::Rebinding,
            OptionCode::DomainNameServer,
        ] {
            assert!(m.opts().get(code).is_none(), "{code:?} in a proxy reply");
        }
    }

    #[test]
    fn bios_discover_gets_undionly_over_tftp() {
        let m = answer(&request(
            MessageType::Discover,
            Some(b"PXEClient:Arch:00000:UNDI:002001"),
            Some(0),
            None,
        ))
        .expect("answered");
        assert_eq!(m.opcode(), Opcode::BootReply);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(m.xid(), 0xdead_beef);
        assert_eq!(m.chaddr(), &MAC[..]);
        assert!(m.flags().broadcast());
        assert_eq!(m.siaddr(), Ipv4Addr::new(10, 231, 0, 1));
        assert_eq!(fname(&m), "undionly.kpxe");
        assert_eq!(boot_file(&m), "undionly.kpxe");
        assert!(matches!(
            m.opts().get(OptionCode::ServerIdentifier),
            Some(DhcpOption::ServerIdentifier(ip)) if *ip == Ipv4Addr::new(10, 231, 0, 1)
        ));
        assert!(matches!(
            m.opts().get(OptionCode::ClassIdentifier),
            Some(DhcpOption::ClassIdentifier(c)) if c == b"PXEClient"
        ));
        assert!(m.opts().get(OptionCode::ClientMachineIdentifier).is_some());
        assert_never_an_address(&m);
    }

    #[test]
    fn missing_arch_is_bios() {
        let m = answer(&request(MessageType::Discover, Some(b"PXEClient"), None, None)).unwrap();
        assert_eq!(boot_file(&m), "undionly.kpxe");
    }

    #[test]
    fn uefi_gets_the_efi_loader_and_request_gets_ack() {
        for arch in [6u16, 7, 9] {
            let m = answer(&request(
                MessageType::Discover,
                Some(b"PXEClient:Arch:00007"),
                Some(arch),
                None,
            ))
            .unwrap();
            assert_eq!(boot_file(&m), "snponly.efi", "arch {arch}");
            assert_never_an_address(&m);
        }
        let m = answer(&request(
            MessageType::Request,
            Some(b"PXEClient:Arch:00007"),
            Some(7),
            None,
        ))
        .unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_never_an_address(&m);
    }

    #[test]
    fn ipxe_gets_the_http_script_url() {
        let m = answer(&request(
            MessageType::Discover,
            Some(b"PXEClient:Arch:00000"),
            Some(0),
            Some(b"iPXE"),
        ))
        .unwrap();
        assert_eq!(boot_file(&m), "http://10.231.0.1:7072/boot.ipxe");
        assert_eq!(fname(&m), "http://10.231.0.1:7072/boot.ipxe");
        assert!(m.opts().get(OptionCode::TFTPServerName).is_none());
        // RFC 3004 length-prefixed form too.
        let m = answer(&request(
            MessageType::Discover,
            Some(b"PXEClient"),
            Some(7),
            Some(b"\x04iPXE"),
        ))
        .unwrap();
        assert_eq!(boot_file(&m), "http://10.231.0.1:7072/boot.ipxe");
        assert_never_an_address(&m);
    }

    #[test]
    fn silent_for_everything_else() {
        // Not PXE: an ordinary DHCP client, or another vendor class.
        assert!(answer(&request(MessageType::Discover, None, Some(0), None)).is_none());
        assert!(answer(&request(MessageType::Discover, Some(b"MSFT 5.0"), None, None)).is_none());
        assert!(answer(&request(
            MessageType::Discover,
            Some(b"HTTPClient:Arch:00016"),
            Some(16),
            None
        ))
        .is_none());
        // Other message types.
        for t in [
            MessageType::Release,
            MessageType::Inform,
            MessageType::Decline,
            MessageType::Offer,
        ] {
            assert!(
                answer(&request(t, Some(b"PXEClient"), Some(0), None)).is_none(),
                "{t:?}"
            );
        }
        // An architecture without a loader (arm64 UEFI).
        assert!(answer(&request(
            MessageType::Discover,
            Some(b"PXEClient"),
            Some(11),
            None
        ))
        .is_none());
        // A BootReply (another server's answer) is never answered.
        let mut bytes = request(MessageType::Discover, Some(b"PXEClient"), Some(0), None);
        bytes[0] = 2;
        assert!(answer(&bytes).is_none());
        // No loader configured for BIOS.
        let mut c = cfg();
        c.bios_loader = None;
        let bytes = request(MessageType::Discover, Some(b"PXEClient"), Some(0), None);
        assert!(respond_bytes(&bytes, &c).is_none());
    }

    #[test]
    fn garbage_is_ignored_without_panicking() {
        let good = request(MessageType::Discover, Some(b"PXEClient"), Some(0), None);
        // Every truncation of a valid packet.
        for n in 0..good.len() {
            let _ = respond_bytes(&good[..n], &cfg());
        }
        // Deterministic pseudo-random bytes, and random bytes after a valid header.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..3000 {
            let len = (round % 600) + 1;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = respond_bytes(&buf, &cfg());
            if round % 2 == 0 && buf.len() > 240 {
                buf[..240].copy_from_slice(&good[..240]);
                let _ = respond_bytes(&buf, &cfg());
            }
        }
        // Option lengths dhcproto would trip over in a debug build (inside the kept set, and
        // outside it: 81 client FQDN shorter than 3, 153 bulk-leasequery time not 4 bytes).
        for opt in [
            &[81u8, 1, 0][..],
            &[153, 1, 0],
            &[94, 1, 0],
            &[93, 1, 0],
            &[53, 0],
        ] {
            let mut bad = good[..240].to_vec();
            bad.extend_from_slice(&[60, 9]);
            bad.extend_from_slice(b"PXEClient");
            bad.extend_from_slice(opt);
            bad.push(255);
            let _ = respond_bytes(&bad, &cfg());
        }
        // hlen past 16.
        let mut bad = good.clone();
        bad[2] = 200;
        assert!(respond_bytes(&bad, &cfg()).is_none());
        // Option lengths that point past the end.
        let mut bad = good.clone();
        bad.truncate(240);
        bad.extend_from_slice(&[53, 200, 1]);
        assert!(respond_bytes(&bad, &cfg()).is_none());
    }

    #[test]
    fn a_request_for_another_server_is_not_answered() {
        let mut m =
            Message::from_bytes(&request(MessageType::Request, Some(b"PXEClient"), Some(0), None)).unwrap();
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 231, 0, 254)));
        assert!(answer(&m.to_vec().unwrap()).is_none());
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 231, 0, 1)));
        assert!(answer(&m.to_vec().unwrap()).is_some());
        assert!(is_offer(
            &respond_bytes(
                &request(MessageType::Discover, Some(b"PXEClient"), None, None),
                &cfg()
            )
            .unwrap()
        ));
        assert!(!is_offer(
            &respond_bytes(
                &request(MessageType::Request, Some(b"PXEClient"), None, None),
                &cfg()
            )
            .unwrap()
        ));
    }

    #[test]
    fn replies_go_to_relay_broadcast_or_sender() {
        let pkt = request(MessageType::Discover, Some(b"PXEClient"), Some(0), None);
        let from: SocketAddr = "10.0.0.9:68".parse().unwrap();
        assert_eq!(
            destination(&pkt, from, false),
            "255.255.255.255:68".parse().unwrap()
        );
        assert_eq!(destination(&pkt, from, true), from);
        let mut relayed = pkt.clone();
        relayed[24..28].copy_from_slice(&[10, 0, 0, 254]);
        assert_eq!(
            destination(&relayed, from, false),
            "10.0.0.254:67".parse().unwrap()
        );
        assert_eq!(
            destination(&[1, 2], from, false),
            "255.255.255.255:68".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn answers_on_a_socket_and_stops_on_shutdown() {
        // Loopback sockets standing in for 67 and 4011 (binding those needs root).
        let dhcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pxe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let pxe_addr = pxe.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(dhcp, pxe, cfg(), async {
            let _ = stop_rx.await;
        }));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"garbage", pxe_addr).await.unwrap();
        let req = request(MessageType::Request, Some(b"PXEClient"), Some(7), None);
        client.send_to(&req, pxe_addr).await.unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("a reply within 5 s")
            .unwrap();
        assert_eq!(from, pxe_addr);
        let m = Message::from_bytes(&buf[..n]).unwrap();
        assert_eq!(boot_file(&m), "snponly.efi");
        stop_tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("stops")
            .unwrap();
    }
}
