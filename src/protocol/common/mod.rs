//! Pieces every protocol shares: the at-most-once client table and the
//! closed-loop client driver.

mod client_table;

pub use client_table::{ClientTable, Lookup};
