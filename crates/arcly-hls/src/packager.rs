//! The per-stream packager: frames in, segments, parts and playlists out.
//! Sans-IO: no clock, no task; the wall clock comes in as an argument.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use arcly_core::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use arcly_mux::fmp4::{FragmentWriter, TrackConfig};
use arcly_mux::ts::{TrackSpec, TsMuxer};
use bytes::{Bytes, BytesMut};

use crate::codecs::codec_string;
use crate::config::HlsConfig;
use crate::playlist;

/// Which media playlist (and segment format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlaylistKind {
    /// LL-HLS in fMP4: `index.m3u8`, `init.mp4`, `seg{msn}.m4s`,
    /// `part{msn}.{n}.m4s`.
    LowLatency,
    /// Classic HLS in MPEG-TS: `ts/index.m3u8`, `ts/seg{msn}.ts`.
    Ts,
}

/// Frames buffered before output starts (waiting for the other track's
/// configuration): at most this many...
const PREROLL_MAX_FRAMES: usize = 512;
/// ...or this long of the first track.
const PREROLL_MAX: Duration = Duration::from_secs(1);
/// A forward jump in one track's decode time beyond this is a discontinuity.
const MAX_FORWARD_JUMP: Duration = Duration::from_secs(10);
/// Parts are listed for the segments ending within this many target
/// durations of the live edge (RFC 8216bis §6.2.2: remove parts older than
/// three target durations).
const PART_LIST_TARGETS: u64 = 3;

/// One LL-HLS part.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    /// Duration in ticks of the main track's timescale.
    pub(crate) ticks: u64,
    /// Starts with a keyframe (or is audio-only).
    pub(crate) independent: bool,
    /// `moof` + `mdat`, as buffers for vectored writes (empty without fMP4).
    pub(crate) data: Vec<Bytes>,
}

/// One segment, complete or open.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub(crate) msn: u64,
    /// Duration in ticks of `timescale` (the main track's).
    pub(crate) ticks: u64,
    pub(crate) timescale: u32,
    pub(crate) discontinuity: bool,
    pub(crate) program_date_time: SystemTime,
    /// Which initialisation segment its fMP4 needs.
    pub(crate) init_generation: u32,
    pub(crate) parts: Vec<Part>,
    pub(crate) ts: Bytes,
    pub(crate) video_frames: u64,
}

impl Segment {
    pub(crate) fn seconds(&self) -> f64 {
        self.ticks as f64 / f64::from(self.timescale.max(1))
    }

    fn fmp4_len(&self) -> usize {
        self.parts.iter().flat_map(|p| &p.data).map(Bytes::len).sum()
    }
}

/// A completed segment as the packager reports it (for monitoring and
/// tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Media sequence number.
    pub msn: u64,
    /// Duration in ticks of `timescale`.
    pub ticks: u64,
    /// The main track's timescale (90 000 for video, the sample rate for
    /// audio-only streams).
    pub timescale: u32,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Its parts: duration in ticks and whether each starts independently.
    pub parts: Vec<(u64, bool)>,
    /// Bytes of its fMP4 (0 without fMP4).
    pub fmp4_bytes: usize,
    /// Bytes of its MPEG-TS (0 without TS).
    pub ts_bytes: usize,
}

/// One output track.
#[derive(Debug)]
struct Track {
    codec: CodecId,
    config: Bytes,
    timescale: u32,
    /// Index in the fMP4 writer and TS muxer.
    index: usize,
    /// The newest frame, whose duration is known when the next arrives.
    held: Option<MediaFrame>,
    last_dts: Option<i64>,
    last_duration: u32,
    /// Whole seconds added to every timestamp so none is negative.
    offset: i64,
}

impl Track {
    fn timebase(&self) -> Timebase {
        Timebase::sample_rate(self.timescale).unwrap_or(Timebase::MPEG)
    }
}

/// The output of one timeline: tracks, writers and the open segment.
#[derive(Debug)]
struct Generation {
    tracks: Vec<Track>,
    /// Index of the track that defines segment and part durations: video
    /// if any, else audio.
    main: usize,
    main_is_video: bool,
    fmp4: Option<FragmentWriter>,
    ts: Option<TsMuxer>,
    /// Wall clock and main-track decode time of the first frame.
    anchor: Option<(SystemTime, i64)>,
    /// Wall clock when the timeline started: the anchor of frames first
    /// written when it ends.
    started: SystemTime,
    part_target_ticks: u64,
    segment_target_ticks: u64,
    segment_cap_ticks: u64,
    open: Option<OpenSegment>,
}

impl Generation {
    /// True when the open segment, `seg_ticks` long, ends before a main
    /// frame of `next` ticks: video at a keyframe once the target is
    /// reached; audio-only (every frame a sync point) before the frame that
    /// would exceed the target, so segments stay within the target duration;
    /// anything at the cap.
    fn segment_full(&self, seg_ticks: u64, next: u32, sync: bool) -> bool {
        if seg_ticks >= self.segment_cap_ticks {
            return true;
        }
        if !sync {
            return false;
        }
        if self.main_is_video {
            seg_ticks >= self.segment_target_ticks
        } else {
            seg_ticks + u64::from(next) > self.segment_target_ticks
        }
    }

