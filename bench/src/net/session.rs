//! One run over one TCP connection, from each end: the asking side [`connect`]s and sends the
//! one-time secret; the peer [`serve`]s one accepted connection whose first 32 bytes pass its
//! check. Phase 1: asker → peer (the peer counts); phase 2: peer → asker (the asker counts).
//! Each side ends up with both tallies, because each receiver's tally is what stops its sender.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::meter::{self, Window, GRACE};
use super::wire::{FrameReader, Tally};

/// Bytes of the one-time secret that opens the connection.
pub const SECRET_LEN: usize = 32;
/// Connections with a wrong secret the peer tolerates before it gives up on the run.
const MAX_STRANGERS: u32 = 8;

/// Both directions, seen from the asking side.
#[derive(Debug, Clone, PartialEq)]
pub struct Tallies {
    /// Asker → peer, counted by the peer.
    pub send: Tally,
    /// Peer → asker, counted by the asker.
    pub receive: Tally,
}

fn prepare(s: &TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    // Short reads let the counting loop notice the end of its window on time.
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    s.set_write_timeout(Some(GRACE))
}

fn context(what: &'static str) -> impl Fn(io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// The asking side: connects to `addr`, sends `secret`, then sends and receives for `w`.
pub fn connect(addr: SocketAddr, secret: &[u8; SECRET_LEN], w: &Window) -> Result<Tallies, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connecting to the peer's benchmark listener {addr}: {e}"))?;
    prepare(&s).map_err(context("setting up the connection"))?;
    io::Write::write_all(&mut s, secret).map_err(context("sending the secret"))?;
    let mut fr = FrameReader::new(s.try_clone().map_err(context("cloning the socket"))?);
    let send = meter::send(&mut fr, &s, w).map_err(context("sending to the peer"))?;
    let receive = meter::receive(&mut fr, &mut s, w).map_err(context("receiving from the peer"))?;
    Ok(Tallies { send, receive })
}

/// The peer: accepts until `accept_within` runs out, drops connections whose first 32 bytes
/// fail `check`, and runs with the first that passes. One run; the listener is dropped after.
pub fn serve(
    listener: TcpListener,
    accept_within: Duration,
    check: &dyn Fn(&[u8]) -> bool,
    w: &Window,
) -> Result<Tallies, String> {
    let deadline = Instant::now() + accept_within;
    listener
        .set_nonblocking(true)
        .map_err(context("setting up the listener"))?;
    let mut strangers = 0;
    let (mut s, mut fr) = loop {
        if Instant::now() > deadline {
            return Err(format!(
                "nobody connected with the run's secret within {} s",
                accept_within.as_secs()
            ));
        }
        let s = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(format!("accepting a connection: {e}")),
        };
        s.set_nonblocking(false)
            .map_err(context("setting up the connection"))?;
        prepare(&s).map_err(context("setting up the connection"))?;
        let mut fr = FrameReader::new(s.try_clone().map_err(context("cloning the socket"))?);
        let secret_by = Instant::now() + Duration::from_secs(2);
        let secret = loop {
            if let Some(v) = fr.take_raw(SECRET_LEN) {
                break Some(v);
            }
            if Instant::now() > secret_by || fr.fill().is_err() {
                break None;
            }
        };
        if secret.is_some_and(|v| check(&v)) {
            break (s, fr);
        }
        strangers += 1;
        if strangers >= MAX_STRANGERS {
            return Err(format!(
                "{strangers} connections without the run's secret; giving up"
            ));
        }
    };
    drop(listener);
    let send = meter::receive(&mut fr, &mut s, w).map_err(context("receiving from the asking side"))?;
    let receive = meter::send(&mut fr, &s, w).map_err(context("sending to the asking side"))?;
    Ok(Tallies { send, receive })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            warmup: Duration::from_millis(200),
            seconds: 1,
            interval: Duration::from_millis(200),
            max_bytes: u64::MAX,
        }
    }

    #[test]
    fn both_ends_see_both_directions_over_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let secret = [7u8; SECRET_LEN];
        let peer = std::thread::spawn(move || {
            serve(
                l,
                Duration::from_secs(5),
                &|s: &[u8]| s == [7u8; SECRET_LEN],
                &window(),
            )
        });
        // A stranger first: dropped, and the run still happens.
        let mut stranger = TcpStream::connect(addr).unwrap();
        io::Write::write_all(&mut stranger, &[1u8; SECRET_LEN]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let asker = connect(addr, &secret, &window()).unwrap();
        let served = peer.join().unwrap().unwrap();
        assert_eq!(asker, served);
        for t in [&asker.send, &asker.receive] {
            assert_eq!(t.interval_bytes.len(), 5, "{t:?}");
            assert!(t.interval_bytes.iter().all(|b| *b > 0), "{t:?}");
            assert!(!t.ended_early);
        }
    }

    #[test]
    fn a_byte_cap_ends_the_phase_early() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let w = Window {
            max_bytes: 1,
            ..window()
        };
        let peer = std::thread::spawn(move || serve(l, Duration::from_secs(5), &|_: &[u8]| true, &w));
        let asker = connect(addr, &[0u8; SECRET_LEN], &w).unwrap();
        peer.join().unwrap().unwrap();
        assert!(asker.send.ended_early && asker.receive.ended_early, "{asker:?}");
    }

    #[test]
    fn without_the_secret_nothing_runs() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || serve(l, Duration::from_secs(1), &|_: &[u8]| false, &window()));
        let r = connect(addr, &[0u8; SECRET_LEN], &window());
        assert!(r.is_err(), "{r:?}");
        let e = peer.join().unwrap().unwrap_err();
        assert!(e.contains("secret"), "{e}");
    }
}
