//! Just enough ISO BMFF (fragmented MP4) to play LL-HLS to the frame level:
//! the track table of an initialisation segment ([`parse_init`]) and the
//! samples of movie fragments ([`FragmentReader`]).
//!
//! Every length read from the bytes is checked against the bytes actually
//! there before it is used, and no buffer is sized from one: a malformed
//! input is a [`Malformed`] error, never a panic or a huge allocation.
//! Fragments are read as a stream: only each `moof` is buffered (bounded);
//! `mdat` payloads are counted, not kept, so thousands of players cost
//! little memory.

use std::fmt;
use std::ops::Range;

/// The largest `moof` accepted (buffered whole).
const MAX_MOOF: u64 = 1 << 20;
/// Most samples in one `moof`: a bound on work for runs whose samples have
/// no per-sample fields (12 bytes could otherwise announce 4 billion).
const MAX_SAMPLES: usize = 1 << 16;
/// Most tracks in an initialisation segment.
const MAX_TRACKS: usize = 64;

/// `tfhd` flags.
const TFHD_BASE_DATA_OFFSET: u32 = 0x00_0001;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x00_0002;
const TFHD_DEFAULT_DURATION: u32 = 0x00_0008;
const TFHD_DEFAULT_SIZE: u32 = 0x00_0010;
const TFHD_DEFAULT_FLAGS: u32 = 0x00_0020;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags.
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x00_0004;
const TRUN_DURATION: u32 = 0x00_0100;
const TRUN_SIZE: u32 = 0x00_0200;
const TRUN_FLAGS: u32 = 0x00_0400;
const TRUN_COMPOSITION_OFFSET: u32 = 0x00_0800;
/// `sample_is_non_sync_sample` in sample flags.
const NON_SYNC: u32 = 0x0001_0000;

/// Why bytes are not the fMP4 expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed fMP4: {}", self.0)
    }
}

type Result<T> = std::result::Result<T, Malformed>;

fn bad<T>(why: impl Into<String>) -> Result<T> {
    Err(Malformed(why.into()))
}

fn fourcc(t: [u8; 4]) -> String {
    t.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { char::from(b) } else { '?' }).collect()
}

/// A big-endian reader over one box body; every read is bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    what: [u8; 4],
}

impl<'a> Reader<'a> {
    fn new(what: [u8; 4], data: &'a [u8]) -> Self {
        Self { data, at: 0, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.left() {
            return bad(format!("{} too short", fourcc(self.what)));
        }
        let b = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// The version and flags of a full box.
    fn full_header(&mut self) -> Result<(u8, u32)> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00FF_FFFF))
    }

    fn left(&self) -> usize {
        self.data.len() - self.at
    }
}

/// The boxes in `data`, in order, as (type, body); stops at the first
/// malformed header.
struct Boxes<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<([u8; 4], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.data);
        let Some(header) = BoxHeader::parse(data) else {
            return Some(bad("truncated box header"));
        };
        let header = match header {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let size = match header.size {
            // Size 0: to the end of the enclosing data.
            None => data.len() as u64,
            Some(s) => s,
        };
        if size > data.len() as u64 {
            return Some(bad(format!("{} box of {size} bytes in {}", fourcc(header.kind), data.len())));
        }
        let size = size as usize;
        self.data = &data[size..];
        Some(Ok((header.kind, &data[usize::from(header.len)..size])))
    }
}

fn boxes(data: &[u8]) -> Boxes<'_> {
    Boxes { data }
}

/// A box header: its type, its header length (8 or 16) and its whole size
/// (`None`: to the end of the file).
#[derive(Clone, Copy, Debug)]
struct BoxHeader {
    kind: [u8; 4],
    len: u8,
    size: Option<u64>,
}

impl BoxHeader {
    /// `None` when `data` is too short to tell.
    fn parse(data: &[u8]) -> Option<Result<Self>> {
        let head: [u8; 8] = data.get(..8)?.try_into().ok()?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        let (len, size) = match size32 {
            0 => (8u8, None),
            1 => {
                let large: [u8; 8] = data.get(8..16)?.try_into().ok()?;
                (16, Some(u64::from_be_bytes(large)))
            }
            s => (8, Some(u64::from(s))),
        };
        if size.is_some_and(|s| s < u64::from(len)) {
            return Some(bad(format!("{} box of {} bytes", fourcc(kind), size.unwrap_or(0))));
        }
        Some(Ok(Self { kind, len, size }))
    }
}

