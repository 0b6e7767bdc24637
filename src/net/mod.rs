//! Everything between a socket and an actor: codecs, batched UDP I/O and
//! the directory that maps actor ids to socket addresses.

mod codec;
mod directory;
mod udp;

pub use codec::{decode_envelope, encode_envelope, BincodeCodec};
pub use directory::Directory;
pub use udp::{bind_udp, UdpBatch, MAX_DATAGRAM, RECV_BATCH};
