//! The normal case: requests, pre-prepare, prepare, commit, execution and
//! replies.

use super::replica::{batch_digest, Replica, Status};
use crate::actor::{Addr, Context};
use crate::crypto::Digest;
use crate::protocol::common::Lookup;
use troupe_message::pbft::{
    Auth, Message, Phase, PrePrepare, Prepared, Proposal, Reply, Request, Signed, Vote,
};
use troupe_message::ALL_REPLICAS;

impl Replica {
    pub(super) fn on_request(&mut self, from: Addr, r: Request, cx: &mut Context<Message>) {
        match self.table.lookup(r.client, r.seq) {
            Lookup::Resend(result) => {
                let result = result.clone();
                self.reply(r.client, r.seq, result, cx);
            }
            Lookup::Execute => {
                if self.is_primary() {
                    if self.status == Status::Normal {
                        let (client, seq) = (r.client, r.seq);
                        if !self.batcher.push(client, seq, r) {
                            return; // queued or in flight already
                        }
                        self.propose(cx);
                    }
                } else if matches!(from, Addr::Client(_)) {
                    // The client may not know the primary, or the primary
                    // may be ignoring it: forward, and watch the primary.
                    let primary = self.primary_of(self.view);
                    self.wait_for(r.client, r.seq, cx);
                    cx.send(Addr::Node(primary), Message::Request(r));
                }
            }
            Lookup::Full => self.counters.refused += 1,
            Lookup::InProgress | Lookup::Stale => {}
        }
    }

    fn reply(&self, client: u64, seq: u64, result: Vec<u8>, cx: &mut Context<Message>) {
        cx.send(
            Addr::Client(client),
            Message::Reply(Reply {
                view: self.view,
                seq,
                replica: self.id,
                result,
                auth: Auth::None,
            }),
        );
    }

