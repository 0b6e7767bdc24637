//! Catching up: a replica that lacks state others have asks one replica
//! at a time (the next on every timeout, so a silent or lying one only
//! delays it) for the stable checkpoint's state, the committed batches
//! above it, and batches it agreed on without having them.

use super::replica::{batch_digest, Replica, FETCH_TIMER};
use crate::actor::{Addr, Context};
use crate::crypto::{digest, Digest};
use crate::protocol::common::{ClientTable, Lookup, DEFAULT_CAPACITY};
use troupe_message::pbft::{Committed, Message, Phase, Request, Signed, StateChunk, Vote};

/// Bytes of state per chunk (well inside a datagram).
const CHUNK: usize = 32 << 10;
/// Most chunks a state may have (bounds what a transfer buffers).
const MAX_CHUNKS: u32 = 1 << 12;
/// Most missing batches asked for at once.
const MAX_ASKED: usize = 64;

impl Replica {
    /// Something is missing: ask now, unless a request is already out.
    pub(super) fn need_fetch(&mut self, cx: &mut Context<Message>) {
        if !self.fetch_armed {
            self.send_fetch(cx);
        }
    }

    pub(super) fn on_fetch_timer(&mut self, cx: &mut Context<Message>) {
        self.fetch_armed = false;
        if self.lacks_something() {
            self.send_fetch(cx);
        }
    }

    fn lacks_something(&self) -> bool {
        self.transfer.is_some()
            || !self.missing_batches().is_empty()
            || self
                .log
                .range(self.executed_seq + 1..)
                .any(|(_, e)| e.decided.is_some())
    }

    /// Digests this replica agreed on (decided, or proposed in this view)
    /// without holding the batch.
    fn missing_batches(&self) -> Vec<Digest> {
        self.log
            .range(self.executed_seq + 1..)
            .filter_map(|(_, e)| {
                let d = e.decided.or(e.proposal.as_ref().map(|p| p.body.digest))?;
                e.batch_for(&d).is_none().then_some(d)
            })
            .take(MAX_ASKED)
            .collect()
    }

    pub(super) fn send_fetch(&mut self, cx: &mut Context<Message>) {
        let n = self.cfg.n as u16;
        self.fetch_turn = (self.fetch_turn + 1) % n;
        if self.fetch_turn == self.id {
            self.fetch_turn = (self.fetch_turn + 1) % n;
        }
        cx.send(
            Addr::Node(self.fetch_turn),
            Message::Fetch {
                executed: self.executed_seq,
                batches: self.missing_batches(),
                replica: self.id,
            },
        );
        self.fetch_armed = true;
        cx.set_timer(FETCH_TIMER, self.cfg.fetch_timeout());
    }

    pub(super) fn on_fetch(
        &mut self,
        to: u16,
        executed: u64,
        batches: Vec<Digest>,
        cx: &mut Context<Message>,
    ) {
        if to == self.id || to as usize >= self.cfg.n {
            return;
        }
        let to = Addr::Node(to);
        if executed < self.stable && self.transfer.is_none() && !self.stable_state.is_empty() {
            let chunks: Vec<&[u8]> = self.stable_state.chunks(CHUNK).collect();
            let total = chunks.len() as u32;
            for (index, bytes) in chunks.into_iter().enumerate() {
                cx.send(
                    to,
                    Message::State(StateChunk {
                        proof: self.stable_proof.clone(),
                        index: index as u32,
                        total,
                        bytes: bytes.to_vec(),
                    }),
                );
            }
        }
        let quorum = self.quorum();
        let from = executed.max(self.stable).saturating_add(1);
        let end = (self.executed_seq + 1).max(from);
        for (_, e) in self.log.range(from..end) {
            let Some(d) = e.decided else { continue };
            let Some(batch) = e.batch_for(&d) else {
                continue;
            };
            let Some(key) = e.commits.quorum(quorum).copied() else {
                continue;
            };
            let commits: Vec<Signed<Vote>> = e
                .commits
                .matching(&key)
                .take(quorum)
                .map(|(_, v)| v.clone())
                .collect();
            cx.send(
                to,
                Message::Committed(Committed {
                    commits,
                    batch: batch.clone(),
                }),
            );
        }
        for d in batches.iter().take(MAX_ASKED) {
            if let Some(b) = self.log.values().find_map(|e| e.batch_for(d)) {
                cx.send(to, Message::Batch(b.clone()));
            }
        }
    }

