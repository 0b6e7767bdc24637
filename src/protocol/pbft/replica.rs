//! The replica's state and its message dispatch. The phases live in
//! their own files: `normal` (requests to execution), `checkpoint`,
//! `view_change`, `state_transfer`.

use super::Config;
use crate::actor::{Addr, Context, State, Timer};
use crate::app::App;
use crate::crypto::{digest, Digest};
use crate::protocol::common::{Batcher, ClientTable, Votes};
use std::collections::BTreeMap;
use troupe_message::pbft::{Checkpoint, Message, Prepared, Proposal, Request, Signed, Vote};

/// Fires when requests wait too long (normal case) or a new view is late
/// (view change): the replica moves to the next view.
pub(super) const VIEW_TIMER: Timer = Timer(1);
/// Fires while the replica lacks state others have: it asks again.
pub(super) const FETCH_TIMER: Timer = Timer(2);

/// Whether the replica takes part in its view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Status {
    /// Ordering requests in `view`.
    Normal,
    /// Waiting for the new view of `view`.
    ViewChange,
}

/// One sequence number's agreement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct Entry {
    /// The proposal accepted in the current view.
    pub proposal: Option<Signed<Proposal>>,
    /// A batch and its digest (for the proposal, once known).
    pub batch: Option<(Digest, Vec<Request>)>,
    /// Prepare votes, keyed by (view, digest).
    pub prepares: Votes<(u64, Digest), Signed<Vote>>,
    /// Commit votes, keyed by (view, digest).
    pub commits: Votes<(u64, Digest), Signed<Vote>>,
    /// View in which this replica sent its commit.
    pub committed_in: Option<u64>,
    /// The highest-view certificate that this batch prepared, carried
    /// into view changes.
    pub prepared: Option<Prepared>,
    /// The digest that committed, once 2f+1 commits agree.
    pub decided: Option<Digest>,
}

impl Entry {
    /// The batch, when it is the one with `digest`.
    pub fn batch_for(&self, digest: &Digest) -> Option<&Vec<Request>> {
        self.batch
            .as_ref()
            .filter(|(d, _)| d == digest)
            .map(|b| &b.1)
    }
}

/// A checkpoint being collected: the votes for it and, once this replica
/// executed that far, its own state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct CheckpointSlot {
    pub votes: Votes<Digest, Signed<Checkpoint>>,
    pub own: Option<(Digest, Vec<u8>)>,
}

/// Checkpoint state being fetched from others.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Transfer {
    pub seq: u64,
    pub digest: Digest,
    pub proof: Vec<Signed<Checkpoint>>,
    pub chunks: BTreeMap<u32, Vec<u8>>,
    pub total: u32,
}

/// What a replica counts about what it refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReplicaCounters {
    /// Messages that were well signed but wrong (bad certificate, wrong
    /// digest, wrong view, out of the window, equivocation).
    pub rejected: u64,
    /// Requests refused because a table was full.
    pub refused: u64,
    /// View changes this replica started.
    pub view_changes: u64,
    /// Checkpoint states installed from others.
    pub state_transfers: u64,
    /// Committed batches fetched from others.
    pub fetched: u64,
}

