//! The blocking API: `Coordinator::start_session`, `Member::join_session`
//! and the group handles, each backed by a state on its own epoll thread.

use super::codec::SessionCodec;
use super::coordinator::{CoordinatorCommand, CoordinatorEvent, CoordinatorState, COORDINATOR};
use super::endpoint::{Endpoint, Router};
use super::params::{Error, Params};
use super::MemberId;
use crate::actor::{Addr, SharedState};
use crate::net::{bind_udp, Directory};
use crate::runtime::DriveConfig;
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use troupe_message::multicast::{GroupKind, Message};

pub use super::member_api::{BarrierGroupMember, BroadcastGroupReceiver, BroadcastMessage, Member};

/// How to run one side of a session. Both sides should agree on
/// `params` and `key`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Timing, sizes and bounds of the protocol.
    pub params: Params,
    /// The interface (by its IPv4 address) to send multicast through and
    /// to join the group on. `None`: the address the coordinator is bound
    /// to (coordinator), or the local address that reaches the
    /// coordinator (member).
    pub interface: Option<Ipv4Addr>,
    /// The session key: with one, every datagram carries an HMAC tag and
    /// only key holders can join or inject packets.
    pub key: Option<Vec<u8>>,
    /// Multicast hops (1: the local network).
    pub ttl: u32,
    /// Bytes of messages a broadcast writer may have queued but not yet
    /// packed before `write_message` blocks.
    pub send_buffer: usize,
    /// Fault injection for tests and benchmarks: the fraction of received
    /// datagrams this side drops.
    pub receive_loss: f64,
    /// Seed of this side's randomness (member id, injected loss); `None`
    /// draws one.
    pub seed: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            params: Params::default(),
            interface: None,
            key: None,
            ttl: 1,
            send_buffer: 8 << 20,
            receive_loss: 0.0,
            seed: None,
        }
    }
}

impl Config {
    pub(super) fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(random_u64)
    }
}

/// A random 64-bit number from the standard library's hasher keys.
pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

fn route_coordinator(router: &Router<CoordinatorEvent>, event: CoordinatorEvent) {
    match event {
        CoordinatorEvent::Created { .. } => {
            let _ = router.session.send(event);
        }
        CoordinatorEvent::Joined { group, .. }
        | CoordinatorEvent::Done { group }
        | CoordinatorEvent::Room { group, .. } => router.to_group(group, event),
    }
}

/// The coordinator of a session: creates groups; members join them.
/// Dropping it (and its group handles) ends the session.
pub struct Coordinator {
    inner: Arc<CoordinatorInner>,
}

struct CoordinatorInner {
    endpoint: Endpoint<CoordinatorState>,
    local: SocketAddr,
    ids: Mutex<BTreeSet<u16>>,
    send_buffer: usize,
}

impl Drop for CoordinatorInner {
    fn drop(&mut self) {
        if self.endpoint.send(CoordinatorCommand::Close).is_ok() {
            self.endpoint.join();
        }
    }
}

impl Coordinator {
    /// Starts a session: members reach the coordinator at `bind_addr`, and
    /// it multicasts to `multicast_addr` (an IPv4 multicast address).
    pub fn start_session(bind_addr: SocketAddr, multicast_addr: SocketAddr) -> Result<Self, Error> {
        Self::start_session_with_config(bind_addr, multicast_addr, Config::default())
    }

    /// [`Coordinator::start_session`] with settings.
    pub fn start_session_with_config(
        bind_addr: SocketAddr,
        multicast_addr: SocketAddr,
        config: Config,
    ) -> Result<Self, Error> {
        config.params.validate()?;
        let SocketAddr::V4(group) = multicast_addr else {
            return Err(Error::InvalidConfig("multicast needs IPv4".into()));
        };
        if !group.ip().is_multicast() {
            return Err(Error::InvalidConfig(format!(
                "{} is not a multicast address",
                group.ip()
            )));
        }
        let interface = match (config.interface, bind_addr) {
            (Some(i), _) => i,
            (None, SocketAddr::V4(b)) if !b.ip().is_unspecified() => *b.ip(),
            _ => {
                return Err(Error::InvalidConfig(
                    "bind to a specific IPv4 address, or set Config::interface".into(),
                ))
            }
        };
        let socket = bind_udp(bind_addr)?;
        crate::net::set_multicast_sender(&socket, interface, config.ttl)?;
        let local = socket.local_addr()?;
        let state = CoordinatorState::new(
            config.params.clone(),
            (u32::from(*group.ip()), group.port()),
        );
        let drive = DriveConfig {
            me: COORDINATOR,
            sockets: vec![socket],
            directory: Directory::new(vec![local]),
            multicast: HashMap::from([(0, multicast_addr)]),
            seed: config.seed(),
            receive_loss: config.receive_loss,
        };
        let codec = SessionCodec::new(config.key.as_deref());
        let endpoint =
            Endpoint::start("troupe-coordinator", state, codec, drive, route_coordinator)?;
        log::debug!("session at {local}, multicast {multicast_addr}");
        Ok(Coordinator {
            inner: Arc::new(CoordinatorInner {
                endpoint,
                local,
                ids: Mutex::new(BTreeSet::new()),
                send_buffer: config.send_buffer.max(1),
            }),
        })
    }

