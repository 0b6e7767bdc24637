//! View changes: a backup that waited too long for a request moves to the
//! next view and says what it prepared; the new primary gathers 2f+1 such
//! messages and re-proposes every batch that may have committed.

use super::replica::{Replica, Status, VIEW_TIMER};
use crate::actor::{Addr, Context};
use crate::crypto::Digest;
use std::collections::BTreeMap;
use troupe_message::pbft::{Message, NewView, Phase, Prepared, Proposal, Signed, ViewChange};
use troupe_message::ALL_REPLICAS;

/// Longest wait for a new view, however many views failed in a row.
const MAX_BACKOFF_SHIFT: u32 = 6;

impl Replica {
    pub(super) fn on_view_timer(&mut self, cx: &mut Context<Message>) {
        self.view_timer_armed = false;
        match self.status {
            Status::Normal if !self.waiting.is_empty() => {
                self.start_view_change(self.view.saturating_add(1), cx)
            }
            Status::Normal => {}
            Status::ViewChange => {
                // The new primary did not deliver either: try the next.
                self.failed_views += 1;
                self.start_view_change(self.view.saturating_add(1), cx);
            }
        }
    }

    /// Leaves the current view for `view`, telling everyone what this
    /// replica prepared above its stable checkpoint.
    pub(super) fn start_view_change(&mut self, view: u64, cx: &mut Context<Message>) {
        if view <= self.view && self.status == Status::ViewChange {
            return;
        }
        self.counters.view_changes += 1;
        self.view = view;
        self.status = Status::ViewChange;
        self.new_view = None;
        self.batcher.forget_in_flight();
        let prepared: Vec<Prepared> = self
            .log
            .range(self.stable + 1..)
            .filter_map(|(_, e)| e.prepared.clone())
            .collect();
        let vc = Signed::new(ViewChange {
            view,
            stable: self.stable,
            stable_digest: self.stable_digest,
            proof: self.stable_proof.clone(),
            prepared,
            replica: self.id,
        });
        self.view_changes.insert(self.id, view, vc.clone());
        cx.send(ALL_REPLICAS, Message::ViewChange(vc));
        let shift = self.failed_views.min(MAX_BACKOFF_SHIFT);
        self.view_timer_armed = true;
        cx.set_timer(VIEW_TIMER, self.cfg.view_change_timeout * (1 << shift));
        self.try_new_view(cx);
    }

    pub(super) fn on_view_change(&mut self, vc: Signed<ViewChange>, cx: &mut Context<Message>) {
        let v = vc.body.view;
        let from = vc.body.replica;
        if v < self.view {
            return;
        }
        if v == self.view && self.status == Status::Normal {
            // It missed the new view of the view we are in: send it again.
            if let Some(nv) = &self.new_view {
                cx.send(Addr::Node(from), Message::NewView(nv.clone()));
            }
            return;
        }
        if !self.valid_view_change(&vc.body) {
            return self.reject("view change with a bad certificate");
        }
        self.view_changes.insert(from, v, vc);
        // f+1 replicas ahead of us means at least one honest replica
        // suspects the primary: join the smallest view among them.
        let mut ahead: Vec<u64> = self
            .view_changes
            .iter()
            .map(|(_, w, _)| *w)
            .filter(|w| *w > self.view)
            .collect();
        if ahead.len() > self.cfg.f {
            ahead.sort_unstable();
            let target = ahead[ahead.len() - self.cfg.f - 1];
            self.start_view_change(target, cx);
        }
        self.try_new_view(cx);
    }

    /// The new primary, once 2f+1 replicas (itself included) moved to its
    /// view, announces it.
    fn try_new_view(&mut self, cx: &mut Context<Message>) {
        let v = self.view;
        if self.status != Status::ViewChange || self.primary_of(v) != self.id {
            return;
        }
        if self.view_changes.count(&v) < self.quorum() {
            return;
        }
        let view_changes: Vec<Signed<ViewChange>> = self
            .view_changes
            .matching(&v)
            .take(self.quorum())
            .map(|(_, vc)| vc.clone())
            .collect();
        let proposals = self.forced_proposals(v, &view_changes);
        let nv = Signed::new(NewView {
            view: v,
            view_changes,
            proposals,
            replica: self.id,
        });
        cx.send(ALL_REPLICAS, Message::NewView(nv.clone()));
        self.enter_view(nv, cx);
    }

    /// What a new view must propose, computed the same way by everyone
    /// from its view changes: above the highest stable checkpoint, every
    /// sequence number up to the highest prepared one gets the batch of
    /// its highest-view certificate, or the null batch when none has one.
    pub(super) fn forced_proposals(
        &self,
        view: u64,
        view_changes: &[Signed<ViewChange>],
    ) -> Vec<Signed<Proposal>> {
        let low = view_changes
            .iter()
            .map(|vc| vc.body.stable)
            .max()
            .unwrap_or(0);
        let mut best: BTreeMap<u64, (u64, Digest)> = BTreeMap::new();
        for p in view_changes.iter().flat_map(|vc| &vc.body.prepared) {
            let b = &p.proposal.body;
            if b.seq <= low {
                continue;
            }
            let cand = (b.view, b.digest);
            let slot = best.entry(b.seq).or_insert(cand);
            if cand > *slot {
                *slot = cand;
            }
        }
        let high = best.keys().next_back().copied().unwrap_or(low);
        (low.saturating_add(1)..=high)
            .map(|seq| {
                let digest = best.get(&seq).map_or(self.null_digest, |(_, d)| *d);
                Signed::new(Proposal {
                    view,
                    seq,
                    digest,
                    replica: self.primary_of(view),
                })
            })
            .collect()
    }

