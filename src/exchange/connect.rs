//! Connecting a cluster: every process listens on its own address,
//! connects to each lower-numbered process (retrying while it starts)
//! and accepts each higher-numbered one; both ends of every connection
//! check that they agree on the cluster's shape.

use super::error::ExchangeError;
use super::wire::Hello;
use crate::net::{connect_with_retry, read_frame_blocking, write_frame_blocking};
use crate::runtime::Poller;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Longest wait for the handshake on one accepted connection, so that a
/// stray connection cannot hold up the set-up.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// One connected stream per peer process (`None` for ourselves), in
/// process order.
pub fn connect_cluster(
    addresses: &[SocketAddr],
    me: usize,
    workers: usize,
    timeout: Duration,
) -> Result<Vec<Option<TcpStream>>, ExchangeError> {
    let n = addresses.len();
    let ours = Hello {
        process: me as u32,
        processes: n as u32,
        workers: workers as u32,
    };
    let connect_err = |s: String| ExchangeError::Connect(s);
    let listener = TcpListener::bind(addresses[me]).map_err(|e| {
        connect_err(format!(
            "process {me} cannot listen on {}: {e}",
            addresses[me]
        ))
    })?;
    let deadline = Instant::now() + timeout;
    let mut streams: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();

    for (p, &addr) in addresses.iter().enumerate().take(me) {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut s =
            connect_with_retry(addr, left).map_err(|e| connect_err(format!("process {p}: {e}")))?;
        let reply = write_frame_blocking(&mut s, &ours.encode())
            .and_then(|()| read_frame_blocking(&mut s, 64, left.max(HELLO_TIMEOUT)))
            .map_err(|e| connect_err(format!("handshake with process {p} at {addr}: {e}")))?;
        let theirs = Hello::decode(&reply)
            .map_err(|e| connect_err(format!("process {p} at {addr}: {e}")))?;
        check(&ours, &theirs, Some(p))?;
        streams[p] = Some(s);
    }

    let missing = |streams: &[Option<TcpStream>]| -> Vec<usize> {
        (me + 1..n).filter(|&p| streams[p].is_none()).collect()
    };
    if missing(&streams).is_empty() {
        return Ok(streams);
    }
    let io_err = |e: io::Error| ExchangeError::Io(format!("accepting peers: {e}"));
    listener.set_nonblocking(true).map_err(io_err)?;
    let mut poller = Poller::new().map_err(io_err)?;
    poller
        .register(listener.as_fd(), 0, false)
        .map_err(io_err)?;
    loop {
        let waiting = missing(&streams);
        if waiting.is_empty() {
            return Ok(streams);
        }
        match listener.accept() {
            Ok((mut s, from)) => {
                s.set_nonblocking(false).map_err(io_err)?;
                let hello = read_frame_blocking(&mut s, 64, HELLO_TIMEOUT)
                    .ok()
                    .and_then(|b| Hello::decode(&b).ok());
                // Something that is not a peer (a port scan, a stale
                // client) is dropped; set-up goes on.
                let Some(theirs) = hello else {
                    log::warn!("dropped a connection from {from}: not an exchange peer");
                    continue;
                };
                check(&ours, &theirs, None)?;
                let p = theirs.process as usize;
                if p <= me || streams[p].is_some() {
                    return Err(connect_err(format!(
                        "a second connection claims to be process {p} (from {from})"
                    )));
                }
                write_frame_blocking(&mut s, &ours.encode())
                    .map_err(|e| connect_err(format!("handshake with process {p}: {e}")))?;
                streams[p] = Some(s);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let who: Vec<String> = waiting
                        .iter()
                        .map(|&p| format!("{p} ({})", addresses[p]))
                        .collect();
                    return Err(connect_err(format!(
                        "process(es) {} did not connect to {} within {timeout:?}",
                        who.join(", "),
                        addresses[me]
                    )));
                }
                poller.wait(Some(deadline)).map_err(io_err)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Both ends must agree on the shape; `expect` is the index we dialled.
fn check(ours: &Hello, theirs: &Hello, expect: Option<usize>) -> Result<(), ExchangeError> {
    if let Some(p) = expect {
        if theirs.process as usize != p {
            return Err(ExchangeError::Connect(format!(
                "the process at the address of process {p} says it is process {}",
                theirs.process
            )));
        }
    }
    if theirs.processes != ours.processes || theirs.workers != ours.workers {
        return Err(ExchangeError::Connect(format!(
            "process {} expects {} processes of {} workers; process {} expects {} of {}",
            theirs.process,
            theirs.processes,
            theirs.workers,
            ours.process,
            ours.processes,
            ours.workers
        )));
    }
    if theirs.process >= ours.processes {
        return Err(ExchangeError::Connect(format!(
            "peer claims process index {} of {}",
            theirs.process, ours.processes
        )));
    }
    Ok(())
}
