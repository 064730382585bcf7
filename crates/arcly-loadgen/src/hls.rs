//! LL-HLS players, parsed to the frame level as a low-latency player
//! (hls.js in low-latency mode) would:
//!
//! 1. `GET` the media playlist; it must be LL-HLS (`EXT-X-PART-INF`).
//! 2. Start near the live edge: the last `INDEPENDENT=YES` part that starts
//!    at least `PART-HOLD-BACK` before the end of the playlist, else the
//!    start of the last segment listed before that point.
//! 3. `GET` the initialisation segment (`EXT-X-MAP`) once (again only if a
//!    later part names another one) for the track table.
//! 4. Loop: `GET` the next part if the playlist lists it; else a blocking
//!    reload (`_HLS_msn`/`_HLS_part` for that part) and again. Past a
//!    segment's last part comes part 0 of the next segment. A player that
//!    fell behind the parts listed (or got 404/410 for a part) seeks to the
//!    live edge again; the skipped frames count as missing.
//!
//! hls.js also requests the `EXT-X-PRELOAD-HINT` part while the blocking
//! reload is pending; with one HTTP/1.1 connection per player the two
//! cannot overlap, so the blocking reload alone waits for the part. That
//! costs one loopback round trip per part and keeps hls.js's request mix
//! (one playlist and one part per part).
//!
//! Each part's `moof` is parsed ([`FragmentReader`]) into one frame per
//! sample, all received when the part's response is complete.
//!
//! Timestamps: the server's packager rescales the bus timestamps (the RTMP
//! publisher's milliseconds) exactly to the track timescale (`ms × 90` for
//! video) and keeps them (it only adds whole seconds when a timestamp is
//! negative, which the loadgen's sources never send), so a sample's decode
//! time converted back to milliseconds is exactly the key of the
//! publisher's `sent` map: no nearest-match is needed.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::Player;
use crate::fmp4::{FragmentReader, Handler, Malformed, parse_init};
use crate::http::{Body, Collected, HttpConn};

/// The largest playlist or initialisation segment accepted.
const MAX_TEXT: usize = 1 << 20;
/// Blocking reloads in a row that bring no new part before the player
/// gives up (a server that answers them without waiting).
const MAX_IDLE_RELOADS: u32 = 100;
/// How long the first playlist is asked for again while it is 404: the
/// server's HLS side may learn of a stream a moment after the publisher is
/// told it is live (hls.js retries its manifest too).
const FIRST_PLAYLIST_RETRY: Duration = Duration::from_secs(5);
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Where an LL-HLS player plays from: `http://host[:port]/path.m3u8[?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HlsTarget {
    pub(crate) addr: String,
    pub(crate) host: String,
    /// The playlist's path, without the query.
    path: String,
    /// The query (a token), carried on into blocking reloads.
    query: Option<String>,
    /// The playlist's directory, ending with `/`: the base of relative URIs.
    dir: String,
}

impl HlsTarget {
    /// The target for `path_and_query` on `host` (`addr` to connect to);
    /// `None` unless the path ends in `.m3u8`.
    pub(crate) fn new(addr: &str, host: &str, path_and_query: &str) -> Option<Self> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned()).filter(|q| !q.is_empty())),
            None => (path_and_query, None),
        };
        if !path.ends_with(".m3u8") {
            return None;
        }
        let dir = path.rsplit_once('/').map_or("/".to_owned(), |(d, _)| format!("{d}/"));
        Some(Self { addr: addr.to_owned(), host: host.to_owned(), path: path.to_owned(), query, dir })
    }

    /// The request path of a playlist URI (relative, absolute path, or an
    /// `http://` URL on the same host).
    fn resolve(&self, uri: &str, out: &mut String) -> Result<(), String> {
        out.clear();
        if let Some(rest) = uri.strip_prefix("http://") {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            if host != self.host {
                return Err(format!("URI {uri:?} is on another host"));
            }
            out.push('/');
            out.push_str(path);
        } else if uri.contains("://") {
            return Err(format!("URI {uri:?}: only http:// is supported"));
        } else if uri.starts_with('/') {
            out.push_str(uri);
        } else {
            out.push_str(&self.dir);
            out.push_str(uri);
        }
        Ok(())
    }

    /// The playlist's request path, with a blocking-reload directive for
    /// part `(msn, part)`.
    fn playlist_path(&self, block: Option<(u64, u64)>, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        out.push_str(&self.path);
        let mut sep = '?';
        if let Some(q) = &self.query {
            out.push(sep);
            out.push_str(q);
            sep = '&';
        }
        if let Some((msn, part)) = block {
            let _ = write!(out, "{sep}_HLS_msn={msn}&_HLS_part={part}");
        }
    }
}

