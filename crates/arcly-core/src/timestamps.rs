//! Timestamp repair: each stream's timeline stays monotonic and plausible
//! whatever its publisher sends.
//!
//! A publisher whose decode timestamps suddenly go backwards or leap
//! forward by hours is nearly always an encoder that restarted, a source
//! that switched, or a bug, rarely an attack: the stream should go on.
//! Players cannot follow such a jump (an RTMP or FLV player waits hours
//! for the next frame or drops everything older than what it played; an
//! HLS segment spanning the jump lasts hours). [`TimestampGuard`] sits
//! between the ingest protocols and the bus (every frame a
//! [`PublishSession`](crate::inbound::PublishSession) publishes goes
//! through the stream's guard) and repairs the timeline the way SRS's
//! time jitter correction and MediaMTX do:
//!
//! - **One offset per stream.** The guard adds one offset to the `dts`
//!   and `pts` of every frame of the stream, all tracks alike, so audio
//!   and video stay in sync, and `pts - dts` (the B-frame composition
//!   offset) is kept. It starts at 0: a well-behaved publisher's frames
//!   pass through unchanged.
//! - **Epochs.** A frame starts a new *epoch* when, with the current offset
//!   applied, its `dts` is more than [`TimestampPolicy::max_backward`]
//!   (default 250 ms) below the highest `dts` its track had, or more than
//!   [`TimestampPolicy::max_forward`] (default 10 s) above the newest `dts`
//!   of the whole stream. The offset is then recomputed so that the frame
//!   lands just after its track's highest `dts`, one typical frame interval
//!   later (estimated from the track's recent steps; 20 ms when unknown),
//!   and the frame is flagged [`FrameFlags::DISCONTINUITY`]. The offset
//!   changes only at such flagged frames. A frame a protocol already
//!   flagged, and the first frame of a publisher that
//!   [took over the stream](crate::engine::AppSpec::republish_grace), also
//!   start an epoch (not counted as corrections), so a returning
//!   publisher continues the timeline instead of restarting it.
//! - **What passes.** Backward checks are per track, so audio and video
//!   whose clocks differ by a few hundred milliseconds never trigger, and
//!   a track that stalls and resumes does not either; forward checks are
//!   against the newest frame of any track. Small backward steps within a
//!   track (audio `dts` jittering by a millisecond) pass unchanged, and
//!   B-frames' `pts` going back is never looked at (only `dts` is).
//! - **Configuration and metadata frames** carry no timing of their own:
//!   they follow the current offset, and one that would land more than
//!   `max_forward` away from the newest frame (a sequence header re-sent
//!   with timestamp 0 an hour in) is placed at the newest frame instead.
//! - **Wraps.** Protocols hand over unwrapped timestamps (RTMP's 32-bit
//!   milliseconds are extended past their wrap by `arcly-rtmp`'s session,
//!   per frame type). A protocol that did not unwrap would show a wrap as
//!   a backward jump of 2³² ticks: one corrected epoch, and the timeline
//!   continues.
//! - **Hopeless publishers.** The guard counts corrections; more than
//!   [`TimestampPolicy::max_corrections_per_second`] (default 10) within a
//!   second, a timestamp beyond ±2⁶¹ ticks, or a `pts` more than 10 s away
//!   from its `dts` make the publisher [`Unusable`]: its session ends with
//!   the reason "timestamps unusable: ...", which the protocol logs when it
//!   closes the connection.
//!
//! Corrections are counted in the stream's
//! [`StreamQos::timestamp_corrections`](crate::bus::StreamQos::timestamp_corrections),
//! reported to [`Observer::timestamps_corrected`](crate::observe::Observer::timestamps_corrected),
//! and logged at warn with the stream and the jump (at most one line per
//! second per stream, with the number of corrections not logged since).
//!
//! The guard is sans-IO: [`TimestampGuard::apply`] is a few integer
//! operations per frame (a rescale only for tracks in different
//! timebases), allocates nothing and reads no clock;
//! [`TimestampGuard::admit`] takes the time as an argument and is called
//! only after a correction. Its memory is fixed (a few hundred bytes per
//! stream).
//!
//! ```
//! use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
//! use arcly_core::timestamps::{TimestampGuard, TimestampPolicy, Verdict};
//!
//! let mut guard = TimestampGuard::new(TimestampPolicy::default());
//! let frame = |dts: i64| {
//!     MediaFrame::new(CodecId::Aac, bytes::Bytes::new()).with_timestamps(dts, dts, Timebase::MILLIS)
//! };
//! for dts in [60_000, 60_023, 60_046] {
//!     let mut f = frame(dts);
//!     assert_eq!(guard.apply(&mut f), Verdict::Passed);
//!     assert_eq!(f.dts, dts); // unchanged
//! }
//! // The encoder restarted: its clock is back at 0.
//! let mut f = frame(0);
//! let Verdict::Corrected(c) = guard.apply(&mut f) else { panic!() };
//! assert_eq!(f.dts, 60_069); // just after 60 046, one 23 ms frame interval later
//! assert!(f.flags.contains(FrameFlags::DISCONTINUITY));
//! assert_eq!((c.direction(), c.jump_ms), ("backward", -60_069));
//! // Its next frames follow with the same offset.
//! let mut f = frame(23);
//! assert_eq!(guard.apply(&mut f), Verdict::Passed);
//! assert_eq!(f.dts, 60_092);
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use crate::frame::{FrameFlags, FrameType, MediaFrame, Timebase};