    /// True if a segment of this timeline can start with `frame`: a video
    /// keyframe, or any audio frame when there is no video.
    fn starts_segment(&self, frame: &MediaFrame) -> bool {
        match frame.frame_type() {
            FrameType::Video => self.main_is_video && frame.is_keyframe(),
            FrameType::Audio => !self.main_is_video,
            FrameType::Data => false,
        }
    }
}

#[derive(Debug)]
struct OpenSegment {
    segment: Segment,
    ts: BytesMut,
    part_ticks: u64,
    part_main_frames: usize,
    /// The part's main frames the fMP4 writer took.
    part_written: usize,
    part_independent: bool,
}

/// Counters for the multivariant playlist.
#[derive(Clone, Copy, Debug, Default)]
struct Rates {
    peak_bps: u64,
}

/// Packages one stream: fed [`MediaFrame`]s in bus order, it cuts
/// keyframe-aligned segments and LL-HLS parts, writes fMP4 and MPEG-TS, and
/// renders the playlists.
///
/// # Starting
/// `CONFIG` frames set up the tracks (H.264 or H.265 video, AAC or Opus
/// audio; other codecs are ignored). Output starts at the first video
/// keyframe once the audio configuration is known, or after up to 1 s of
/// frames without the other track's configuration (a video-only or
/// audio-only stream). Frames before the first keyframe are dropped.
///
/// # Segments and parts
/// Durations are measured on the main track (video, else audio) in its
/// exact timescale (90 kHz, or the sample rate). A segment is closed at the
/// first keyframe at or after [`HlsConfig::segment_target`] (for audio-only
/// streams, before the audio frame that would exceed it); a GOP that never ends is cut anyway after
/// 6 × the target (at least 10 s) to bound memory. A part is closed before a
/// frame that would make it longer than [`HlsConfig::part_target`], before
/// every keyframe, and as soon as it reaches the target exactly.
///
/// # Target duration
/// `EXT-X-TARGETDURATION` is max(segment target rounded up, every segment's
/// duration rounded up). It stays constant as long as the GOP fits the
/// segment target; a longer GOP raises it (never lowers it), the only way to
/// keep `EXTINF ≤ EXT-X-TARGETDURATION` true. Configure a segment target of
/// at least the publisher's GOP length.
///
/// # Discontinuities
/// A frame with [`FrameFlags::DISCONTINUITY`], a decode time going back on
/// any track, a jump forward of more than 10 s, or a changed `CONFIG` closes
/// the open segment and starts a new timeline: its first segment carries
/// `EXT-X-DISCONTINUITY` (and a new `EXT-X-MAP` if the tracks changed), and
/// media sequence numbers keep increasing. `EXT-X-DISCONTINUITY-SEQUENCE`
/// counts the discontinuities that left the window.
///
/// A flagged frame that a segment cannot start with (a video frame other
/// than a keyframe, or audio in a stream with video) defers the cut to the
/// next keyframe: a segment after `EXT-X-DISCONTINUITY` must start with one
/// (players reset their decoders there), and cutting at once would drop
/// the frames in between. The kernel's timestamp guard flags the frame
/// where a publisher's clock jumped and has already made the timestamps
/// continue, so until that keyframe the frames stay in the open segment;
/// a jump the guard did not repair (time going back, or forward by more
/// than 10 s) still cuts at once.
///
/// # Window
/// At most [`HlsConfig::window`] completed segments are kept; older ones
/// are deleted (their URIs then answer "gone").
///
/// ```
/// use std::time::SystemTime;
/// use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
/// use arcly_hls::{HlsConfig, Packager, PlaylistKind};
///
/// let mut packager = Packager::new(HlsConfig::default());
/// let now = SystemTime::UNIX_EPOCH;
/// // AAC-LC 48 kHz stereo, 1024-sample frames: an audio-only stream.
/// let config = MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(&[0x11, 0x90]))
///     .with_flags(FrameFlags::CONFIG);
/// packager.push(&config, now);
/// let tb = Timebase::sample_rate(48_000).unwrap();
/// for i in 0..300 {
///     let frame = MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]))
///         .with_timestamps(i * 1024, i * 1024, tb);
///     packager.push(&frame, now);
/// }
/// let playlist = packager.media_playlist(PlaylistKind::LowLatency, false).unwrap();
/// // 93 frames of 1024 samples: the most that fit in 2 s.
/// assert!(playlist.contains("#EXTINF:1.98400,"));
/// assert!(playlist.contains("#EXT-X-PRELOAD-HINT:TYPE=PART"));
/// ```
#[derive(Debug)]
pub struct Packager {
    config: HlsConfig,
    video_config: Option<MediaFrame>,
    audio_config: Option<MediaFrame>,
    /// Frames waiting for output to start.
    preroll: Vec<MediaFrame>,
    generation: Option<Generation>,
    /// Number of the current initialisation segment, and its bytes.
    init_generation: u32,
    init: Option<Bytes>,
    /// Initialisation segments still referenced by the window.
    old_inits: Vec<(u32, Bytes)>,
    /// The track layout of the current init (codec, config) for reuse.
    init_key: Vec<(CodecId, Bytes)>,
    segments: VecDeque<Segment>,
    next_msn: u64,
    discontinuity_sequence: u64,
    /// The next segment starts a new timeline.
    pending_discontinuity: bool,
    /// A frame flagged `DISCONTINUITY` came mid-GOP: the timeline restarts
    /// at the next frame a segment can start with.
    discontinuity_at_sync: bool,
    target_duration: u64,
    rates: Rates,
    /// The codecs, resolution of the current generation.
    codecs: Vec<String>,
    resolution: Option<(u32, u32)>,
    /// Bumped whenever a part or segment is completed.
    version: u64,
    /// [`finish`](Packager::finish) was called and no frame came since:
    /// playlists end with `EXT-X-ENDLIST`.
    ended: bool,
}

