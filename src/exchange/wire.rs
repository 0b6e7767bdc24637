//! The bytes between two processes: a handshake, then frames (see
//! [`FramedStream`](crate::net::FramedStream)) that each carry a kind byte
//! and, for data, a run of batches. A batch is the messages one worker
//! sent another on one channel in a row: a 20-byte header, then the
//! bincode encodings back to back. One header per batch instead of one
//! per message is what keeps small messages cheap.

use std::fmt;

/// Frame kind: batches follow.
pub const KIND_DATA: u8 = 0;
/// Frame kind: the sending process has finished; no more data follows.
pub const KIND_GOODBYE: u8 = 1;
/// Frame kind: a worker of the sending process panicked; the
/// computation cannot complete.
pub const KIND_ABORT: u8 = 2;
/// Bytes of a batch header: channel, source, destination, count, length.
pub const BATCH_HEADER: usize = 20;

/// Handshake magic and version.
const MAGIC: &[u8; 4] = b"TRPX";
const VERSION: u32 = 1;

/// A malformed frame or handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed data from peer: {}", self.0)
    }
}

/// What a process tells a peer when connecting: who it is and the shape
/// of the cluster it believes in (both sides must agree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's process index.
    pub process: u32,
    /// Processes in the cluster.
    pub processes: u32,
    /// Workers per process.
    pub workers: u32,
}

impl Hello {
    /// The handshake bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for v in [VERSION, self.process, self.processes, self.workers] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parses and checks a peer's handshake against our own view.
    pub fn decode(bytes: &[u8]) -> Result<Hello, WireError> {
        if bytes.len() != 20 || &bytes[..4] != MAGIC {
            return Err(WireError("not an exchange handshake".into()));
        }
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        if word(4) != VERSION {
            return Err(WireError(format!(
                "protocol version {} (we speak {VERSION})",
                word(4)
            )));
        }
        Ok(Hello {
            process: word(8),
            processes: word(12),
            workers: word(16),
        })
    }
}

/// One batch inside a data frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    /// Channel id.
    pub channel: u32,
    /// Global index of the sending worker.
    pub src: u32,
    /// Global index of the receiving worker.
    pub dst: u32,
    /// Messages in `bytes`.
    pub count: u32,
    /// Their encodings, back to back.
    pub bytes: &'a [u8],
}

/// Starts a batch header at the end of `buf`; [`close_batch`] fills in
/// count and length once the messages are appended.
pub fn open_batch(buf: &mut Vec<u8>, channel: u32, src: u32, dst: u32) -> usize {
    let at = buf.len();
    for v in [channel, src, dst, 0, 0] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    at
}

/// Completes the header opened at `at`.
pub fn close_batch(buf: &mut [u8], at: usize, count: u32) {
    let len = (buf.len() - at - BATCH_HEADER) as u32;
    buf[at + 12..at + 16].copy_from_slice(&count.to_le_bytes());
    buf[at + 16..at + 20].copy_from_slice(&len.to_le_bytes());
}

/// Walks the batches of a data frame (after its kind byte).
pub struct Batches<'a> {
    rest: &'a [u8],
}

impl<'a> Batches<'a> {
    /// Batches of `body`.
    pub fn new(body: &'a [u8]) -> Self {
        Batches { rest: body }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<Batch<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < BATCH_HEADER {
            self.rest = &[];
            return Some(Err(WireError("truncated batch header".into())));
        }
        let word = |i: usize| {
            u32::from_le_bytes([
                self.rest[i],
                self.rest[i + 1],
                self.rest[i + 2],
                self.rest[i + 3],
            ])
        };
        let (channel, src, dst, count, len) = (word(0), word(4), word(8), word(12), word(16));
        let end = BATCH_HEADER + len as usize;
        if count == 0 || end > self.rest.len() {
            self.rest = &[];
            return Some(Err(WireError(format!(
                "batch of {count} messages and {len} bytes does not fit its frame"
            ))));
        }
        let bytes = &self.rest[BATCH_HEADER..end];
        self.rest = &self.rest[end..];
        Some(Ok(Batch {
            channel,
            src,
            dst,
            count,
            bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_garbage_is_rejected() {
        let mut buf = Vec::new();
        let at = open_batch(&mut buf, 7, 1, 2);
        buf.extend_from_slice(&[9; 16]);
        close_batch(&mut buf, at, 2);
        let at = open_batch(&mut buf, 8, 1, 3);
        buf.extend_from_slice(&[5; 3]);
        close_batch(&mut buf, at, 1);
        let batches: Vec<_> = Batches::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            batches,
            vec![
                Batch {
                    channel: 7,
                    src: 1,
                    dst: 2,
                    count: 2,
                    bytes: &[9; 16]
                },
                Batch {
                    channel: 8,
                    src: 1,
                    dst: 3,
                    count: 1,
                    bytes: &[5; 3]
                },
            ]
        );
        // Every truncation either parses a prefix of batches or errors.
        for cut in 1..buf.len() {
            let parsed: Vec<_> = Batches::new(&buf[..cut]).collect();
            assert!(parsed.last().unwrap().is_err() || cut == 36, "cut {cut}");
        }
        assert!(Batches::new(&[0xff; 40]).any(|b| b.is_err()));
    }

    #[test]
    fn handshake_checks_magic_and_version() {
        let h = Hello {
            process: 1,
            processes: 2,
            workers: 4,
        };
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
        assert!(Hello::decode(b"GET / HTTP/1.1\r\n\r\n..").is_err());
        let mut v2 = h.encode();
        v2[4] = 2;
        assert!(Hello::decode(&v2).unwrap_err().0.contains("version"));
    }
}
