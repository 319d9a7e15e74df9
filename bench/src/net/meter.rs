//! The two roles in one phase of a run. The sender writes data frames until the receiver's
//! tally tells it to stop; the receiver counts what arrives per interval for the window (from
//! its first byte: warm-up, then the timed intervals), sends its tally, and drains until the
//! sender's end frame. Both are bounded in time, and the sender in bytes.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wire::{self, Control, FrameReader, Tally};

/// How long a side waits for the other beyond the window before it gives up (first byte,
/// a tally, the end of a drain).
pub const GRACE: Duration = Duration::from_secs(5);

/// The timing and bounds of one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub warmup: Duration,
    pub seconds: u32,
    pub interval: Duration,
    /// The sender stops after this many bytes even if the window has not ended.
    pub max_bytes: u64,
}

impl Window {
    pub fn total(&self) -> Duration {
        self.warmup + Duration::from_secs(u64::from(self.seconds))
    }

    fn slots(&self) -> usize {
        self.total().as_nanos().div_ceil(self.interval.as_nanos().max(1)) as usize
    }

    fn warmup_slots(&self) -> usize {
        (self.warmup.as_nanos() / self.interval.as_nanos().max(1)) as usize
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

fn unexpected(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// The receiving role: counts, sends the tally (which stops the sender), drains.
pub fn receive(fr: &mut FrameReader, out: &mut TcpStream, w: &Window) -> io::Result<Tally> {
    let first_by = Instant::now() + GRACE;
    let mut slots = vec![0u64; w.slots()];
    let mut t0: Option<Instant> = None;
    let mut total = 0u64;
    let mut ended_at = None;
    loop {
        match fr.control()? {
            Some(Control::End) => {
                ended_at = Some(Instant::now());
                break;
            }
            Some(Control::Tally(_)) => return Err(unexpected("a tally where data was expected")),
            None => {}
        }
        let now = Instant::now();
        match t0 {
            None if now > first_by => return Err(timed_out("no data arrived within 5 s")),
            Some(t) if now >= t + w.total() => break,
            _ => {}
        }
        if let Some((n, at)) = fr.fill()? {
            let t = *t0.get_or_insert(at);
            let slot = ((at - t).as_nanos() / w.interval.as_nanos().max(1)) as usize;
            if let Some(s) = slots.get_mut(slot) {
                *s += n as u64;
                total += n as u64;
            }
        }
    }
    // A sender that stopped early leaves its last interval partial: only full ones count.
    if let (Some(end), Some(t)) = (ended_at, t0) {
        let full = ((end - t).as_nanos() / w.interval.as_nanos().max(1)) as usize;
        slots.truncate(full);
    }
    let tally = Tally {
        interval_bytes: slots.get(w.warmup_slots()..).unwrap_or_default().to_vec(),
        bytes: total,
        ended_early: ended_at.is_some(),
    };
    wire::write_tally(out, &tally)?;
    if ended_at.is_none() {
        let until = Instant::now() + GRACE;
        loop {
            match fr.control()? {
                Some(Control::End) => break,
                Some(Control::Tally(_)) => return Err(unexpected("a tally where data was expected")),
                None => {}
            }
            if Instant::now() > until {
                return Err(timed_out("the sender did not stop within 5 s of the tally"));
            }
            fr.fill()?;
        }
    }
    Ok(tally)
}

/// The sending role: writes data (on a second thread) until the receiver's tally arrives, the
/// byte cap, or the deadline; ends with an end frame. Returns the receiver's tally.
pub fn send(fr: &mut FrameReader, out: &TcpStream, w: &Window) -> io::Result<Tally> {
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + w.total() + 2 * GRACE;
    let writer = {
        let stop = stop.clone();
        let mut ws = out.try_clone()?;
        let max = w.max_bytes;
        std::thread::Builder::new()
            .name("bench-net-send".into())
            .spawn(move || -> io::Result<u64> {
                let frame = wire::data_frame();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && sent < max {
                    io::Write::write_all(&mut ws, &frame)?;
                    sent += frame.len() as u64;
                }
                wire::write_end(&mut ws)?;
                Ok(sent)
            })?
    };
    let tally = loop {
        match fr.control() {
            Ok(Some(Control::Tally(t))) => break Ok(t),
            Ok(Some(Control::End)) => break Err(unexpected("an end frame where a tally was expected")),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if Instant::now() > deadline + GRACE {
            break Err(timed_out("the receiver sent no tally in time"));
        }
        if let Err(e) = fr.fill() {
            break Err(e);
        }
    };
    stop.store(true, Ordering::Relaxed);
    let written = writer
        .join()
        .map_err(|_| io::Error::other("the sending thread panicked"))?;
    let tally = tally?;
    written?;
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slots() {
        let w = Window {
            warmup: Duration::from_millis(500),
            seconds: 2,
            interval: Duration::from_millis(500),
            max_bytes: u64::MAX,
        };
        assert_eq!((w.slots(), w.warmup_slots()), (5, 1));
        assert_eq!(w.total(), Duration::from_millis(2500));
    }
}
