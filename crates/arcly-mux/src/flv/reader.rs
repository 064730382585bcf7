//! The streaming tag reader.

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{Bytes, BytesMut};

use super::{DEFAULT_MAX_TAG_SIZE, FlvHeader, FlvTag, TagType, error};

const TAG_HEADER_LEN: usize = 11;
const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// Headers are 9 bytes in every known file; the data offset could announce
/// up to 4 GB of padding to buffer, so it is capped.
const MAX_DATA_OFFSET: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Tags,
    Failed,
}

/// Reads FLV tags from bytes that arrive in chunks of any size (a file, an
/// HTTP-FLV response body).
///
/// The reader expects the FLV header first, then `PreviousTagSize0`, then
/// tags each followed by its `PreviousTagSize`, which is checked. A tag is
/// returned once its trailing `PreviousTagSize` has arrived. Tags of types
/// FLV does not define are skipped; encrypted tags (the filter bit) are
/// refused.
///
/// Bodies are slices of the input. With [`push_bytes`](Self::push_bytes)
/// a tag that lies wholly inside one pushed [`Bytes`] is returned without a
/// copy; bytes of a tag split across pushes are copied once into an
/// internal buffer. After an error the stream cannot be resynchronised: the
/// error is returned once and `next_tag` returns `None` from then on.
///
/// ```
/// use arcly_mux::flv::{FlvReader, TagType};
/// let file: &[u8] = &[
///     b'F', b'L', b'V', 1, 0x01, 0, 0, 0, 9, 0, 0, 0, 0, // header, PreviousTagSize0
///     9, 0, 0, 2, 0, 0, 40, 0, 0, 0, 0, 0x17, 0x02, // video tag, 2-byte body, 40 ms
///     0, 0, 0, 13, // PreviousTagSize
/// ];
/// let mut reader = FlvReader::new();
/// for byte in file {
///     reader.push(std::slice::from_ref(byte)); // one byte at a time
/// }
/// let tag = reader.next_tag().unwrap().unwrap();
/// assert_eq!((tag.tag_type, tag.timestamp_ms, &tag.body[..]), (TagType::Video, 40, &[0x17, 0x02][..]));
/// assert!(reader.header().unwrap().has_video);
/// assert!(reader.next_tag().is_none());
/// ```
#[derive(Debug)]
pub struct FlvReader {
    /// A pushed `Bytes` not yet copied anywhere; tags inside it are sliced
    /// out without copying. At most one of `head` and `buf` holds data.
    head: Bytes,
    /// Bytes carried over between pushes.
    buf: BytesMut,
    state: State,
    header: Option<FlvHeader>,
    max_tag_size: usize,
    check_previous_tag_size: bool,
    /// Stream offset of the first unread byte, for error positions.
    offset: u64,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvReader {
    /// A reader expecting an FLV header, accepting tags up to
    /// [`DEFAULT_MAX_TAG_SIZE`] and checking `PreviousTagSize`.
    pub fn new() -> Self {
        Self {
            head: Bytes::new(),
            buf: BytesMut::new(),
            state: State::Header,
            header: None,
            max_tag_size: DEFAULT_MAX_TAG_SIZE,
            check_previous_tag_size: true,
            offset: 0,
        }
    }

    /// Refuses tags whose body is larger than `bytes` with
    /// [`ProtocolErrorKind::TooLarge`] (before buffering them).
    pub fn with_max_tag_size(mut self, bytes: usize) -> Self {
        self.max_tag_size = bytes;
        self
    }

    /// Whether a `PreviousTagSize` that disagrees with the tag before it is
    /// an error (the default) or ignored, for files from writers known to
    /// get it wrong.
    pub fn with_previous_tag_size_check(mut self, check: bool) -> Self {
        self.check_previous_tag_size = check;
        self
    }

    /// The file header, once it has been read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Bytes received but not yet returned as tags.
    pub fn buffered(&self) -> usize {
        self.head.len() + self.buf.len()
    }

    /// Appends input, copying it.
    pub fn push(&mut self, data: &[u8]) {
        // After an error nothing is read any more: keep nothing either.
        if self.state == State::Failed {
            return;
        }
        self.spill_head();
        self.buf.extend_from_slice(data);
    }

    /// Appends input without copying it when nothing is buffered, so tags
    /// inside `data` are returned as slices of it.
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.state == State::Failed {
            return;
        }
        if self.head.is_empty() && self.buf.is_empty() {
            self.head = data;
        } else {
            self.spill_head();
            self.buf.extend_from_slice(&data);
        }
    }

