//! Node-to-node network throughput (`cortex bench net --peer <node>`): one TCP stream each
//! way between the asking machine and a peer node, counted by the receiver per interval.
//!
//! The data path is plain TCP, not the cluster's mTLS: the figure is the network's, not the
//! CPU's AES. It is authorised by a one-time secret: the asking side draws 32 random bytes and
//! sends only their SHA-256 through the cluster API (TLS to a coordinator, Raft, the peer's
//! mTLS heartbeat answer); the peer accepts one connection whose first 32 bytes hash to it.
//! Both ends are bounded: at most [`MAX_SECONDS`] per direction (plus a warm-up and a few
//! seconds' grace), at most [`MAX_BYTES`] per direction, one run at a time per peer.
//!
//! The result is a [`NetReport`] (`"format": "cortex-bench-net/1"`, versioned like
//! [`crate::report`]: fields are only added within a version).

pub mod meter;
pub mod session;
pub mod wire;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use meter::Window;
pub use session::{connect, serve, Tallies, SECRET_LEN};

use crate::stats::{human_bytes, summarize, Conditions, Figure};

/// The format tag of a network report.
pub const FORMAT: &str = "cortex-bench-net/1";
/// Seconds per direction when not given.
pub const DEFAULT_SECONDS: u32 = 5;
/// Most seconds per direction a peer runs.
pub const MAX_SECONDS: u32 = 30;
/// One sample per interval.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// Not counted at the start of each direction (TCP slow start, buffers filling).
pub const WARMUP: Duration = Duration::from_millis(500);
/// Most bytes a sender sends in one direction (64 GiB: 30 s at about 18 Gbit/s); a faster
/// link ends the phase early and the report says so.
pub const MAX_BYTES: u64 = 64 << 30;
/// How long the peer waits for the asking side to connect.
pub const ACCEPT_WITHIN: Duration = Duration::from_secs(15);

/// The window of one direction for a run of `seconds` (checked: 1..=[`MAX_SECONDS`]).
pub fn window(seconds: u32) -> Result<Window, String> {
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(format!("seconds must be 1 to {MAX_SECONDS}, got {seconds}"));
    }
    Ok(Window {
        warmup: WARMUP,
        seconds,
        interval: INTERVAL,
        max_bytes: MAX_BYTES,
    })
}

/// The longest a peer can be busy with one run (accepting, both directions, grace), for
/// callers that bound their own waiting.
pub fn peer_bound(seconds: u32) -> Duration {
    let w = Window {
        warmup: WARMUP,
        seconds,
        interval: INTERVAL,
        max_bytes: MAX_BYTES,
    };
    ACCEPT_WITHIN + 2 * (w.total() + 4 * meter::GRACE)
}

/// A network throughput run as recorded on the peer's node record (`net_bench`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetReport {
    /// Always [`FORMAT`] for this version.
    pub format: String,
    /// Unix time in milliseconds when the peer started listening.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    /// The asking machine, as it named itself (its node name or host name).
    pub from: Option<String>,
    /// Where the peer listened (its cluster address and a one-time port).
    pub addr: String,
    pub path: NetPath,
    /// Seconds timed per direction (after the warm-up).
    pub seconds: u32,
    pub interval_ms: u64,
    pub warmup_ms: u64,
    /// Asker → peer, counted by the peer.
    pub send: Direction,
    /// Peer → asker, counted by the asker.
    pub receive: Direction,
    /// Why the run failed, when it did (then both figures are `null`).
    pub error: Option<String>,
    pub notes: Vec<String>,
}

/// What the bytes went through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetPath {
    /// "tcp".
    pub transport: String,
    /// Whether TLS was in the measured path (never in this version).
    pub tls: bool,
    /// Parallel streams per direction.
    pub streams: u32,
    /// How the connection was authorised.
    pub auth: String,
}

/// One direction: Mbit/s per interval, their median and spread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Direction {
    /// Median, min, max and CV of `samples_mbps`, in Mbit/s (10^6 bits per second).
    pub figure: Option<Figure>,
    pub samples_mbps: Vec<f64>,
    /// Bytes the receiver counted in the window, warm-up included.
    pub bytes: u64,
    /// The sender stopped before the window ended (the byte cap or its deadline).
    pub ended_early: bool,
}

