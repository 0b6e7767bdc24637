//! Byzantine nodes: an honest `State` behind a filter on what it sends.

use crate::actor::Rng;

/// What a Byzantine node does with the messages its honest self sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// Sends nothing at all (but still receives).
    Silent,
    /// Sends different messages to different peers: half the recipients
    /// get what [`Spec::forge`](super::Spec::forge) makes of each message,
    /// or nothing when the protocol cannot forge one.
    Equivocate,
    /// Sends what it should, and also, at random, messages it sent before.
    Replay,
}

impl Behaviour {
    /// Every behaviour, for schedules to pick from.
    pub const ALL: [Behaviour; 3] = [Behaviour::Silent, Behaviour::Equivocate, Behaviour::Replay];
}

/// Old messages kept for replaying.
const REPLAY_MEMORY: usize = 64;
/// Chance that a send is followed by the replay of an old message.
const REPLAY_CHANCE: f64 = 0.3;

/// The state of one Byzantine node's adversary.
#[derive(Clone, Debug)]
pub(crate) struct Adversary<M> {
    pub behaviour: Behaviour,
    /// Messages sent before, as (recipient slot, message); a ring.
    sent: Vec<(u32, M)>,
    next: usize,
}

impl<M: Clone> Adversary<M> {
    pub fn new(behaviour: Behaviour) -> Self {
        Adversary {
            behaviour,
            sent: Vec::new(),
            next: 0,
        }
    }

    /// Remembers a message sent, for later replay.
    pub fn remember(&mut self, to: u32, msg: &M) {
        if self.sent.len() < REPLAY_MEMORY {
            self.sent.push((to, msg.clone()));
        } else {
            self.sent[self.next] = (to, msg.clone());
            self.next = (self.next + 1) % REPLAY_MEMORY;
        }
    }

    /// Maybe an old message to send again.
    pub fn replay(&mut self, rng: &mut Rng) -> Option<(u32, M)> {
        if self.sent.is_empty() || !rng.chance(REPLAY_CHANCE) {
            return None;
        }
        let i = rng.below(self.sent.len() as u64) as usize;
        Some(self.sent[i].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_memory_is_bounded_and_replays_old_messages() {
        let mut a = Adversary::new(Behaviour::Replay);
        for i in 0..1000u32 {
            a.remember(i % 4, &i);
        }
        assert_eq!(a.sent.len(), REPLAY_MEMORY);
        let mut rng = Rng::new(1);
        let replays: Vec<_> = (0..200).filter_map(|_| a.replay(&mut rng)).collect();
        assert!(!replays.is_empty());
        assert!(replays
            .iter()
            .all(|(to, m)| *m >= 1000 - 64 && *to == m % 4));
    }
}