/// One `EXT-X-PART` of a playlist.
#[derive(Clone, Debug, PartialEq)]
struct PartRef {
    msn: u64,
    /// Its index within its segment.
    index: u64,
    duration: f64,
    independent: bool,
    /// Byte ranges of the playlist text.
    uri: Range<usize>,
    map: Option<Range<usize>>,
}

/// An LL-HLS media playlist, parsed as much as a player needs. Reused from
/// reload to reload (URIs are ranges of the kept text).
#[derive(Debug, Default)]
pub(crate) struct Playlist {
    text: String,
    part_target: Option<f64>,
    part_hold_back: Option<f64>,
    can_block_reload: bool,
    parts: Vec<PartRef>,
    /// The media sequence number of the first segment not complete.
    next_msn: u64,
    hint: Option<Range<usize>>,
    ended: bool,
}

/// The value of attribute `name` in an attribute list (`A=1,B="x,y"`).
fn attr<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                let tail = &quoted[end + 1..];
                (&quoted[..end], tail.strip_prefix(',').unwrap_or(tail))
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

fn seconds(value: Option<&str>, what: &str) -> Result<f64, String> {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
        .ok_or_else(|| format!("playlist: bad or missing {what}"))
}

/// Where `inner` (a slice of `outer`) lies in `outer`.
fn range_in(outer: &str, inner: &str) -> Range<usize> {
    let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    start..start + inner.len()
}

impl Playlist {
    /// Parses `body`, replacing what was parsed before.
    pub(crate) fn parse(&mut self, body: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(body).map_err(|_| "playlist is not UTF-8")?;
        self.text.clear();
        self.text.push_str(text);
        self.parts.clear();
        self.part_target = None;
        self.part_hold_back = None;
        self.can_block_reload = false;
        self.hint = None;
        self.ended = false;
        let Self { text, parts, .. } = self;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            return Err("not a playlist: no #EXTM3U".into());
        }
        let (mut msn, mut index, mut map, mut extinf) = (0u64, 0u64, None, false);
        let (mut part_target, mut hold_back, mut can_block, mut hint, mut ended) = (None, None, false, None, false);
        for line in lines {
            let Some(tag) = line.strip_prefix('#') else {
                // A segment URI: the segment is complete.
                if !extinf {
                    return Err(format!("playlist: URI {line:?} without #EXTINF"));
                }
                extinf = false;
                msn += 1;
                index = 0;
                continue;
            };
            let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
            match name {
                "EXT-X-MEDIA-SEQUENCE" => {
                    msn = value.trim().parse().map_err(|_| format!("playlist: bad media sequence {value:?}"))?;
                }
                "EXT-X-PART-INF" => part_target = Some(seconds(attr(value, "PART-TARGET"), "PART-TARGET")?),
                "EXT-X-SERVER-CONTROL" => {
                    can_block = attr(value, "CAN-BLOCK-RELOAD") == Some("YES");
                    if let Some(v) = attr(value, "PART-HOLD-BACK") {
                        hold_back = Some(seconds(Some(v), "PART-HOLD-BACK")?);
                    }
                }
                "EXT-X-SKIP" => {
                    let skipped: u64 = attr(value, "SKIPPED-SEGMENTS")
                        .and_then(|v| v.parse().ok())
                        .ok_or("playlist: bad EXT-X-SKIP")?;
                    msn = msn.saturating_add(skipped);
                }
                "EXT-X-MAP" => map = Some(range_in(text, attr(value, "URI").ok_or("playlist: EXT-X-MAP without URI")?)),
                "EXT-X-PART" => {
                    let uri = attr(value, "URI").ok_or("playlist: EXT-X-PART without URI")?;
                    parts.push(PartRef {
                        msn,
                        index,
                        duration: seconds(attr(value, "DURATION"), "part DURATION")?,
                        independent: attr(value, "INDEPENDENT") == Some("YES"),
                        uri: range_in(text, uri),
                        map: map.clone(),
                    });
                    index += 1;
                }
                "EXT-X-PRELOAD-HINT" if attr(value, "TYPE") == Some("PART") => {
                    hint = attr(value, "URI").map(|u| range_in(text, u));
                }
                "EXTINF" => extinf = true,
                "EXT-X-ENDLIST" => ended = true,
                _ => {}
            }
        }
        self.part_target = part_target;
        self.part_hold_back = hold_back;
        self.can_block_reload = can_block;
        self.next_msn = msn;
        self.hint = hint;
        self.ended = ended;
        Ok(())
    }

    fn text(&self, r: &Range<usize>) -> &str {
        self.text.get(r.clone()).unwrap_or("")
    }

    fn find(&self, (msn, index): (u64, u64)) -> Option<&PartRef> {
        self.parts.iter().rev().find(|p| p.msn == msn && p.index == index)
    }

    /// The number of parts of complete segment `msn`, if they are listed.
    fn part_count(&self, msn: u64) -> Option<u64> {
        if msn >= self.next_msn {
            return None;
        }
        let n = self.parts.iter().filter(|p| p.msn == msn).count() as u64;
        (n > 0).then_some(n)
    }

    /// The part to start at, as hls.js does in low-latency mode: the last
    /// independent part starting at least the hold-back (`PART-HOLD-BACK`,
    /// else 3 part targets) before the end of the last part, else the start
    /// of the last segment before that point, else the first part listed.
    fn start(&self) -> Option<(u64, u64)> {
        let total: f64 = self.parts.iter().map(|p| p.duration).sum();
        let hold_back = self.part_hold_back.or(self.part_target.map(|t| 3.0 * t)).unwrap_or(0.0);
        let latest = total - hold_back + 1e-6;
        let (mut at, mut independent, mut segment_start) = (0.0, None, None);
        for p in &self.parts {
            if at > latest {
                break;
            }
            if p.independent {
                independent = Some(p);
            }
            if p.index == 0 {
                segment_start = Some(p);
            }
            at += p.duration;
        }
        independent.or(segment_start).or(self.parts.first()).map(|p| (p.msn, p.index))
    }
}

