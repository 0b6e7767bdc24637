//! PBFT's shared stage: decode and verify on the way in, sign and encode
//! on the way out. It keeps no state between messages, so a pool of
//! threads runs it while the agreement core runs on one.

use crate::actor::{Addr, Envelope, SharedState, WireError};
use crate::crypto::{ClientKeys, ReplicaKeys};
use crate::net::{decode_envelope, encode_envelope};
use serde::Serialize;
use troupe_message::control::ClientAuth;
use troupe_message::pbft::{
    Auth, Checkpoint, Message, NewView, Proposal, Reply, Request, Signed, ViewChange, Vote,
};

/// A statement a replica signs: its signature domain and its author.
pub trait Statement: Serialize {
    /// Signature domain of this kind of statement.
    const DOMAIN: &'static [u8];
    /// The replica that makes it.
    fn author(&self) -> u16;
}

impl Statement for Proposal {
    const DOMAIN: &'static [u8] = b"troupe/pbft/proposal";
    fn author(&self) -> u16 {
        self.replica
    }
}

impl Statement for Vote {
    const DOMAIN: &'static [u8] = b"troupe/pbft/vote";
    fn author(&self) -> u16 {
        self.replica
    }
}

impl Statement for Checkpoint {
    const DOMAIN: &'static [u8] = b"troupe/pbft/checkpoint";
    fn author(&self) -> u16 {
        self.replica
    }
}

impl Statement for ViewChange {
    const DOMAIN: &'static [u8] = b"troupe/pbft/view-change";
    fn author(&self) -> u16 {
        self.replica
    }
}

impl Statement for NewView {
    const DOMAIN: &'static [u8] = b"troupe/pbft/new-view";
    fn author(&self) -> u16 {
        self.replica
    }
}

const REQUEST_DOMAIN: &[u8] = b"troupe/pbft/request";

fn bytes_of<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    bincode::serialize(value).unwrap_or_default()
}

/// The bytes a client authenticates in a request.
pub fn request_bytes(r: &Request) -> Vec<u8> {
    bytes_of(&(r.client, r.seq, &r.op))
}

/// The bytes a replica authenticates in a reply.
pub fn reply_bytes(r: &Reply) -> Vec<u8> {
    bytes_of(&(r.view, r.seq, r.replica, &r.result))
}

/// Whose keys this codec holds.
enum Keyring {
    Replica(ReplicaKeys),
    Clients(ClientKeys),
}

/// The [`SharedState`] of PBFT replicas and client hosts.
pub struct PbftCodec {
    keys: Keyring,
    client_auth: ClientAuth,
}

impl PbftCodec {
    /// The codec of a replica.
    pub fn replica(keys: ReplicaKeys, client_auth: ClientAuth) -> Self {
        PbftCodec {
            keys: Keyring::Replica(keys),
            client_auth,
        }
    }

    /// The codec of a client host.
    pub fn clients(keys: ClientKeys, client_auth: ClientAuth) -> Self {
        PbftCodec {
            keys: Keyring::Clients(keys),
            client_auth,
        }
    }

    /// Fills in every signature and authenticator this node owes in `env`.
    pub fn sign(&self, env: &mut Envelope<Message>) {
        match &self.keys {
            Keyring::Replica(k) => sign_replica_message(k, self.client_auth, env.to, &mut env.body),
            Keyring::Clients(k) => {
                if let Message::Request(r) = &mut env.body {
                    sign_request(k, self.client_auth, r);
                }
            }
        }
    }

    /// Checks every signature and authenticator in `env`, and that the
    /// sender the envelope names is the author of what it carries.
    pub fn verify(&self, env: &Envelope<Message>) -> bool {
        match &self.keys {
            Keyring::Replica(k) => verify_at_replica(k, self.client_auth, env),
            Keyring::Clients(k) => match (&env.body, env.to, env.from) {
                (Message::Reply(r), Addr::Client(c), Addr::Node(n)) if r.replica == n => {
                    verify_reply(k, self.client_auth, c, r)
                }
                _ => false,
            },
        }
    }
}

impl SharedState for PbftCodec {
    type Message = Message;

    fn decode(&self, bytes: &[u8]) -> Result<Envelope<Message>, WireError> {
        let env = decode_envelope::<Message>(bytes)?;
        if self.verify(&env) {
            Ok(env)
        } else {
            Err(WireError::BadAuth)
        }
    }

