//! Checkpoints: every `checkpoint_period` sequence numbers each replica
//! signs the digest of its state; 2f+1 matching make it stable, and the
//! log below it goes (memory stays bounded however long the run).

use super::replica::{state_bytes, Replica, Transfer};
use crate::actor::Context;
use crate::crypto::{digest, Digest};
use troupe_message::pbft::{Checkpoint, Message, Signed};
use troupe_message::ALL_REPLICAS;

/// Checkpoint slots kept at once; beyond it the slot with the fewest
/// votes goes (honest checkpoints gather 2f+1 quickly, junk from a
/// Byzantine replica has one).
const MAX_SLOTS: usize = 16;

impl Replica {
    /// Records this replica's state after `seq` and tells everyone.
    pub(super) fn take_checkpoint(&mut self, seq: u64, cx: &mut Context<Message>) {
        let state = state_bytes(&self.app, &self.table);
        let d = digest(&state);
        let vote = Signed::new(Checkpoint {
            seq,
            digest: d,
            replica: self.id,
        });
        let slot = self.checkpoints.entry(seq).or_default();
        slot.own = Some((d, state));
        slot.votes.insert(self.id, d, vote.clone());
        cx.send(ALL_REPLICAS, Message::Checkpoint(vote));
        self.prune_slots();
        self.check_stable(seq, cx);
    }

    pub(super) fn on_checkpoint(&mut self, c: Signed<Checkpoint>, cx: &mut Context<Message>) {
        let b = c.body.clone();
        if b.seq <= self.stable {
            return;
        }
        if !b.seq.is_multiple_of(self.cfg.checkpoint_period) {
            return self.reject("checkpoint at a sequence number that takes none");
        }
        self.checkpoints
            .entry(b.seq)
            .or_default()
            .votes
            .insert(b.replica, b.digest, c);
        self.prune_slots();
        self.check_stable(b.seq, cx);
    }

    fn prune_slots(&mut self) {
        while self.checkpoints.len() > MAX_SLOTS {
            let victim = self
                .checkpoints
                .iter()
                .filter(|(_, s)| s.own.is_none())
                .min_by_key(|(seq, s)| (s.votes.len(), std::cmp::Reverse(**seq)))
                .map(|(seq, _)| *seq);
            match victim {
                Some(seq) => self.checkpoints.remove(&seq),
                None => break,
            };
        }
    }

    /// A checkpoint with 2f+1 matching votes becomes stable; a replica
    /// that has not reached it (or reached a different state) fetches it.
    pub(super) fn check_stable(&mut self, seq: u64, cx: &mut Context<Message>) {
        if seq <= self.stable {
            return;
        }
        let quorum = self.quorum();
        let Some(slot) = self.checkpoints.get(&seq) else {
            return;
        };
        let Some(&d) = slot.votes.quorum(quorum) else {
            return;
        };
        let proof: Vec<Signed<Checkpoint>> = slot
            .votes
            .matching(&d)
            .take(quorum)
            .map(|(_, v)| v.clone())
            .collect();
        match &slot.own {
            Some((own, state)) if *own == d => {
                let state = state.clone();
                self.make_stable(seq, d, proof, state);
            }
            _ => self.start_transfer(seq, d, proof, cx),
        }
    }

    /// Moves the low watermark to `seq`, dropping what is below it.
    pub(super) fn make_stable(
        &mut self,
        seq: u64,
        d: Digest,
        proof: Vec<Signed<Checkpoint>>,
        state: Vec<u8>,
    ) {
        self.stable = seq;
        self.stable_digest = d;
        self.stable_proof = proof;
        self.stable_state = state;
        self.truncate();
    }

    pub(super) fn truncate(&mut self) {
        let keep = self.stable + 1;
        self.log = self.log.split_off(&keep);
        self.checkpoints = self.checkpoints.split_off(&keep);
        if self.next_seq <= self.stable {
            self.next_seq = self.stable + 1;
        }
    }

    /// Whether `proof` shows that the state after `seq` has digest `d`:
    /// 2f+1 matching checkpoints from distinct replicas (nothing for the
    /// initial state).
    pub(super) fn valid_checkpoint_proof(
        &self,
        seq: u64,
        d: &Digest,
        proof: &[Signed<Checkpoint>],
    ) -> bool {
        if seq == 0 {
            return *d == self.genesis;
        }
        let mut voters: Vec<u16> = proof
            .iter()
            .filter(|c| c.body.seq == seq && c.body.digest == *d)
            .map(|c| c.body.replica)
            .filter(|r| (*r as usize) < self.cfg.n)
            .collect();
        voters.sort_unstable();
        voters.dedup();
        voters.len() >= self.quorum() && voters.len() == proof.len()
    }

    /// Adopts a stable checkpoint this replica does not have the state of
    /// and starts fetching that state.
    pub(super) fn start_transfer(
        &mut self,
        seq: u64,
        d: Digest,
        proof: Vec<Signed<Checkpoint>>,
        cx: &mut Context<Message>,
    ) {
        if seq <= self.stable || self.transfer.as_ref().is_some_and(|t| t.seq >= seq) {
            return;
        }
        self.stable = seq;
        self.stable_digest = d;
        self.stable_proof = proof.clone();
        self.stable_state.clear(); // not ours to serve until it arrives
        self.truncate();
        self.transfer = Some(Transfer {
            seq,
            digest: d,
            proof,
            chunks: Default::default(),
            total: 0,
        });
        self.send_fetch(cx);
    }
}
