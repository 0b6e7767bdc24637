//! Everything between a socket and an actor: codecs, batched UDP I/O, the
//! directory that maps actor ids to socket addresses, and length-prefixed
//! frames over non-blocking TCP with connection set-up helpers.

mod codec;
mod directory;
mod multicast;
mod stream;
mod tcp;
mod udp;

pub use codec::{decode_bincode, decode_envelope, encode_envelope, BincodeCodec};
pub use directory::Directory;
pub use multicast::{bind_multicast_receiver, bind_multicast_sender, set_multicast_sender};
pub use stream::{FrameLimits, FramedStream, StreamError, FRAME_HEADER};
pub use tcp::{
    connect_with_retry, read_frame_blocking, write_frame_blocking, ConnectError, FIRST_RETRY_PAUSE,
    MAX_RETRY_PAUSE,
};
pub use udp::{bind_udp, UdpBatch, MAX_DATAGRAM, RECV_BATCH};
