//! Setting up TCP connections: connect with retries while a peer starts,
//! and blocking frame I/O with deadlines for handshakes before a
//! connection goes non-blocking (see [`FramedStream`](super::FramedStream)).

use super::stream::FRAME_HEADER;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// First pause between connection attempts; it doubles up to
/// [`MAX_RETRY_PAUSE`]. Short, because peers of one run usually start
/// within milliseconds of each other.
pub const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(1);
/// Longest pause between connection attempts.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A peer that could not be reached in time.
#[derive(Debug)]
pub struct ConnectError {
    /// Where we tried to connect.
    pub addr: SocketAddr,
    /// How long we kept trying.
    pub waited: Duration,
    /// Attempts made.
    pub attempts: u32,
    /// The error of the last attempt.
    pub last: io::Error,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not connect to {} within {:?} ({} attempts); last error: {}",
            self.addr, self.waited, self.attempts, self.last
        )
    }
}

impl std::error::Error for ConnectError {}

/// Connects to `addr`, retrying (refused, unreachable, timed out) with
/// pauses doubling from 1 ms to 50 ms until `within` has passed.
pub fn connect_with_retry(addr: SocketAddr, within: Duration) -> Result<TcpStream, ConnectError> {
    let start = Instant::now();
    let deadline = start + within;
    let mut pause = FIRST_RETRY_PAUSE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let result = if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "no time left"))
        } else {
            TcpStream::connect_timeout(&addr, left)
        };
        match result {
            Ok(stream) => return Ok(stream),
            Err(last) => {
                let now = Instant::now();
                if now + pause >= deadline {
                    return Err(ConnectError {
                        addr,
                        waited: now - start,
                        attempts,
                        last,
                    });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }
}

/// Writes one length-prefixed frame on a blocking stream.
pub fn write_frame_blocking(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    let mut bytes = Vec::with_capacity(FRAME_HEADER + payload.len());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(payload);
    stream.write_all(&bytes)
}

/// Reads one length-prefixed frame of at most `max` bytes from a blocking
/// stream, giving up with `TimedOut` after `timeout`. The stream's read
/// timeout is left cleared.
pub fn read_frame_blocking(
    stream: &mut TcpStream,
    max: usize,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut header = [0u8; FRAME_HEADER];
    read_exact_by(stream, &mut header, deadline)?;
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let mut payload = vec![0u8; len];
    read_exact_by(stream, &mut payload, deadline)?;
    stream.set_read_timeout(None)?;
    Ok(payload)
}

fn read_exact_by(stream: &mut TcpStream, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "peer sent no complete frame in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection during the handshake",
                ))
            }
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn connect_retries_until_the_listener_appears() {
        // Reserve a port, close it, and open it again a little later.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let l = TcpListener::bind(addr).unwrap();
            l.accept().map(|_| ())
        });
        let s = connect_with_retry(addr, Duration::from_secs(10));
        assert!(s.is_ok(), "{:?}", s.err());
        late.join().unwrap().unwrap();
    }

    #[test]
    fn a_peer_that_never_comes_is_a_clear_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = connect_with_retry(addr, Duration::from_millis(40)).unwrap_err();
        assert_eq!(err.addr, addr);
        assert!(err.attempts >= 2);
        assert!(err.to_string().contains("could not connect to"));
    }

    #[test]
    fn handshake_frames_round_trip_and_time_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        write_frame_blocking(&mut a, b"hello").unwrap();
        assert_eq!(
            read_frame_blocking(&mut b, 16, Duration::from_secs(5)).unwrap(),
            b"hello"
        );
        // Nothing more comes: a timeout, not a hang.
        let e = read_frame_blocking(&mut b, 16, Duration::from_millis(20)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // Too large: refused before allocating.
        write_frame_blocking(&mut a, &[0u8; 17]).unwrap();
        let e = read_frame_blocking(&mut b, 16, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