    fn spill_head(&mut self) {
        if !self.head.is_empty() {
            self.buf.extend_from_slice(&self.head);
            self.head = Bytes::new();
        }
    }

    fn available(&self) -> &[u8] {
        if self.head.is_empty() { &self.buf } else { &self.head }
    }

    fn take(&mut self, n: usize) -> Bytes {
        self.offset += n as u64;
        if self.head.is_empty() { self.buf.split_to(n).freeze() } else { self.head.split_to(n) }
    }

    fn fail(&mut self, e: ProtocolError, at: u64) -> Option<Result<FlvTag, ProtocolError>> {
        self.state = State::Failed;
        self.head = Bytes::new();
        self.buf = BytesMut::new();
        Some(Err(e.at(at)))
    }

    /// The next complete tag, `None` when more input is needed (or after an
    /// error has been returned).
    pub fn next_tag(&mut self) -> Option<Result<FlvTag, ProtocolError>> {
        loop {
            match self.state {
                State::Failed => return None,
                State::Header => {
                    let avail = self.available();
                    if avail.len() < FlvHeader::LEN {
                        return None;
                    }
                    let header = match FlvHeader::parse(avail) {
                        Ok(h) => h,
                        Err(e) => return self.fail(e, self.offset),
                    };
                    let data_offset = u32::from_be_bytes([avail[5], avail[6], avail[7], avail[8]]);
                    let data_offset = usize::try_from(data_offset).unwrap_or(usize::MAX);
                    if !(FlvHeader::LEN..=MAX_DATA_OFFSET).contains(&data_offset) {
                        let e = error(ProtocolErrorKind::InvalidValue, format!("FLV header data offset {data_offset}"));
                        return self.fail(e, self.offset + 5);
                    }
                    let need = data_offset + PREVIOUS_TAG_SIZE_LEN;
                    if avail.len() < need {
                        return None;
                    }
                    let pts0 = u32::from_be_bytes([
                        avail[data_offset],
                        avail[data_offset + 1],
                        avail[data_offset + 2],
                        avail[data_offset + 3],
                    ]);
                    if self.check_previous_tag_size && pts0 != 0 {
                        let e = error(ProtocolErrorKind::InvalidValue, format!("PreviousTagSize0 is {pts0}, not 0"));
                        return self.fail(e, self.offset + data_offset as u64);
                    }
                    self.header = Some(header);
                    self.take(need);
                    self.state = State::Tags;
                }
                State::Tags => {
                    let avail = self.available();
                    if avail.len() < TAG_HEADER_LEN {
                        return None;
                    }
                    let h = &avail[..TAG_HEADER_LEN];
                    let type_byte = h[0];
                    let size = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
                    let timestamp_ms = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
                    let stream_id = u32::from_be_bytes([0, h[8], h[9], h[10]]);
                    if size > self.max_tag_size {
                        let e = error(
                            ProtocolErrorKind::TooLarge,
                            format!("tag body of {size} bytes exceeds the limit of {}", self.max_tag_size),
                        );
                        return self.fail(e, self.offset + 1);
                    }
                    if type_byte & 0x20 != 0 {
                        let e = error(ProtocolErrorKind::Unsupported, "encrypted FLV tag (filter bit set)");
                        return self.fail(e, self.offset);
                    }
                    let unit = TAG_HEADER_LEN + size + PREVIOUS_TAG_SIZE_LEN;
                    if avail.len() < unit {
                        return None;
                    }
                    let p = &avail[TAG_HEADER_LEN + size..unit];
                    let previous = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    let expected = (TAG_HEADER_LEN + size) as u32;
                    if self.check_previous_tag_size && previous != expected {
                        let e = error(
                            ProtocolErrorKind::InvalidValue,
                            format!("PreviousTagSize is {previous}, the tag before it is {expected} bytes"),
                        );
                        return self.fail(e, self.offset + (TAG_HEADER_LEN + size) as u64);
                    }
                    let bytes = self.take(unit);
                    // Types FLV does not define are skipped, as players do,
                    // so a stream with private tags still plays.
                    let Some(tag_type) = TagType::from_u8(type_byte & 0x1f) else { continue };
                    let body = bytes.slice(TAG_HEADER_LEN..TAG_HEADER_LEN + size);
                    return Some(Ok(FlvTag { tag_type, timestamp_ms, stream_id, body }));
                }
            }
        }
    }
}