impl Packager {
    /// A packager; `config` is [sanitized](HlsConfig::sanitized).
    pub fn new(config: HlsConfig) -> Self {
        let config = config.sanitized();
        let target_duration = config.segment_target.as_secs() + u64::from(config.segment_target.subsec_nanos() > 0);
        Self {
            config,
            video_config: None,
            audio_config: None,
            preroll: Vec::new(),
            generation: None,
            init_generation: 0,
            init: None,
            old_inits: Vec::new(),
            init_key: Vec::new(),
            segments: VecDeque::new(),
            next_msn: 0,
            discontinuity_sequence: 0,
            pending_discontinuity: false,
            discontinuity_at_sync: false,
            target_duration: target_duration.max(1),
            rates: Rates::default(),
            codecs: Vec::new(),
            resolution: None,
            version: 0,
            ended: false,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    /// A counter bumped whenever a part or a segment is completed (for
    /// waiters).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Adds one frame; `now` is the wall clock, used for
    /// `EXT-X-PROGRAM-DATE-TIME` of the first segment of each timeline
    /// (later segments follow from the media timestamps). Never panics:
    /// frames that cannot be packaged are dropped and logged.
    pub fn push(&mut self, frame: &MediaFrame, now: SystemTime) {
        self.ended = false;
        if let Some(g) = &self.generation {
            let sync = frame.is_config() || g.starts_segment(frame);
            if frame.flags.contains(FrameFlags::DISCONTINUITY) {
                if sync {
                    self.restart();
                } else {
                    // Mid-GOP: a timeline started there could only begin at
                    // the next keyframe, losing the frames in between.
                    self.discontinuity_at_sync = true;
                }
            } else if self.discontinuity_at_sync && sync {
                self.restart();
            }
        }
        if frame.is_config() {
            self.on_config(frame);
            return;
        }
        if !matches!(frame.codec, CodecId::H264 | CodecId::H265 | CodecId::Aac | CodecId::Opus) {
            return;
        }
        if self.generation.is_some() {
            self.feed(frame, now);
        } else {
            self.preroll_push(frame, now);
        }
    }

    /// The publisher's timeline ended (a publisher left; the next frames, if
    /// any, belong to a new one): the open segment is completed and the next
    /// segment starts with `EXT-X-DISCONTINUITY`.
    pub fn discontinuity(&mut self) {
        self.restart();
    }

    /// End of stream: completes the open segment, so every frame received is
    /// in a segment, and ends the playlists with `EXT-X-ENDLIST` (until a
    /// frame arrives again: a republish continues them).
    pub fn finish(&mut self) {
        self.restart();
        self.ended = true;
        self.version += 1;
    }

    fn on_config(&mut self, frame: &MediaFrame) {
        let slot = match frame.frame_type() {
            FrameType::Video if matches!(frame.codec, CodecId::H264 | CodecId::H265) => &mut self.video_config,
            FrameType::Audio if matches!(frame.codec, CodecId::Aac | CodecId::Opus) => &mut self.audio_config,
            _ => return,
        };
        if slot.as_ref().is_some_and(|c| c.codec == frame.codec && c.payload == frame.payload) {
            return;
        }
        if let Err(e) = TrackConfig::from_config_frame(frame) {
            // A configuration nothing can be built from is ignored: the
            // stream goes on with the one in force.
            tracing::debug!(codec = %frame.codec, error = %e, "hls: configuration refused");
            return;
        }
        let mut config = frame.clone();
        config.flags = FrameFlags::CONFIG;
        *slot = Some(config);
        if let Some(g) = &self.generation {
            // A configuration change (or a track appearing) mid-stream needs
            // a new initialisation segment: a new timeline.
            let known = g.tracks.iter().any(|t| t.codec.frame_type() == frame.frame_type());
            let same = g.tracks.iter().any(|t| t.codec == frame.codec && t.config == frame.payload);
            if known && !same {
                self.restart();
            }
        }
    }

    /// Closes the current timeline; the next frames start a new one.
    fn restart(&mut self) {
        self.discontinuity_at_sync = false;
        let had = self.generation.is_some() || !self.segments.is_empty();
        self.close_generation();
        self.preroll.clear();
        if had {
            self.pending_discontinuity = true;
        }
    }

    fn preroll_push(&mut self, frame: &MediaFrame, now: SystemTime) {
        let has_config = match frame.frame_type() {
            FrameType::Video => self.video_config.as_ref().is_some_and(|c| c.codec == frame.codec),
            FrameType::Audio => self.audio_config.as_ref().is_some_and(|c| c.codec == frame.codec),
            FrameType::Data => false,
        };
        if !has_config {
            return;
        }
        // Video starts at a keyframe.
        if frame.frame_type() == FrameType::Video
            && !frame.is_keyframe()
            && !self.preroll.iter().any(|f| f.frame_type() == FrameType::Video)
        {
            return;
        }
        if self.preroll.len() >= PREROLL_MAX_FRAMES {
            self.preroll.remove(0);
        }
        self.preroll.push(frame.clone());
        let have_video = self.preroll.iter().any(|f| f.frame_type() == FrameType::Video);
        let have_audio = self.preroll.iter().any(|f| f.frame_type() == FrameType::Audio);
        let span = |ty: FrameType| -> Duration {
            let mut it = self.preroll.iter().filter(|f| f.frame_type() == ty);
            let (Some(first), Some(last)) = (it.next(), self.preroll.iter().rev().find(|f| f.frame_type() == ty))
            else {
                return Duration::ZERO;
            };
            let micros = last.dts_in(Timebase::MICROS).saturating_sub(first.dts_in(Timebase::MICROS));
            Duration::from_micros(u64::try_from(micros).unwrap_or(0))
        };
        let waited = span(FrameType::Video).max(span(FrameType::Audio)) >= PREROLL_MAX
            || self.preroll.len() >= PREROLL_MAX_FRAMES;
        if (have_video && have_audio) || waited {
            self.start(now);
        }
    }

    /// Starts a timeline with the tracks seen in the preroll.
    fn start(&mut self, now: SystemTime) {
        let mut preroll = std::mem::take(&mut self.preroll);
        let has_video = preroll.iter().any(|f| f.frame_type() == FrameType::Video);
        let has_audio = preroll.iter().any(|f| f.frame_type() == FrameType::Audio);
        let mut configs = Vec::new();
        if has_video && let Some(c) = &self.video_config {
            configs.push(c.clone());
        }
        if has_audio && let Some(c) = &self.audio_config {
            configs.push(c.clone());
        }
        // Drop video before the first keyframe, and audio more than a second
        // before it.
        if let Some(k) = preroll.iter().position(|f| f.frame_type() == FrameType::Video && f.is_keyframe()) {
            let key_us = preroll[k].dts_in(Timebase::MICROS);
            let mut i = 0;
            preroll.retain(|f| {
                i += 1;
                match f.frame_type() {
                    FrameType::Video => i > k,
                    _ => f.dts_in(Timebase::MICROS) >= key_us.saturating_sub(1_000_000),
                }
            });
        }
        let Some(generation) = self.build_generation(&configs, &preroll, now) else {
            tracing::debug!("hls: could not set up tracks; waiting for new configuration");
            return;
        };
        self.generation = Some(generation);
        for frame in &preroll {
            self.feed(frame, now);
        }
    }

    fn build_generation(
        &mut self,
        configs: &[MediaFrame],
        preroll: &[MediaFrame],
        now: SystemTime,
    ) -> Option<Generation> {
        let mut tracks = Vec::new();
        let mut fmp4_tracks = Vec::new();
        let mut ts_tracks = Vec::new();
        let mut codecs = Vec::new();
        let mut resolution = None;
        for config in configs {
            let Ok(track) = TrackConfig::from_config_frame(config) else {
                tracing::debug!(codec = %config.codec, "hls: configuration does not parse; track skipped");
                continue;
            };
            if track.is_video() {
                resolution = Some((track.width(), track.height()));
            }
            codecs.extend(codec_string(config.codec, &config.payload));
            tracks.push(Track {
                codec: config.codec,
                config: config.payload.clone(),
                timescale: track.timescale(),
                index: tracks.len(),
                held: None,
                last_dts: None,
                last_duration: 0,
                offset: 0,
            });
            ts_tracks.push(TrackSpec::new(config.codec, Some(config.payload.clone())));
            fmp4_tracks.push(track);
        }
        if tracks.is_empty() {
            return None;
        }
        let ts = if self.config.ts {
            match TsMuxer::new(&ts_tracks) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::debug!(error = %e, "hls: MPEG-TS muxer refused the tracks");
                    return None;
                }
            }
        } else {
            None
        };
        let fmp4 = self.config.fmp4.then(|| FragmentWriter::new(&fmp4_tracks));
        // A new initialisation segment only when the tracks changed.
        let key: Vec<(CodecId, Bytes)> = tracks.iter().map(|t| (t.codec, t.config.clone())).collect();
        if let Some(w) = &fmp4
            && (self.init.is_none() || key != self.init_key)
        {
            if let Some(old) = self.init.take() {
                self.old_inits.push((self.init_generation, old));
                self.init_generation += 1;
            }
            self.init = Some(w.init_segment());
            self.init_key = key;
        }
        self.codecs = codecs;
        self.resolution = resolution;
        // Whole seconds so that no timestamp is negative, exact in every
        // timescale.
        let min_us = preroll.iter().map(|f| f.dts_in(Timebase::MICROS).min(f.pts_in(Timebase::MICROS))).min();
        let offset_s = min_us.filter(|&m| m < 0).map_or(0, |m| (-m).saturating_add(999_999) / 1_000_000);
        for t in &mut tracks {
            t.offset = offset_s.saturating_mul(i64::from(t.timescale));
        }
        let main = tracks.iter().position(|t| t.codec.frame_type() == FrameType::Video).unwrap_or(0);
        let main_is_video = tracks[main].codec.frame_type() == FrameType::Video;
        let ts_main = u128::from(tracks[main].timescale);
        let ticks = |d: Duration| u64::try_from(d.as_nanos() * ts_main / 1_000_000_000).unwrap_or(u64::MAX);
        let segment_target_ticks = ticks(self.config.segment_target);
        Some(Generation {
            main,
            main_is_video,
            fmp4,
            ts,
            anchor: None,
            started: now,
            part_target_ticks: ticks(self.config.part_target).max(1),
            segment_target_ticks,
            segment_cap_ticks: ticks((self.config.segment_target * 6).max(Duration::from_secs(10))),
            open: None,
            tracks,
        })
    }

