//! Stream ids from peers: parsing never panics, and whatever is accepted is
//! safe as a path segment and round-trips through `Display`.
#![no_main]

use arcly_core::identity::{MAX_NAME_LEN, StreamId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(id) = StreamId::parse(s) {
        for part in [id.app().as_str(), id.key().as_str()] {
            assert!(!part.is_empty() && part.len() <= MAX_NAME_LEN);
            assert!(!part.contains('/') && !part.contains(".."));
            assert!(!part.chars().any(char::is_control));
        }
        assert_eq!(StreamId::parse(&id.to_string()).as_ref(), Ok(&id));
    }
});