    /// The primary proposes batches while the pipeline has room (see
    /// [`Batcher::next`](crate::protocol::common::Batcher::next)): at most
    /// `window` batches beyond the last executed, inside the log window.
    pub(super) fn propose(&mut self, cx: &mut Context<Message>) {
        while self.status == Status::Normal && self.is_primary() {
            if self.next_seq > self.high_watermark() {
                return; // the stable checkpoint has to catch up first
            }
            let in_flight = self.next_seq - 1 - self.executed_seq.min(self.next_seq - 1);
            let Some(batch) = self.batcher.next(in_flight, self.cfg.window) else {
                return;
            };
            let batch: Vec<Request> = batch
                .into_iter()
                .filter(|r| self.table.lookup(r.client, r.seq) == Lookup::Execute)
                .collect();
            if batch.is_empty() {
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let digest = batch_digest(&batch);
            let proposal = Signed::new(Proposal {
                view: self.view,
                seq,
                digest,
                replica: self.id,
            });
            let entry = self.log.entry(seq).or_default();
            entry.proposal = Some(proposal.clone());
            entry.batch = Some((digest, batch.clone()));
            cx.send(
                ALL_REPLICAS,
                Message::PrePrepare(PrePrepare { proposal, batch }),
            );
            self.check_prepared(seq, cx);
        }
    }

    pub(super) fn on_pre_prepare(&mut self, pp: PrePrepare, cx: &mut Context<Message>) {
        let p = pp.proposal.body.clone();
        if p.view != self.view || self.status != Status::Normal {
            return; // another view's: the view change carries what matters
        }
        if p.replica == self.id {
            return; // our own, looped back by a multicast
        }
        if p.replica != self.primary_of(p.view) {
            return self.reject("pre-prepare from a replica that is not the primary");
        }
        if !self.in_window(p.seq) {
            return self.reject("pre-prepare outside the watermark window");
        }
        if batch_digest(&pp.batch) != p.digest {
            return self.reject("pre-prepare whose batch does not match its digest");
        }
        let entry = self.log.entry(p.seq).or_default();
        if let Some(have) = &entry.proposal {
            if have.body.view == p.view {
                if have.body.digest != p.digest {
                    // The primary proposed two batches for one number.
                    self.reject("equivocating pre-prepare");
                }
                return;
            }
        }
        entry.proposal = Some(pp.proposal);
        entry.batch = Some((p.digest, pp.batch));
        self.send_vote(Phase::Prepare, p.view, p.seq, p.digest, cx);
        self.check_prepared(p.seq, cx);
    }

    /// Sends this replica's vote to every replica and counts it here.
    pub(super) fn send_vote(
        &mut self,
        phase: Phase,
        view: u64,
        seq: u64,
        digest: Digest,
        cx: &mut Context<Message>,
    ) {
        let vote = Signed::new(Vote {
            phase,
            view,
            seq,
            digest,
            replica: self.id,
        });
        let entry = self.log.entry(seq).or_default();
        let votes = match phase {
            Phase::Prepare => &mut entry.prepares,
            Phase::Commit => &mut entry.commits,
        };
        votes.insert(self.id, (view, digest), vote.clone());
        cx.send(ALL_REPLICAS, Message::Vote(vote));
    }

    pub(super) fn on_vote(&mut self, v: Signed<Vote>, cx: &mut Context<Message>) {
        let b = v.body.clone();
        if !self.in_window(b.seq) {
            return; // executed and truncated already, or too far ahead
        }
        if b.view.saturating_add(1) < self.view && b.phase == Phase::Prepare {
            return; // a prepare from an old view cannot matter any more
        }
        if b.phase == Phase::Prepare && b.replica == self.primary_of(b.view) {
            return self.reject("prepare from the primary");
        }
        let entry = self.log.entry(b.seq).or_default();
        match b.phase {
            Phase::Prepare => {
                entry.prepares.insert(b.replica, (b.view, b.digest), v);
                self.check_prepared(b.seq, cx);
            }
            Phase::Commit => {
                entry.commits.insert(b.replica, (b.view, b.digest), v);
                self.check_committed(b.seq, cx);
            }
        }
    }

    /// Prepared: the proposal of this view and 2f matching prepares from
    /// backups. Then this replica commits.
    pub(super) fn check_prepared(&mut self, seq: u64, cx: &mut Context<Message>) {
        if self.status != Status::Normal {
            return;
        }
        let needed = 2 * self.cfg.f;
        let view = self.view;
        let Some(entry) = self.log.get_mut(&seq) else {
            return;
        };
        let Some(proposal) = entry.proposal.clone() else {
            return;
        };
        let key = (proposal.body.view, proposal.body.digest);
        if key.0 != view || entry.committed_in == Some(view) {
            return;
        }
        if entry.prepares.count(&key) < needed {
            return;
        }
        let prepares: Vec<Signed<Vote>> = entry
            .prepares
            .matching(&key)
            .take(needed)
            .map(|(_, v)| v.clone())
            .collect();
        entry.prepared = Some(Prepared { proposal, prepares });
        entry.committed_in = Some(view);
        self.send_vote(Phase::Commit, key.0, seq, key.1, cx);
        self.check_committed(seq, cx);
    }

    /// Committed: 2f+1 matching commits (at least f+1 honest replicas
    /// prepared it, so every later view keeps it).
    pub(super) fn check_committed(&mut self, seq: u64, cx: &mut Context<Message>) {
        let quorum = self.quorum();
        let Some(entry) = self.log.get_mut(&seq) else {
            return;
        };
        if entry.decided.is_some() {
            return;
        }
        let Some(&(_, digest)) = entry.commits.quorum(quorum) else {
            return;
        };
        entry.decided = Some(digest);
        if digest == self.null_digest && entry.batch_for(&digest).is_none() {
            entry.batch = Some((digest, Vec::new()));
        }
        self.execute(cx);
    }

    /// Executes every decided batch in order, as far as batches are here.
    pub(super) fn execute(&mut self, cx: &mut Context<Message>) {
        if self.transfer.is_some() {
            return; // the state below is still on its way
        }
        let before = self.executed_seq;
        loop {
            let seq = self.executed_seq + 1;
            let Some(entry) = self.log.get(&seq) else {
                break;
            };
            let Some(digest) = entry.decided else {
                break;
            };
            let Some(batch) = entry.batch_for(&digest).cloned() else {
                self.need_fetch(cx);
                break;
            };
            for (i, r) in batch.into_iter().enumerate() {
                self.execute_request(seq << 16 | i as u64, r, cx);
            }
            self.executed_seq = seq;
            if seq.is_multiple_of(self.cfg.checkpoint_period) {
                self.take_checkpoint(seq, cx);
            }
        }
        if self.executed_seq > before {
            self.progressed(cx);
            self.propose(cx);
        }
        if self
            .log
            .range(self.executed_seq + 1..)
            .any(|(_, e)| e.decided.is_some())
        {
            self.need_fetch(cx); // a gap: decided batches wait for a missing one
        }
    }

    /// Executes one request of a batch; `position` names its place in
    /// the agreed order (for the simulator's agreement checker).
    fn execute_request(&mut self, position: u64, r: Request, cx: &mut Context<Message>) {
        self.waiting.remove(&r.client);
        self.batcher.done(r.client, r.seq);
        match self.table.lookup(r.client, r.seq) {
            Lookup::Execute => {
                cx.executed(position, &r.op);
                let result = self.app.execute(&r.op);
                self.executed_ops += 1;
                self.table.finish(r.client, r.seq, result.clone());
                self.reply(r.client, r.seq, result, cx);
            }
            Lookup::Resend(result) => {
                let result = result.clone();
                self.reply(r.client, r.seq, result, cx);
            }
            Lookup::Full => self.counters.refused += 1,
            Lookup::InProgress | Lookup::Stale => {}
        }
    }
}
