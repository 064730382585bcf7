//! Fuzz entry points that belong to no codec module (each codec module has
//! its own hidden `fuzz` function). Not part of the public API.

/// Annex B splitting and length-prefixed conversion.
pub fn annexb(data: &[u8]) {
    let nals = crate::annexb::split_annexb(data).count();
    let lp = crate::annexb::annexb_to_length_prefixed(data);
    let back = crate::annexb::length_prefixed_to_annexb(&lp, 4).map(|b| crate::annexb::split_annexb(&b).count());
    assert_eq!(back.ok(), Some(nals));
    for size in [1, 2, 4] {
        crate::annexb::split_length_prefixed(data, size).for_each(drop);
    }
}