    pub(super) fn on_new_view(&mut self, nv: Signed<NewView>, cx: &mut Context<Message>) {
        let b = &nv.body;
        if b.view < self.view || (b.view == self.view && self.status == Status::Normal) {
            return;
        }
        if b.replica != self.primary_of(b.view) {
            return self.reject("new view from a replica that is not its primary");
        }
        let mut senders: Vec<u16> = b.view_changes.iter().map(|vc| vc.body.replica).collect();
        senders.sort_unstable();
        senders.dedup();
        let valid = senders.len() == b.view_changes.len()
            && senders.len() >= self.quorum()
            && senders.iter().all(|r| (*r as usize) < self.cfg.n)
            && b.view_changes
                .iter()
                .all(|vc| vc.body.view == b.view && self.valid_view_change(&vc.body))
            && strip(&self.forced_proposals(b.view, &b.view_changes)) == strip(&b.proposals);
        if !valid {
            return self.reject("new view that its view changes do not justify");
        }
        self.enter_view(nv, cx);
    }

    /// Starts view `nv.view`: adopts its checkpoint, accepts its
    /// proposals as pre-prepares and prepares them.
    fn enter_view(&mut self, nv: Signed<NewView>, cx: &mut Context<Message>) {
        let v = nv.body.view;
        self.view = v;
        self.status = Status::Normal;
        self.failed_views = 0;
        self.view_changes.retain(|w| *w > v);
        if let Some(top) = nv.body.view_changes.iter().max_by_key(|vc| vc.body.stable) {
            let c = &top.body;
            if c.stable > self.stable {
                if self.executed_seq >= c.stable
                    && self.own_state_matches(c.stable, &c.stable_digest)
                {
                    let state = self.checkpoints[&c.stable].own.clone().map(|o| o.1);
                    self.make_stable(
                        c.stable,
                        c.stable_digest,
                        c.proof.clone(),
                        state.unwrap_or_default(),
                    );
                } else {
                    self.start_transfer(c.stable, c.stable_digest, c.proof.clone(), cx);
                }
            }
        }
        let high = nv.body.proposals.last().map_or(self.stable, |p| p.body.seq);
        // Anything above the forced proposals was not prepared by a
        // quorum: it never committed, and its requests come again.
        let keep = high.saturating_add(1);
        let dropped = self.log.split_off(&keep);
        for (seq, e) in dropped {
            if e.decided.is_some() {
                self.log.insert(seq, e);
            }
        }
        for p in &nv.body.proposals {
            let (seq, digest) = (p.body.seq, p.body.digest);
            if seq <= self.stable {
                continue;
            }
            let null = self.null_digest;
            let entry = self.log.entry(seq).or_default();
            entry.proposal = Some(p.clone());
            entry.committed_in = None;
            if entry.batch_for(&digest).is_none() {
                entry.batch = (digest == null).then(|| (digest, Vec::new()));
            }
            if self.id != self.primary_of(v) {
                self.send_vote(Phase::Prepare, v, seq, digest, cx);
            }
        }
        self.next_seq = high.max(self.executed_seq).max(self.stable) + 1;
        if self.id == self.primary_of(v) {
            self.new_view = Some(nv.clone());
        }
        let seqs: Vec<u64> = self.log.keys().copied().collect();
        for seq in seqs {
            self.check_prepared(seq, cx);
            self.check_committed(seq, cx);
        }
        // Requests that were waiting get a fresh timer under the new primary.
        self.view_timer_armed = false;
        cx.cancel_timer(VIEW_TIMER);
        self.progressed(cx);
        self.execute(cx);
        self.propose(cx);
    }

    fn own_state_matches(&self, seq: u64, d: &Digest) -> bool {
        self.checkpoints
            .get(&seq)
            .and_then(|s| s.own.as_ref())
            .is_some_and(|(own, _)| own == d)
    }

    /// Checks what signatures cannot: the checkpoint proof and every
    /// prepared certificate.
    pub(super) fn valid_view_change(&self, vc: &ViewChange) -> bool {
        if !self.valid_checkpoint_proof(vc.stable, &vc.stable_digest, &vc.proof) {
            return false;
        }
        let mut seqs: Vec<u64> = vc.prepared.iter().map(|p| p.proposal.body.seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs.len() == vc.prepared.len()
            && vc.prepared.iter().all(|p| {
                let b = &p.proposal.body;
                b.view < vc.view
                    && b.seq > vc.stable
                    && b.seq <= vc.stable.saturating_add(self.cfg.log_window())
                    && self.valid_prepared(p)
            })
    }

    /// A prepared certificate: the primary's proposal and 2f matching
    /// prepares from distinct backups.
    fn valid_prepared(&self, p: &Prepared) -> bool {
        let b = &p.proposal.body;
        let primary = self.primary_of(b.view);
        if b.replica != primary {
            return false;
        }
        let mut voters: Vec<u16> = p
            .prepares
            .iter()
            .filter(|v| {
                v.body.phase == Phase::Prepare
                    && v.body.view == b.view
                    && v.body.seq == b.seq
                    && v.body.digest == b.digest
                    && v.body.replica != primary
                    && (v.body.replica as usize) < self.cfg.n
            })
            .map(|v| v.body.replica)
            .collect();
        voters.sort_unstable();
        voters.dedup();
        voters.len() == p.prepares.len() && voters.len() >= 2 * self.cfg.f
    }
}

/// Proposals without signatures, for comparing a received new view with
/// the one recomputed here.
fn strip(proposals: &[Signed<Proposal>]) -> Vec<&Proposal> {
    proposals.iter().map(|p| &p.body).collect()
}