/// A PBFT replica: the sequential agreement core. Signatures are made and
/// checked by its [`PbftCodec`](super::PbftCodec) on the way out and in,
/// so every message this sees is authentic; it checks what signatures
/// cannot: quorums, certificates, views, digests, windows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    pub(super) id: u16,
    pub(super) cfg: Config,
    pub(super) view: u64,
    pub(super) status: Status,
    pub(super) app: App,
    pub(super) table: ClientTable<Vec<u8>>,
    pub(super) log: BTreeMap<u64, Entry>,
    /// Next sequence number the primary assigns.
    pub(super) next_seq: u64,
    /// Last sequence number executed.
    pub(super) executed_seq: u64,
    pub(super) executed_ops: u64,
    pub(super) stable: u64,
    pub(super) stable_digest: Digest,
    pub(super) stable_proof: Vec<Signed<Checkpoint>>,
    pub(super) stable_state: Vec<u8>,
    pub(super) checkpoints: BTreeMap<u64, CheckpointSlot>,
    pub(super) batcher: Batcher<Request>,
    /// Requests this backup saw and waits to see executed.
    pub(super) waiting: BTreeMap<u64, u64>,
    pub(super) view_timer_armed: bool,
    /// View changes received, the latest per replica.
    pub(super) view_changes: Votes<u64, Signed<troupe_message::pbft::ViewChange>>,
    /// Consecutive view changes without a new view (doubles the wait).
    pub(super) failed_views: u32,
    /// The new view message of the current view, if this replica sent it.
    pub(super) new_view: Option<Signed<troupe_message::pbft::NewView>>,
    pub(super) transfer: Option<Transfer>,
    pub(super) fetch_armed: bool,
    pub(super) fetch_turn: u16,
    pub(super) genesis: Digest,
    pub(super) null_digest: Digest,
    /// What this replica refused, and why.
    pub counters: ReplicaCounters,
}

/// Bound on requests a backup tracks for its view-change timer.
const MAX_WAITING: usize = 1 << 16;

impl Replica {
    /// Replica `id` running `app`.
    pub fn new(id: u16, app: App, cfg: Config) -> Self {
        let table = ClientTable::default();
        let state = state_bytes(&app, &table);
        let genesis = digest(&state);
        Replica {
            id,
            view: 0,
            status: Status::Normal,
            app,
            table,
            log: BTreeMap::new(),
            next_seq: 1,
            executed_seq: 0,
            executed_ops: 0,
            stable: 0,
            stable_digest: genesis,
            stable_proof: Vec::new(),
            stable_state: state,
            checkpoints: BTreeMap::new(),
            batcher: Batcher::new(cfg.max_batch, cfg.queue_capacity),
            waiting: BTreeMap::new(),
            view_timer_armed: false,
            view_changes: Votes::default(),
            failed_views: 0,
            new_view: None,
            transfer: None,
            fetch_armed: false,
            fetch_turn: 0,
            genesis,
            null_digest: batch_digest(&[]),
            counters: ReplicaCounters::default(),
            cfg,
        }
    }

    /// The application, for checks.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The current view.
    pub fn view(&self) -> u64 {
        self.view
    }

    /// Whether the replica is in the middle of a view change.
    pub fn changing_view(&self) -> bool {
        self.status == Status::ViewChange
    }

    /// Last sequence number executed.
    pub fn last_executed(&self) -> u64 {
        self.executed_seq
    }

    /// The stable checkpoint's sequence number.
    pub fn stable_checkpoint(&self) -> u64 {
        self.stable
    }

    /// Log entries held (bounded by the watermark window).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// The batch digest that committed at `seq`, if this replica knows.
    pub fn decided(&self, seq: u64) -> Option<Digest> {
        self.log.get(&seq).and_then(|e| e.decided)
    }

    pub(super) fn primary_of(&self, view: u64) -> u16 {
        (view % self.cfg.n as u64) as u16
    }

    pub(super) fn is_primary(&self) -> bool {
        self.primary_of(self.view) == self.id
    }

    /// 2f+1: votes that make a quorum.
    pub(super) fn quorum(&self) -> usize {
        2 * self.cfg.f + 1
    }

    /// The highest sequence number this replica holds agreement for.
    pub(super) fn high_watermark(&self) -> u64 {
        self.stable + self.cfg.log_window()
    }

    pub(super) fn in_window(&self, seq: u64) -> bool {
        seq > self.stable && seq <= self.high_watermark()
    }

    /// Starts tracking a request for the view-change timer (backups).
    pub(super) fn wait_for(&mut self, client: u64, seq: u64, cx: &mut Context<Message>) {
        if self.is_primary() || self.waiting.len() >= MAX_WAITING {
            return;
        }
        self.waiting.insert(client, seq);
        if !self.view_timer_armed && self.status == Status::Normal {
            self.view_timer_armed = true;
            cx.set_timer(VIEW_TIMER, self.cfg.view_change_timeout);
        }
    }