impl Body for FragmentReader {
    fn data(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.feed(bytes).map_err(|e| e.to_string())
    }
}

/// One LL-HLS player's state between requests.
struct Session<'t> {
    target: &'t HlsTarget,
    conn: HttpConn,
    playlist: Playlist,
    /// Playlists, the initialisation segment.
    body: Collected,
    /// The request path being built.
    path: String,
    /// The URI of the initialisation segment loaded, and the reader for its
    /// tracks.
    map: Option<(String, FragmentReader)>,
    /// The part to play next: (media sequence number, part index).
    next: (u64, u64),
    /// The next video sample must be a keyframe (the first of a part
    /// marked independent, at the start or after a seek).
    expect_keyframe: bool,
}

/// Runs one LL-HLS player until the stream ends, the player's time is up
/// (churn) or an error.
pub(crate) async fn hls_player(player: &mut Player<'_>, target: &HlsTarget) -> Result<(), String> {
    let mut s = Session {
        target,
        conn: HttpConn::new(&target.addr, &target.host),
        playlist: Playlist::default(),
        body: Collected::new(MAX_TEXT),
        path: String::with_capacity(128),
        map: None,
        next: (0, 0),
        expect_keyframe: false,
    };
    let asked = Instant::now();
    loop {
        match s.get_playlist(player, None).await? {
            None => return Ok(()),
            Some(200) => break,
            Some(404) if asked.elapsed() < FIRST_PLAYLIST_RETRY => tokio::time::sleep(RETRY_PAUSE).await,
            Some(status) => return Err(format!("{}: HTTP {status} {}", s.path, s.conn.error_text())),
        }
    }
    if s.playlist.part_target.is_none() {
        return Err("not a low-latency playlist (no EXT-X-PART-INF)".into());
    }
    s.seek()?;
    let mut idle_reloads = 0;
    loop {
        if let Some(part) = s.playlist.find(s.next) {
            let (uri, map, independent) = (part.uri.clone(), part.map.clone(), part.independent);
            let map = map.ok_or("playlist: a part before any EXT-X-MAP")?;
            if !s.load_map(player, map).await? {
                return Ok(());
            }
            player.playing();
            s.expect_keyframe &= independent;
            match s.load_part(player, uri).await? {
                PartResult::Played => s.next.1 += 1,
                PartResult::Stopped => return Ok(()),
                PartResult::Missing => {
                    // Deleted (the player fell behind) or never written:
                    // start again at the live edge.
                    if !s.load_playlist(player, None).await? {
                        return Ok(());
                    }
                    s.seek()?;
                }
            }
            idle_reloads = 0;
            continue;
        }
        match s.playlist.part_count(s.next.0) {
            // Past the last part of a complete segment: the next segment.
            Some(n) if s.next.1 >= n => {
                s.next = (s.next.0 + 1, 0);
                continue;
            }
            // A complete segment whose parts are no longer listed: the
            // player fell behind.
            None if s.next.0 < s.playlist.next_msn => {
                s.seek()?;
                continue;
            }
            _ => {}
        }
        if s.playlist.ended {
            return Ok(());
        }
        idle_reloads += 1;
        if idle_reloads > MAX_IDLE_RELOADS {
            let hint = s.playlist.hint.as_ref().map_or("none", |h| s.playlist.text(h));
            return Err(format!(
                "{idle_reloads} playlist reloads without part {}.{} (preload hint: {hint})",
                s.next.0, s.next.1
            ));
        }
        if !s.playlist.can_block_reload {
            // Not an LL-HLS server we know: poll every part target.
            let wait = s.playlist.part_target.unwrap_or(0.2);
            tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.01, 10.0))).await;
            if !s.load_playlist(player, None).await? {
                return Ok(());
            }
            continue;
        }
        // Answered once the part exists, or its segment ended sooner.
        if !s.load_playlist(player, Some(s.next)).await? {
            return Ok(());
        }
    }
}

