//! Pieces every protocol shares: the at-most-once client table, client
//! resend timing, vote counting and reply matching, and leader batching.

mod backoff;
mod batcher;
mod client_table;
mod votes;

pub use backoff::{Backoff, MAX_RESEND_DELAY};
pub use batcher::Batcher;
pub use client_table::{ClientTable, Lookup, DEFAULT_CAPACITY};
pub use votes::{ReplyMatcher, Votes};