    /// The address members join at (useful when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    fn create(&self, id: Option<u16>, kind: GroupKind) -> Result<GroupLink, Error> {
        let inner = &self.inner;
        let mut ids = inner.ids.lock().unwrap_or_else(|e| e.into_inner());
        let group = match id {
            Some(g) if ids.contains(&g) => return Err(Error::GroupExists(g)),
            Some(g) => g,
            None => (0..=u16::MAX)
                .find(|g| !ids.contains(g))
                .ok_or_else(|| Error::InvalidConfig("every group id is taken".into()))?,
        };
        let events = inner.endpoint.register(group);
        let session = inner
            .endpoint
            .session
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        inner
            .endpoint
            .send(CoordinatorCommand::CreateGroup { group, kind })?;
        loop {
            match session.recv() {
                Ok(CoordinatorEvent::Created { group: g, result }) if g == group => {
                    result?;
                    break;
                }
                Ok(_) => {}
                Err(_) => return Err(inner.endpoint.router.fatal()),
            }
        }
        ids.insert(group);
        Ok(GroupLink {
            inner: inner.clone(),
            group,
            events,
            accepted: Default::default(),
            done: 0,
            credit: inner.send_buffer,
        })
    }

    /// Creates a barrier group (`None`: the lowest free id).
    pub fn create_barrier_group(&self, id: Option<u16>) -> Result<BarrierGroupCoordinator, Error> {
        Ok(BarrierGroupCoordinator {
            link: self.create(id, GroupKind::Barrier)?,
        })
    }

    /// Creates a broadcast group (`None`: the lowest free id).
    pub fn create_broadcast_group(&self, id: Option<u16>) -> Result<BroadcastGroupSender, Error> {
        Ok(BroadcastGroupSender {
            link: self.create(id, GroupKind::Broadcast)?,
        })
    }
}

/// A group handle's end of the coordinator's events.
struct GroupLink {
    inner: Arc<CoordinatorInner>,
    group: u16,
    events: crossbeam_channel::Receiver<CoordinatorEvent>,
    accepted: std::collections::VecDeque<MemberId>,
    done: usize,
    credit: usize,
}

impl GroupLink {
    /// Takes one event (waiting for it when `block`); false when none.
    fn pump(&mut self, block: bool) -> Result<bool, Error> {
        let event = if block {
            self.events.recv().ok()
        } else {
            match self.events.try_recv() {
                Ok(e) => Some(e),
                Err(crossbeam_channel::TryRecvError::Empty) => return Ok(false),
                Err(crossbeam_channel::TryRecvError::Disconnected) => None,
            }
        };
        match event {
            None => Err(self.inner.endpoint.router.fatal()),
            Some(CoordinatorEvent::Joined { member, .. }) => {
                // Over the network every member is `Addr::Client(id)`.
                let id = match member {
                    Addr::Client(id) => id,
                    Addr::Node(n) | Addr::Group(n) => u64::from(n),
                };
                self.accepted.push_back(id);
                Ok(true)
            }
            Some(CoordinatorEvent::Done { .. }) => {
                self.done += 1;
                Ok(true)
            }
            Some(CoordinatorEvent::Room { charge, .. }) => {
                self.credit += charge;
                Ok(true)
            }
            Some(CoordinatorEvent::Created { .. }) => Ok(true),
        }
    }

    fn accept(&mut self) -> Result<MemberId, Error> {
        loop {
            if let Some(m) = self.accepted.pop_front() {
                return Ok(m);
            }
            self.pump(true)?;
        }
    }

    fn try_accept(&mut self) -> Result<Option<MemberId>, Error> {
        while self.pump(false)? {}
        Ok(self.accepted.pop_front())
    }

    fn wait(&mut self) -> Result<(), Error> {
        self.inner
            .endpoint
            .send(CoordinatorCommand::Wait { group: self.group })?;
        while self.done == 0 {
            self.pump(true)?;
        }
        self.done -= 1;
        Ok(())
    }
}

