//! Length-prefixed frames over a non-blocking TCP stream.
//!
//! A frame on the wire is a 4-byte little-endian payload length followed
//! by the payload. [`FramedStream`] owns one connection with a read buffer
//! that never grows past one maximal frame plus its header, and a write
//! buffer that refuses new frames once it holds `max_write_buffer` bytes:
//! a fast writer learns to wait for the socket instead of growing a queue.
//! Everything is non-blocking so that one epoll thread
//! ([`Poller`](crate::runtime::Poller)) can drive many connections.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

/// Bytes of the length prefix in front of every frame.
pub const FRAME_HEADER: usize = 4;

/// Bytes read per [`FramedStream::fill`] (unless a frame needs more).
const READ_CHUNK: usize = 256 << 10;
/// A partial frame this small is moved to the front of the read buffer
/// before reading more.
const COMPACT_BELOW: usize = 64 << 10;

/// Size limits of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest payload accepted or sent; a peer announcing more is an
    /// error (it would otherwise make us buffer without bound).
    pub max_frame: usize,
    /// Bytes the write buffer may hold before [`FramedStream::send`]
    /// refuses further frames (a frame into an empty buffer always fits).
    pub max_write_buffer: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame: 1 << 20,
            max_write_buffer: 1 << 20,
        }
    }
}

/// Why a framed connection cannot go on.
#[derive(Debug)]
pub enum StreamError {
    /// The peer closed the connection cleanly, between two frames.
    Closed,
    /// The peer closed the connection in the middle of a frame.
    Truncated {
        /// Bytes of the unfinished frame that had arrived.
        buffered: usize,
    },
    /// A frame larger than the limit was announced or offered.
    FrameTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The socket failed (connection reset, broken pipe, ...).
    Io(io::Error),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Closed => write!(f, "connection closed by the peer"),
            StreamError::Truncated { buffered } => write!(
                f,
                "connection closed by the peer in the middle of a frame ({buffered} bytes buffered)"
            ),
            StreamError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            StreamError::Io(e) => write!(f, "connection failed: {e}"),
        }
    }
}

impl std::error::Error for StreamError {}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> Self {
        StreamError::Io(e)
    }
}

/// One non-blocking TCP connection carrying length-prefixed frames.
///
/// Reading: call [`fill`](Self::fill) when the socket is readable, then
/// take frames with [`next_frame`](Self::next_frame) until it returns
/// `Ok(None)`. Writing: [`send`](Self::send) or
/// [`send_with`](Self::send_with) queue frames, [`flush`](Self::flush)
/// moves them to the socket; watch for write readiness while
/// [`wants_write`](Self::wants_write).
pub struct FramedStream {
    stream: TcpStream,
    limits: FrameLimits,
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    eof: bool,
    wbuf: Vec<u8>,
    wsent: usize,
}