impl Direction {
    fn from_tally(t: &wire::Tally, w: &Window, what: &str, notes: &mut Vec<String>) -> Direction {
        let secs = w.interval.as_secs_f64();
        let samples: Vec<f64> = t
            .interval_bytes
            .iter()
            .map(|b| *b as f64 * 8.0 / secs / 1e6)
            .collect();
        let conditions = Conditions {
            threads: 1,
            size: format!("{} s, 1 TCP stream, {} received", w.seconds, human_bytes(t.bytes)),
            features: Vec::new(),
            note: Some(format!(
                "plain TCP, no TLS; counted by the receiver every {} ms after a {} ms warm-up",
                w.interval.as_millis(),
                w.warmup.as_millis()
            )),
        };
        let figure = summarize(&samples, "Mbit/s", conditions);
        if figure.is_none() {
            notes.push(format!(
                "{what}: no figure: {}",
                if samples.is_empty() {
                    "no full interval was timed"
                } else {
                    "an interval received nothing (the link stalled)"
                }
            ));
        }
        if t.ended_early {
            notes.push(format!(
                "{what}: the sender stopped before the window ended (byte cap {} or its deadline)",
                human_bytes(w.max_bytes)
            ));
        }
        Direction {
            figure,
            samples_mbps: samples,
            bytes: t.bytes,
            ended_early: t.ended_early,
        }
    }
}

/// Who, where and when, for [`NetReport::new`].
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub from: Option<String>,
    pub addr: String,
    pub seconds: u32,
    pub started_at_ms: u64,
    pub duration_ms: u64,
}

impl NetReport {
    /// The report of a run: its figures, or the error with both figures `null`.
    pub fn new(info: RunInfo, measured: Result<Tallies, String>) -> NetReport {
        let w = window(info.seconds).unwrap_or(Window {
            warmup: WARMUP,
            seconds: info.seconds,
            interval: INTERVAL,
            max_bytes: MAX_BYTES,
        });
        let mut notes = Vec::new();
        let (send, receive, error) = match &measured {
            Ok(t) => (
                Direction::from_tally(&t.send, &w, "send", &mut notes),
                Direction::from_tally(&t.receive, &w, "receive", &mut notes),
                None,
            ),
            Err(e) => (Direction::default(), Direction::default(), Some(e.clone())),
        };
        NetReport {
            format: FORMAT.to_owned(),
            started_at_ms: info.started_at_ms,
            duration_ms: info.duration_ms,
            from: info.from,
            addr: info.addr,
            path: NetPath {
                transport: "tcp".into(),
                tls: false,
                streams: 1,
                auth: "one-time 32-byte secret; its SHA-256 reached the peer over the cluster's TLS/mTLS"
                    .into(),
            },
            seconds: info.seconds,
            interval_ms: w.interval.as_millis() as u64,
            warmup_ms: w.warmup.as_millis() as u64,
            send,
            receive,
            error,
            notes,
        }
    }

    /// One line for the event list: the medians, or the error.
    pub fn summary_line(&self) -> String {
        let fig = |d: &Direction| {
            d.figure
                .as_ref()
                .map(|f| format!("{:.1} Mbit/s", f.median))
                .unwrap_or_else(|| "-".into())
        };
        match &self.error {
            Some(e) => format!("network benchmark failed: {e}"),
            None => format!(
                "network benchmark from {}: send {}, receive {} (median, {} s each way, 1 TCP stream, no TLS)",
                self.from.as_deref().unwrap_or("?"),
                fig(&self.send),
                fig(&self.receive),
                self.seconds
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_bounded() {
        assert!(window(0).is_err());
        assert!(window(MAX_SECONDS + 1).is_err());
        assert_eq!(window(5).unwrap().seconds, 5);
    }

    #[test]
    fn a_report_has_figures_in_mbit_per_second() {
        let t = wire::Tally {
            interval_bytes: vec![3_125_000, 3_125_000, 2_500_000],
            bytes: 9_000_000,
            ended_early: false,
        };
        let info = RunInfo {
            from: Some("a".into()),
            addr: "10.0.0.2:4000".into(),
            seconds: 1,
            started_at_ms: 1,
            duration_ms: 2,
        };
        let r = NetReport::new(
            info.clone(),
            Ok(Tallies {
                send: t.clone(),
                receive: t,
            }),
        );
        let f = r.send.figure.as_ref().unwrap();
        assert_eq!((f.median, f.min, f.max), (50.0, 40.0, 50.0));
        assert_eq!(f.unit, "Mbit/s");
        assert!(!r.path.tls);
        assert!(
            r.summary_line().contains("send 50.0 Mbit/s"),
            "{}",
            r.summary_line()
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["format"], FORMAT);
        let failed = NetReport::new(info, Err("nobody connected".into()));
        assert!(failed.send.figure.is_none());
        assert!(failed.summary_line().contains("nobody connected"));
    }
}