/// What a track carries, from its `hdlr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Handler {
    Video,
    Audio,
    Other,
}

/// Sample values used when a fragment does not give them (`trex`, `tfhd`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SampleDefaults {
    duration: u32,
    size: u32,
    flags: u32,
}

/// One track of an initialisation segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TrackInfo {
    pub(crate) id: u32,
    pub(crate) handler: Handler,
    pub(crate) timescale: u32,
    defaults: SampleDefaults,
}

/// The tracks of an initialisation segment (`ftyp` + `moov`): IDs, handler
/// types, timescales and `trex` defaults.
pub(crate) fn parse_init(data: &[u8]) -> Result<Vec<TrackInfo>> {
    let mut moov = None;
    for b in boxes(data) {
        let (kind, body) = b?;
        if &kind == b"moov" {
            moov = Some(body);
        }
    }
    let Some(moov) = moov else { return bad("no moov in the initialisation segment") };
    let mut tracks = Vec::new();
    let mut trex = Vec::new();
    for b in boxes(moov) {
        let (kind, body) = b?;
        match &kind {
            b"trak" => {
                if tracks.len() == MAX_TRACKS {
                    return bad(format!("more than {MAX_TRACKS} tracks"));
                }
                tracks.push(parse_trak(body)?);
            }
            b"mvex" => {
                for b in boxes(body) {
                    let (kind, body) = b?;
                    if &kind == b"trex" && trex.len() < MAX_TRACKS {
                        let mut r = Reader::new(kind, body);
                        r.full_header()?;
                        let id = r.u32()?;
                        r.u32()?; // default_sample_description_index
                        let defaults = SampleDefaults { duration: r.u32()?, size: r.u32()?, flags: r.u32()? };
                        trex.push((id, defaults));
                    }
                }
            }
            _ => {}
        }
    }
    if tracks.is_empty() {
        return bad("no track in the initialisation segment");
    }
    for (i, t) in tracks.iter().enumerate() {
        if tracks[..i].iter().any(|o| o.id == t.id) {
            return bad(format!("track ID {} twice", t.id));
        }
    }
    for t in &mut tracks {
        if let Some((_, d)) = trex.iter().find(|(id, _)| *id == t.id) {
            t.defaults = *d;
        }
    }
    Ok(tracks)
}

