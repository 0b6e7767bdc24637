//! Pieces every protocol shares: the at-most-once client table and
//! client resend timing.

mod backoff;
mod client_table;

pub use backoff::{Backoff, MAX_RESEND_DELAY};
pub use client_table::{ClientTable, Lookup};
