//! IPv4 multicast sockets with explicit interfaces.
//!
//! Linux's `lo` has no multicast route by default, and a socket that joins
//! a group on "any interface" (or sends without choosing one) follows the
//! default route off the box. Naming the interface address on both sides
//! (127.0.0.1 on loopback, the host's own address in a namespace) makes
//! multicast work with no change to the machine's routing table.

use super::udp::{bind_udp, set_buffers};
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};

/// Prepares `socket` to send to multicast groups through the interface
/// with address `interface`, looping copies back to members on this host,
/// with `ttl` hops (1: the local network only).
pub fn set_multicast_sender(socket: &UdpSocket, interface: Ipv4Addr, ttl: u32) -> io::Result<()> {
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(ttl)?;
    let addr = libc::in_addr {
        s_addr: u32::from(interface).to_be(),
    };
    // std has no setter for IP_MULTICAST_IF.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &addr as *const _ as *const libc::c_void,
            size_of::<libc::in_addr>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds a non-blocking UDP socket on `interface` (OS-chosen port when
/// `port` is 0) that also sends to multicast groups through it.
pub fn bind_multicast_sender(interface: Ipv4Addr, port: u16, ttl: u32) -> io::Result<UdpSocket> {
    let socket = bind_udp(SocketAddr::V4(SocketAddrV4::new(interface, port)))?;
    set_multicast_sender(&socket, interface, ttl)?;
    Ok(socket)
}

/// Binds a non-blocking UDP socket that receives what is sent to `group`,
/// having joined the group on the interface with address `interface`.
///
/// Several sockets on one host may receive the same group (each gets a
/// copy): the socket is bound with `SO_REUSEADDR` to the group address
/// itself, so it sees nothing but that group's traffic.
pub fn bind_multicast_receiver(group: SocketAddrV4, interface: Ipv4Addr) -> io::Result<UdpSocket> {
    if !group.ip().is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an IPv4 multicast address", group.ip()),
        ));
    }
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Owned from here on, so every error path closes it.
    let socket = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: group.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*group.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let rc = unsafe {
        libc::bind(
            fd,
            &sin as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.join_multicast_v4(group.ip(), &interface)?;
    set_buffers(&socket);
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn loopback_multicast_reaches_every_receiver_without_a_route() {
        let lo = Ipv4Addr::LOCALHOST;
        let sender = bind_multicast_sender(lo, 0, 1).unwrap();
        let port = 40_000 + (std::process::id() % 20_000) as u16;
        let group = SocketAddrV4::new(Ipv4Addr::new(239, 77, 1, 1), port);
        let a = bind_multicast_receiver(group, lo).unwrap();
        let b = bind_multicast_receiver(group, lo).unwrap();
        sender.send_to(b"hello", group).unwrap();
        for r in [&a, &b] {
            let mut buf = [0u8; 16];
            let deadline = Instant::now() + Duration::from_secs(5);
            let n = loop {
                match r.recv_from(&mut buf) {
                    Ok((n, _)) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "no multicast copy arrived");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!(&buf[..n], b"hello");
        }
        let unicast = SocketAddrV4::new(lo, port);
        assert!(bind_multicast_receiver(unicast, lo).is_err());
    }
}
