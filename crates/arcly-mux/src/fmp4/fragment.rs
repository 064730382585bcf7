//! Movie fragments: `moof` + `mdat` pairs holding the samples pushed since
//! the previous fragment.

use std::time::Duration;

use arcly_core::ProtocolError;
use arcly_core::error::ProtocolErrorKind;
use arcly_core::frame::{CodecId, MediaFrame, Timebase};
use bytes::Bytes;

use super::boxes::BoxWriter;
use super::init::{track_id, write_init};
use super::track::TrackConfig;

/// `sample_depends_on = 2`: a sync sample (decodable on its own).
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// `sample_depends_on = 1` and `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE: u32 = 0x0101_0000;

const TFHD_DEFAULT_SAMPLE_FLAGS: u32 = 0x00_0020;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
const TRUN_DATA_OFFSET: u32 = 0x000_001;
const TRUN_DURATION: u32 = 0x000_100;
const TRUN_SIZE: u32 = 0x000_200;
const TRUN_FLAGS: u32 = 0x000_400;
const TRUN_COMPOSITION_OFFSET: u32 = 0x000_800;

fn error(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new("fmp4", kind, context)
}

/// A sample whose duration is known.
#[derive(Debug)]
struct Sample {
    dts: i64,
    duration: u32,
    composition_offset: i32,
    flags: u32,
    payload: Bytes,
}

/// The newest sample of a track: its duration is the distance to the next
/// sample's decode time, unknown until that sample arrives.
#[derive(Debug)]
struct Held {
    dts: i64,
    /// The end from the frame's own duration, when it had one.
    end: Option<i64>,
    composition_offset: i32,
    flags: u32,
    payload: Bytes,
}

impl Held {
    fn into_sample(self, duration: u32) -> Sample {
        Sample {
            dts: self.dts,
            duration,
            composition_offset: self.composition_offset,
            flags: self.flags,
            payload: self.payload,
        }
    }

    /// The duration from the frame's own `duration` field, if it had one.
    fn own_duration(&self) -> Option<u32> {
        self.end.map(|end| u32::try_from(end.saturating_sub(self.dts)).unwrap_or(u32::MAX))
    }
}

#[derive(Debug)]
struct TrackState {
    codec: CodecId,
    video: bool,
    timebase: Timebase,
    ready: Vec<Sample>,
    /// Sum of `ready` durations.
    ready_ticks: u64,
    held: Option<Held>,
    /// The last duration computed, the fallback for a final sample without
    /// one of its own.
    last_duration: u32,
}

impl TrackState {
    fn release(&mut self, sample: Held, duration: u32) {
        self.ready_ticks += u64::from(duration);
        self.last_duration = duration;
        self.ready.push(sample.into_sample(duration));
    }

    /// Moves the held sample to `ready` if its duration is known without the
    /// next sample (or, when `finishing`, with a fallback duration).
    fn release_held(&mut self, finishing: bool) {
        let Some(held) = self.held.take() else { return };
        match held.own_duration() {
            Some(d) => self.release(held, d),
            None if finishing => {
                let d = self.last_duration;
                self.release(held, d);
            }
            None => self.held = Some(held),
        }
    }
}