    fn encode(&self, envelope: &Envelope<Message>, out: &mut Vec<u8>) {
        if matches!(envelope.body, Message::Fetch { .. } | Message::Batch(_)) {
            return encode_envelope(envelope, out);
        }
        let mut signed = envelope.clone();
        self.sign(&mut signed);
        encode_envelope(&signed, out)
    }
}

fn sign_statement<T: Statement>(keys: &ReplicaKeys, s: &mut Signed<T>) {
    if s.sig.is_empty() && s.body.author() == keys.id() {
        s.sig = keys.sign(T::DOMAIN, &bytes_of(&s.body));
    }
}

fn verify_statement<T: Statement>(keys: &ReplicaKeys, s: &Signed<T>) -> bool {
    keys.verify_replica(s.body.author(), T::DOMAIN, &bytes_of(&s.body), &s.sig)
}

fn sign_view_change(keys: &ReplicaKeys, vc: &mut Signed<ViewChange>) {
    if !vc.sig.is_empty() || vc.body.replica != keys.id() {
        return;
    }
    for c in &mut vc.body.proof {
        sign_statement(keys, c);
    }
    for p in &mut vc.body.prepared {
        sign_statement(keys, &mut p.proposal);
        for v in &mut p.prepares {
            sign_statement(keys, v);
        }
    }
    sign_statement(keys, vc);
}

fn verify_view_change(keys: &ReplicaKeys, vc: &Signed<ViewChange>) -> bool {
    verify_statement(keys, vc)
        && vc.body.proof.iter().all(|c| verify_statement(keys, c))
        && vc.body.prepared.iter().all(|p| {
            verify_statement(keys, &p.proposal)
                && p.prepares.iter().all(|v| verify_statement(keys, v))
        })
}

fn sign_replica_message(keys: &ReplicaKeys, auth: ClientAuth, to: Addr, msg: &mut Message) {
    match msg {
        Message::PrePrepare(p) => sign_statement(keys, &mut p.proposal),
        Message::Vote(v) => sign_statement(keys, v),
        Message::Checkpoint(c) => sign_statement(keys, c),
        Message::ViewChange(vc) => sign_view_change(keys, vc),
        Message::NewView(nv) => {
            for vc in &mut nv.body.view_changes {
                sign_view_change(keys, vc);
            }
            for p in &mut nv.body.proposals {
                sign_statement(keys, p);
            }
            sign_statement(keys, nv);
        }
        Message::Committed(c) => c.commits.iter_mut().for_each(|v| sign_statement(keys, v)),
        Message::State(s) => s.proof.iter_mut().for_each(|c| sign_statement(keys, c)),
        Message::Reply(r) if auth != ClientAuth::None && r.auth == Auth::None => {
            // Replies carry a MAC in both modes: a client checks one per
            // replica, and a signature would cost every replica a signing
            // per request for no property the client needs.
            if let Addr::Client(c) = to {
                r.auth = Auth::Macs(vec![keys.client_mac(c, &reply_bytes(r))]);
            }
        }
        Message::Request(_) | Message::Reply(_) | Message::Fetch { .. } | Message::Batch(_) => {}
    }
}

fn sign_request(keys: &ClientKeys, auth: ClientAuth, r: &mut Request) {
    if r.auth != Auth::None {
        return;
    }
    let bytes = request_bytes(r);
    r.auth = match auth {
        ClientAuth::None => Auth::None,
        ClientAuth::Mac => Auth::Macs(
            (0..keys.replicas() as u16)
                .map(|i| keys.mac_for(r.client, i, &bytes))
                .collect(),
        ),
        ClientAuth::Signature => Auth::Signature(keys.sign(r.client, REQUEST_DOMAIN, &bytes)),
    };
}

/// Checks a request's authenticator as replica `keys.id()` sees it.
pub fn verify_request(keys: &ReplicaKeys, auth: ClientAuth, r: &Request) -> bool {
    match (auth, &r.auth) {
        (ClientAuth::None, _) => true,
        (ClientAuth::Mac, Auth::Macs(tags)) => tags.get(keys.id() as usize).is_some_and(|t| {
            tags.len() == keys.replicas() && keys.verify_client_mac(r.client, &request_bytes(r), t)
        }),
        (ClientAuth::Signature, Auth::Signature(sig)) => {
            keys.verify_client(r.client, REQUEST_DOMAIN, &request_bytes(r), sig)
        }
        _ => false,
    }
}