/// How fetching a part went.
enum PartResult {
    Played,
    /// The player's time is up.
    Stopped,
    /// 404 or 410.
    Missing,
}

impl Session<'_> {
    /// Starts (again) at the live edge of the current playlist.
    fn seek(&mut self) -> Result<(), String> {
        self.next = self.playlist.start().ok_or("playlist lists no part")?;
        self.expect_keyframe = true;
        Ok(())
    }

    /// Loads the playlist; `Ok(false)` when the player's time is up.
    async fn load_playlist(&mut self, player: &mut Player<'_>, block: Option<(u64, u64)>) -> Result<bool, String> {
        match self.get_playlist(player, block).await? {
            None => Ok(false),
            Some(200) => Ok(true),
            Some(status) => Err(format!("{}: HTTP {status} {}", self.path, self.conn.error_text())),
        }
    }

    /// Asks for the playlist, parsed if the status is 200; `None` when the
    /// player's time is up.
    async fn get_playlist(
        &mut self,
        player: &mut Player<'_>,
        block: Option<(u64, u64)>,
    ) -> Result<Option<u16>, String> {
        self.target.playlist_path(block, &mut self.path);
        self.body.clear();
        let status = self.conn.get(player, &self.path, &mut self.body).await?;
        if status == Some(200) {
            self.playlist.parse(&self.body.buf)?;
        }
        Ok(status)
    }

    /// Loads the initialisation segment at `uri` (a range of the playlist)
    /// unless it is the one loaded. `Ok(false)` when the player's time is up.
    async fn load_map(&mut self, player: &mut Player<'_>, uri: Range<usize>) -> Result<bool, String> {
        let uri = self.playlist.text(&uri);
        if self.map.as_ref().is_some_and(|(loaded, _)| loaded == uri) {
            return Ok(true);
        }
        let uri = uri.to_owned();
        self.target.resolve(&uri, &mut self.path)?;
        self.body.clear();
        let Some(status) = self.conn.get(player, &self.path, &mut self.body).await? else { return Ok(false) };
        if status != 200 {
            return Err(format!("{}: HTTP {status} {}", self.path, self.conn.error_text()));
        }
        let tracks = parse_init(&self.body.buf).map_err(|e| format!("{}: {e}", self.path))?;
        if !tracks.iter().any(|t| t.handler == Handler::Video) {
            return Err(format!("{}: no video track", self.path));
        }
        self.map = Some((uri, FragmentReader::new(tracks)));
        Ok(true)
    }

    /// Fetches the part at `uri` (a range of the playlist) and hands its
    /// frames to the player.
    async fn load_part(&mut self, player: &mut Player<'_>, uri: Range<usize>) -> Result<PartResult, String> {
        self.target.resolve(self.playlist.text(&uri), &mut self.path)?;
        let Some((_, reader)) = self.map.as_mut() else { return Err("no initialisation segment".into()) };
        let status = match self.conn.get(player, &self.path, reader).await {
            Ok(Some(status)) => status,
            Ok(None) => return Ok(PartResult::Stopped),
            Err(e) => {
                reader.reset();
                return Err(format!("{}: {e}", self.path));
            }
        };
        if matches!(status, 404 | 410) {
            reader.reset();
            return Ok(PartResult::Missing);
        }
        if status != 200 {
            return Err(format!("{}: HTTP {status} {}", self.path, self.conn.error_text()));
        }
        reader.finish().map_err(|e: Malformed| format!("{}: {e}", self.path))?;
        let at = Instant::now();
        for sample in reader.out.drain(..) {
            let video = match sample.handler {
                Handler::Video => true,
                Handler::Audio => false,
                Handler::Other => continue,
            };
            if video && std::mem::take(&mut self.expect_keyframe) && !sample.keyframe {
                return Err(format!("{}: marked INDEPENDENT=YES but starts with a non-keyframe", self.path));
            }
            player.received(video, (sample.dts_ms & 0xffff_ffff) as u32, at);
        }
        Ok(PartResult::Played)
    }
}

#[cfg(test)]
mod tests;
