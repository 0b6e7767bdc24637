//! The member's blocking API: `Member::join_session` and its group
//! handles.

use super::codec::SessionCodec;
use super::endpoint::{Endpoint, Router};
use super::member::{MemberCommand, MemberEvent, MemberState};
use super::params::Error;
use super::session::{hello, Config};
use super::MemberId;
use crate::actor::Addr;
use crate::net::{bind_multicast_receiver, bind_udp, Directory};
use crate::runtime::DriveConfig;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use troupe_message::multicast::GroupKind;

fn route_member(router: &Router<MemberEvent>, event: MemberEvent) {
    match event {
        MemberEvent::Joined | MemberEvent::GroupJoined { .. } => {
            let _ = router.session.send(event);
        }
        MemberEvent::Released { group } | MemberEvent::Message { group, .. } => {
            router.to_group(group, event)
        }
        MemberEvent::Failed(e) => {
            router.set_fatal(e.clone());
            let _ = router.session.send(MemberEvent::Failed(e.clone()));
            for tx in router.groups().values() {
                let _ = tx.send(MemberEvent::Failed(e.clone()));
            }
        }
    }
}

/// A member of a session. Dropping it (and its group handles) leaves.
pub struct Member {
    inner: Arc<MemberInner>,
}

struct MemberInner {
    endpoint: Endpoint<MemberState>,
    id: MemberId,
    recv_buffer: usize,
}

impl Drop for MemberInner {
    fn drop(&mut self) {
        if self.endpoint.send(MemberCommand::Leave).is_ok() {
            self.endpoint.join();
        }
    }
}

/// The local IPv4 address that reaches `to` (connecting a UDP socket
/// sends nothing; it only asks the routing table).
fn local_ip_towards(to: SocketAddr) -> Result<Ipv4Addr, Error> {
    if to.ip().is_loopback() {
        return Ok(Ipv4Addr::LOCALHOST);
    }
    let probe = UdpSocket::bind("0.0.0.0:0")?;
    probe.connect(to)?;
    match probe.local_addr()?.ip() {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(Error::InvalidConfig("multicast needs IPv4".into())),
    }
}

impl Member {
    /// Joins the session whose coordinator is at `coordinator`.
    pub fn join_session(coordinator: SocketAddr) -> Result<Self, Error> {
        Self::join_session_with_config(coordinator, Config::default())
    }

    /// [`Member::join_session`] with settings.
    pub fn join_session_with_config(
        coordinator: SocketAddr,
        config: Config,
    ) -> Result<Self, Error> {
        config.params.validate()?;
        let interface = match config.interface {
            Some(i) => i,
            None => local_ip_towards(coordinator)?,
        };
        let seed = config.seed();
        let id: MemberId = seed;
        let me = Addr::Client(id);
        let codec = SessionCodec::new(config.key.as_deref());
        let socket = bind_udp(SocketAddr::new(interface.into(), 0))?;
        let group = hello(&socket, coordinator, me, &codec, &config.params)?;
        let multicast = bind_multicast_receiver(group, interface)?;
        let drive = DriveConfig {
            me,
            sockets: vec![socket, multicast],
            directory: Directory::new(vec![coordinator]),
            multicast: HashMap::new(),
            seed: seed.rotate_left(29),
            receive_loss: config.receive_loss,
        };
        let state = MemberState::new(config.params.clone());
        let endpoint = Endpoint::start("troupe-member", state, codec, drive, route_member)?;
        let member = Member {
            inner: Arc::new(MemberInner {
                endpoint,
                id,
                recv_buffer: config.params.recv_buffer,
            }),
        };
        let session = member.session_answer(config.params.join_timeout * 2, |e| match e {
            MemberEvent::Joined => Some(Ok(())),
            _ => None,
        });
        match session {
            Ok(()) => Ok(member),
            Err(Error::SessionNotFound(_)) => Err(Error::SessionNotFound(coordinator)),
            Err(e) => Err(e),
        }
    }

    /// This member's id (what the coordinator's `accept` reports).
    pub fn id(&self) -> MemberId {
        self.inner.id
    }