    /// Progress happened: the timer restarts while requests still wait.
    pub(super) fn progressed(&mut self, cx: &mut Context<Message>) {
        if self.status != Status::Normal {
            return;
        }
        if self.waiting.is_empty() {
            if self.view_timer_armed {
                self.view_timer_armed = false;
                cx.cancel_timer(VIEW_TIMER);
            }
        } else {
            self.view_timer_armed = true;
            cx.set_timer(VIEW_TIMER, self.cfg.view_change_timeout);
        }
    }

    pub(super) fn reject(&mut self, why: &str) {
        self.counters.rejected += 1;
        log::debug!("replica {} rejected a message: {why}", self.id);
    }
}

/// The replicated state as bytes: the application and the client table
/// (at-most-once answers are part of what replicas must agree on).
pub(super) fn state_bytes(app: &App, table: &ClientTable<Vec<u8>>) -> Vec<u8> {
    bincode::serialize(&(app.snapshot(), table.entries())).unwrap_or_default()
}

/// The digest a proposal names for `batch`.
pub fn batch_digest(batch: &[Request]) -> Digest {
    digest(&bincode::serialize(batch).unwrap_or_default())
}

impl State for Replica {
    type Message = Message;

    /// At start, and again after a crash and restart (timers are lost
    /// then): re-arms what the state says should be armed.
    fn on_start(&mut self, cx: &mut Context<Message>) {
        self.view_timer_armed = false;
        self.fetch_armed = false;
        match self.status {
            Status::ViewChange => {
                self.view_timer_armed = true;
                cx.set_timer(VIEW_TIMER, self.cfg.view_change_timeout);
            }
            Status::Normal => self.progressed(cx),
        }
        self.on_fetch_timer(cx);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Context<Message>) {
        // Whoever signs a statement must be who sent it (the shared stage
        // checks this on real networks; the check here keeps the core
        // honest on any transport).
        let author = match &msg {
            Message::PrePrepare(p) => Some(p.proposal.body.replica),
            Message::Vote(v) => Some(v.body.replica),
            Message::Checkpoint(c) => Some(c.body.replica),
            Message::ViewChange(vc) => Some(vc.body.replica),
            Message::NewView(nv) => Some(nv.body.replica),
            Message::Fetch { replica, .. } => Some(*replica),
            _ => None,
        };
        if author.is_some_and(|a| from != Addr::Node(a)) {
            return self.reject("a statement sent by someone other than its author");
        }
        match msg {
            Message::Request(r) => self.on_request(from, r, cx),
            Message::PrePrepare(p) => self.on_pre_prepare(p, cx),
            Message::Vote(v) => self.on_vote(v, cx),
            Message::Checkpoint(c) => self.on_checkpoint(c, cx),
            Message::ViewChange(vc) => self.on_view_change(vc, cx),
            Message::NewView(nv) => self.on_new_view(nv, cx),
            Message::Fetch {
                executed,
                batches,
                replica,
            } => self.on_fetch(replica, executed, batches, cx),
            Message::Batch(b) => self.on_batch(b, cx),
            Message::Committed(c) => self.on_committed(c, cx),
            Message::State(s) => self.on_state(s, cx),
            Message::Reply(_) => self.reject("a reply sent to a replica"),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Message>) {
        match timer {
            VIEW_TIMER => self.on_view_timer(cx),
            FETCH_TIMER => self.on_fetch_timer(cx),
            _ => {}
        }
    }

    fn executed(&self) -> u64 {
        self.executed_ops
    }

    fn status(&self) -> String {
        match self.status {
            Status::Normal if self.is_primary() => format!("view {} primary", self.view),
            Status::Normal => format!("view {}", self.view),
            Status::ViewChange => format!("changing to view {}", self.view),
        }
    }
}
