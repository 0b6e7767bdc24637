//! Non-blocking UDP with batched system calls (`recvmmsg`/`sendmmsg`).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;

/// Datagrams moved per system call.
pub const RECV_BATCH: usize = 32;
const BATCH: usize = RECV_BATCH;

/// Binds a non-blocking UDP socket with generous kernel buffers (a burst
/// of thousands of client requests must not overflow a default buffer).
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    set_buffers(&socket);
    Ok(socket)
}

/// Asks for 8 MiB kernel buffers in each direction, best effort.
pub(crate) fn set_buffers(socket: &UdpSocket) {
    let fd = socket.as_raw_fd();
    let size: libc::c_int = 8 << 20;
    let set = |opt| unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &size as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as u32,
        )
    };
    for (forced, capped) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        // The *FORCE options pass net.core.{r,w}mem_max but need
        // CAP_NET_ADMIN; without it fall back to the capped request. Best
        // effort either way: a small buffer costs drops, which protocols
        // resend.
        if set(forced) != 0 {
            set(capped);
        }
    }
}

/// A UDP socket plus the buffers to move up to 32 datagrams per system
/// call in each direction.
pub struct UdpBatch {
    socket: UdpSocket,
    rx: Box<[[u8; MAX_DATAGRAM]]>,
    rx_len: [usize; BATCH],
    rx_from: [SocketAddr; BATCH],
    rx_count: usize,
    tx: Vec<(SocketAddr, Vec<u8>)>,
    tx_len: usize,
    /// Datagrams the kernel refused (buffer full, unreachable): dropped.
    pub send_errors: u64,
}

impl UdpBatch {
    /// Wraps a non-blocking socket.
    pub fn new(socket: UdpSocket) -> Self {
        let unspecified: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 0));
        UdpBatch {
            socket,
            rx: vec![[0u8; MAX_DATAGRAM]; BATCH].into_boxed_slice(),
            rx_len: [0; BATCH],
            rx_from: [unspecified; BATCH],
            rx_count: 0,
            tx: Vec::new(),
            tx_len: 0,
            send_errors: 0,
        }
    }

    /// The socket (for registering with epoll, or its local address).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Receives up to a batch of datagrams; returns how many (0 when none
    /// is waiting). Read them with [`UdpBatch::received`].
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.rx[i].as_mut_ptr() as *mut libc::c_void;
            iov[i].iov_len = MAX_DATAGRAM;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
        }
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            self.rx_count = 0;
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                // An ICMP error from an earlier send surfaces here; it says
                // nothing about the datagrams waiting, so try again.
                io::ErrorKind::ConnectionRefused => Ok(0),
                _ => Err(err),
            };
        }
        let n = n as usize;
        for i in 0..n {
            self.rx_len[i] = hdrs[i].msg_len as usize;
            self.rx_from[i] = from_storage(&names[i]).unwrap_or(self.rx_from[i]);
        }
        self.rx_count = n;
        Ok(n)
    }

    /// Datagram `i` of the last [`UdpBatch::recv_batch`], with its source.
    pub fn received(&self, i: usize) -> (SocketAddr, &[u8]) {
        (self.rx_from[i], &self.rx[i][..self.rx_len[i]])
    }

    /// A buffer to encode the next outgoing datagram into; commit it with
    /// [`UdpBatch::push`]. Reusing buffers keeps the hot path free of
    /// allocation.
    pub fn next_buffer(&mut self) -> Vec<u8> {
        if self.tx_len < self.tx.len() {
            std::mem::take(&mut self.tx[self.tx_len].1)
        } else {
            Vec::with_capacity(256)
        }
    }

    /// Queues a datagram; sent by the next [`UdpBatch::flush`] (or now,
    /// when a batch is full).
    pub fn push(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.tx_len < self.tx.len() {
            self.tx[self.tx_len] = (to, bytes);
        } else {
            self.tx.push((to, bytes));
        }
        self.tx_len += 1;
        if self.tx_len == BATCH {
            self.flush();
        }
    }

    /// Whether datagrams wait to be sent.
    pub fn has_pending(&self) -> bool {
        self.tx_len > 0
    }

    /// Sends every queued datagram, `BATCH` per system call. Datagrams the
    /// kernel will not take are dropped and counted (UDP semantics: the
    /// protocol resends).
    pub fn flush(&mut self) {
        let mut start = 0;
        while start < self.tx_len {
            let end = (start + BATCH).min(self.tx_len);
            let count = end - start;
            let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
            let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            for i in 0..count {
                let (to, bytes) = &self.tx[start + i];
                iov[i].iov_base = bytes.as_ptr() as *mut libc::c_void;
                iov[i].iov_len = bytes.len();
                let len = to_storage(to, &mut names[i]);
                hdrs[i].msg_hdr.msg_iov = &mut iov[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
                hdrs[i].msg_hdr.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
                hdrs[i].msg_hdr.msg_namelen = len;
            }
            let sent = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    count as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent <= 0 {
                let err = io::Error::last_os_error();
                if sent < 0 && err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram of the batch failed (buffer full or an
                // ICMP error): drop it and go on with the rest.
                self.send_errors += 1;
                start += 1;
            } else {
                start += sent as usize;
            }
        }
        self.tx_len = 0;
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: &SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            let a: &mut libc::sockaddr_in =
                unsafe { &mut *(s as *mut _ as *mut libc::sockaddr_in) };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = v4.port().to_be();
            a.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            size_of::<libc::sockaddr_in>() as u32
        }
        SocketAddr::V6(v6) => {
            let a: &mut libc::sockaddr_in6 =
                unsafe { &mut *(s as *mut _ as *mut libc::sockaddr_in6) };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = v6.port().to_be();
            a.sin6_addr.s6_addr = v6.ip().octets();
            a.sin6_flowinfo = v6.flowinfo();
            a.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_on_loopback() {
        let mut a = UdpBatch::new(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap());
        let mut b = UdpBatch::new(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap());
        let to = b.socket().local_addr().unwrap();
        for i in 0..100u8 {
            let mut buf = a.next_buffer();
            buf.clear();
            buf.extend_from_slice(&[i; 10]);
            a.push(to, buf);
        }
        a.flush();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 100 && std::time::Instant::now() < deadline {
            let n = b.recv_batch().unwrap();
            for i in 0..n {
                let (from, bytes) = b.received(i);
                assert_eq!(from, a.socket().local_addr().unwrap());
                got.push(bytes[0]);
            }
        }
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
    }
}