/// Track slots per frame type: track 0 and all others (several tracks of
/// one type share one clock in every protocol we know).
const TRACKS_PER_TYPE: usize = 2;
/// Video and audio; data frames are not tracked.
const SLOTS: usize = 2 * TRACKS_PER_TYPE;
/// The frame interval assumed for a track whose steps are not known yet.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(20);
/// A step longer than this is a gap, not a frame interval.
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// The largest `|pts - dts|` accepted: far more than any reordering needs.
const MAX_COMPOSITION_OFFSET: Duration = Duration::from_secs(10);
/// The largest `|dts|` and `|pts|` accepted, in ticks of any timebase:
/// nanoseconds since 1970 fit until 2043, and offsets cannot overflow.
const MAX_TIMESTAMP: i64 = 1 << 61;
/// Corrections are rate-limited over windows of this length.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// At most one correction per stream is logged per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// How a stream's timestamps are checked; set per application with
/// [`AppSpec::timestamps`](crate::engine::AppSpec::timestamps).
///
/// ```
/// use std::time::Duration;
/// use arcly_core::timestamps::TimestampPolicy;
/// let policy = TimestampPolicy::default().max_forward(Duration::from_secs(5));
/// assert_eq!(policy.forward(), Duration::from_secs(5));
/// assert_eq!(policy.backward(), Duration::from_millis(250));
/// assert_eq!(policy.corrections_per_second(), 10);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampPolicy {
    max_backward: Duration,
    max_forward: Duration,
    max_corrections_per_second: u32,
}

impl Default for TimestampPolicy {
    /// Backward steps of up to 250 ms pass (SRS's jitter bound), forward
    /// jumps of up to 10 s pass, more than 10 corrections within a second
    /// end the publisher.
    fn default() -> Self {
        Self {
            max_backward: Duration::from_millis(250),
            max_forward: Duration::from_secs(10),
            max_corrections_per_second: 10,
        }
    }
}

impl TimestampPolicy {
    /// How far a track's `dts` may step back below the highest it had
    /// before a new epoch starts (default 250 ms).
    pub fn max_backward(mut self, d: Duration) -> Self {
        self.max_backward = d;
        self
    }

    /// How far a frame's `dts` may be ahead of the newest of the stream
    /// before a new epoch starts (default 10 s; at least 1 ms).
    pub fn max_forward(mut self, d: Duration) -> Self {
        self.max_forward = d.max(Duration::from_millis(1));
        self
    }

    /// Most corrections within one second before the publisher is ended as
    /// [`Unusable`] (default 10; 0 ends it at the first correction).
    pub fn max_corrections_per_second(mut self, n: u32) -> Self {
        self.max_corrections_per_second = n;
        self
    }

    /// See [`TimestampPolicy::max_backward`].
    pub fn backward(&self) -> Duration {
        self.max_backward
    }

    /// See [`TimestampPolicy::max_forward`].
    pub fn forward(&self) -> Duration {
        self.max_forward
    }

    /// See [`TimestampPolicy::max_corrections_per_second`].
    pub fn corrections_per_second(&self) -> u32 {
        self.max_corrections_per_second
    }
}

