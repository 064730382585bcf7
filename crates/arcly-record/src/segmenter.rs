//! The sans-IO part of a recording: frames in, file operations out. No
//! clock (the wall clock comes in as an argument), no storage.

use std::time::{Duration, SystemTime};

use arcly_core::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use arcly_mux::fmp4::{FragmentWriter, TrackConfig};
use arcly_mux::ts::{TrackSpec, TsMuxer};
use bytes::{Bytes, BytesMut};

use crate::config::{RecordConfig, RecordFormat};

/// Frames kept while an audio stream waits to see whether video follows.
const PREROLL_MAX_FRAMES: usize = 256;
/// ...and at most this long of audio.
const PREROLL_MAX: Duration = Duration::from_secs(1);
/// A forward jump in one track's decode time beyond this starts a new file.
const MAX_FORWARD_JUMP_SECS: i64 = 10;

/// What the storage side does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Open a new file and write `head` (the fMP4 initialisation segment;
    /// empty for TS) into it.
    Open {
        head: Bytes,
        /// The wall-clock time of its first frame.
        start: SystemTime,
        /// It starts a new timeline.
        discontinuity: bool,
    },
    /// Append one fragment (fMP4 `moof` + `mdat`) or chunk (TS packets)
    /// with one write.
    Append {
        parts: Vec<Bytes>,
        /// The file's media duration in seconds once it is written.
        seconds: f64,
    },
    /// Close the open file.
    Close {
        /// Its media duration in seconds.
        seconds: f64,
    },
}

/// One track of the open file.
#[derive(Debug)]
struct Track {
    codec: CodecId,
    timebase: Timebase,
    /// The newest frame: its duration is known when the next one arrives.
    held: Option<MediaFrame>,
    last_dts: Option<i64>,
    last_duration: u32,
}

#[derive(Debug)]
enum Mux {
    Fmp4(FragmentWriter),
    Ts(TsMuxer, BytesMut),
}

#[derive(Debug)]
struct OpenFile {
    /// The configuration frames the file was set up with.
    configs: Vec<MediaFrame>,
    tracks: Vec<Track>,
    /// The track durations and cuts are measured on: video if any.
    main: usize,
    main_is_video: bool,
    mux: Mux,
    /// Main-track ticks written, in total and since the last fragment.
    ticks: u64,
    fragment_ticks: u64,
    max_ticks: u64,
    fragment_target: u64,
    /// Bytes handed out in steps, and payload bytes waiting in the muxer.
    bytes: u64,
    pending_bytes: u64,
}

impl OpenFile {
    /// Main-track media written, in seconds.
    fn seconds(&self) -> f64 {
        self.ticks as f64 / f64::from(self.tracks[self.main].timebase.den().max(1))
    }
}

/// Cuts one stream into files: fed bus frames in order, it returns the
/// [`Step`]s that write them. See [`RecordingSink`](crate::RecordingSink)
/// for the rules.
#[derive(Debug)]
pub(crate) struct Segmenter {
    config: RecordConfig,
    video_config: Option<MediaFrame>,
    audio_config: Option<MediaFrame>,
    /// Audio waiting to learn whether the stream has video.
    preroll: Vec<MediaFrame>,
    file: Option<OpenFile>,
    /// The next file starts a new timeline.
    discontinuity: bool,
    /// Whole seconds added to every timestamp of this timeline, so none is
    /// negative; chosen when a timeline's first file opens.
    offset_secs: Option<i64>,
    /// Frames dropped because the muxer refused them.
    refused: u64,
}

impl Segmenter {
    pub(crate) fn new(config: RecordConfig) -> Self {
        Self {
            config: config.sanitized(),
            video_config: None,
            audio_config: None,
            preroll: Vec::new(),
            file: None,
            discontinuity: false,
            offset_secs: None,
            refused: 0,
        }
    }