fn parse_trak(trak: &[u8]) -> Result<TrackInfo> {
    let (mut id, mut timescale, mut handler) = (None, None, None);
    for b in boxes(trak) {
        let (kind, body) = b?;
        match &kind {
            b"tkhd" => {
                let mut r = Reader::new(kind, body);
                let (version, _) = r.full_header()?;
                // creation and modification times: 32 or 64 bits each.
                r.take(if version == 1 { 16 } else { 8 })?;
                id = Some(r.u32()?);
            }
            b"mdia" => {
                for b in boxes(body) {
                    let (kind, body) = b?;
                    let mut r = Reader::new(kind, body);
                    match &kind {
                        b"mdhd" => {
                            let (version, _) = r.full_header()?;
                            r.take(if version == 1 { 16 } else { 8 })?;
                            timescale = Some(r.u32()?);
                        }
                        b"hdlr" => {
                            r.full_header()?;
                            r.u32()?; // pre_defined
                            handler = Some(match &r.array::<4>()? {
                                b"vide" => Handler::Video,
                                b"soun" => Handler::Audio,
                                _ => Handler::Other,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (Some(id), Some(timescale), Some(handler)) = (id, timescale, handler) else {
        return bad("trak without tkhd, mdhd or hdlr");
    };
    if timescale == 0 {
        return bad(format!("track {id}: timescale 0"));
    }
    Ok(TrackInfo { id, handler, timescale, defaults: SampleDefaults::default() })
}

/// One sample of a fragment, as a player sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) handler: Handler,
    /// Decode time in milliseconds (rounded to the nearest).
    pub(crate) dts_ms: i64,
    pub(crate) keyframe: bool,
}

/// A sample found in a `moof`, its data not yet seen.
#[derive(Clone, Copy, Debug)]
struct PendingSample {
    dts: u64,
    flags: u32,
}

/// One `trun`'s samples and where their data lies in the stream.
#[derive(Clone, Debug)]
struct Run {
    track: usize,
    data: Range<u64>,
    samples: Range<usize>,
}

/// Where the reader is in the byte stream.
#[derive(Clone, Copy, Debug)]
enum Stream {
    /// Reading a box header (`header_len` bytes of it so far).
    Header,
    /// Buffering a `moof`; this many body bytes to go.
    Moof(u64),
    /// Counting an `mdat` that ends at this stream offset.
    Mdat { start: u64, end: u64 },
    /// Skipping another box; this many bytes to go.
    Skip(u64),
}

/// Reads the movie fragments of one body after another (parts of a stream),
/// fed in pieces of any size; the samples of each `moof` come out once the
/// `mdat` holding their data has been read in full.
#[derive(Debug)]
pub(crate) struct FragmentReader {
    tracks: Vec<TrackInfo>,
    /// Per track: the decode time after its last sample (for a `traf`
    /// without `tfdt`).
    next_dts: Vec<Option<u64>>,
    /// Bytes of the current body consumed.
    pos: u64,
    stream: Stream,
    header: [u8; 16],
    header_len: usize,
    moof: Vec<u8>,
    moof_start: u64,
    runs: Vec<Run>,
    pending: Vec<PendingSample>,
    /// Samples read, for the caller to take.
    pub(crate) out: Vec<Sample>,
}

impl FragmentReader {
    pub(crate) fn new(tracks: Vec<TrackInfo>) -> Self {
        let next_dts = vec![None; tracks.len()];
        Self {
            tracks,
            next_dts,
            pos: 0,
            stream: Stream::Header,
            header: [0; 16],
            header_len: 0,
            moof: Vec::new(),
            moof_start: 0,
            runs: Vec::new(),
            pending: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Feeds the next bytes of the current body.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            match self.stream {
                Stream::Header => {
                    let want = if self.header_len >= 8 && self.header[..4] == [0, 0, 0, 1] { 16 } else { 8 };
                    let k = (want - self.header_len).min(data.len());
                    self.header[self.header_len..self.header_len + k].copy_from_slice(&data[..k]);
                    self.header_len += k;
                    self.pos += k as u64;
                    data = &data[k..];
                    match BoxHeader::parse(&self.header[..self.header_len]) {
                        None => {}
                        Some(h) => self.start_box(h?)?,
                    }
                }
                Stream::Moof(left) => {
                    let k = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.moof.extend_from_slice(&data[..k]);
                    self.pos += k as u64;
                    data = &data[k..];
                    self.stream = Stream::Moof(left - k as u64);
                    if left == k as u64 {
                        self.stream = Stream::Header;
                        self.parse_moof()?;
                    }
                }
                Stream::Mdat { start, end } => {
                    let k = data.len().min(usize::try_from(end - self.pos).unwrap_or(usize::MAX));
                    self.pos += k as u64;
                    data = &data[k..];
                    if self.pos == end {
                        self.stream = Stream::Header;
                        self.release(start..end)?;
                    }
                }
                Stream::Skip(left) => {
                    let k = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.pos += k as u64;
                    data = &data[k..];
                    self.stream = if left == k as u64 { Stream::Header } else { Stream::Skip(left - k as u64) };
                }
            }
        }
        Ok(())
    }

    /// The current body ended: it must end between boxes with every sample
    /// released. The reader is then ready for the next body.
    pub(crate) fn finish(&mut self) -> Result<()> {
        let complete = matches!(self.stream, Stream::Header) && self.header_len == 0 && self.runs.is_empty();
        self.reset();
        if complete { Ok(()) } else { bad("truncated fragment") }
    }

    /// Forgets a partly read body (after an error).
    pub(crate) fn reset(&mut self) {
        self.pos = 0;
        self.stream = Stream::Header;
        self.header_len = 0;
        self.runs.clear();
        self.pending.clear();
    }

    fn start_box(&mut self, h: BoxHeader) -> Result<()> {
        let header_len = self.header_len;
        self.header_len = 0;
        let start = self.pos - header_len as u64;
        let Some(size) = h.size else {
            return bad(format!("{} box without a size", fourcc(h.kind)));
        };
        let body = size - u64::from(h.len);
        match &h.kind {
            b"moof" => {
                if !self.runs.is_empty() {
                    return bad("moof before the previous moof's mdat");
                }
                if size > MAX_MOOF {
                    return bad(format!("moof of {size} bytes"));
                }
                self.moof.clear();
                self.moof.extend_from_slice(&self.header[..header_len]);
                self.moof_start = start;
                self.stream = Stream::Moof(body);
                if body == 0 {
                    self.stream = Stream::Header;
                    self.parse_moof()?;
                }
            }
            b"mdat" => {
                let end = self.pos.checked_add(body).ok_or_else(|| Malformed("mdat size overflows".into()))?;
                self.stream = Stream::Mdat { start: self.pos, end };
                if body == 0 {
                    self.stream = Stream::Header;
                    self.release(self.pos..end)?;
                }
            }
            _ => self.stream = if body == 0 { Stream::Header } else { Stream::Skip(body) },
        }
        Ok(())
    }

    /// Parses the buffered `moof` into runs waiting for their `mdat`.
    fn parse_moof(&mut self) -> Result<()> {
        let moof = std::mem::take(&mut self.moof);
        let result = self.parse_moof_bytes(&moof);
        self.moof = moof;
        result
    }

    fn parse_moof_bytes(&mut self, moof: &[u8]) -> Result<()> {
        let Some((_, body)) = boxes(moof).next().transpose()? else { return bad("empty moof") };
        let mut has_mfhd = false;
        // The end of the previous traf's data: the default base of a traf
        // without base-data-offset or default-base-is-moof (ISO/IEC
        // 14496-12 §8.8.7.1).
        let mut previous_end = None;
        for b in boxes(body) {
            let (kind, body) = b?;
            match &kind {
                b"mfhd" => {
                    let mut r = Reader::new(kind, body);
                    r.full_header()?;
                    r.u32()?; // sequence_number
                    has_mfhd = true;
                }
                b"traf" => previous_end = Some(self.parse_traf(body, previous_end)?),
                _ => {}
            }
        }
        if !has_mfhd {
            return bad("moof without mfhd");
        }
        Ok(())
    }

    /// Parses one `traf`; returns the end of its data.
    fn parse_traf(&mut self, traf: &[u8], previous_end: Option<u64>) -> Result<u64> {
        let mut tfhd = None;
        let mut dts = None;
        // Where the traf's data starts (what trun data offsets are relative
        // to), and where the next run without a data offset starts.
        let mut base_at = 0u64;
        let mut data_at = 0u64;
        for b in boxes(traf) {
            let (kind, body) = b?;
            let mut r = Reader::new(kind, body);
            match &kind {
                b"tfhd" => {
                    let (_, flags) = r.full_header()?;
                    let id = r.u32()?;
                    let Some(track) = self.tracks.iter().position(|t| t.id == id) else {
                        return bad(format!("traf for track {id}, not in the initialisation segment"));
                    };
                    let mut defaults = self.tracks[track].defaults;
                    let base = if flags & TFHD_BASE_DATA_OFFSET != 0 { Some(r.u64()?) } else { None };
                    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
                        r.u32()?;
                    }
                    if flags & TFHD_DEFAULT_DURATION != 0 {
                        defaults.duration = r.u32()?;
                    }
                    if flags & TFHD_DEFAULT_SIZE != 0 {
                        defaults.size = r.u32()?;
                    }
                    if flags & TFHD_DEFAULT_FLAGS != 0 {
                        defaults.flags = r.u32()?;
                    }
                    // A base data offset is a file offset: the body is the
                    // file.
                    base_at = match base {
                        Some(b) => b,
                        None if flags & TFHD_DEFAULT_BASE_IS_MOOF != 0 => self.moof_start,
                        None => previous_end.unwrap_or(self.moof_start),
                    };
                    data_at = base_at;
                    tfhd = Some((track, defaults));
                }
                b"tfdt" => {
                    let (version, _) = r.full_header()?;
                    dts = Some(if version == 1 { r.u64()? } else { u64::from(r.u32()?) });
                }
                b"trun" => {
                    let Some((track, defaults)) = tfhd else { return bad("trun before tfhd") };
                    let base = match dts {
                        Some(d) => d,
                        None => self.next_dts[track].ok_or_else(|| Malformed("traf without tfdt".into()))?,
                    };
                    let (end_dts, end_at) = self.parse_trun(&mut r, track, defaults, base, base_at, data_at)?;
                    dts = Some(end_dts);
                    data_at = end_at;
                    // A later traf of this track without a tfdt continues
                    // here.
                    self.next_dts[track] = Some(end_dts);
                }
                _ => {}
            }
        }
        if tfhd.is_none() {
            return bad("traf without tfhd");
        }
        Ok(data_at)
    }

    /// Parses one `trun` whose samples start at decode time `dts`; returns
    /// the decode time and data position after it.
    fn parse_trun(
        &mut self,
        r: &mut Reader<'_>,
        track: usize,
        defaults: SampleDefaults,
        dts: u64,
        base_at: u64,
        follow_at: u64,
    ) -> Result<(u64, u64)> {
        let (_, flags) = r.full_header()?;
        let count = r.u32()?;
        let start = if flags & TRUN_DATA_OFFSET != 0 {
            let offset = i64::from(r.u32()? as i32);
            // Relative to the traf's base (not to where the previous run
            // ended).
            base_at.checked_add_signed(offset).ok_or_else(|| Malformed("trun data offset before the file".into()))?
        } else {
            follow_at
        };
        let first_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 { Some(r.u32()?) } else { None };
        let per_sample = 4 * (flags & (TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | TRUN_COMPOSITION_OFFSET)).count_ones();
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > MAX_SAMPLES - self.pending.len().min(MAX_SAMPLES) {
            return bad(format!("trun of {count} samples"));
        }
        if per_sample > 0 && count > r.left() / per_sample as usize {
            return bad(format!("trun announces {count} samples, has room for {}", r.left() / per_sample as usize));
        }
        let first = self.pending.len();
        let (mut dts, mut at) = (dts, start);
        for i in 0..count {
            let duration = if flags & TRUN_DURATION != 0 { r.u32()? } else { defaults.duration };
            let size = if flags & TRUN_SIZE != 0 { r.u32()? } else { defaults.size };
            let sample_flags = if flags & TRUN_FLAGS != 0 { Some(r.u32()?) } else { None };
            if flags & TRUN_COMPOSITION_OFFSET != 0 {
                r.u32()?;
            }
            let sample_flags = match (sample_flags, first_flags) {
                (Some(f), _) => f,
                (None, Some(f)) if i == 0 => f,
                _ => defaults.flags,
            };
            self.pending.push(PendingSample { dts, flags: sample_flags });
            dts = dts.checked_add(u64::from(duration)).ok_or_else(|| Malformed("decode time overflows".into()))?;
            at = at.checked_add(u64::from(size)).ok_or_else(|| Malformed("data offset overflows".into()))?;
        }
        self.runs.push(Run { track, data: start..at, samples: first..self.pending.len() });
        Ok((dts, at))
    }

    /// The `mdat` at `payload` (stream offsets) is read: the pending runs'
    /// data must lie in it (CMAF: one `mdat` per `moof`); their samples
    /// come out.
    fn release(&mut self, payload: Range<u64>) -> Result<()> {
        if self.runs.is_empty() {
            // An mdat of no moof's: nothing to play.
            return Ok(());
        }
        for run in &self.runs {
            if run.data.start < payload.start || run.data.end > payload.end {
                return bad(format!(
                    "sample data at {}..{} outside the mdat payload at {}..{}",
                    run.data.start, run.data.end, payload.start, payload.end
                ));
            }
        }
        for run in self.runs.drain(..) {
            let track = &self.tracks[run.track];
            let ts = u128::from(track.timescale);
            for s in &self.pending[run.samples] {
                let ms = (u128::from(s.dts) * 1000 + ts / 2) / ts;
                self.out.push(Sample {
                    handler: track.handler,
                    dts_ms: i64::try_from(ms).unwrap_or(i64::MAX),
                    keyframe: s.flags & NON_SYNC == 0,
                });
            }
        }
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
