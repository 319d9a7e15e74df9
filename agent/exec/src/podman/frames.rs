//! The multiplexed stream of `containers/{id}/logs`: frames of an 8-byte header (stream type,
//! three zero bytes, big-endian payload length) followed by the payload. HTTP chunks do not
//! line up with frames, so a frame may arrive in pieces.

use crate::{Output, Stream};

const HEADER: usize = 8;

/// Turns the bytes of a log stream into [`Output`] chunks.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    pending: Vec<u8>,
}

impl Demux {
    /// Feeds the next piece of the stream; returns the frames it completed, in order.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<Output> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0;
        while self.pending.len() - at >= HEADER {
            let header = &self.pending[at..at + HEADER];
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if self.pending.len() - at - HEADER < len {
                break;
            }
            // 1 = stdout, 2 = stderr; 0 (stdin echo) and 3 (Docker's "system error") are not
            // the task's own streams: stdin goes with stdout, errors with stderr.
            let stream = match header[0] {
                0 | 1 => Stream::Stdout,
                _ => Stream::Stderr,
            };
            let start = at + HEADER;
            if len > 0 {
                out.push(Output {
                    stream,
                    data: self.pending[start..start + len].to_vec(),
                });
            }
            at = start + len;
        }
        self.pending.drain(..at);
        out
    }

    /// Bytes of an incomplete frame left when the stream ended (a truncated stream).
    pub(crate) fn leftover(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn whole_frames_keep_their_stream_and_order() {
        let mut bytes = frame(1, b"hi\n");
        bytes.extend(frame(2, b"err\n"));
        bytes.extend(frame(1, b"bye\n"));
        let out = Demux::default().push(&bytes);
        let got: Vec<_> = out.iter().map(|o| (o.stream, o.data.as_slice())).collect();
        assert_eq!(
            got,
            [
                (Stream::Stdout, &b"hi\n"[..]),
                (Stream::Stderr, &b"err\n"[..]),
                (Stream::Stdout, &b"bye\n"[..])
            ]
        );
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let mut bytes = frame(2, b"first line\n");
        bytes.extend(frame(1, &[b'x'; 300]));
        for cut in 0..bytes.len() {
            let mut d = Demux::default();
            let mut out = d.push(&bytes[..cut]);
            out.extend(d.push(&bytes[cut..]));
            assert_eq!(out.len(), 2, "cut at {cut}");
            assert_eq!(out[0].data, b"first line\n");
            assert_eq!(out[0].stream, Stream::Stderr);
            assert_eq!(out[1].data.len(), 300);
            assert_eq!(d.leftover(), 0);
        }
    }

    #[test]
    fn a_truncated_frame_is_left_over() {
        let bytes = frame(1, b"abcdef");
        let mut d = Demux::default();
        assert!(d.push(&bytes[..10]).is_empty());
        assert_eq!(d.leftover(), 10);
    }
}
