//! Cutting a stream into pieces, as a socket or a file reader would.

/// The seed byte and the stream of a streaming target's input: the first
/// byte picks how the rest is cut.
pub fn seeded(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&seed, stream)) => (seed, stream),
        None => (0, &[]),
    }
}

/// Cuts `stream` into pieces whose lengths follow from `seed`: the low four
/// bits give the longest piece (1 byte to 32 KiB), the whole byte seeds a
/// small generator for the lengths; about one piece in eight is empty.
/// Concatenated, the pieces are `stream`.
///
/// ```
/// let pieces = arcly_fuzz::split::pieces(0, b"abc");
/// assert!(pieces.iter().all(|p| p.len() <= 1));
/// assert_eq!(pieces.concat(), b"abc");
/// ```
pub fn pieces(seed: u8, stream: &[u8]) -> Vec<&[u8]> {
    let longest = 1usize << (seed & 0x0f);
    let mut state = (0x9e37_79b9 ^ u32::from(seed).wrapping_mul(0x0101_0101)) | 1;
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = if state >> 29 == 0 { 0 } else { 1 + state as usize % longest };
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_stream_and_respect_the_longest() {
        let data: Vec<u8> = (0..=255).cycle().take(100_000).collect();
        for seed in 0..=255u8 {
            let pieces = pieces(seed, &data);
            assert_eq!(pieces.concat(), data);
            assert!(pieces.iter().all(|p| p.len() <= 1 << (seed & 0x0f)));
        }
        assert!(pieces(7, &data).iter().any(|p| p.is_empty()));
        assert!(pieces(7, &[]).is_empty());
    }
}
