//! Counting votes from distinct voters: quorums of replicas, matching
//! replies at a client.

use std::collections::BTreeMap;

/// One vote per voter, each for a key (what is voted for) with a payload
/// (e.g. the signed vote, kept for certificates). Keys order votes by
/// recency (a view number first): a voter's vote is replaced only by one
/// with a greater key, so a replayed old vote never displaces a new one,
/// and a voter never counts twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Votes<K, P> {
    votes: BTreeMap<u16, (K, P)>,
}

impl<K, P> Default for Votes<K, P> {
    fn default() -> Self {
        Votes {
            votes: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, P> Votes<K, P> {
    /// Records `voter`'s vote for `key`; returns whether it counted (a
    /// duplicate or an older vote does not).
    pub fn insert(&mut self, voter: u16, key: K, payload: P) -> bool {
        match self.votes.get(&voter) {
            Some((k, _)) if *k >= key => false,
            _ => {
                self.votes.insert(voter, (key, payload));
                true
            }
        }
    }

    /// Votes for `key`.
    pub fn count(&self, key: &K) -> usize {
        self.votes.values().filter(|(k, _)| k == key).count()
    }

    /// Whether `voter` voted for `key`.
    pub fn has(&self, voter: u16, key: &K) -> bool {
        self.votes.get(&voter).is_some_and(|(k, _)| k == key)
    }

    /// The payloads of the votes for `key`, by voter.
    pub fn matching<'a>(&'a self, key: &'a K) -> impl Iterator<Item = (u16, &'a P)> + 'a {
        self.votes
            .iter()
            .filter(move |(_, (k, _))| k == key)
            .map(|(v, (_, p))| (*v, p))
    }

    /// A key with at least `threshold` votes, if any (the greatest, if
    /// several).
    pub fn quorum(&self, threshold: usize) -> Option<&K> {
        let mut best: Option<&K> = None;
        for (k, _) in self.votes.values() {
            if best.is_some_and(|b| b >= k) {
                continue;
            }
            if self.count(k) >= threshold {
                best = Some(k);
            }
        }
        best
    }

    /// Every vote: voter, key, payload.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &K, &P)> + '_ {
        self.votes.iter().map(|(v, (k, p))| (*v, k, p))
    }

    /// Forgets votes whose key fails `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.votes.retain(|_, (k, _)| keep(k));
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.votes.clear();
    }

    /// Voters with a vote.
    pub fn len(&self) -> usize {
        self.votes.len()
    }

    /// Whether nobody voted.
    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }
}

/// A client's collection of replies to its outstanding request: it
/// accepts a result once `needed` distinct replicas sent the same one
/// (f+1 in a Byzantine protocol: at least one of them is honest).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReplyMatcher<R> {
    seq: u64,
    needed: usize,
    replies: Votes<R, ()>,
}

impl<R: Ord + Clone> ReplyMatcher<R> {
    /// Accepts after `needed` matching replies.
    pub fn new(needed: usize) -> Self {
        ReplyMatcher {
            seq: 0,
            needed,
            replies: Votes::default(),
        }
    }

    /// Starts collecting for request `seq`, forgetting earlier replies.
    pub fn start(&mut self, seq: u64) {
        self.seq = seq;
        self.replies.clear();
    }

    /// A reply from `replica` to request `seq`; returns the accepted
    /// result once enough replicas agree on it (then stops collecting).
    pub fn insert(&mut self, replica: u16, seq: u64, result: R) -> Option<R> {
        if seq != self.seq || self.seq == 0 {
            return None;
        }
        self.replies.insert(replica, result.clone(), ());
        if self.replies.count(&result) >= self.needed {
            self.seq = 0;
            self.replies.clear();
            return Some(result);
        }
        None
    }

    /// Whether a request is still collecting.
    pub fn waiting(&self) -> bool {
        self.seq != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_voters_newer_keys_and_quorums() {
        let mut v = Votes::<(u64, u8), &str>::default();
        assert!(v.insert(0, (1, 7), "a"));
        assert!(!v.insert(0, (1, 7), "dup"), "a voter counts once");
        assert!(!v.insert(0, (0, 9), "old"), "an older vote never replaces");
        assert!(v.insert(1, (1, 7), "b"));
        assert_eq!(v.count(&(1, 7)), 2);
        assert_eq!(v.quorum(3), None);
        assert!(v.insert(2, (1, 8), "c"));
        assert_eq!(v.quorum(2), Some(&(1, 7)));
        assert!(v.insert(2, (2, 7), "newer view"));
        assert!(v.has(2, &(2, 7)));
        v.retain(|k| k.0 >= 2);
        assert_eq!(v.len(), 1);
        assert_eq!(
            v.matching(&(2, 7)).map(|(i, _)| i).collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn replies_must_match_from_distinct_replicas() {
        let mut m = ReplyMatcher::new(2);
        assert_eq!(m.insert(0, 1, "x"), None, "nothing outstanding");
        m.start(1);
        assert!(m.waiting());
        assert_eq!(m.insert(0, 1, "x"), None);
        assert_eq!(m.insert(0, 1, "x"), None, "same replica twice");
        assert_eq!(m.insert(1, 1, "y"), None, "f+1 replies, but not matching");
        assert_eq!(m.insert(2, 0, "x"), None, "a reply to another request");
        assert_eq!(m.insert(2, 1, "x"), Some("x"));
        assert!(!m.waiting());
        assert_eq!(m.insert(3, 1, "x"), None, "accepted once");
    }
}
