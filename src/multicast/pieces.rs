//! How messages of any size travel in datagrams: each datagram payload is
//! a run of pieces, each a 5-byte header (flags, little-endian u32 length)
//! and that many bytes. Small messages share a datagram; a large one is
//! split over several, marked by its first and last piece.

/// Bytes in a piece header.
pub const PIECE_HEADER: usize = 5;
/// The piece starts a message.
pub const START: u8 = 1;
/// The piece ends a message.
pub const END: u8 = 2;

/// Appends the next piece of `msg` (from byte `offset`) to `datagram`,
/// filling it up to `size` bytes. Returns the offset after the piece, or
/// `None` when the datagram has no room for another piece.
pub fn pack(datagram: &mut Vec<u8>, size: usize, msg: &[u8], offset: usize) -> Option<usize> {
    let room = size.saturating_sub(datagram.len());
    let rest = msg.len() - offset;
    // A piece must carry at least one byte, unless the message is empty.
    if room < PIECE_HEADER + rest.min(1) {
        return None;
    }
    let take = rest.min(room - PIECE_HEADER);
    let mut flags = 0;
    if offset == 0 {
        flags |= START;
    }
    if offset + take == msg.len() {
        flags |= END;
    }
    datagram.push(flags);
    datagram.extend_from_slice(&(take as u32).to_le_bytes());
    datagram.extend_from_slice(&msg[offset..offset + take]);
    Some(offset + take)
}

/// The pieces of one datagram payload, in order.
pub struct Pieces<'a> {
    rest: &'a [u8],
}

/// A payload whose piece headers do not add up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

impl<'a> Pieces<'a> {
    /// Iterates over `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        Pieces { rest: payload }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Result<(u8, &'a [u8]), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((header, body)) = self.rest.split_first_chunk::<PIECE_HEADER>() else {
            self.rest = &[];
            return Some(Err(Malformed));
        };
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > body.len() || header[0] & !(START | END) != 0 {
            self.rest = &[];
            return Some(Err(Malformed));
        }
        let (piece, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok((header[0], piece)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs `msgs` into datagrams of `size` bytes, then reassembles them.
    fn round_trip(msgs: &[Vec<u8>], size: usize) -> (Vec<Vec<u8>>, usize) {
        let mut datagrams = vec![Vec::new()];
        for m in msgs {
            let mut offset = 0;
            loop {
                let dg = datagrams.last_mut().unwrap();
                match pack(dg, size, m, offset) {
                    Some(o) => {
                        offset = o;
                        if o == m.len() {
                            break;
                        }
                    }
                    None => datagrams.push(Vec::new()),
                }
            }
        }
        let mut out = Vec::new();
        let mut partial = Vec::new();
        for d in &datagrams {
            assert!(d.len() <= size);
            for p in Pieces::new(d) {
                let (flags, bytes) = p.unwrap();
                if flags & START != 0 {
                    partial.clear();
                }
                partial.extend_from_slice(bytes);
                if flags & END != 0 {
                    out.push(std::mem::take(&mut partial));
                }
            }
        }
        (out, datagrams.len())
    }

    #[test]
    fn small_messages_share_and_large_ones_split() {
        let msgs: Vec<Vec<u8>> = vec![vec![], vec![1; 10], vec![2; 1000], vec![3; 0], vec![4; 7]];
        let (out, n) = round_trip(&msgs, 2048);
        assert_eq!(out, msgs);
        assert_eq!(n, 1);
        let big = vec![vec![9u8; 10_000], vec![8u8; 3]];
        let (out, n) = round_trip(&big, 1000);
        assert_eq!(out, big);
        assert_eq!(n, 11);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert_eq!(
            Pieces::new(&[START, 9, 0, 0, 0, 1]).next(),
            Some(Err(Malformed))
        );
        assert_eq!(Pieces::new(&[START, 1]).next(), Some(Err(Malformed)));
        assert_eq!(
            Pieces::new(&[0x80, 0, 0, 0, 0]).next(),
            Some(Err(Malformed))
        );
    }
}
