//! A small ISO BMFF box writer: big-endian fields, size-prefixed boxes whose
//! sizes are patched in once their children are written.

use bytes::{BufMut, Bytes, BytesMut};

/// Writes ISO BMFF boxes into one growing buffer.
///
/// A box is opened with [`write_box`](Self::write_box) or
/// [`full_box`](Self::full_box), whose closure writes the body (fields and
/// child boxes); the 32-bit size is patched in when the closure returns, so
/// nesting needs no size precomputation.
///
/// ```
/// use arcly_mux::fmp4::BoxWriter;
/// let mut w = BoxWriter::new();
/// w.write_box(*b"moov", |w| {
///     w.full_box(*b"mvhd", 0, 0, |w| w.u32(1000));
/// });
/// let bytes = w.split();
/// assert_eq!(&bytes[..8], &[0, 0, 0, 24, b'm', b'o', b'o', b'v']);
/// assert_eq!(&bytes[8..20], &[0, 0, 0, 16, b'm', b'v', b'h', b'd', 0, 0, 0, 0]);
/// ```
#[derive(Debug, Default)]
pub struct BoxWriter {
    buf: BytesMut,
}

impl BoxWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { buf: BytesMut::with_capacity(capacity) }
    }

    /// Writes a box: its header, then whatever `body` writes, then patches the
    /// size. A box that would exceed 4 GiB gets size `u32::MAX` (invalid but
    /// never a panic); only `mdat` can be that large, and it is written with
    /// [`mdat_header`](Self::mdat_header) instead.
    pub fn write_box(&mut self, fourcc: [u8; 4], body: impl FnOnce(&mut Self)) {
        let start = self.buf.len();
        self.buf.put_u32(0);
        self.buf.put_slice(&fourcc);
        body(self);
        let size = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.patch_u32(start, size);
    }

    /// Writes a FullBox: like [`write_box`](Self::write_box) with the
    /// version byte and 24-bit flags first in the body.
    pub fn full_box(&mut self, fourcc: [u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Self)) {
        self.write_box(fourcc, |w| {
            w.u8(version);
            w.u24(flags);
            body(w);
        });
    }

    /// Writes an `mdat` header for `payload_len` bytes of data that follow,
    /// switching to the 64-bit `largesize` form when 32 bits do not suffice.
    /// Returns the header length (8 or 16).
    pub fn mdat_header(&mut self, payload_len: u64) -> usize {
        match payload_len.checked_add(8).and_then(|size| u32::try_from(size).ok()) {
            Some(size) => {
                self.u32(size);
                self.bytes(b"mdat");
                8
            }
            None => {
                self.u32(1);
                self.bytes(b"mdat");
                self.u64(payload_len.saturating_add(16));
                16
            }
        }
    }

    /// Writes one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    /// Writes a big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    /// Writes the low 24 bits of `v`, big-endian.
    pub fn u24(&mut self, v: u32) {
        self.buf.put_slice(&v.to_be_bytes()[1..]);
    }

    /// Writes a big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    /// Writes a big-endian `i32`.
    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    /// Writes a big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }

    /// Writes `n` zero bytes (reserved fields).
    pub fn zeros(&mut self, n: usize) {
        self.buf.put_bytes(0, n);
    }

    /// Bytes written so far (and not yet split off).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing is written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Overwrites four bytes at `at` with `v`, for fields (sizes, data
    /// offsets) known only after later bytes are written. Out-of-range
    /// positions are ignored.
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(slot) = self.buf.get_mut(at..at.saturating_add(4)) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// Takes everything written so far as [`Bytes`], keeping the writer (and
    /// any spare capacity) for the next use.
    pub fn split(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Reserves room for `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    /// The written bytes, for appending data directly.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}