/// The coordinator's handle on a barrier group.
pub struct BarrierGroupCoordinator {
    link: GroupLink,
}

impl BarrierGroupCoordinator {
    /// The group id.
    pub fn id(&self) -> u16 {
        self.link.group
    }

    /// Waits until a member joins the group (members are admitted as they
    /// come; this reports each one once).
    pub fn accept(&mut self) -> Result<MemberId, Error> {
        self.link.accept()
    }

    /// A member that joined since the last accept, if any.
    pub fn try_accept(&mut self) -> Result<Option<MemberId>, Error> {
        self.link.try_accept()
    }

    /// Arrives at the barrier; returns once every current member has too.
    pub fn wait(&mut self) -> Result<(), Error> {
        self.link.wait()
    }
}

/// The coordinator's handle on a broadcast group.
pub struct BroadcastGroupSender {
    link: GroupLink,
}

impl BroadcastGroupSender {
    /// The group id.
    pub fn id(&self) -> u16 {
        self.link.group
    }

    /// Waits until a member joins the group; it receives every message
    /// written from then on.
    pub fn accept(&mut self) -> Result<MemberId, Error> {
        self.link.accept()
    }

    /// A member that joined since the last accept, if any.
    pub fn try_accept(&mut self) -> Result<Option<MemberId>, Error> {
        self.link.try_accept()
    }

    /// A writer for the next message; it is sent when the writer is
    /// dropped or [`MessageWriter::finish`]ed.
    pub fn write_message(&mut self) -> MessageWriter<'_> {
        MessageWriter {
            sender: self,
            bytes: Vec::new(),
            done: false,
        }
    }

    /// Broadcasts `bytes` as one message. Blocks while the send buffer is
    /// full (flow control).
    pub fn send(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        let charge = bytes.len().min(self.link.inner.send_buffer);
        while self.link.credit < charge {
            self.link.pump(true)?;
        }
        self.link.credit -= charge;
        self.link.inner.endpoint.send(CoordinatorCommand::Write {
            group: self.link.group,
            bytes,
            charge,
        })
    }

    /// Returns once every member holds every message written so far.
    pub fn wait(&mut self) -> Result<(), Error> {
        self.link.wait()
    }
}

/// Collects one message for a broadcast group; sent on drop or `finish`.
pub struct MessageWriter<'a> {
    sender: &'a mut BroadcastGroupSender,
    bytes: Vec<u8>,
    done: bool,
}

impl MessageWriter<'_> {
    /// Sends the message, reporting errors that a drop would swallow.
    pub fn finish(mut self) -> Result<(), Error> {
        self.done = true;
        let bytes = std::mem::take(&mut self.bytes);
        self.sender.send(bytes)
    }
}

impl std::io::Write for MessageWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MessageWriter<'_> {
    fn drop(&mut self) {
        if !self.done {
            let bytes = std::mem::take(&mut self.bytes);
            // A failure here shows up in the next call on the sender.
            if let Err(e) = self.sender.send(bytes) {
                log::warn!("message dropped: {e}");
            }
        }
    }
}

/// Asks the coordinator at `coordinator` for the session's multicast
/// address over `socket`, retrying until `params.join_timeout`.
pub(super) fn hello(
    socket: &UdpSocket,
    coordinator: SocketAddr,
    me: Addr,
    codec: &SessionCodec,
    params: &Params,
) -> Result<SocketAddrV4, Error> {
    let deadline = Instant::now() + params.join_timeout;
    let mut hello = Vec::new();
    codec.encode(
        &crate::actor::Envelope {
            from: me,
            to: COORDINATOR,
            body: Message::Hello,
        },
        &mut hello,
    );
    socket.set_nonblocking(false)?;
    let mut buf = vec![0u8; 2048];
    let mut attempt = 0;
    while Instant::now() < deadline {
        socket.send_to(&hello, coordinator)?;
        let wait = params
            .retry_delay(attempt)
            .max(std::time::Duration::from_millis(10));
        let until = (Instant::now() + wait).min(deadline);
        attempt += 1;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(r) => r,
                // Timed out, or an ICMP "port unreachable": try again.
                Err(_) => break,
            };
            if from != coordinator {
                continue;
            }
            if let Ok(env) = codec.decode(&buf[..n]) {
                if let (COORDINATOR, Message::SessionInfo { ip, port }) = (env.from, env.body) {
                    socket.set_nonblocking(true)?;
                    return Ok(SocketAddrV4::new(Ipv4Addr::from(ip), port));
                }
            }
        }
    }
    Err(Error::SessionNotFound(coordinator))
}