/// Writes the movie fragments (`moof` + `mdat`) of one stream whose tracks
/// are fixed at creation.
///
/// Frames are [`push`](Self::push)ed per track (index into the track list,
/// which is also the order of the `trak`s in [`init_segment`](Self::init_segment),
/// track ID = index + 1); [`flush_fragment`](Self::flush_fragment) writes one
/// `moof` + `mdat` with every pending sample. The caller chooses fragment
/// boundaries (a keyframe for segments, any 200 ms–1 s instant for LL-HLS
/// parts), helped by [`pending_duration`](Self::pending_duration).
///
/// # Timing
/// Timestamps are rescaled as absolute values to the track timescale
/// (exact, rounding to the nearest tick) and each sample's duration is the
/// difference between its decode time and the next sample's, so durations
/// add up to the decode timeline exactly, however long the stream runs.
/// Because of that, **the newest sample of each track is held back** until
/// the next frame of the track arrives, unless the frame carries its own
/// [`duration`](MediaFrame::duration), in which case it is written with
/// that. [`finish`](Self::finish) writes held samples too (with the
/// previous sample's duration), for the end of a stream.
///
/// Decode times must not go backwards within a track; after a backward
/// discontinuity call [`finish`](Self::finish), after which any timestamps
/// are accepted (and the caller signals the discontinuity, e.g. with a new
/// HLS discontinuity sequence).
///
/// ```
/// use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
/// use arcly_mux::fmp4::{FragmentWriter, TrackConfig};
/// let head = [b"OpusHead".as_slice(), &[1, 2, 0x38, 1, 0x80, 0xBB, 0, 0, 0, 0, 0]].concat();
/// let mut writer = FragmentWriter::new(&[TrackConfig::opus(&head).unwrap()]);
/// let init = writer.init_segment();
/// for i in 0..50 {
///     // 20 ms Opus packets, timestamps in milliseconds.
///     let frame = MediaFrame::new(CodecId::Opus, bytes::Bytes::from_static(&[0xFC, 0xFF, 0xFE]))
///         .with_timestamps(i * 20, i * 20, Timebase::MILLIS);
///     writer.push(0, &frame).unwrap();
/// }
/// // The last packet is held back: its duration is not known yet.
/// assert_eq!(writer.pending_duration(0), std::time::Duration::from_millis(980));
/// let fragment = writer.flush_fragment().unwrap();
/// assert_eq!(&fragment[4..8], b"moof");
/// assert!(writer.flush_fragment().is_none());
/// # let _ = init;
/// ```
#[derive(Debug)]
pub struct FragmentWriter {
    configs: Vec<TrackConfig>,
    tracks: Vec<TrackState>,
    sequence: u32,
    out: BoxWriter,
}

impl FragmentWriter {
    /// A writer for `tracks`; fragment sequence numbers start at 1.
    pub fn new(tracks: &[TrackConfig]) -> Self {
        let states = tracks
            .iter()
            .map(|t| TrackState {
                codec: t.codec(),
                video: t.is_video(),
                timebase: t.timebase(),
                ready: Vec::new(),
                ready_ticks: 0,
                held: None,
                last_duration: 0,
            })
            .collect();
        Self { configs: tracks.to_vec(), tracks: states, sequence: 1, out: BoxWriter::with_capacity(4096) }
    }

    /// The tracks, in track-index order.
    pub fn tracks(&self) -> &[TrackConfig] {
        &self.configs
    }

    /// The initialisation segment for this writer's tracks (the same as
    /// [`init_segment`](super::init_segment) on [`tracks`](Self::tracks)).
    pub fn init_segment(&self) -> Bytes {
        let mut w = BoxWriter::with_capacity(1024);
        write_init(&mut w, &self.configs);
        w.split()
    }

    /// The sequence number the next fragment's `mfhd` will carry.
    pub fn next_sequence_number(&self) -> u32 {
        self.sequence
    }