    /// Feeds a frame to the running timeline.
    fn feed(&mut self, frame: &MediaFrame, now: SystemTime) {
        let Some(g) = self.generation.as_mut() else { return };
        let Some(ti) = g.tracks.iter().position(|t| t.codec == frame.codec) else { return };
        let track = &mut g.tracks[ti];
        let tb = track.timebase();
        let mut f = frame.clone();
        f.dts = frame.dts_in(tb).saturating_add(track.offset);
        f.pts = frame.pts_in(tb).saturating_add(track.offset);
        f.duration = u32::try_from(frame.timebase.rescale(i64::from(frame.duration), tb)).unwrap_or(0);
        f.timebase = tb;
        f.track = 0;
        f.flags = frame.flags;
        let jump = i64::try_from(MAX_FORWARD_JUMP.as_secs()).unwrap_or(10).saturating_mul(i64::from(track.timescale));
        let broken = f.dts < 0
            || track.last_dts.is_some_and(|last| f.dts < last || f.dts.saturating_sub(last) > jump)
            || (f.frame_type() == FrameType::Video && track.last_dts.is_none() && !f.is_keyframe());
        if broken {
            if track.last_dts.is_none() {
                // Video that does not start with a keyframe: wait for one.
                return;
            }
            tracing::debug!(dts = f.dts, last = ?track.last_dts, "hls: timestamps jumped; discontinuity");
            self.restart();
            self.preroll_push(frame, now);
            return;
        }
        track.last_dts = Some(f.dts);
        let released = match track.held.replace(f.clone()) {
            Some(mut h) => {
                let d = u32::try_from(f.dts - h.dts).unwrap_or(u32::MAX);
                h.duration = d;
                track.last_duration = d;
                Some(h)
            }
            None => None,
        };
        if let Some(h) = released {
            self.release(ti, h, now);
            self.cut_ahead(ti, &f);
        }
    }

