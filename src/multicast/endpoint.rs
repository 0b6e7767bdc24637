//! The thread behind a blocking handle: a driven state on its own epoll
//! loop, its command channel and waker, and the routing of its events to
//! the handles waiting for them.

use super::codec::SessionCodec;
use super::params::Error;
use crate::runtime::{DriveConfig, DriveLoop, Driven, Waker};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use troupe_message::multicast::Message;

/// Where a state's events go: one channel for session-level answers, one
/// per group handle. Shared by the loop thread and the handles.
pub(super) struct Router<E> {
    /// Answers to session-level requests (create, join).
    pub session: Sender<E>,
    /// Each group handle's channel.
    pub groups: Mutex<HashMap<u16, Sender<E>>>,
    /// Why the session ended, once it has.
    pub fatal: Mutex<Option<Error>>,
}

impl<E> Router<E> {
    pub fn groups(&self) -> MutexGuard<'_, HashMap<u16, Sender<E>>> {
        // A handle that panicked while holding the lock left a valid map.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error to report on a closed channel.
    pub fn fatal(&self) -> Error {
        self.fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(Error::Closed)
    }

    pub fn set_fatal(&self, error: Error) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        fatal.get_or_insert(error);
    }

    /// Sends `event` to group `group`'s handle, if it has one.
    pub fn to_group(&self, group: u16, event: E) {
        if let Some(tx) = self.groups().get(&group) {
            let _ = tx.send(event);
        }
    }
}

/// A running state: commands in, events routed out.
pub(super) struct Endpoint<S: Driven> {
    commands: Sender<S::Command>,
    waker: Waker,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub router: Arc<Router<S::Event>>,
    /// Session-level answers (create, join), one requester at a time.
    pub session: Mutex<Receiver<S::Event>>,
}

impl<S> Endpoint<S>
where
    S: Driven<Message = Message> + Send + 'static,
{
    /// Starts `state` on a thread of its own. `route` sends each event to
    /// the right channel of the router.
    pub fn start(
        name: &str,
        state: S,
        codec: SessionCodec,
        config: DriveConfig,
        route: fn(&Router<S::Event>, S::Event),
    ) -> Result<Self, Error> {
        let (commands, rx) = crossbeam_channel::unbounded();
        let (session_tx, session_rx) = crossbeam_channel::unbounded();
        let router = Arc::new(Router {
            session: session_tx,
            groups: Mutex::new(HashMap::new()),
            fatal: Mutex::new(None),
        });
        let drive = DriveLoop::new()?;
        let waker = drive.waker();
        let r = router.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let result = drive.run(state, &codec, config, rx, &mut |e| route(&r, e));
                match result {
                    Ok((_, counters)) => log::debug!("session loop ended: {counters:?}"),
                    Err(e) => {
                        log::error!("session loop failed: {e}");
                        r.set_fatal(e.into());
                    }
                }
                r.set_fatal(Error::Closed);
                // Closing every channel wakes any handle still waiting.
                r.groups().clear();
            })?;
        Ok(Endpoint {
            commands,
            waker,
            thread: Mutex::new(Some(thread)),
            router,
            session: Mutex::new(session_rx),
        })
    }

    /// Hands `command` to the loop.
    pub fn send(&self, command: S::Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .map_err(|_| self.router.fatal())?;
        self.waker.wake();
        Ok(())
    }

    /// Registers group `group`'s channel; its events go there from now on.
    pub fn register(&self, group: u16) -> Receiver<S::Event> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.router.groups().insert(group, tx);
        rx
    }

    /// Waits for the loop thread to end (after a final command made the
    /// state finish).
    pub fn join(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}
