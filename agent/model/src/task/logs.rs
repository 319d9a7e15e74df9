//! Task output as the cluster keeps it: an append-only byte log per task, both streams
//! interleaved in arrival order, bounded per attempt. Nothing is dropped silently: when output
//! is dropped (the limit) or forgotten (the cluster-wide budget), a `system` chunk says so.

use serde::{Deserialize, Serialize};

/// Where a chunk came from. `System` chunks are Cortex's own notes (attempt starts, dropped
/// output), never the task's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    System,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Where this chunk starts in the task's log.
    pub offset: u64,
    pub attempt: u32,
    pub stream: LogStream,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLog {
    pub chunks: Vec<LogChunk>,
    /// Bytes in the log so far (the next chunk's offset). Never decreases, even when chunks
    /// are forgotten.
    pub size: u64,
    /// Bytes of output dropped because an attempt reached the limit.
    pub dropped_bytes: u64,
    /// Offsets below this were forgotten to stay within the cluster-wide budget.
    #[serde(default)]
    pub evicted_below: u64,
    /// Output bytes accepted from the current attempt (dedups resent chunks).
    #[serde(default)]
    pub attempt_received: u64,
    #[serde(default)]
    pub attempt: u32,
}

impl TaskLog {
    /// Bytes currently held.
    pub fn held_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.data.len() as u64).sum()
    }

    /// Appends a note from Cortex itself.
    pub fn note(&mut self, attempt: u32, text: &str) {
        let data = format!("[cortex] {text}\n").into_bytes();
        self.push(attempt, LogStream::System, data);
    }

    fn push(&mut self, attempt: u32, stream: LogStream, data: Vec<u8>) {
        let len = data.len() as u64;
        // Merge with the previous chunk when it is the same stream, to keep chunk count low.
        if let Some(last) = self.chunks.last_mut() {
            if last.attempt == attempt && last.stream == stream && last.data.len() < 16 * 1024 {
                last.data.extend_from_slice(&data);
                self.size += len;
                return;
            }
        }
        self.chunks.push(LogChunk {
            offset: self.size,
            attempt,
            stream,
            data,
        });
        self.size += len;
    }

    /// Accepts output of `attempt` that starts at `offset` in that attempt's output. Resent
    /// bytes are skipped; bytes beyond `limit` are counted as dropped. Returns bytes added.
    pub fn append_output(
        &mut self,
        attempt: u32,
        stream: LogStream,
        offset: u64,
        data: &[u8],
        limit: u64,
    ) -> u64 {
        if attempt != self.attempt {
            self.attempt = attempt;
            self.attempt_received = 0;
        }
        let end = offset.saturating_add(data.len() as u64);
        if end <= self.attempt_received {
            return 0; // a resend of what we already have
        }
        if offset > self.attempt_received {
            // A gap: an earlier chunk never arrived. Keep what we got and say so.
            let missing = offset - self.attempt_received;
            self.dropped_bytes += missing;
            self.note(
                attempt,
                &format!("{missing} bytes of output were lost in transit"),
            );
            self.attempt_received = offset;
        }
        let skip = (self.attempt_received - offset) as usize;
        let fresh = &data[skip..];
        let room = limit.saturating_sub(self.attempt_received) as usize;
        let keep = fresh.len().min(room);
        if keep > 0 {
            self.push(attempt, stream, fresh[..keep].to_vec());
        }
        let dropped = (fresh.len() - keep) as u64;
        self.dropped_bytes += dropped;
        self.attempt_received = end;
        keep as u64
    }

    /// Forgets chunks from the front until at most `keep` bytes are held. Returns bytes freed.
    pub fn evict_to(&mut self, keep: u64) -> u64 {
        let mut held = self.held_bytes();
        let mut freed = 0;
        while held > keep && !self.chunks.is_empty() {
            let c = self.chunks.remove(0);
            held -= c.data.len() as u64;
            freed += c.data.len() as u64;
            self.evicted_below = c.offset + c.data.len() as u64;
        }
        freed
    }

    /// Chunks overlapping `[offset, offset + max)`, cut to that window, and the offset to read
    /// next. Reading below `evicted_below` starts at the first byte still held.
    pub fn read(&self, offset: u64, max: u64) -> (Vec<LogChunk>, u64) {
        let start = offset.max(self.evicted_below);
        let end = start.saturating_add(max).min(self.size);
        let first = self
            .chunks
            .partition_point(|c| c.offset + c.data.len() as u64 <= start);
        let mut out = Vec::new();
        for c in &self.chunks[first..] {
            if c.offset >= end {
                break;
            }
            let from = start.saturating_sub(c.offset) as usize;
            let to = ((end - c.offset) as usize).min(c.data.len());
            out.push(LogChunk {
                offset: c.offset + from as u64,
                attempt: c.attempt,
                stream: c.stream,
                data: c.data[from..to].to_vec(),
            });
        }
        (out, end.max(start))
    }
}

/// Serde helper: bytes as base64 text (the store and the wire encode commands as JSON).
pub mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_are_dropped_and_limits_counted() {
        let mut log = TaskLog::default();
        assert_eq!(log.append_output(1, LogStream::Stdout, 0, b"hello ", 8), 6);
        assert_eq!(log.append_output(1, LogStream::Stdout, 0, b"hello ", 8), 0);
        assert_eq!(log.append_output(1, LogStream::Stderr, 6, b"world", 8), 2);
        assert_eq!(log.dropped_bytes, 3);
        let (chunks, next) = log.read(0, 100);
        assert_eq!(next, 8);
        let text: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(text, b"hello wo");
        // A new attempt gets its own allowance.
        assert_eq!(log.append_output(2, LogStream::Stdout, 0, b"again", 8), 5);
    }

    #[test]
    fn read_windows_and_eviction() {
        let mut log = TaskLog::default();
        log.append_output(1, LogStream::Stdout, 0, b"0123456789", 100);
        let (c, next) = log.read(3, 4);
        assert_eq!(c[0].data, b"3456");
        assert_eq!((c[0].offset, next), (3, 7));
        log.evict_to(0);
        assert_eq!(log.evicted_below, 10);
        let (c, next) = log.read(0, 100);
        assert!(c.is_empty());
        assert_eq!(next, 10);
    }

    #[test]
    fn a_gap_is_noted() {
        let mut log = TaskLog::default();
        log.append_output(1, LogStream::Stdout, 5, b"x", 100);
        assert_eq!(log.dropped_bytes, 5);
        assert_eq!(log.chunks[0].stream, LogStream::System);
    }
}