    /// Adds a frame to track `track` (an index into the track list).
    ///
    /// `CONFIG` frames are not samples and are ignored: a changed decoder
    /// configuration needs a new initialisation segment, which is the
    /// caller's decision. Errors (the frame is then dropped and the writer
    /// unchanged): an unknown track, a codec other than the track's, a
    /// negative decode time or one before the previous sample's, a gap
    /// between decode times or a payload that does not fit 32 bits.
    pub fn push(&mut self, track: usize, frame: &MediaFrame) -> Result<(), ProtocolError> {
        let Some(state) = self.tracks.get_mut(track) else {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("no track {track}")));
        };
        if frame.is_config() {
            return Ok(());
        }
        if frame.codec != state.codec {
            return Err(error(
                ProtocolErrorKind::InvalidValue,
                format!("{} frame pushed to {} track {track}", frame.codec, state.codec),
            ));
        }
        let size_ok = u32::try_from(frame.payload.len()).is_ok();
        if !size_ok {
            return Err(error(ProtocolErrorKind::TooLarge, format!("{}-byte sample", frame.payload.len())));
        }
        let dts = frame.timebase.rescale(frame.dts, state.timebase);
        let pts = frame.timebase.rescale(frame.pts, state.timebase);
        if dts < 0 {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("negative decode time {dts} on track {track}")));
        }
        let previous = match &state.held {
            Some(held) => {
                let Some(d) = dts.checked_sub(held.dts).and_then(|d| u32::try_from(d).ok()) else {
                    return Err(error(
                        ProtocolErrorKind::InvalidValue,
                        format!(
                            "decode time {dts} after {} on track {track}: backwards or a gap beyond 32 bits; \
                             finish() first",
                            held.dts
                        ),
                    ));
                };
                Some(d)
            }
            None => None,
        };
        let end = (frame.duration > 0)
            .then(|| frame.timebase.rescale(frame.dts.saturating_add(i64::from(frame.duration)), state.timebase));
        let composition_offset = pts.saturating_sub(dts).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        let flags = if !state.video || frame.is_keyframe() { SYNC_SAMPLE } else { NON_SYNC_SAMPLE };
        let held = Held { dts, end, composition_offset, flags, payload: frame.payload.clone() };
        if let (Some(duration), Some(prev)) = (previous, state.held.replace(held)) {
            state.release(prev, duration);
        }
        Ok(())
    }

    /// Total duration of the samples the next [`flush_fragment`](Self::flush_fragment)
    /// would write on `track`, in ticks of the track's timescale (0 for an
    /// unknown track).
    pub fn pending_ticks(&self, track: usize) -> u64 {
        self.tracks
            .get(track)
            .map_or(0, |t| t.ready_ticks + t.held.as_ref().and_then(Held::own_duration).map_or(0, u64::from))
    }

    /// [`pending_ticks`](Self::pending_ticks) as a [`Duration`] (rounded down
    /// to the nanosecond; for deciding when to cut, not for timestamps).
    pub fn pending_duration(&self, track: usize) -> Duration {
        let ticks = self.pending_ticks(track);
        let timescale = self.tracks.get(track).map_or(1, |t| u64::from(t.timebase.den()));
        let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(timescale.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many samples the next fragment would hold on `track`.
    pub fn pending_samples(&self, track: usize) -> usize {
        self.tracks
            .get(track)
            .map_or(0, |t| t.ready.len() + usize::from(t.held.as_ref().is_some_and(|h| h.end.is_some())))
    }

    /// True when the next fragment's first sample on `track` is a sync
    /// sample (for video: a keyframe), so the fragment starts independently
    /// decodable (LL-HLS `INDEPENDENT=YES`).
    pub fn pending_starts_with_sync(&self, track: usize) -> bool {
        self.tracks.get(track).is_some_and(|t| {
            let first = t.ready.first().map(|s| s.flags).or_else(|| t.held.as_ref().map(|h| h.flags));
            first == Some(SYNC_SAMPLE)
        })
    }

    /// Writes one `moof` + `mdat` with every pending sample, as one
    /// contiguous buffer (payloads copied once). `None` when no track has a
    /// sample to write.
    pub fn flush_fragment(&mut self) -> Option<Bytes> {
        self.contiguous(false)
    }

    /// Like [`flush_fragment`](Self::flush_fragment) but without copying
    /// payloads: the first buffer is the `moof` and the `mdat` header, the
    /// rest are the samples' payloads as pushed, for vectored writes. Empty
    /// when no track has a sample to write.
    pub fn flush_fragment_parts(&mut self) -> Vec<Bytes> {
        self.parts(false)
    }

    /// Flushes every sample including the held-back ones (end of stream or
    /// a timestamp discontinuity); a held sample without a duration of its
    /// own gets its predecessor's. Afterwards the next frame of each track
    /// may have any decode time.
    pub fn finish(&mut self) -> Option<Bytes> {
        self.contiguous(true)
    }

    /// [`finish`](Self::finish) without copying payloads, like
    /// [`flush_fragment_parts`](Self::flush_fragment_parts).
    pub fn finish_parts(&mut self) -> Vec<Bytes> {
        self.parts(true)
    }

    fn contiguous(&mut self, finishing: bool) -> Option<Bytes> {
        let data_len = self.write_header(finishing)?;
        self.out.reserve(usize::try_from(data_len).unwrap_or(0));
        for track in &mut self.tracks {
            for sample in track.ready.drain(..) {
                self.out.bytes(&sample.payload);
            }
            track.ready_ticks = 0;
        }
        Some(self.out.split())
    }

    fn parts(&mut self, finishing: bool) -> Vec<Bytes> {
        if self.write_header(finishing).is_none() {
            return Vec::new();
        }
        let count: usize = self.tracks.iter().map(|t| t.ready.len()).sum();
        let mut parts = Vec::with_capacity(count + 1);
        parts.push(self.out.split());
        for track in &mut self.tracks {
            parts.extend(track.ready.drain(..).map(|s| s.payload));
            track.ready_ticks = 0;
        }
        parts
    }

    /// Writes `moof` and the `mdat` header into `self.out`; returns the
    /// number of payload bytes that must follow, or `None` (nothing written)
    /// when no sample is ready.
    fn write_header(&mut self, finishing: bool) -> Option<u64> {
        for track in &mut self.tracks {
            track.release_held(finishing);
        }
        if self.tracks.iter().all(|t| t.ready.is_empty()) {
            return None;
        }
        let data_len: u64 = self.tracks.iter().flat_map(|t| &t.ready).map(|s| s.payload.len() as u64).sum();
        let sequence = self.sequence;
        self.sequence = self.sequence.checked_add(1).unwrap_or(1);

        let w = &mut self.out;
        let start = w.len();
        // Positions of the trun data_offset fields, patched once the moof
        // size is known, with the offset of each track's data from the
        // moof's first byte.
        let mut offsets: Vec<(usize, u64)> = Vec::with_capacity(self.tracks.len());
        let mut data_before = 0u64;
        w.write_box(*b"moof", |w| {
            w.full_box(*b"mfhd", 0, 0, |w| w.u32(sequence));
            for (index, track) in self.tracks.iter().enumerate() {
                let Some(first) = track.ready.first() else { continue };
                w.write_box(*b"traf", |w| {
                    let tfhd_flags =
                        TFHD_DEFAULT_BASE_IS_MOOF | if track.video { 0 } else { TFHD_DEFAULT_SAMPLE_FLAGS };
                    w.full_box(*b"tfhd", 0, tfhd_flags, |w| {
                        w.u32(track_id(index));
                        if !track.video {
                            w.u32(SYNC_SAMPLE);
                        }
                    });
                    // dts is never negative: push refuses it.
                    w.full_box(*b"tfdt", 1, 0, |w| w.u64(u64::try_from(first.dts).unwrap_or(0)));
                    let mut trun_flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE;
                    if track.video {
                        trun_flags |= TRUN_FLAGS | TRUN_COMPOSITION_OFFSET;
                    }
                    w.full_box(*b"trun", 1, trun_flags, |w| {
                        w.u32(u32::try_from(track.ready.len()).unwrap_or(u32::MAX));
                        offsets.push((w.len(), data_before));
                        w.u32(0);
                        for s in &track.ready {
                            w.u32(s.duration);
                            // push refuses payloads beyond 32 bits.
                            w.u32(u32::try_from(s.payload.len()).unwrap_or(u32::MAX));
                            if track.video {
                                w.u32(s.flags);
                                w.i32(s.composition_offset);
                            }
                        }
                    });
                });
                data_before += track.ready.iter().map(|s| s.payload.len() as u64).sum::<u64>();
            }
        });
        let moof_len = (w.len() - start) as u64;
        let mdat_header = w.mdat_header(data_len) as u64;
        for (at, before) in offsets {
            // Beyond 2 GiB the offset cannot be expressed; such fragments are
            // far outside live use.
            let offset = i32::try_from(moof_len + mdat_header + before).unwrap_or(i32::MAX);
            w.patch_u32(at, offset as u32);
        }
        Some(data_len)
    }
}