    /// Cuts before `next` (a frame of track `ti` just received, its duration
    /// not known yet) when the cut is already certain, so that a part or
    /// segment is complete one frame sooner: before a keyframe, or when the
    /// part cannot take a frame as long as the previous one.
    fn cut_ahead(&mut self, ti: usize, next: &MediaFrame) {
        let Some(g) = self.generation.as_ref() else { return };
        let Some(open) = g.open.as_ref() else { return };
        if ti != g.main || open.segment.ticks == 0 {
            return;
        }
        let sync = next.is_keyframe() || !g.main_is_video;
        let seg_ticks = open.segment.ticks;
        if g.segment_full(seg_ticks, g.tracks[ti].last_duration, sync) {
            self.close_segment();
        } else if open.part_main_frames == 0 {
        } else if (sync && g.main_is_video)
            || open.part_ticks + u64::from(g.tracks[ti].last_duration) > g.part_target_ticks
        {
            self.close_part();
        }
    }

    /// Writes a frame whose duration is known.
    fn release(&mut self, ti: usize, frame: MediaFrame, now: SystemTime) {
        let Some(g) = self.generation.as_mut() else { return };
        let is_main = ti == g.main;
        let sync = frame.is_keyframe() || !g.main_is_video;
        if is_main && let Some(open) = &g.open {
            let seg_ticks = open.segment.ticks;
            let cut_segment = seg_ticks > 0 && g.segment_full(seg_ticks, frame.duration, sync);
            if cut_segment {
                self.close_segment();
            } else if open.part_main_frames > 0
                && (open.part_ticks + u64::from(frame.duration) > g.part_target_ticks || (sync && g.main_is_video))
            {
                self.close_part();
            }
        }
        let Some(g) = self.generation.as_mut() else { return };
        if g.anchor.is_none() {
            let main_dts = if is_main {
                frame.dts
            } else {
                // Express this frame's time on the main track's timescale.
                frame.timebase.rescale(frame.dts, g.tracks[g.main].timebase())
            };
            g.anchor = Some((now, main_dts));
        }
        if g.open.is_none() {
            let (anchor_time, anchor_dts) = g.anchor.unwrap_or((now, 0));
            let main_tb = g.tracks[g.main].timebase();
            let start = frame.timebase.rescale(frame.dts, main_tb);
            let since = start.saturating_sub(anchor_dts).max(0);
            let nanos = main_tb.rescale(since, Timebase::NANOS);
            let pdt = anchor_time + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
            let mut ts = BytesMut::new();
            if let Some(mux) = g.ts.as_mut()
                && !(frame.frame_type() == FrameType::Video && frame.is_keyframe())
            {
                mux.write_psi(&mut ts);
            }
            g.open = Some(OpenSegment {
                segment: Segment {
                    msn: self.next_msn,
                    ticks: 0,
                    timescale: g.tracks[g.main].timescale,
                    discontinuity: std::mem::take(&mut self.pending_discontinuity),
                    program_date_time: pdt,
                    init_generation: self.init_generation,
                    parts: Vec::new(),
                    ts: Bytes::new(),
                    video_frames: 0,
                },
                ts,
                part_ticks: 0,
                part_main_frames: 0,
                part_written: 0,
                part_independent: false,
            });
        }
        let index = g.tracks[ti].index;
        let written = match g.fmp4.as_mut().map(|w| w.push(index, &frame)) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "hls: fMP4 writer dropped a frame");
                false
            }
            None => false,
        };
        let Some(open) = g.open.as_mut() else { return };
        if let Some(mux) = g.ts.as_mut()
            && let Err(e) = mux.write_frame(&frame, &mut open.ts)
        {
            tracing::debug!(error = %e, "hls: MPEG-TS muxer dropped a frame");
            // A segment opened by a keyframe gets its PAT and PMT with that
            // frame; if the muxer refused it, write them now, so that the
            // segment is a TS file even if no frame of it gets written.
            if open.ts.is_empty() {
                mux.write_psi(&mut open.ts);
            }
        }
        if frame.frame_type() == FrameType::Video {
            open.segment.video_frames += 1;
        }
        if is_main {
            if open.part_main_frames == 0 {
                open.part_independent = sync;
            }
            open.part_main_frames += 1;
            open.part_written += usize::from(written);
            open.part_ticks += u64::from(frame.duration);
            open.segment.ticks += u64::from(frame.duration);
            if open.part_ticks >= g.part_target_ticks {
                self.close_part();
            }
        }
    }

    fn close_part(&mut self) {
        self.close_part_with(false);
    }

    /// Completes the open part. With fMP4 a part is the fragment written
    /// for it, so it never goes out empty: while the writer holds back the
    /// part's frames (a frame's duration comes from the next frame's decode
    /// time, and a zero duration, from a repeated one, is not known yet) the
    /// part stays open and takes the next frames too; a part of frames the
    /// writer refused is dropped. `finishing` (the timeline ends) writes
    /// the held-back frames too.
    fn close_part_with(&mut self, finishing: bool) {
        let Some(g) = self.generation.as_mut() else { return };
        let Some(open) = g.open.as_mut() else { return };
        let data = match g.fmp4.as_mut() {
            Some(w) if open.part_main_frames == 0 && w.pending_samples(0) == 0 => return,
            Some(w) if finishing => w.finish_parts(),
            Some(w) => w.flush_fragment_parts(),
            // MPEG-TS only: a part is the main frames' duration.
            None if open.part_main_frames > 0 => Vec::new(),
            None => return,
        };
        if data.is_empty() && g.fmp4.is_some() {
            if open.part_written == 0 {
                open.part_ticks = 0;
                open.part_main_frames = 0;
                open.part_independent = false;
            }
            return;
        }
        open.segment.parts.push(Part { ticks: open.part_ticks, independent: open.part_independent, data });
        open.part_ticks = 0;
        open.part_main_frames = 0;
        open.part_written = 0;
        open.part_independent = false;
        self.version += 1;
    }

    fn close_segment(&mut self) {
        self.close_segment_with(false);
    }

    /// Completes the open segment, unless its last part is still held back
    /// (see [`close_part_with`](Self::close_part_with)): then the segment
    /// goes on until those frames are written.
    fn close_segment_with(&mut self, finishing: bool) {
        self.close_part_with(finishing);
        let Some(g) = self.generation.as_mut() else { return };
        if g.open.as_ref().is_some_and(|o| o.part_main_frames > 0) {
            return;
        }
        let Some(open) = g.open.take() else { return };
        let mut segment = open.segment;
        if segment.parts.is_empty() {
            return;
        }
        segment.ts = open.ts.freeze();
        let seconds = segment.seconds();
        // RFC 8216: EXTINF rounded to the nearest integer must not exceed
        // the target duration; rounding (not ceil) keeps 2.002 s segments
        // (29.97 fps, 2 s GOP) from raising a 2 s target mid-stream.
        self.target_duration = self.target_duration.max(seconds.round() as u64);
        let len = if self.config.fmp4 { segment.fmp4_len() } else { segment.ts.len() };
        if seconds > 0.0 {
            self.rates.peak_bps = self.rates.peak_bps.max((len as f64 * 8.0 / seconds).ceil() as u64);
        }
        self.next_msn = segment.msn + 1;
        self.segments.push_back(segment);
        while self.segments.len() > self.config.window {
            if let Some(old) = self.segments.pop_front()
                && old.discontinuity
            {
                self.discontinuity_sequence += 1;
            }
        }
        let oldest = self.segments.front().map_or(self.init_generation, |s| s.init_generation);
        self.old_inits.retain(|(g, _)| *g >= oldest);
        self.version += 1;
    }

    /// Writes held frames (with their own or their predecessor's duration)
    /// and completes the open segment; drops the timeline.
    fn close_generation(&mut self) {
        let Some(g) = self.generation.as_mut() else { return };
        let mut held: Vec<(usize, MediaFrame)> = Vec::new();
        for (i, t) in g.tracks.iter_mut().enumerate() {
            if let Some(mut f) = t.held.take() {
                if f.duration == 0 {
                    f.duration = t.last_duration;
                }
                held.push((i, f));
            }
        }
        // Main track last, so its frame does not open a part after audio.
        held.sort_by_key(|(i, _)| usize::from(Some(*i) == self.generation.as_ref().map(|g| g.main)));
        let now = self.generation.as_ref().map_or(SystemTime::UNIX_EPOCH, |g| g.anchor.map_or(g.started, |a| a.0));
        for (i, f) in held {
            self.release(i, f, now);
        }
        self.close_segment_with(true);
        self.generation = None;
    }

    /// The media sequence number of the first segment listed.
    pub fn media_sequence(&self) -> u64 {
        self.segments.front().map_or(self.next_msn, |s| s.msn)
    }

    /// The media sequence number the next completed segment will have (the
    /// open segment's).
    pub fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// `EXT-X-TARGETDURATION`, in seconds.
    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// The completed segments in the window, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| SegmentInfo {
                msn: s.msn,
                ticks: s.ticks,
                timescale: s.timescale,
                discontinuity: s.discontinuity,
                parts: s.parts.iter().map(|p| (p.ticks, p.independent)).collect(),
                fmp4_bytes: s.fmp4_len(),
                ts_bytes: s.ts.len(),
            })
            .collect()
    }

    /// True once segment `msn` is complete (or already deleted).
    pub fn has_segment(&self, msn: u64) -> bool {
        msn < self.next_msn
    }

    /// True once part `part` of segment `msn` is complete (or the whole
    /// segment is).
    pub fn has_part(&self, msn: u64, part: u64) -> bool {
        if msn < self.next_msn {
            // A completed segment has all its parts; asking for a part
            // beyond its last means the next segment's first (RFC 8216bis
            // §6.2.5.2 treats that as available once the segment is done).
            return true;
        }
        msn == self.next_msn && self.open_parts().is_some_and(|parts| (part as usize) < parts.len())
    }

    fn open_parts(&self) -> Option<&[Part]> {
        self.generation.as_ref()?.open.as_ref().map(|o| &o.segment.parts[..])
    }

    fn open_segment(&self) -> Option<&Segment> {
        self.generation.as_ref()?.open.as_ref().map(|o| &o.segment)
    }

    /// The next part to be written, as (msn, part index): the preload hint.
    pub fn next_part(&self) -> (u64, u64) {
        (self.next_msn, self.open_parts().map_or(0, |p| p.len() as u64))
    }

    /// True once output has started (a segment or part exists).
    pub fn is_started(&self) -> bool {
        !self.segments.is_empty() || self.open_parts().is_some_and(|p| !p.is_empty())
    }

    /// The current fMP4 initialisation segment (`init.mp4`), once output
    /// started with fMP4 enabled.
    pub fn init_segment(&self) -> Option<Bytes> {
        self.init.clone()
    }

    /// The name of initialisation segment `generation`: `init.mp4` for the
    /// first, `init{generation}.mp4` after a republish with other tracks.
    pub fn init_name(generation: u32) -> String {
        if generation == 0 { "init.mp4".to_owned() } else { format!("init{generation}.mp4") }
    }

    /// An initialisation segment by name (`init.mp4`, `init{n}.mp4`):
    /// `Ok(None)` if it is not written yet, `Err(())` if deleted or unknown.
    pub(crate) fn init_by_name(&self, name: &str) -> Lookup<Bytes> {
        let generation = if name == "init.mp4" {
            0
        } else {
            match name.strip_prefix("init").and_then(|r| r.strip_suffix(".mp4")).and_then(|n| n.parse::<u32>().ok()) {
                Some(n) => n,
                None => return Lookup::Unknown,
            }
        };
        if generation == self.init_generation {
            return self.init.clone().map_or(Lookup::NotYet, Lookup::Found);
        }
        if generation > self.init_generation {
            return Lookup::NotYet;
        }
        self.old_inits.iter().find(|(g, _)| *g == generation).map_or(Lookup::Gone, |(_, b)| Lookup::Found(b.clone()))
    }

    /// A complete segment by name (`seg{msn}.m4s`, or `seg{msn}.ts` for
    /// [`PlaylistKind::Ts`]; a `ts/` prefix is accepted), as buffers for a
    /// vectored write.
    pub fn segment(&self, kind: PlaylistKind, name: &str) -> Option<Vec<Bytes>> {
        match self.segment_lookup(kind, name) {
            Lookup::Found(b) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn segment_lookup(&self, kind: PlaylistKind, name: &str) -> Lookup<Vec<Bytes>> {
        let name = name.strip_prefix("ts/").unwrap_or(name);
        if kind == PlaylistKind::LowLatency && name.starts_with("init") {
            return self.init_by_name(name).map(|b| vec![b]);
        }
        let ext = if kind == PlaylistKind::Ts { ".ts" } else { ".m4s" };
        let Some(msn) = name.strip_prefix("seg").and_then(|r| r.strip_suffix(ext)).and_then(|n| n.parse::<u64>().ok())
        else {
            return Lookup::Unknown;
        };
        if (kind == PlaylistKind::Ts && !self.config.ts) || (kind == PlaylistKind::LowLatency && !self.config.fmp4) {
            return Lookup::Unknown;
        }
        if msn >= self.next_msn {
            return Lookup::NotYet;
        }
        match self.segments.iter().find(|s| s.msn == msn) {
            Some(s) if kind == PlaylistKind::Ts => Lookup::Found(vec![s.ts.clone()]),
            Some(s) => Lookup::Found(s.parts.iter().flat_map(|p| p.data.iter().cloned()).collect()),
            None => Lookup::Gone,
        }
    }

    /// A part by name (`part{msn}.{n}.m4s`), as buffers for a vectored
    /// write; `None` if it does not exist (yet, or any more).
    pub fn part(&self, name: &str) -> Option<Vec<Bytes>> {
        match self.part_lookup(name) {
            Lookup::Found(b) => Some(b),
            _ => None,
        }
    }

    /// Parses `part{msn}.{n}.m4s`.
    pub(crate) fn parse_part_name(name: &str) -> Option<(u64, u64)> {
        let (msn, n) = name.strip_prefix("part")?.strip_suffix(".m4s")?.split_once('.')?;
        Some((msn.parse().ok()?, n.parse().ok()?))
    }

    pub(crate) fn part_lookup(&self, name: &str) -> Lookup<Vec<Bytes>> {
        let Some((msn, n)) = Self::parse_part_name(name) else { return Lookup::Unknown };
        if !self.config.fmp4 {
            return Lookup::Unknown;
        }
        let parts = if msn == self.next_msn {
            match self.open_parts() {
                Some(p) => p,
                None => return Lookup::NotYet,
            }
        } else if msn > self.next_msn {
            return Lookup::NotYet;
        } else {
            match self.segments.iter().find(|s| s.msn == msn) {
                Some(s) => &s.parts[..],
                None => return Lookup::Gone,
            }
        };
        match parts.get(usize::try_from(n).unwrap_or(usize::MAX)) {
            Some(p) => Lookup::Found(p.data.clone()),
            None if msn == self.next_msn => Lookup::NotYet,
            None => Lookup::Unknown,
        }
    }

    /// The media playlist of `kind` (`None` before the first segment or
    /// part, or when that format is disabled). `skip` asks for a delta
    /// update (`_HLS_skip=YES`, LL-HLS only).
    pub fn media_playlist(&self, kind: PlaylistKind, skip: bool) -> Option<String> {
        let enabled = match kind {
            PlaylistKind::LowLatency => self.config.fmp4,
            PlaylistKind::Ts => self.config.ts,
        };
        if !enabled || !self.is_started() {
            return None;
        }
        let view = playlist::MediaView {
            kind,
            target_duration: self.target_duration,
            part_target: self.config.part_target,
            media_sequence: self.media_sequence(),
            discontinuity_sequence: self.discontinuity_sequence,
            segments: self.segments.iter().collect(),
            open: self.open_segment(),
            next_part: self.next_part(),
            part_list_seconds: (PART_LIST_TARGETS * self.target_duration) as f64,
            skip,
            ended: self.ended,
        };
        Some(playlist::media(&view))
    }

    /// The multivariant playlist: one variant, the LL-HLS playlist
    /// (`index.m3u8`), or `ts/index.m3u8` when fMP4 is disabled. `None`
    /// before the first complete segment (BANDWIDTH is measured).
    pub fn multivariant(&self) -> Option<String> {
        if self.segments.is_empty() {
            return None;
        }
        let fmp4 = self.config.fmp4;
        let (bytes, seconds) = self.segments.iter().fold((0usize, 0f64), |(b, s), seg| {
            (b + if fmp4 { seg.fmp4_len() } else { seg.ts.len() }, s + seg.seconds())
        });
        let average = if seconds > 0.0 { (bytes as f64 * 8.0 / seconds).ceil() as u64 } else { 0 };
        let video_frames: u64 = self.segments.iter().map(|s| s.video_frames).sum();
        let frame_rate = (video_frames > 0 && seconds > 0.0).then(|| video_frames as f64 / seconds);
        Some(playlist::multivariant(&playlist::Variant {
            uri: if fmp4 { "index.m3u8" } else { "ts/index.m3u8" },
            bandwidth: self.rates.peak_bps.max(average),
            average_bandwidth: average,
            codecs: self.codecs.join(","),
            resolution: self.resolution.filter(|&(w, h)| w > 0 && h > 0),
            frame_rate,
        }))
    }
}

/// The result of looking up a resource by name.
#[derive(Debug)]
pub(crate) enum Lookup<T> {
    Found(T),
    /// Not written yet (may come).
    NotYet,
    /// Deleted from the window.
    Gone,
    /// Not a name this packager would write.
    Unknown,
}

impl<T> Lookup<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Lookup<U> {
        match self {
            Lookup::Found(t) => Lookup::Found(f(t)),
            Lookup::NotYet => Lookup::NotYet,
            Lookup::Gone => Lookup::Gone,
            Lookup::Unknown => Lookup::Unknown,
        }
    }
}