/// What [`TimestampGuard::apply`] did to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// The frame got the current offset (none for a well-behaved
    /// publisher).
    Passed,
    /// The frame started a new epoch: it is flagged
    /// [`FrameFlags::DISCONTINUITY`] and continues the timeline.
    Corrected(Correction),
    /// The publisher's timestamps cannot be repaired: the frame must not be
    /// published and the publisher should be ended. Every later frame gets
    /// the same verdict until [`TimestampGuard::resume`].
    Unusable(Unusable),
}

/// A corrected jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Correction {
    /// The track whose frame jumped.
    pub frame_type: FrameType,
    /// The size of the jump in milliseconds: how far the frame would have
    /// landed from where it was placed (negative: backwards).
    pub jump_ms: i64,
    /// The frame's `dts` as the publisher sent it, in its timebase.
    pub input_dts: i64,
    /// Where it was placed.
    pub output_dts: i64,
}

impl Correction {
    /// `"backward"` or `"forward"`.
    pub fn direction(&self) -> &'static str {
        if self.jump_ms < 0 { "backward" } else { "forward" }
    }
}

/// Why a publisher's timestamps are hopeless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unusable {
    /// More corrections within one second than the policy allows.
    TooManyCorrections {
        /// The policy's limit.
        limit: u32,
    },
    /// A timestamp beyond ±2⁶¹ ticks: no clock produces it.
    OutOfRange {
        /// The frame's `dts`.
        dts: i64,
        /// The frame's `pts`.
        pts: i64,
    },
    /// `pts` more than 10 s away from `dts`: no codec reorders that far.
    CompositionOffset {
        /// `pts - dts` in milliseconds.
        ms: i64,
    },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyCorrections { limit } => {
                write!(f, "more than {limit} timestamp corrections within a second")
            }
            Self::OutOfRange { dts, pts } => write!(f, "timestamp out of range (dts {dts}, pts {pts})"),
            Self::CompositionOffset { ms } => write!(f, "pts is {ms} ms away from dts"),
        }
    }
}

impl std::error::Error for Unusable {}

/// One track's timeline, in its own timebase.
#[derive(Clone, Copy, Debug)]
struct Track {
    timebase: Timebase,
    /// The last and the highest output `dts`.
    last: i64,
    high: i64,
    /// Typical `dts` step; 0 while unknown.
    interval: i64,
    /// The stream's offset in this timebase, valid for epoch `epoch`.
    offset: i64,
    epoch: u64,
    /// The policy's bounds in ticks.
    back: i64,
    fwd: i64,
    max_interval: i64,
    max_cto: i64,
}

fn ticks(d: Duration, tb: Timebase) -> i64 {
    Timebase::NANOS.rescale(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX), tb)
}

impl Track {
    fn new(tb: Timebase, policy: &TimestampPolicy) -> Self {
        let mut t = Self {
            timebase: tb,
            last: 0,
            high: 0,
            interval: 0,
            offset: 0,
            epoch: u64::MAX,
            back: 0,
            fwd: 0,
            max_interval: 0,
            max_cto: 0,
        };
        t.set_bounds(policy);
        t
    }

    fn set_bounds(&mut self, policy: &TimestampPolicy) {
        let tb = self.timebase;
        self.back = ticks(policy.max_backward, tb);
        self.fwd = ticks(policy.max_forward, tb).max(1);
        self.max_interval = ticks(MAX_INTERVAL, tb).max(1);
        self.max_cto = ticks(MAX_COMPOSITION_OFFSET, tb);
    }

    /// The track's frames changed timebase (rare): its state follows.
    fn retime(&mut self, tb: Timebase, policy: &TimestampPolicy) {
        let old = self.timebase;
        self.last = old.rescale(self.last, tb);
        self.high = old.rescale(self.high, tb);
        self.interval = old.rescale(self.interval, tb);
        self.timebase = tb;
        self.epoch = u64::MAX;
        self.set_bounds(policy);
    }

    fn next_dts(&self) -> i64 {
        let step = if self.interval > 0 { self.interval } else { ticks(DEFAULT_INTERVAL, self.timebase).max(1) };
        self.high.saturating_add(step)
    }
}

/// Why an epoch starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Epoch {
    Backward,
    Forward,
    /// Asked for: a flagged frame or a new publisher.
    Forced,
}