    pub(super) fn on_batch(&mut self, batch: Vec<Request>, cx: &mut Context<Message>) {
        let d = batch_digest(&batch);
        let mut useful = false;
        for (_, e) in self.log.range_mut(self.executed_seq + 1..) {
            let wanted =
                e.decided == Some(d) || e.proposal.as_ref().is_some_and(|p| p.body.digest == d);
            if wanted && e.batch_for(&d).is_none() {
                e.batch = Some((d, batch.clone()));
                useful = true;
            }
        }
        if useful {
            self.execute(cx);
        }
    }

    pub(super) fn on_committed(&mut self, c: Committed, cx: &mut Context<Message>) {
        let Some(first) = c.commits.first().map(|v| v.body.clone()) else {
            return self.reject("committed batch without commits");
        };
        let mut voters: Vec<u16> = c
            .commits
            .iter()
            .filter(|v| {
                v.body.phase == Phase::Commit
                    && v.body.view == first.view
                    && v.body.seq == first.seq
                    && v.body.digest == first.digest
                    && (v.body.replica as usize) < self.cfg.n
            })
            .map(|v| v.body.replica)
            .collect();
        voters.sort_unstable();
        voters.dedup();
        if voters.len() != c.commits.len() || voters.len() < self.quorum() {
            return self.reject("committed batch without a commit quorum");
        }
        if batch_digest(&c.batch) != first.digest {
            return self.reject("committed batch that does not match its digest");
        }
        if first.seq <= self.executed_seq || !self.in_window(first.seq) {
            return;
        }
        let entry = self.log.entry(first.seq).or_default();
        if entry.decided.is_some() && entry.batch_for(&first.digest).is_some() {
            return;
        }
        entry.decided = Some(first.digest);
        entry.batch = Some((first.digest, c.batch));
        for v in c.commits {
            entry
                .commits
                .insert(v.body.replica, (v.body.view, v.body.digest), v);
        }
        self.counters.fetched += 1;
        self.execute(cx);
    }

    pub(super) fn on_state(&mut self, chunk: StateChunk, cx: &mut Context<Message>) {
        let Some(head) = chunk.proof.first().map(|c| c.body.clone()) else {
            return self.reject("state without a checkpoint proof");
        };
        if head.seq <= self.executed_seq {
            return;
        }
        if !self.valid_checkpoint_proof(head.seq, &head.digest, &chunk.proof) {
            return self.reject("state with a bad checkpoint proof");
        }
        if self.transfer.as_ref().is_none_or(|t| t.seq < head.seq) {
            self.start_transfer(head.seq, head.digest, chunk.proof.clone(), cx);
        }
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.seq != head.seq || chunk.total == 0 || chunk.total > MAX_CHUNKS {
            return;
        }
        if t.total != chunk.total {
            t.chunks.clear();
            t.total = chunk.total;
        }
        if chunk.index >= t.total {
            return self.reject("state chunk out of range");
        }
        t.chunks.insert(chunk.index, chunk.bytes);
        if t.chunks.len() < t.total as usize {
            return;
        }
        let state: Vec<u8> = t.chunks.values().flatten().copied().collect();
        if digest(&state) != t.digest {
            t.chunks.clear();
            return self.reject("state that does not match its checkpoint");
        }
        let (seq, d, proof) = (t.seq, t.digest, t.proof.clone());
        if let Err(e) = self.install(&state) {
            self.transfer = None;
            return self.reject(&e);
        }
        self.transfer = None;
        self.executed_seq = seq;
        self.counters.state_transfers += 1;
        self.make_stable(seq, d, proof, state);
        let table = &self.table;
        self.waiting
            .retain(|c, s| table.lookup(*c, *s) == Lookup::Execute);
        self.progressed(cx);
        self.execute(cx);
    }

    fn install(&mut self, state: &[u8]) -> Result<(), String> {
        use bincode::Options;
        type Table = Vec<(u64, u64, Option<Vec<u8>>)>;
        let (snapshot, entries): (Vec<u8>, Table) = bincode::options()
            .with_fixint_encoding()
            .with_limit(state.len() as u64 + 64)
            .deserialize(state)
            .map_err(|e| format!("malformed checkpoint state: {e}"))?;
        self.app.restore(&snapshot)?;
        self.table = ClientTable::from_entries(DEFAULT_CAPACITY, entries);
        Ok(())
    }
}
