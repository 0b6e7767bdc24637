//! troupe: write a distributed protocol once, as a sans-IO actor, then
//! simulate it, model-check it, run it for real on an epoll runtime, and
//! benchmark it against other protocols.
//!
//! - [`actor`]: the [`State`](actor::State) and
//!   [`SharedState`](actor::SharedState) traits and the context that is an
//!   actor's only way to reach the world.
//! - [`runtime`]: the epoll loops that run actors for real.
//! - [`net`]: codecs, batched UDP, the address directory.
//! - [`crunch`]: chunked work distribution with heartbeats.
//! - [`exchange`]: typed exchange channels between workers and processes.
//! - [`app`]: the replicated applications (null, key-value).
//! - [`crypto`]: digests, secp256k1 signatures and MACs for BFT protocols.
//! - [`protocol`]: the protocols, listed in [`protocol::PROTOCOLS`].
//! - [`sim`]: the deterministic simulator, the model checker and the
//!   history checkers every protocol is tested with.
//! - [`multicast`]: UDP-multicast sessions with barrier and broadcast groups.

pub mod actor;
pub mod app;
pub mod crunch;
pub mod crypto;
pub mod exchange;
pub mod multicast;
pub mod net;
pub mod protocol;
pub mod runtime;
pub mod sim;