/// Keeps one stream's timeline monotonic and plausible: see the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct TimestampGuard {
    policy: TimestampPolicy,
    tracks: [Option<Track>; SLOTS],
    /// The stream's offset, in the timebase of the frame that set it.
    offset: i64,
    offset_timebase: Timebase,
    epoch: u64,
    /// The highest output `dts` of any track, in the first frame's timebase.
    head: Option<(i64, Timebase)>,
    /// The next media frame starts an epoch (a new publisher).
    resume: bool,
    unusable: Option<Unusable>,
    corrections: u64,
    /// Start of the current rate window and corrections within it.
    window: Option<(Instant, u32)>,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Default for TimestampGuard {
    fn default() -> Self {
        Self::new(TimestampPolicy::default())
    }
}

impl TimestampGuard {
    /// A guard for a new stream.
    pub fn new(policy: TimestampPolicy) -> Self {
        Self {
            policy,
            tracks: [None; SLOTS],
            offset: 0,
            offset_timebase: Timebase::MILLIS,
            epoch: 0,
            head: None,
            resume: false,
            unusable: None,
            corrections: 0,
            window: None,
            last_log: None,
            unlogged: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &TimestampPolicy {
        &self.policy
    }

    /// Changes the policy; the timeline is kept.
    pub fn set_policy(&mut self, policy: TimestampPolicy) {
        self.policy = policy;
        for t in self.tracks.iter_mut().flatten() {
            t.set_bounds(&policy);
        }
    }

    /// A new publisher takes the stream over: its first media frame starts
    /// an epoch just after the timeline so far (not a correction), and the
    /// correction budget and an [`Unusable`] verdict are reset.
    pub fn resume(&mut self) {
        self.resume = true;
        self.unusable = None;
        self.window = None;
    }

    /// Corrections since the stream started.
    pub fn corrections(&self) -> u64 {
        self.corrections
    }

    /// The offset in force, in `tb` ticks (0 until the first epoch).
    pub fn offset_in(&self, tb: Timebase) -> i64 {
        self.offset_timebase.rescale(self.offset, tb)
    }

    /// Places `frame` on the stream's timeline: adds the offset to its
    /// `dts` and `pts`, or starts a new epoch (see the
    /// [module documentation](self)). On [`Verdict::Unusable`] the frame is
    /// left as it was.
    pub fn apply(&mut self, frame: &mut MediaFrame) -> Verdict {
        if let Some(u) = self.unusable {
            return Verdict::Unusable(u);
        }
        if !(-MAX_TIMESTAMP..=MAX_TIMESTAMP).contains(&frame.dts)
            || !(-MAX_TIMESTAMP..=MAX_TIMESTAMP).contains(&frame.pts)
        {
            return self.fail(Unusable::OutOfRange { dts: frame.dts, pts: frame.pts });
        }
        let ty = frame.frame_type();
        if frame.is_config() || ty == FrameType::Data {
            self.place_untimed(frame);
            return Verdict::Passed;
        }
        let slot = ty.index() * TRACKS_PER_TYPE + usize::from(frame.track).min(TRACKS_PER_TYPE - 1);
        let tb = frame.timebase;
        let (dts, pts) = (frame.dts, frame.pts);
        let head = self.head.map(|(h, htb)| htb.rescale(h, tb));
        let policy = self.policy;

        // The track's state, with the stream's offset in its timebase.
        let new_track = self.tracks[slot].is_none();
        let mut track = match self.tracks[slot] {
            Some(mut t) => {
                if t.timebase != tb {
                    t.retime(tb, &policy);
                }
                t
            }
            None => Track::new(tb, &policy),
        };
        if track.epoch != self.epoch {
            track.offset = self.offset_timebase.rescale(self.offset, tb);
            track.epoch = self.epoch;
        }
        let cto = pts.saturating_sub(dts);
        if cto.unsigned_abs() > track.max_cto.unsigned_abs() {
            return self.fail(Unusable::CompositionOffset { ms: tb.rescale(cto, Timebase::MILLIS) });
        }

        let placed = dts.saturating_add(track.offset);
        let why = if self.resume || frame.flags.contains(FrameFlags::DISCONTINUITY) {
            Some(Epoch::Forced)
        } else if !new_track && placed < track.high.saturating_sub(track.back) {
            Some(Epoch::Backward)
        } else if head.is_some_and(|h| placed > h.saturating_add(track.fwd)) {
            Some(Epoch::Forward)
        } else {
            None
        };
        self.resume = false;
        // Where an epoch's first frame goes: after its track, or after the
        // stream for a track's first frame; nowhere to go for the stream's
        // very first frame.
        let target = match (why, new_track, head) {
            (None, ..) => None,
            (Some(_), false, _) => Some(track.next_dts()),
            (Some(_), true, Some(h)) => Some(h.saturating_add(ticks(DEFAULT_INTERVAL, tb).max(1))),
            (Some(_), true, None) => None,
        };
        let mut verdict = Verdict::Passed;
        let out = match target {
            None => placed,
            Some(target) => {
                track.offset = target.saturating_sub(dts);
                self.epoch += 1;
                track.epoch = self.epoch;
                self.offset = track.offset;
                self.offset_timebase = tb;
                frame.flags |= FrameFlags::DISCONTINUITY;
                if why != Some(Epoch::Forced) {
                    self.corrections += 1;
                    verdict = Verdict::Corrected(Correction {
                        frame_type: ty,
                        jump_ms: tb.rescale(placed.saturating_sub(target), Timebase::MILLIS),
                        input_dts: dts,
                        output_dts: target,
                    });
                }
                target
            }
        };
        frame.dts = out;
        frame.pts = pts.saturating_add(track.offset);

        if new_track {
            track.last = out;
            track.high = out;
        } else {
            let step = out.saturating_sub(track.last);
            if step > 0 && step <= track.max_interval {
                track.interval = if track.interval == 0 { step } else { (3 * track.interval + step) / 4 };
            }
            track.last = out;
            track.high = track.high.max(out);
        }
        self.tracks[slot] = Some(track);
        self.head = Some(match self.head {
            None => (out, tb),
            Some((h, htb)) => (h.max(if htb == tb { out } else { tb.rescale(out, htb) }), htb),
        });
        verdict
    }

    /// Counts a [`Verdict::Corrected`] against the rate limit, at `now`.
    /// `Ok(Some(n))`: log this correction, and say that `n` were not logged
    /// since the last line; `Ok(None)`: do not log it (one line per second
    /// at most). `Err`: the limit is exceeded; the publisher is
    /// [`Unusable`] from now on.
    pub fn admit(&mut self, now: Instant) -> Result<Option<u64>, Unusable> {
        let count = match self.window {
            Some((start, n)) if now.saturating_duration_since(start) < RATE_WINDOW => n.saturating_add(1),
            _ => 1,
        };
        if count == 1 {
            self.window = Some((now, 1));
        } else if let Some(w) = self.window.as_mut() {
            w.1 = count;
        }
        let limit = self.policy.max_corrections_per_second;
        if count > limit {
            return Err(self.fail_with(Unusable::TooManyCorrections { limit }));
        }
        if self.last_log.is_some_and(|at| now.saturating_duration_since(at) < LOG_INTERVAL) {
            self.unlogged += 1;
            return Ok(None);
        }
        self.last_log = Some(now);
        Ok(Some(std::mem::take(&mut self.unlogged)))
    }

    fn fail(&mut self, why: Unusable) -> Verdict {
        Verdict::Unusable(self.fail_with(why))
    }

    fn fail_with(&mut self, why: Unusable) -> Unusable {
        self.unusable = Some(why);
        why
    }

    /// A configuration or data frame: the current offset, or the head of
    /// the stream if that lands too far from it.
    fn place_untimed(&self, frame: &mut MediaFrame) {
        let tb = frame.timebase;
        let offset = if self.offset == 0 { 0 } else { self.offset_timebase.rescale(self.offset, tb) };
        let mut out = frame.dts.saturating_add(offset);
        if let Some((h, htb)) = self.head {
            let head = htb.rescale(h, tb);
            let fwd = ticks(self.policy.max_forward, tb);
            if out > head.saturating_add(fwd) || out < head.saturating_sub(fwd) {
                out = head;
            }
        }
        let shift = out.saturating_sub(frame.dts);
        if shift != 0 {
            frame.dts = out;
            frame.pts = frame.pts.saturating_add(shift);
        }
    }
}

/// What publishing a batch of frames through the guard reported, for the
/// session to log and count once the bus lock is released. Allocates only
/// when a correction happened.
#[derive(Debug, Default)]
pub(crate) struct GuardReport {
    /// Each correction, with [`TimestampGuard::admit`]'s logging decision.
    pub(crate) corrections: Vec<(Correction, Option<u64>)>,
    /// Set when the publisher must be ended; the frames from the one that
    /// was refused on were not published.
    pub(crate) unusable: Option<Unusable>,
}

#[cfg(test)]
mod tests;