impl FramedStream {
    /// Wraps a connected stream: makes it non-blocking and turns off
    /// Nagle's algorithm (frames are already batched by their writers).
    pub fn new(stream: TcpStream, limits: FrameLimits) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(FramedStream {
            stream,
            limits,
            rbuf: vec![0u8; limits.max_frame + FRAME_HEADER].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            eof: false,
            wbuf: Vec::new(),
            wsent: 0,
        })
    }

    /// The socket, to register with a poller or ask for addresses.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The limits this connection enforces.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// Reads what the socket has, up to the free space of the read
    /// buffer. Returns the bytes read; 0 when the socket had nothing, the
    /// buffer is full (take frames first) or the peer has closed (the
    /// frames before the close are still delivered by `next_frame`, which
    /// then reports the close).
    pub fn fill(&mut self) -> Result<usize, StreamError> {
        if self.eof {
            return Ok(0);
        }
        let buffered = self.rend - self.rstart;
        if buffered == 0 {
            self.rstart = 0;
            self.rend = 0;
        } else if self.rstart > 0 && (buffered <= COMPACT_BELOW || self.rend == self.rbuf.len()) {
            // Keep the bytes near the front, so that a stream of small
            // frames touches a few pages of the buffer, not all of it.
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend = buffered;
            self.rstart = 0;
        }
        // Read about READ_CHUNK per call, or what the frame in progress
        // still lacks if that is more.
        let budget = READ_CHUNK.max(self.missing());
        let mut total = 0;
        while self.rend < self.rbuf.len() && total < budget {
            let want = (self.rbuf.len() - self.rend).min(budget - total);
            match self
                .stream
                .read(&mut self.rbuf[self.rend..self.rend + want])
            {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.rend += n;
                    total += n;
                    // A short read drained the socket: skip the EAGAIN call.
                    if n < want {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StreamError::Io(e)),
            }
        }
        Ok(total)
    }

    /// Bytes still missing from the frame at the front of the buffer (0
    /// if its header is incomplete or it is too large to ever complete).
    fn missing(&self) -> usize {
        let buffered = self.rend - self.rstart;
        if buffered < FRAME_HEADER {
            return 0;
        }
        let mut header = [0u8; FRAME_HEADER];
        header.copy_from_slice(&self.rbuf[self.rstart..self.rstart + FRAME_HEADER]);
        let len = u32::from_le_bytes(header) as usize;
        if len > self.limits.max_frame {
            return 0;
        }
        (FRAME_HEADER + len).saturating_sub(buffered)
    }

    /// The next complete frame's payload, if one has arrived. After the
    /// peer closed, the buffered frames come first, then
    /// `Err(Closed)` (or `Err(Truncated)` if a frame was cut short).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, StreamError> {
        let buffered = self.rend - self.rstart;
        if buffered >= FRAME_HEADER {
            let mut header = [0u8; FRAME_HEADER];
            header.copy_from_slice(&self.rbuf[self.rstart..self.rstart + FRAME_HEADER]);
            let len = u32::from_le_bytes(header) as usize;
            if len > self.limits.max_frame {
                return Err(StreamError::FrameTooLarge {
                    len,
                    max: self.limits.max_frame,
                });
            }
            if buffered >= FRAME_HEADER + len {
                let start = self.rstart + FRAME_HEADER;
                self.rstart = start + len;
                return Ok(Some(&self.rbuf[start..start + len]));
            }
        }
        match (self.eof, buffered) {
            (false, _) => Ok(None),
            (true, 0) => Err(StreamError::Closed),
            (true, buffered) => Err(StreamError::Truncated { buffered }),
        }
    }

    /// Bytes queued and not yet written to the socket.
    pub fn write_buffered(&self) -> usize {
        self.wbuf.len() - self.wsent
    }

    /// True while queued bytes wait for the socket: watch for write
    /// readiness and call [`flush`](Self::flush) when it comes.
    pub fn wants_write(&self) -> bool {
        self.write_buffered() > 0
    }

    /// True if a frame of `len` payload bytes would be accepted now.
    pub fn can_send(&self, len: usize) -> bool {
        let buffered = self.write_buffered();
        buffered == 0 || buffered + FRAME_HEADER + len <= self.limits.max_write_buffer
    }

    /// Queues one frame. `Ok(false)`: the write buffer is full, nothing
    /// was queued; flush and try again once the socket is writable.
    pub fn send(&mut self, payload: &[u8]) -> Result<bool, StreamError> {
        if payload.len() > self.limits.max_frame {
            return Err(StreamError::FrameTooLarge {
                len: payload.len(),
                max: self.limits.max_frame,
            });
        }
        if !self.can_send(payload.len()) {
            return Ok(false);
        }
        self.compact_write();
        self.wbuf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.wbuf.extend_from_slice(payload);
        Ok(true)
    }

    /// Queues one frame whose payload `write` appends to the buffer in
    /// place (no intermediate copy). Callers check
    /// [`can_send`](Self::can_send) first; this one always queues. A
    /// payload over the limit is removed again and reported.
    pub fn send_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), StreamError> {
        self.compact_write();
        let at = self.wbuf.len();
        self.wbuf.extend_from_slice(&[0u8; FRAME_HEADER]);
        write(&mut self.wbuf);
        let len = self.wbuf.len() - at - FRAME_HEADER;
        if len > self.limits.max_frame {
            self.wbuf.truncate(at);
            return Err(StreamError::FrameTooLarge {
                len,
                max: self.limits.max_frame,
            });
        }
        self.wbuf[at..at + FRAME_HEADER].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(())
    }

    /// Writes queued bytes until the socket would block. Returns true when
    /// everything queued has been handed to the kernel.
    pub fn flush(&mut self) -> Result<bool, StreamError> {
        while self.wsent < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wsent..]) {
                Ok(0) => {
                    return Err(StreamError::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    )))
                }
                Ok(n) => self.wsent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StreamError::Io(e)),
            }
        }
        self.wbuf.clear();
        self.wsent = 0;
        Ok(true)
    }

    /// Closes our direction after the queued bytes (call once `flush`
    /// returned true): the peer reads the frames, then a clean close.
    pub fn shutdown_write(&mut self) -> Result<(), StreamError> {
        match self.stream.shutdown(Shutdown::Write) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(StreamError::Io(e)),
        }
    }

    /// Drops already-written bytes from the front of the write buffer so
    /// that it does not creep forward forever.
    fn compact_write(&mut self) {
        if self.wsent > 0 {
            self.wbuf.drain(..self.wsent);
            self.wsent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Interest, Poller};
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    fn pair(limits: FrameLimits) -> (FramedStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (FramedStream::new(server, limits).unwrap(), client)
    }

    /// Fills until a frame or an error shows up (bounded by a deadline so
    /// a bug fails the test instead of hanging it).
    fn wait_frame(s: &mut FramedStream) -> Result<Vec<u8>, StreamError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = s.next_frame()? {
                return Ok(f.to_vec());
            }
            assert!(Instant::now() < deadline, "no frame arrived");
            s.fill()?;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn frames_split_across_reads_arrive_whole_and_in_order() {
        let (mut server, mut client) = pair(FrameLimits::default());
        let mut wire = Vec::new();
        for i in 0..50u32 {
            let payload = vec![i as u8; i as usize * 7];
            wire.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            wire.extend_from_slice(&payload);
        }
        // Dribble the bytes in odd-sized pieces.
        for piece in wire.chunks(13) {
            client.write_all(piece).unwrap();
        }
        for i in 0..50u32 {
            assert_eq!(
                wait_frame(&mut server).unwrap(),
                vec![i as u8; i as usize * 7]
            );
        }
        drop(client);
        assert!(matches!(wait_frame(&mut server), Err(StreamError::Closed)));
    }

    #[test]
    fn frames_larger_than_one_read_and_small_ones_after_them_arrive_intact() {
        let limits = FrameLimits {
            max_frame: 2 << 20,
            max_write_buffer: 4 << 20,
        };
        let (mut server, client) = pair(limits);
        let mut writer = FramedStream::new(client, limits).unwrap();
        let big: Vec<u8> = (0..(1 << 20) + 12345).map(|i| (i % 251) as u8).collect();
        let frames = [big.clone(), vec![1, 2, 3], big.clone(), vec![]];
        let t = std::thread::spawn(move || {
            for f in &frames {
                assert!(writer.send(f).unwrap());
                while !writer.flush().unwrap() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            writer
        });
        assert_eq!(wait_frame(&mut server).unwrap(), big);
        assert_eq!(wait_frame(&mut server).unwrap(), vec![1, 2, 3]);
        assert_eq!(wait_frame(&mut server).unwrap(), big);
        assert_eq!(wait_frame(&mut server).unwrap(), Vec::<u8>::new());
        drop(t.join().unwrap());
        assert!(matches!(wait_frame(&mut server), Err(StreamError::Closed)));
    }

    #[test]
    fn oversized_announcement_and_truncation_are_errors() {
        let limits = FrameLimits {
            max_frame: 100,
            max_write_buffer: 1000,
        };
        let (mut server, mut client) = pair(limits);
        client.write_all(&101u32.to_le_bytes()).unwrap();
        assert!(matches!(
            wait_frame(&mut server),
            Err(StreamError::FrameTooLarge { len: 101, max: 100 })
        ));

        let (mut server, mut client) = pair(limits);
        client.write_all(&10u32.to_le_bytes()).unwrap();
        client.write_all(&[1, 2, 3]).unwrap();
        drop(client);
        assert!(matches!(
            wait_frame(&mut server),
            Err(StreamError::Truncated { buffered: 7 })
        ));
        // Offering an oversized frame is refused locally too.
        assert!(matches!(
            server.send(&[0u8; 101]),
            Err(StreamError::FrameTooLarge { .. })
        ));
        assert!(server
            .send_with(|b| b.extend_from_slice(&[0u8; 101]))
            .is_err());
        assert_eq!(server.write_buffered(), 0);
    }

    #[test]
    fn full_write_buffer_pushes_back_and_drains_through_the_poller() {
        let limits = FrameLimits {
            max_frame: 64 << 10,
            max_write_buffer: 256 << 10,
        };
        let (mut server, client) = pair(limits);
        let mut reader = FramedStream::new(client, limits).unwrap();
        let payload = vec![7u8; 60 << 10];
        // Nobody reads yet: the kernel buffers fill, then ours, then we
        // are told to wait rather than allowed to grow.
        let mut queued = 0usize;
        while server.send(&payload).unwrap() {
            queued += 1;
            server.flush().unwrap();
            assert!(queued < 10_000, "write buffer never pushed back");
        }
        assert!(server.write_buffered() <= limits.max_write_buffer);

        // Now drain: the writer waits for EPOLLOUT, the reader reads.
        let mut poller = Poller::new().unwrap();
        poller
            .register_interest(server.stream().as_fd(), 1, Interest::Write)
            .unwrap();
        let mut received = 0usize;
        let deadline = Instant::now() + Duration::from_secs(20);
        while received < queued {
            assert!(Instant::now() < deadline, "stalled at {received}/{queued}");
            reader.fill().unwrap();
            while let Some(f) = reader.next_frame().unwrap() {
                assert_eq!(f.len(), payload.len());
                received += 1;
            }
            if server.wants_write() {
                poller
                    .wait(Some(Instant::now() + Duration::from_millis(1)))
                    .unwrap();
                server.flush().unwrap();
            }
        }
        assert_eq!(received, queued);
        assert!(!server.wants_write());
    }

    #[test]
    fn send_with_builds_the_frame_in_place() {
        let (mut server, client) = pair(FrameLimits::default());
        let mut reader = FramedStream::new(client, FrameLimits::default()).unwrap();
        server.send_with(|b| b.extend_from_slice(b"hello")).unwrap();
        assert!(server.send(b"").unwrap());
        while !server.flush().unwrap() {}
        server.shutdown_write().unwrap();
        assert_eq!(wait_frame(&mut reader).unwrap(), b"hello");
        assert_eq!(wait_frame(&mut reader).unwrap(), b"");
        assert!(matches!(wait_frame(&mut reader), Err(StreamError::Closed)));
    }
}