    /// True while a file is open.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Frames the muxer refused so far (malformed payloads).
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }

    fn supported(&self, codec: CodecId) -> bool {
        match self.config.format {
            RecordFormat::Fmp4 => {
                matches!(
                    codec,
                    CodecId::H264 | CodecId::H265 | CodecId::Av1 | CodecId::Vp9 | CodecId::Aac | CodecId::Opus
                )
            }
            RecordFormat::Ts => matches!(codec, CodecId::H264 | CodecId::H265 | CodecId::Aac | CodecId::Opus),
        }
    }

    /// Adds one frame (in bus order); appends the resulting steps to `out`.
    pub(crate) fn push(&mut self, frame: &MediaFrame, now: SystemTime, out: &mut Vec<Step>) {
        if frame.flags.contains(FrameFlags::DISCONTINUITY) {
            // A new publisher: a new timeline, in a new file.
            self.new_timeline(out);
        }
        if frame.is_config() {
            self.on_config(frame, out);
            return;
        }
        if frame.frame_type() == FrameType::Data || !self.supported(frame.codec) {
            return;
        }
        if self.file.is_none() && !self.start(frame, now, out) {
            return;
        }
        self.feed(frame, now, out);
    }

    /// Frames were lost (the recorder fell behind): the open file ends and
    /// the next one, from the next keyframe, starts a new timeline.
    pub(crate) fn gap(&mut self, out: &mut Vec<Step>) {
        if self.file.is_some() {
            self.close(out);
            self.discontinuity = true;
        }
        self.preroll.clear();
    }

    /// End of stream: writes every frame held and closes the open file.
    pub(crate) fn finish(&mut self, out: &mut Vec<Step>) {
        self.close(out);
        self.preroll.clear();
    }

    fn new_timeline(&mut self, out: &mut Vec<Step>) {
        if self.file.is_some() {
            self.close(out);
            self.discontinuity = true;
        }
        self.offset_secs = None;
        self.preroll.clear();
    }

    fn on_config(&mut self, frame: &MediaFrame, out: &mut Vec<Step>) {
        if !self.supported(frame.codec) {
            return;
        }
        let slot = match frame.frame_type() {
            FrameType::Video => &self.video_config,
            FrameType::Audio => &self.audio_config,
            FrameType::Data => return,
        };
        if slot.as_ref().is_some_and(|c| c.codec == frame.codec && c.payload == frame.payload) {
            return;
        }
        let usable = match self.config.format {
            RecordFormat::Fmp4 => TrackConfig::from_config_frame(frame).map(drop),
            RecordFormat::Ts => TsMuxer::new(&[TrackSpec::new(frame.codec, Some(frame.payload.clone()))]).map(drop),
        };
        if let Err(e) = usable {
            // Nothing can be set up from it: go on with the configuration
            // in force.
            tracing::debug!(codec = %frame.codec, error = %e, "record: configuration refused");
            return;
        }
        let mut config = frame.clone();
        config.flags = FrameFlags::CONFIG;
        let ty = frame.frame_type();
        match ty {
            FrameType::Video => self.video_config = Some(config),
            _ => self.audio_config = Some(config),
        }
        if let Some(file) = &self.file {
            // A changed configuration, or a track appearing, needs a new
            // initialisation segment (and PMT): a new file.
            let same = file.configs.iter().any(|c| c.codec == frame.codec && c.payload == frame.payload);
            if !same {
                tracing::debug!(codec = %frame.codec, "record: configuration changed; new file");
                self.close(out);
                self.discontinuity = true;
            }
        }
        if ty == FrameType::Video {
            // Audio waiting for a verdict: there is video, so the file
            // starts at its first keyframe.
            self.preroll.clear();
        }
    }

    /// Tries to open a file starting with `frame`. True if `frame` is now to
    /// be fed; false if it was dropped or kept in the preroll.
    fn start(&mut self, frame: &MediaFrame, now: SystemTime, out: &mut Vec<Step>) -> bool {
        let video = self.video_config.clone();
        let audio = self.audio_config.clone();
        match frame.frame_type() {
            FrameType::Video => {
                // A file starts with a keyframe of the configured codec.
                if video.as_ref().is_none_or(|c| c.codec != frame.codec) || !frame.is_keyframe() {
                    return false;
                }
                self.preroll.clear();
                let configs: Vec<MediaFrame> = video.into_iter().chain(audio).collect();
                self.open(configs, std::slice::from_ref(frame), now, out)
            }
            FrameType::Audio => {
                if audio.as_ref().is_none_or(|c| c.codec != frame.codec) || video.is_some() {
                    // No configuration yet, or video is coming: wait for its
                    // keyframe.
                    return false;
                }
                // Audio only, as far as we know: keep up to a second, in
                // case video shows up after all.
                if self.preroll.len() >= PREROLL_MAX_FRAMES {
                    self.preroll.remove(0);
                }
                self.preroll.push(frame.clone());
                let first = self.preroll[0].dts_in(Timebase::MICROS);
                let span = frame.dts_in(Timebase::MICROS).saturating_sub(first);
                let waited = span >= PREROLL_MAX.as_micros() as i64 || self.preroll.len() >= PREROLL_MAX_FRAMES;
                if waited {
                    let preroll = std::mem::take(&mut self.preroll);
                    if self.open(audio.into_iter().collect(), &preroll, now, out) {
                        for f in &preroll {
                            self.feed(f, now, out);
                        }
                    }
                }
                false
            }
            FrameType::Data => false,
        }
    }

    /// Opens a file with the tracks of `configs`, its timestamps placed by
    /// `first` (the frames it will start with). False if the tracks cannot
    /// be set up.
    fn open(&mut self, configs: Vec<MediaFrame>, first: &[MediaFrame], now: SystemTime, out: &mut Vec<Step>) -> bool {
        let mut fmp4_tracks = Vec::new();
        let mut ts_tracks = Vec::new();
        let mut tracks = Vec::new();
        let mut used = Vec::new();
        for config in configs {
            let timebase = match self.config.format {
                RecordFormat::Fmp4 => {
                    let mut track = match TrackConfig::from_config_frame(&config) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::debug!(codec = %config.codec, error = %e, "record: track skipped");
                            continue;
                        }
                    };
                    if config.codec == CodecId::Vp9 && track.width() == 0 {
                        // VP9's record has no picture size: the keyframe has.
                        if let Some(k) = first.iter().find(|f| f.codec == CodecId::Vp9 && f.is_keyframe()) {
                            track = track.clone().with_vp9_keyframe_size(&k.payload).unwrap_or(track);
                        }
                    }
                    let tb = track.timebase();
                    fmp4_tracks.push(track);
                    tb
                }
                RecordFormat::Ts => {
                    ts_tracks.push(TrackSpec::new(config.codec, Some(config.payload.clone())));
                    // TS timestamps are 90 kHz.
                    match config.frame_type() {
                        FrameType::Audio => audio_timebase(&config).unwrap_or(Timebase::MPEG),
                        _ => Timebase::MPEG,
                    }
                }
            };
            tracks.push(Track { codec: config.codec, timebase, held: None, last_dts: None, last_duration: 0 });
            used.push(config);
        }
        if tracks.is_empty() {
            return false;
        }
        let mux = match self.config.format {
            RecordFormat::Fmp4 => Mux::Fmp4(FragmentWriter::new(&fmp4_tracks)),
            RecordFormat::Ts => match TsMuxer::new(&ts_tracks) {
                Ok(m) => Mux::Ts(m, BytesMut::new()),
                Err(e) => {
                    tracing::debug!(error = %e, "record: MPEG-TS muxer refused the tracks");
                    return false;
                }
            },
        };
        if self.offset_secs.is_none() {
            let earliest = first.iter().map(|f| f.dts_in(Timebase::MICROS).min(f.pts_in(Timebase::MICROS))).min();
            let secs = earliest.filter(|&m| m < 0).map_or(0, |m| (-m).saturating_add(999_999) / 1_000_000);
            self.offset_secs = Some(secs);
        }
        let main = tracks.iter().position(|t| t.codec.frame_type() == FrameType::Video).unwrap_or(0);
        let main_is_video = tracks[main].codec.frame_type() == FrameType::Video;
        let timescale = u128::from(tracks[main].timebase.den());
        let ticks = |d: Duration| u64::try_from(d.as_nanos() * timescale / 1_000_000_000).unwrap_or(u64::MAX);
        let head = match &mux {
            Mux::Fmp4(w) => w.init_segment(),
            Mux::Ts(..) => Bytes::new(),
        };
        out.push(Step::Open { head: head.clone(), start: now, discontinuity: std::mem::take(&mut self.discontinuity) });
        self.file = Some(OpenFile {
            configs: used,
            tracks,
            main,
            main_is_video,
            mux,
            ticks: 0,
            fragment_ticks: 0,
            max_ticks: ticks(self.config.max_duration).max(1),
            fragment_target: ticks(self.config.fragment_duration).max(1),
            bytes: head.len() as u64,
            pending_bytes: 0,
        });
        true
    }

    /// Feeds a frame to the open file: the frame before it on its track is
    /// written (its duration now known), fragments are cut and files
    /// rotated.
    fn feed(&mut self, frame: &MediaFrame, now: SystemTime, out: &mut Vec<Step>) {
        let offset = self.offset_secs.unwrap_or(0);
        let Some(file) = self.file.as_mut() else { return };
        let Some(ti) = file.tracks.iter().position(|t| t.codec == frame.codec) else { return };
        let track = &file.tracks[ti];
        let tb = track.timebase;
        let shift = offset.saturating_mul(i64::from(tb.den()));
        let mut f = frame.clone();
        f.dts = frame.dts_in(tb).saturating_add(shift);
        f.pts = frame.pts_in(tb).saturating_add(shift);
        f.timebase = tb;
        f.duration = u32::try_from(frame.timebase.rescale(i64::from(frame.duration), tb)).unwrap_or(0);
        f.track = 0;
        f.flags = if frame.is_keyframe() { FrameFlags::KEYFRAME } else { FrameFlags::EMPTY };
        if f.dts < 0 && track.last_dts.is_none() {
            // Before the file's start (audio a little ahead of the first
            // keyframe): not part of this file.
            return;
        }
        let jump = MAX_FORWARD_JUMP_SECS.saturating_mul(i64::from(tb.den()));
        let broken = f.dts < 0 || track.last_dts.is_some_and(|last| f.dts < last || f.dts.saturating_sub(last) > jump);
        if broken {
            tracing::debug!(dts = f.dts, last = ?track.last_dts, "record: timestamps jumped; new file");
            self.new_timeline(out);
            if self.start(frame, now, out) {
                self.feed(frame, now, out);
            }
            return;
        }
        if let Some(mut held) = file.tracks[ti].held.take() {
            let d = u32::try_from(f.dts - held.dts).unwrap_or(u32::MAX);
            held.duration = d;
            file.tracks[ti].last_duration = d;
            Self::release(file, ti, held, &mut self.refused);
        }
        if ti == file.main {
            let sync = f.is_keyframe() || !file.main_is_video;
            let full = file.ticks >= file.max_ticks
                || self.config.max_size.is_some_and(|max| file.bytes + file.pending_bytes >= max);
            if sync && file.ticks > 0 && full {
                // Rotation: this keyframe starts the next file, on the same
                // timeline.
                let configs = file.configs.clone();
                self.close(out);
                if !self.open(configs, std::slice::from_ref(frame), now, out) {
                    return;
                }
                let Some(file) = self.file.as_mut() else { return };
                let track = &mut file.tracks[file.main];
                track.last_dts = Some(f.dts);
                track.held = Some(f);
                return;
            }
            if file.fragment_ticks > 0 && ((sync && file.main_is_video) || file.fragment_ticks >= file.fragment_target)
            {
                Self::fragment(file, out);
            }
        }
        let track = &mut file.tracks[ti];
        track.last_dts = Some(f.dts);
        track.held = Some(f);
    }

    /// Writes a frame whose duration is known into the muxer.
    fn release(file: &mut OpenFile, ti: usize, frame: MediaFrame, refused: &mut u64) {
        let size = match &mut file.mux {
            Mux::Fmp4(w) => match w.push(ti, &frame) {
                Ok(()) => frame.payload.len(),
                Err(e) => {
                    tracing::debug!(error = %e, "record: fMP4 writer refused a frame");
                    *refused += 1;
                    return;
                }
            },
            Mux::Ts(m, buf) => {
                let before = buf.len();
                if let Err(e) = m.write_frame(&frame, buf) {
                    tracing::debug!(error = %e, "record: MPEG-TS muxer refused a frame");
                    *refused += 1;
                    return;
                }
                buf.len() - before
            }
        };
        file.pending_bytes += size as u64;
        if ti == file.main {
            file.ticks += u64::from(frame.duration);
            file.fragment_ticks += u64::from(frame.duration);
        }
    }

    /// Hands out what the muxer holds as one append.
    fn fragment(file: &mut OpenFile, out: &mut Vec<Step>) {
        let parts = match &mut file.mux {
            Mux::Fmp4(w) => w.flush_fragment_parts(),
            Mux::Ts(_, buf) if !buf.is_empty() => vec![buf.split().freeze()],
            Mux::Ts(..) => Vec::new(),
        };
        file.fragment_ticks = 0;
        file.pending_bytes = 0;
        if !parts.is_empty() {
            file.bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
            out.push(Step::Append { parts, seconds: file.seconds() });
        }
    }

    /// Writes held frames (with their own duration, else their
    /// predecessor's), the last fragment, and closes the file.
    fn close(&mut self, out: &mut Vec<Step>) {
        let Some(mut file) = self.file.take() else { return };
        let main = file.main;
        // The main track last, so other tracks' final frames are in.
        let order: Vec<usize> = (0..file.tracks.len()).filter(|&i| i != main).chain([main]).collect();
        for ti in order {
            if let Some(mut f) = file.tracks[ti].held.take() {
                if f.duration == 0 {
                    f.duration = file.tracks[ti].last_duration;
                }
                Self::release(&mut file, ti, f, &mut self.refused);
            }
        }
        Self::fragment(&mut file, out);
        out.push(Step::Close { seconds: file.seconds() });
    }
}

/// The sample-rate timebase of an audio configuration, for TS tracks (the
/// muxer rescales to 90 kHz itself; keeping audio in its own rate keeps
/// durations exact).
fn audio_timebase(config: &MediaFrame) -> Option<Timebase> {
    match config.codec {
        CodecId::Opus => Timebase::sample_rate(48_000),
        _ => TrackConfig::from_config_frame(config).ok().map(|t| t.timebase()),
    }
}

#[cfg(test)]
mod tests;