fn verify_reply(keys: &ClientKeys, auth: ClientAuth, client: u64, r: &Reply) -> bool {
    match (auth, &r.auth) {
        (ClientAuth::None, _) => true,
        (_, Auth::Macs(tags)) if tags.len() == 1 => {
            keys.verify_mac(client, r.replica, &reply_bytes(r), &tags[0])
        }
        _ => false,
    }
}

fn verify_at_replica(keys: &ReplicaKeys, auth: ClientAuth, env: &Envelope<Message>) -> bool {
    let from = match env.from {
        Addr::Node(n) => Some(n),
        _ => None,
    };
    let by = |author: u16| from == Some(author);
    match &env.body {
        Message::Request(r) => verify_request(keys, auth, r),
        Message::PrePrepare(p) => {
            by(p.proposal.body.replica)
                && verify_statement(keys, &p.proposal)
                && p.batch.iter().all(|r| verify_request(keys, auth, r))
        }
        Message::Vote(v) => by(v.body.replica) && verify_statement(keys, v),
        Message::Checkpoint(c) => by(c.body.replica) && verify_statement(keys, c),
        Message::ViewChange(vc) => by(vc.body.replica) && verify_view_change(keys, vc),
        Message::NewView(nv) => {
            by(nv.body.replica)
                && verify_statement(keys, nv)
                && nv
                    .body
                    .view_changes
                    .iter()
                    .all(|vc| verify_view_change(keys, vc))
                && nv.body.proposals.iter().all(|p| verify_statement(keys, p))
        }
        Message::Fetch { replica, .. } => by(*replica),
        // Batches are checked against an agreed digest by the core.
        Message::Batch(_) => from.is_some(),
        Message::Committed(c) => {
            from.is_some() && c.commits.iter().all(|v| verify_statement(keys, v))
        }
        Message::State(s) => from.is_some() && s.proof.iter().all(|c| verify_statement(keys, c)),
        Message::Reply(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_keys;
    use troupe_message::pbft::{Phase, PrePrepare, Prepared};

    fn codecs(auth: ClientAuth) -> (Vec<PbftCodec>, PbftCodec) {
        let (replicas, host) = test_keys(4, 1, 4, 7);
        let rs = replicas
            .iter()
            .enumerate()
            .map(|(i, k)| PbftCodec::replica(ReplicaKeys::from_command(i as u16, k).unwrap(), auth))
            .collect();
        (
            rs,
            PbftCodec::clients(ClientKeys::from_command(&host).unwrap(), auth),
        )
    }

    fn vote(replica: u16, seq: u64) -> Signed<Vote> {
        Signed::new(Vote {
            phase: Phase::Prepare,
            view: 0,
            seq,
            digest: [seq as u8; 32],
            replica,
        })
    }

    fn wire(codec: &PbftCodec, from: Addr, to: Addr, body: Message) -> Vec<u8> {
        let mut out = Vec::new();
        codec.encode(&Envelope { from, to, body }, &mut out);
        out
    }

    #[test]
    fn statements_are_signed_on_the_way_out_and_checked_on_the_way_in() {
        let (r, _) = codecs(ClientAuth::Mac);
        let bytes = wire(
            &r[1],
            Addr::Node(1),
            Addr::Node(2),
            Message::Vote(vote(1, 3)),
        );
        let env = r[2].decode(&bytes).unwrap();
        let Message::Vote(v) = &env.body else {
            panic!()
        };
        assert_eq!(v.sig.len(), 64);

        // Any flipped byte breaks it (or its framing).
        for i in [bytes.len() - 1, bytes.len() - 40, 20] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(r[2].decode(&bad).is_err(), "flip at {i} accepted");
        }
        // Replica 1 cannot speak for replica 3, and the envelope must name
        // the statement's author.
        let forged = wire(
            &r[1],
            Addr::Node(3),
            Addr::Node(2),
            Message::Vote(vote(3, 3)),
        );
        assert_eq!(r[2].decode(&forged), Err(WireError::BadAuth));
        let relabeled = wire(
            &r[1],
            Addr::Node(3),
            Addr::Node(2),
            Message::Vote(vote(1, 3)),
        );
        assert_eq!(r[2].decode(&relabeled), Err(WireError::BadAuth));
    }

    #[test]
    fn nested_certificates_are_signed_by_their_authors_and_verified() {
        let (r, _) = codecs(ClientAuth::Mac);
        // Replica 0 (primary of view 0) proposed; replicas 1 and 2 prepared.
        let proposal = |r: &PbftCodec| {
            let b = wire(
                r,
                Addr::Node(0),
                Addr::Node(1),
                Message::PrePrepare(PrePrepare {
                    proposal: Signed::new(Proposal {
                        view: 0,
                        seq: 5,
                        digest: crate::protocol::pbft::batch_digest(&[]),
                        replica: 0,
                    }),
                    batch: vec![],
                }),
            );
            match r.decode(&b).unwrap().body {
                Message::PrePrepare(p) => p.proposal,
                _ => unreachable!(),
            }
        };
        let signed_proposal = proposal(&r[0]);
        let prepare2 = match r[1]
            .decode(&wire(
                &r[2],
                Addr::Node(2),
                Addr::Node(1),
                Message::Vote(vote(2, 5)),
            ))
            .unwrap()
            .body
        {
            Message::Vote(v) => v,
            _ => unreachable!(),
        };
        let mut own = vote(1, 5);
        own.body.digest = prepare2.body.digest;
        let mut p2 = prepare2.clone();
        p2.body.digest = signed_proposal.body.digest;
        // A view change by replica 1 carrying its own (unsigned) prepare
        // and replica 2's: the codec signs replica 1's parts only.
        let vc = |prepares: Vec<Signed<Vote>>| {
            Message::ViewChange(Signed::new(ViewChange {
                view: 1,
                stable: 0,
                stable_digest: [0; 32],
                proof: vec![],
                prepared: vec![Prepared {
                    proposal: signed_proposal.clone(),
                    prepares,
                }],
                replica: 1,
            }))
        };
        let good = wire(
            &r[1],
            Addr::Node(1),
            Addr::Node(3),
            vc(vec![own.clone(), prepare2.clone()]),
        );
        let env = r[3].decode(&good).unwrap();
        let Message::ViewChange(got) = env.body else {
            panic!()
        };
        assert!(got.body.prepared[0]
            .prepares
            .iter()
            .all(|v| v.sig.len() == 64));
        // Replica 1 cannot slip in a prepare that replica 2 never signed.
        let forged = wire(&r[1], Addr::Node(1), Addr::Node(3), vc(vec![own, p2]));
        assert_eq!(r[3].decode(&forged), Err(WireError::BadAuth));
    }

    #[test]
    fn client_requests_and_replies_are_authenticated_in_both_modes() {
        for auth in [ClientAuth::Mac, ClientAuth::Signature] {
            let (r, c) = codecs(auth);
            let request = Request {
                client: 2,
                seq: 1,
                op: vec![1, 2],
                auth: Auth::None,
            };
            let bytes = wire(
                &c,
                Addr::Client(2),
                Addr::Node(0),
                Message::Request(request.clone()),
            );
            for replica in &r {
                assert!(replica.decode(&bytes).is_ok(), "{auth:?}");
            }
            // Another client's id on the same authenticator fails.
            let env = r[0].decode(&bytes).unwrap();
            let Message::Request(mut stolen) = env.body else {
                panic!()
            };
            stolen.client = 3;
            assert!(!r[0].verify(&Envelope {
                from: Addr::Client(3),
                to: Addr::Node(0),
                body: Message::Request(stolen),
            }));
            // Unauthenticated requests are refused.
            let naked = encode_raw(Addr::Client(2), Addr::Node(0), Message::Request(request));
            assert_eq!(r[0].decode(&naked), Err(WireError::BadAuth));

            let reply = Reply {
                view: 0,
                seq: 1,
                replica: 1,
                result: vec![7],
                auth: Auth::None,
            };
            let bytes = wire(
                &r[1],
                Addr::Node(1),
                Addr::Client(2),
                Message::Reply(reply.clone()),
            );
            assert!(c.decode(&bytes).is_ok());
            // Replica 1's MAC does not pass for replica 3, nor for another client.
            let mut env = r[1].decode_unchecked(&bytes);
            env.from = Addr::Node(3);
            if let Message::Reply(rep) = &mut env.body {
                rep.replica = 3;
            }
            assert!(!c.verify(&env));
            let mut env = r[1].decode_unchecked(&bytes);
            env.to = Addr::Client(3);
            assert!(!c.verify(&env));
        }
    }

    fn encode_raw(from: Addr, to: Addr, body: Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode_envelope(&Envelope { from, to, body }, &mut out);
        out
    }

    impl PbftCodec {
        fn decode_unchecked(&self, bytes: &[u8]) -> Envelope<Message> {
            decode_envelope(bytes).unwrap()
        }
    }
}
