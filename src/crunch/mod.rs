//! Chunked work distribution with heartbeats.
//!
//! A server splits a job into chunks (for example the tiles of an image,
//! see [`Tiles`]); nodes register, receive the job's initial data, and then
//! keep a small window of chunks in flight each: they compute a chunk,
//! send its result back, and get the next one in the same round trip.
//! Nodes send heartbeats; a node that misses them (or whose connection
//! closes) is declared dead and its unfinished chunks go to the others. A
//! late result from a dead node is ignored. When the last result is
//! merged, every node is told the job is done.
//!
//! What is yours to write is two traits:
//! - [`Job`] (server side): initial data for each registering node, a
//!   chunk's input when it is handed out, merging a result, hearing that a
//!   node died, finishing (typically writing the result to disk).
//! - [`Worker`] (node side): take the initial data, turn a chunk into a
//!   result.
//!
//! The protocol itself is two sans-IO [`State`](crate::actor::State)s,
//! [`ServerState`] and [`NodeState`], plus [`WorkerState`], which runs a
//! [`Worker`] behind a message interface so that the real runtime can put
//! it on its own thread (heartbeats keep flowing while a long chunk
//! computes) and the simulator can run it inline. [`run_server`] and
//! [`run_node`] drive them over TCP; [`mandelbrot`] is the worked example.

pub mod mandelbrot;
mod node;
mod server;
mod tcp;
mod tiles;

pub use node::{Exit, NodeConfig, NodeState, NodeStats, WorkerState};
pub use server::{Death, ServerConfig, ServerState, ServerStats};
pub use tcp::{
    run_node, run_server, LinkCounters, NodeOptions, ServerOptions, ServerOutcome, NODE, SERVER,
    WORKER,
};
pub use tiles::{Array2D, Rect, TileError, Tiles};
pub use troupe_message::crunch::{ChunkId, Message};

use crate::actor::Addr;

/// The server side of a job: what to hand out and what to do with results.
///
/// Chunks are numbered `0..chunks()`. The server decides who computes
/// what, tracks heartbeats and reassigns the chunks of dead nodes; the job
/// only ever sees chunk numbers and bytes.
pub trait Job: Send {
    /// Number of chunks.
    fn chunks(&self) -> u64;

    /// Data every node gets once, when it registers (for example the
    /// kernel's parameters).
    fn initial_data(&mut self) -> Vec<u8>;

    /// The input of `chunk`, called each time the chunk is handed out (a
    /// reassigned chunk is prepared again).
    fn prepare(&mut self, chunk: ChunkId) -> Vec<u8>;

    /// A node's result for `chunk`. An error says the result is bad: the
    /// node is dropped and the chunk handed to another node.
    fn merge(&mut self, chunk: ChunkId, result: &[u8]) -> Result<(), String>;

    /// `node` missed its heartbeats or lost its connection; its chunks are
    /// already queued for others. Default: nothing to do.
    fn node_dead(&mut self, node: Addr) {
        let _ = node;
    }

    /// Every chunk is merged and every node told. Called once by the
    /// runtime, after the loop (typically: write the result to disk).
    fn finish(&mut self) -> Result<(), String>;
}

/// The node side of a job: turns chunks into results.
pub trait Worker: Send {
    /// The job's initial data, before any chunk. Called again if the node
    /// registers again.
    fn init(&mut self, initial: &[u8]) -> Result<(), String>;

    /// Computes one chunk.
    fn process(&mut self, chunk: &[u8]) -> Result<Vec<u8>, String>;
}

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