    /// Waits for the session-level answer `pick` recognises.
    fn session_answer<T>(
        &self,
        timeout: std::time::Duration,
        pick: impl Fn(MemberEvent) -> Option<Result<T, Error>>,
    ) -> Result<T, Error> {
        let endpoint = &self.inner.endpoint;
        let session = endpoint.session.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match session.recv_timeout(left) {
                Ok(MemberEvent::Failed(e)) => return Err(e),
                Ok(event) => {
                    if let Some(answer) = pick(event) {
                        return answer;
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Err(Error::CoordinatorGone),
                Err(RecvTimeoutError::Disconnected) => return Err(endpoint.router.fatal()),
            }
        }
    }

    fn join_group(&self, group: u16, kind: GroupKind) -> Result<Receiver<MemberEvent>, Error> {
        let endpoint = &self.inner.endpoint;
        let events = endpoint.register(group);
        endpoint.send(MemberCommand::JoinGroup { group, kind })?;
        // The coordinator answers or, gone, is detected within its timeout.
        let answer = self.session_answer(std::time::Duration::from_secs(3600), |e| match e {
            MemberEvent::GroupJoined { group: g, result } if g == group => Some(result.map(|_| ())),
            _ => None,
        });
        if answer.is_err() {
            endpoint.router.groups().remove(&group);
        }
        answer.map(|()| events)
    }

    /// Joins barrier group `group`.
    pub fn join_barrier_group(&self, group: u16) -> Result<BarrierGroupMember, Error> {
        let events = self.join_group(group, GroupKind::Barrier)?;
        Ok(BarrierGroupMember {
            inner: self.inner.clone(),
            group,
            events,
        })
    }

    /// Joins broadcast group `group`; messages written from now on arrive.
    pub fn join_broadcast_group(&self, group: u16) -> Result<BroadcastGroupReceiver, Error> {
        let events = self.join_group(group, GroupKind::Broadcast)?;
        Ok(BroadcastGroupReceiver {
            inner: self.inner.clone(),
            group,
            events,
            unreported: 0,
        })
    }
}

fn next_event(inner: &MemberInner, events: &Receiver<MemberEvent>) -> Result<MemberEvent, Error> {
    match events.recv() {
        Ok(MemberEvent::Failed(e)) => Err(e),
        Ok(e) => Ok(e),
        Err(_) => Err(inner.endpoint.router.fatal()),
    }
}

/// A member's handle on a barrier group.
pub struct BarrierGroupMember {
    inner: Arc<MemberInner>,
    group: u16,
    events: Receiver<MemberEvent>,
}

impl BarrierGroupMember {
    /// Arrives at the barrier; returns once the coordinator and every
    /// current member have.
    pub fn wait(&mut self) -> Result<(), Error> {
        self.inner
            .endpoint
            .send(MemberCommand::Arrive { group: self.group })?;
        loop {
            if let MemberEvent::Released { .. } = next_event(&self.inner, &self.events)? {
                return Ok(());
            }
        }
    }
}

impl Drop for BarrierGroupMember {
    fn drop(&mut self) {
        let _ = self
            .inner
            .endpoint
            .send(MemberCommand::LeaveGroup { group: self.group });
        self.inner.endpoint.router.groups().remove(&self.group);
    }
}

/// One message received from a broadcast group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BroadcastMessage(Vec<u8>);

impl BroadcastMessage {
    /// A reader over the message's bytes.
    pub fn read(&self) -> &[u8] {
        &self.0
    }

    /// The message's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A member's handle on a broadcast group.
pub struct BroadcastGroupReceiver {
    inner: Arc<MemberInner>,
    group: u16,
    events: Receiver<MemberEvent>,
    unreported: usize,
}

impl BroadcastGroupReceiver {
    /// The next message, in the order written, each exactly once.
    pub fn recv(&mut self) -> Result<BroadcastMessage, Error> {
        loop {
            if let MemberEvent::Message { bytes, .. } = next_event(&self.inner, &self.events)? {
                // Tell the member state what the application consumed, in
                // chunks, so a member that stops reading stops
                // acknowledging (and the sender slows) instead of queueing
                // without bound.
                self.unreported += bytes.len();
                if self.unreported >= self.inner.recv_buffer / 8 {
                    let bytes = std::mem::take(&mut self.unreported);
                    self.inner.endpoint.send(MemberCommand::Consumed {
                        group: self.group,
                        bytes,
                    })?;
                }
                return Ok(BroadcastMessage(bytes));
            }
        }
    }
}

impl Drop for BroadcastGroupReceiver {
    fn drop(&mut self) {
        let _ = self
            .inner
            .endpoint
            .send(MemberCommand::LeaveGroup { group: self.group });
        self.inner.endpoint.router.groups().remove(&self.group);
    }
}
