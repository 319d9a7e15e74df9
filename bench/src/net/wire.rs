//! The data path's framing: after the 32-byte secret, each direction is a sequence of frames,
//! a kind byte and a big-endian `u32` length, then the payload.
//!
//! | kind | payload | meaning |
//! |---|---|---|
//! | `D` | up to [`FRAME`] zero bytes | data (what is measured) |
//! | `E` | none | the sender stopped; nothing more in this phase |
//! | `T` | a [`Tally`] as JSON, ≤ [`MAX_TALLY`] | the receiver's count: "stop sending" |
//!
//! Frames let each side tell the end of a phase from data without closing the socket; their
//! headers are 5 bytes in 128 KiB and are counted as transferred bytes like the payload.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Payload bytes of one data frame.
pub const FRAME: usize = 128 * 1024;
/// Largest tally message.
pub const MAX_TALLY: usize = 16 * 1024;
const HEADER: usize = 5;

/// What a receiver counted: bytes per interval after the warm-up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Bytes received in each interval, warm-up excluded.
    pub interval_bytes: Vec<u64>,
    /// Bytes received in the whole window, warm-up included.
    pub bytes: u64,
    /// The sender stopped before the window ended (its byte cap or its deadline).
    pub ended_early: bool,
}

/// A control frame read from the stream (data frames are only counted).
#[derive(Debug, PartialEq)]
pub enum Control {
    End,
    Tally(Tally),
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// One data frame, ready to write again and again.
pub fn data_frame() -> Vec<u8> {
    let mut f = vec![0u8; HEADER + FRAME];
    f[0] = b'D';
    f[1..HEADER].copy_from_slice(&(FRAME as u32).to_be_bytes());
    f
}

pub fn write_end(w: &mut impl Write) -> io::Result<()> {
    w.write_all(&[b'E', 0, 0, 0, 0])
}

pub fn write_tally(w: &mut impl Write, t: &Tally) -> io::Result<()> {
    let json = serde_json::to_vec(t).map_err(|e| bad(e.to_string()))?;
    if json.len() > MAX_TALLY {
        return Err(bad("tally too large"));
    }
    let mut msg = Vec::with_capacity(HEADER + json.len());
    msg.push(b'T');
    msg.extend_from_slice(&(json.len() as u32).to_be_bytes());
    msg.extend_from_slice(&json);
    w.write_all(&msg)
}

/// Reads a stream of frames through one buffer: [`fill`](Self::fill) reads what the socket
/// has (timed, for counting), [`control`](Self::control) skips data and returns the next control
/// frame once it is complete.
pub struct FrameReader {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Data payload bytes still to skip.
    skip: usize,
}

impl FrameReader {
    /// `stream` should have a read timeout, so [`fill`](Self::fill) returns to its caller.
    pub fn new(stream: TcpStream) -> FrameReader {
        FrameReader {
            stream,
            buf: vec![0u8; 4 * FRAME].into_boxed_slice(),
            start: 0,
            end: 0,
            skip: 0,
        }
    }

    /// Reads once: `Some((bytes, when))`, or `None` when the read timed out. The end of the
    /// stream is an error (the other side went away mid-run).
    pub fn fill(&mut self) -> io::Result<Option<(usize, Instant)>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(bad("a frame larger than the read buffer"));
        }
        match self.stream.read(&mut self.buf[self.end..]) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the other side closed the connection",
            )),
            Ok(n) => {
                self.end += n;
                Ok(Some((n, Instant::now())))
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes `n` raw bytes (the secret) once they are buffered.
    pub fn take_raw(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.end - self.start >= n).then(|| {
            let v = self.buf[self.start..self.start + n].to_vec();
            self.start += n;
            v
        })
    }

    /// The next complete control frame in the buffer, skipping data; `None` until one is.
    pub fn control(&mut self) -> io::Result<Option<Control>> {
        loop {
            if self.skip > 0 {
                let k = self.skip.min(self.end - self.start);
                self.start += k;
                self.skip -= k;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            let avail = &self.buf[self.start..self.end];
            if avail.len() < HEADER {
                return Ok(None);
            }
            let kind = avail[0];
            let len = u32::from_be_bytes([avail[1], avail[2], avail[3], avail[4]]) as usize;
            match kind {
                b'D' if len <= FRAME => {
                    self.start += HEADER;
                    self.skip = len;
                }
                b'E' if len == 0 => {
                    self.start += HEADER;
                    return Ok(Some(Control::End));
                }
                b'T' if len <= MAX_TALLY => {
                    if avail.len() < HEADER + len {
                        return Ok(None);
                    }
                    let t: Tally = serde_json::from_slice(&avail[HEADER..HEADER + len])
                        .map_err(|e| bad(format!("malformed tally: {e}")))?;
                    self.start += HEADER + len;
                    return Ok(Some(Control::Tally(t)));
                }
                _ => return Err(bad(format!("malformed frame (kind {kind:#04x}, length {len})"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn frames_round_trip_with_data_skipped() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (r, _) = l.accept().unwrap();
        r.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let t = Tally {
            interval_bytes: vec![1, 2, 3],
            bytes: 6,
            ended_early: false,
        };
        w.write_all(b"0123456789abcdef0123456789abcdef").unwrap();
        w.write_all(&data_frame()).unwrap();
        w.write_all(&data_frame()).unwrap();
        write_end(&mut w).unwrap();
        write_tally(&mut w, &t).unwrap();
        drop(w);
        let mut fr = FrameReader::new(r);
        let mut got = Vec::new();
        let mut secret = None;
        let mut total = 0;
        while got.len() < 2 {
            if let Some((n, _)) = fr.fill().unwrap() {
                total += n;
            }
            if secret.is_none() {
                secret = fr.take_raw(32);
            }
            if secret.is_some() {
                while let Some(c) = fr.control().unwrap() {
                    got.push(c);
                }
            }
        }
        assert_eq!(secret.as_deref(), Some(&b"0123456789abcdef0123456789abcdef"[..]));
        assert_eq!(got, vec![Control::End, Control::Tally(t)]);
        assert!(total >= 32 + 2 * (FRAME + 5) + 5);
    }

    #[test]
    fn a_malformed_frame_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (r, _) = l.accept().unwrap();
        w.write_all(&[b'X', 0, 0, 0, 0]).unwrap();
        let mut fr = FrameReader::new(r);
        while fr.fill().unwrap().is_none() {}
        assert!(fr.control().is_err());
    }
}
