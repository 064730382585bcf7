//! Writes the seed corpora, `corpus/<target>/seed-*`, from the committed
//! test streams in `testdata/` (small slices, parameter sets, headers) and
//! from sessions of this workspace's own RTMP client and server talking in
//! memory. Run with `cargo xtask fuzz --seed`, or
//! `cargo run --manifest-path fuzz/Cargo.toml --example seed`.
//!
//! Old `seed-*` files are removed first; other files in `corpus/` (inputs
//! that fuzzing found, kept locally, ignored by git) are left alone. The
//! RTMP handshake seeds hold random bytes (C1, S1), so they change on every
//! run; every other seed comes out the same.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use arcly_codec::annexb::split_annexb;
use arcly_codec::{aac, av1, h264, h265, vp9};
use arcly_core::frame::{CodecId, MediaFrame, Timebase};
use arcly_mux::amf0::{self, Amf0Value};
use arcly_mux::flv::{FlvHeader, FlvReader, FlvWriter};
use arcly_mux::ts::{DemuxEvent, TsDemuxer};
use arcly_rtmp::chunk::ChunkEncoder;
use arcly_rtmp::client::{ClientEvent, ClientMode, ClientSession, RtmpUrl};
use arcly_rtmp::handshake::{ClientHandshake, HANDSHAKE_SIZE};
use arcly_rtmp::session::{ServerSession, SessionConfig, SessionEvent};
use bytes::{Bytes, BytesMut};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Seeds by target, then by name.
#[derive(Default)]
struct Seeds(BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>);

impl Seeds {
    fn add(&mut self, target: &'static str, name: &str, data: impl AsRef<[u8]>) {
        self.0.entry(target).or_default().insert(name.to_owned(), data.as_ref().to_vec());
    }

    /// A seed for a streaming target: the seed byte that picks the cuts,
    /// then the stream.
    fn add_cut(&mut self, target: &'static str, name: &str, seed: u8, stream: &[u8]) {
        self.add(target, name, [&[seed][..], stream].concat());
    }
}

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn testdata(name: &str) -> Result<Bytes> {
    let path = fuzz_dir().join("../testdata").join(name);
    Ok(Bytes::from(fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?))
}

/// The first `n` bytes (or all).
fn head(data: &[u8], n: usize) -> &[u8] {
    &data[..n.min(data.len())]
}

/// The frame payloads of an IVF file.
fn ivf_frames(data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut pos = usize::from(u16::from_le_bytes([data[6], data[7]]));
    while let Some(h) = data.get(pos..pos + 12) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let Some(frame) = data.get(pos + 12..pos + 12 + len) else { break };
        frames.push(frame);
        pos += 12 + len;
    }
    frames
}

/// Length-prefixed (4 bytes) NAL units.
fn length_prefixed<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

fn main() -> Result<()> {
    let mut seeds = Seeds::default();
    kernel(&mut seeds);
    video(&mut seeds)?;
    audio(&mut seeds)?;
    containers(&mut seeds)?;
    rtmp(&mut seeds)?;
    hls(&mut seeds);
    write(&seeds)
}

fn kernel(seeds: &mut Seeds) {
    for (name, id) in
        [("plain", "live/stream"), ("query", "live/key?token=abc"), ("nested", "a/b/c"), ("dots", "live/..")]
    {
        seeds.add("identity", name, id);
    }
    seeds.add("identity", "unicode", "live/caméra-1");
    // A bus config (4 bytes), then publish/subscribe/poll operations.
    let ops: Vec<u8> = [8, 64, 16, 32].into_iter().chain((0..200u8).map(|i| i.wrapping_mul(37))).collect();
    seeds.add("bus_ops", "mixed", ops);
    seeds.add("bus_ops", "gop", [10, 10, 10, 10, 0, 0, 4, 1, 8, 2, 2, 0, 3, 0, 1, 5, 3, 1, 0, 0, 7, 0]);
}

fn video(seeds: &mut Seeds) -> Result<()> {
    let h264_es = testdata("h264.h264")?;
    seeds.add("annexb", "h264-head", head(&h264_es, 4096));
    let nals: Vec<&[u8]> = split_annexb(&h264_es).collect();
    let of = |t: u8| nals.iter().copied().filter(move |n| h264::nal_unit_type(n) == Some(t));
    let (sps, pps) = (of(h264::nal_type::SPS).next(), of(h264::nal_type::PPS).next());
    let (sps, pps) = (sps.ok_or("no H.264 SPS")?, pps.ok_or("no H.264 PPS")?);
    seeds.add("h264", "sps", sps);
    seeds.add("h264", "pps", pps);
    seeds.add("h264", "avcc", h264::AvcConfig::from_parameter_sets(&[sps], &[pps])?.to_bytes());
    if let Some(sei) = of(h264::nal_type::SEI).next() {
        seeds.add("h264", "sei", head(sei, 1024));
    }
    // The first access unit's NAL units up to the IDR slice, which is cut.
    let idr = nals.iter().position(|n| h264::nal_unit_type(n) == Some(h264::nal_type::IDR)).ok_or("no IDR")?;
    let au: Vec<&[u8]> = nals[..=idr].iter().map(|n| head(n, 512)).collect();
    seeds.add("h264", "keyframe-length-prefixed", length_prefixed(au));

    let hevc_es = testdata("hevc.hevc")?;
    seeds.add("annexb", "hevc-head", head(&hevc_es, 4096));
    let nals: Vec<&[u8]> = split_annexb(&hevc_es).collect();
    let of = |t: u8| nals.iter().copied().find(|n| h265::nal_unit_type(n) == Some(t));
    let (vps, sps, pps) = (of(h265::nal_type::VPS), of(h265::nal_type::SPS), of(h265::nal_type::PPS));
    let (vps, sps, pps) = (vps.ok_or("no VPS")?, sps.ok_or("no H.265 SPS")?, pps.ok_or("no H.265 PPS")?);
    seeds.add("h265", "vps", vps);
    seeds.add("h265", "sps", sps);
    seeds.add("h265", "pps", pps);
    seeds.add("h265", "hvcc", h265::HevcConfig::from_parameter_sets(&[vps], &[sps], &[pps])?.to_bytes());
    let irap = nals.iter().position(|n| h265::nal_unit_type(n).is_some_and(|t| (16..=21).contains(&t)));
    let au: Vec<&[u8]> = nals[..=irap.ok_or("no IRAP")?].iter().map(|n| head(n, 512)).collect();
    seeds.add("h265", "keyframe-length-prefixed", length_prefixed(au));

    let av1_file = testdata("av1.ivf")?;
    let frames = ivf_frames(&av1_file);
    let first = *frames.first().ok_or("no AV1 frame")?;
    seeds.add("av1", "keyframe-temporal-unit", head(first, 4096));
    let seq = av1::sequence_header_obu(first).ok_or("no AV1 sequence header")?;
    seeds.add("av1", "sequence-header-obu", seq);
    seeds.add("av1", "av1c", av1::Av1Config::from_sequence_header_obu(seq)?.to_bytes());
    if let Some(second) = frames.get(1) {
        seeds.add("av1", "inter-temporal-unit", head(second, 2048));
    }

    let vp9_file = testdata("vp9.ivf")?;
    let frames = ivf_frames(&vp9_file);
    let first = *frames.first().ok_or("no VP9 frame")?;
    seeds.add("vp9", "keyframe", head(first, 4096));
    let header = vp9::FrameHeader::parse(first)?;
    seeds.add("vp9", "vpcc", vp9::VpConfig::from_keyframe(&header).to_bytes());
    if let Some(superframe) = frames.iter().find(|f| vp9::superframe_frames(f).len() > 1) {
        seeds.add("vp9", "superframe", superframe);
    }

    // No VVC encoder in ffmpeg 5.1: SPS units from GStreamer's h266parser
    // tests (as in arcly-codec's own tests), and an access unit of NAL
    // headers (AUD, SPS, CRA).
    seeds.add(
        "vvc",
        "sps-1080p",
        [0x00, 0x79, 0x00, 0x8d, 0x02, 0x43, 0x80, 0x00, 0x00, 0xc0, 0x07, 0x81, 0x00, 0x21, 0xc8, 0xd4],
    );
    seeds.add(
        "vvc",
        "sps-spatscal",
        [0x00, 0x79, 0x01, 0x0d, 0x22, 0x66, 0xc0, 0x00, 0x40, 0x2c, 0x40, 0x48, 0x8d, 0x40, 0x17, 0xc8],
    );
    let au: Vec<u8> = [20u8, 15, 9].iter().flat_map(|t| [0, 0, 0, 3, 0x00, (t << 3) | 1, 0x80]).collect();
    seeds.add("vvc", "keyframe-length-prefixed", au);
    Ok(())
}

fn audio(seeds: &mut Seeds) -> Result<()> {
    let adts = testdata("aac_44100_mono.aac")?;
    let frames: Vec<_> = aac::split_adts(&adts).take(3).collect::<std::result::Result<_, _>>()?;
    let end: usize = frames.iter().map(|(h, _)| h.frame_length).sum();
    seeds.add("aac", "adts-frames", &adts[..end]);
    seeds.add("aac", "asc-44100-mono", frames[0].0.to_audio_specific_config().to_bytes());
    seeds.add("aac", "asc-48000-stereo", [0x11, 0x90]);
    // HE-AAC v2 with explicit SBR and PS signalling.
    seeds.add("aac", "asc-he-aac", [0x2b, 0x92, 0x08, 0x00]);

    let opus = testdata("opus.ts")?;
    let frames = ts_frames(&opus);
    let head_frame = frames.iter().find(|f| f.codec == CodecId::Opus && f.is_config()).ok_or("no OpusHead")?;
    seeds.add("opus", "opushead", &head_frame.payload);
    for (i, f) in frames.iter().filter(|f| f.codec == CodecId::Opus && !f.is_config()).take(2).enumerate() {
        seeds.add("opus", &format!("packet-{i}"), &f.payload);
    }
    Ok(())
}

fn ts_frames(data: &[u8]) -> Vec<MediaFrame> {
    let mut demux = TsDemuxer::new();
    demux.push(data);
    demux.flush();
    std::iter::from_fn(|| demux.poll())
        .filter_map(|e| match e {
            Ok(DemuxEvent::Frame(f)) => Some(f),
            _ => None,
        })
        .collect()
}

fn containers(seeds: &mut Seeds) -> Result<()> {
    let flv = testdata("h264_aac.flv")?;
    let mut reader = FlvReader::new();
    reader.push(&flv);
    let tags: Vec<_> = std::iter::from_fn(|| reader.next_tag()).collect::<std::result::Result<_, _>>()?;
    let meta = tags.iter().find(|t| t.tag_type == arcly_mux::flv::TagType::Script).ok_or("no onMetaData")?;
    for target in ["amf0", "amf0_roundtrip"] {
        seeds.add(target, "onmetadata", &meta.body);
        seeds.add(target, "connect", connect_command());
        let mut result = BytesMut::new();
        let status = Amf0Value::Object(vec![
            ("level".into(), "status".into()),
            ("code".into(), "NetStream.Publish.Start".into()),
            ("when".into(), Amf0Value::Date { millis: 1.7e12, timezone: 0 }),
            ("list".into(), Amf0Value::StrictArray(vec![Amf0Value::Null, Amf0Value::Undefined, true.into()])),
        ]);
        amf0::encode_all(&["onStatus".into(), 0.0.into(), Amf0Value::Null, status], &mut result);
        seeds.add(target, "onstatus", result);
    }

    let flv_head = head(&flv, 8192);
    seeds.add_cut("flv_read", "h264-aac-head", 0x0b, flv_head);
    seeds.add_cut("flv_read", "h264-aac-head-bytewise", 0x00, head(&flv, 1024));
    seeds.add("flv_roundtrip", "h264-aac-head", flv_head);
    // From FLV (high bit): 200 ms segments of 100 ms parts, fMP4 only.
    seeds.add_cut("hls_ingest", "flv-h264-aac-head", 0x80 | 0x40 | 0x08 | 0x01, head(&flv, 40 << 10));
    let enhanced = enhanced_flv()?;
    seeds.add_cut("flv_read", "enhanced", 0x07, &enhanced);
    seeds.add("flv_roundtrip", "enhanced", &enhanced);

    for (file, name, packets) in
        [("h264_aac.ts", "h264-aac-head", 128), ("hevc_aac.ts", "hevc-aac-head", 128), ("opus.ts", "opus-head", 24)]
    {
        let ts = testdata(file)?;
        let slice = head(&ts, packets * 188);
        seeds.add_cut("ts_demux", name, 0x0c, slice);
        seeds.add("ts_roundtrip", name, slice);
        // 300 ms segments of 40 ms parts, both formats; two keyframes.
        seeds.add_cut("hls_ingest", name, 0x02, head(&ts, 2 * packets * 188));
    }
    Ok(())
}

fn connect_command() -> Bytes {
    let mut out = BytesMut::new();
    let object = Amf0Value::Object(vec![
        ("app".into(), "live".into()),
        ("type".into(), "nonprivate".into()),
        ("flashVer".into(), "FMLE/3.0 (compatible; FMSc/1.0)".into()),
        ("tcUrl".into(), "rtmp://127.0.0.1:1935/live".into()),
        ("fpad".into(), false.into()),
        ("capabilities".into(), 239.0.into()),
        ("audioCodecs".into(), 3575.0.into()),
        ("videoCodecs".into(), 252.0.into()),
        ("objectEncoding".into(), 0.0.into()),
        ("fourCcList".into(), Amf0Value::StrictArray(vec!["hvc1".into(), "av01".into(), "vp09".into()])),
    ]);
    amf0::encode_all(&["connect".into(), 1.0.into(), object], &mut out);
    out.freeze()
}

/// An Enhanced FLV stream: H.265 (hvc1), AV1 (av01), VP9 (vp09) and Opus
/// configurations and a first frame each (payloads cut to 256 bytes).
fn enhanced_flv() -> Result<Vec<u8>> {
    let mut frames: Vec<MediaFrame> = Vec::new();
    let hevc = ts_frames(&testdata("hevc_aac.ts")?);
    frames.extend(hevc.iter().filter(|f| f.codec == CodecId::H265).take(2).cloned());
    let av1_file = testdata("av1.ivf")?;
    let first = ivf_frames(&av1_file)[0];
    let seq = av1::sequence_header_obu(first).ok_or("no AV1 sequence header")?;
    let config = av1::Av1Config::from_sequence_header_obu(seq)?.to_bytes();
    let ms = Timebase::MILLIS;
    frames.push(MediaFrame::new(CodecId::Av1, config).with_flags(arcly_core::frame::FrameFlags::CONFIG));
    frames.push(
        MediaFrame::new(CodecId::Av1, Bytes::copy_from_slice(first))
            .with_timestamps(0, 0, ms)
            .with_flags(arcly_core::frame::FrameFlags::KEYFRAME),
    );
    let vp9_file = testdata("vp9.ivf")?;
    let first = ivf_frames(&vp9_file)[0];
    let config = vp9::VpConfig::from_keyframe(&vp9::FrameHeader::parse(first)?).to_bytes();
    frames.push(MediaFrame::new(CodecId::Vp9, config).with_flags(arcly_core::frame::FrameFlags::CONFIG));
    frames.push(
        MediaFrame::new(CodecId::Vp9, Bytes::copy_from_slice(first))
            .with_timestamps(40, 40, ms)
            .with_flags(arcly_core::frame::FrameFlags::KEYFRAME),
    );
    let opus = ts_frames(&testdata("opus.ts")?);
    frames.extend(opus.iter().filter(|f| f.codec == CodecId::Opus).take(2).cloned());
    let mut writer = FlvWriter::new();
    let mut out = BytesMut::from(&FlvWriter::header(FlvHeader { has_audio: true, has_video: true })[..]);
    for mut frame in frames {
        frame.payload.truncate(256);
        writer.write_frame(&frame, &mut out)?;
    }
    Ok(out.to_vec())
}

/// The first frames of h264_aac.flv, about `budget` bytes of payload:
/// metadata, both configurations, then media.
fn flv_frames(budget: usize) -> Result<Vec<MediaFrame>> {
    let flv = testdata("h264_aac.flv")?;
    let mut reader = FlvReader::new();
    reader.push(&flv);
    let mut frames = Vec::new();
    let mut total = 0;
    while let Some(tag) = reader.next_tag() {
        let Some(mut frame) = tag?.to_frame()? else { continue };
        if total > budget {
            break;
        }
        // Keep media payloads small; the parsers read only their start.
        frame.payload.truncate(1024);
        total += frame.payload.len();
        frames.push(frame);
    }
    Ok(frames)
}

/// One session of our client against our server in memory: the bytes each
/// sent (handshake included). A publisher sends `frames` once publishing;
/// a player is sent `frames` once playing.
fn session(mode: ClientMode, frames: &[MediaFrame]) -> Result<(Vec<u8>, Vec<u8>)> {
    let now = Instant::now();
    let url = RtmpUrl::parse("rtmp://127.0.0.1/live/fuzz").ok_or("bad URL")?;
    let mut client = ClientSession::new(url, mode)?;
    let mut server = ServerSession::new(SessionConfig::default(), now);
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut media_sent = false;
    loop {
        let mut moved = false;
        while let Some(b) = client.poll_transmit() {
            to_server.extend_from_slice(&b);
            server.handle_input(&b, now)?;
            moved = true;
        }
        while let Some(event) = server.poll_event() {
            match event {
                SessionEvent::Publish { stream_id, .. } => server.accept_publish(stream_id)?,
                SessionEvent::Play { stream_id, .. } => {
                    server.accept_play(stream_id)?;
                    for frame in frames {
                        server.send_media(stream_id, frame)?;
                    }
                }
                _ => {}
            }
        }
        while let Some(b) = server.poll_transmit() {
            to_client.extend_from_slice(&b);
            client.handle_input(&b)?;
            moved = true;
        }
        while let Some(event) = client.poll_event() {
            if event == ClientEvent::Publishing && !media_sent {
                media_sent = true;
                for frame in frames {
                    client.send_media(frame)?;
                }
            }
        }
        if !moved {
            break;
        }
    }
    if !client.is_active() {
        return Err("the in-memory RTMP session did not get going".into());
    }
    Ok((to_server, to_client))
}

fn rtmp(seeds: &mut Seeds) -> Result<()> {
    let hello = 1 + 2 * HANDSHAKE_SIZE;
    let frames = flv_frames(6000)?;
    let (publish_in, publish_out) = session(ClientMode::Publish, &frames)?;
    let (play_in, play_out) = session(ClientMode::Play, &frames)?;

    // Handshakes: a digest client's C0+C1+C2 and a plain one's.
    seeds.add_cut("rtmp_handshake", "digest-client", 0x80 | 0x05, head(&publish_in, hello));
    let (_, c0c1) = ClientHandshake::new(false)?;
    let mut plain = c0c1.to_vec();
    plain.resize(hello, 0x5a);
    seeds.add_cut("rtmp_handshake", "plain-client", 0x0a, &plain);
    seeds.add_cut("rtmp_handshake", "server-answer", 0x03, head(&publish_out, hello));

    // Chunk streams after the handshake: a publisher's (Set Chunk Size to
    // 4096 first, commands, media) and a player's; the server's answer.
    seeds.add_cut("rtmp_chunk", "publish", 0x06, &publish_in[hello..]);
    // Bit 6 of the seed byte: the encoder round trip too.
    seeds.add_cut("rtmp_chunk", "publish-round-trip", 0x46, head(&publish_in[hello..], 512));
    seeds.add_cut("rtmp_chunk", "play-answer", 0x0b, head(&play_out[hello..], 8192));
    seeds.add_cut("rtmp_chunk", "encoder-small-chunks", 0x02, &small_chunks());
    seeds.add_cut("rtmp_server", "publish", 0x06, &publish_in[hello..]);
    seeds.add_cut("rtmp_server", "publish-driven", 0x80 | 0x09, &publish_in[hello..]);
    seeds.add_cut("rtmp_server", "play-driven", 0x80 | 0x04, &play_in[hello..]);
    seeds.add_cut("rtmp_client", "publish", 0x05, &publish_out[hello..]);
    seeds.add_cut("rtmp_client", "play", 0x80 | 0x0a, head(&play_out[hello..], 8192));
    Ok(())
}

/// Messages cut into 128-byte chunks on several chunk streams, with
/// extended timestamps and a Set Chunk Size part way.
fn small_chunks() -> Vec<u8> {
    let mut encoder = ChunkEncoder::new();
    let mut parts = Vec::new();
    for i in 0..6u32 {
        let body = Bytes::from(vec![i as u8; 300 + 50 * i as usize]);
        encoder.write(4 + i % 2, 9, 1, 0x00ff_fff0 + 40 * i, &[body.slice(..100), body.slice(100..)], &mut parts);
        if i == 3 {
            encoder.set_chunk_size(200, &mut parts);
        }
    }
    encoder.write(320, 18, 1, 7, &[Bytes::from_static(b"\x02\x00\x0aonMetaData\x05")], &mut parts);
    parts.concat()
}

fn hls(seeds: &mut Seeds) {
    for (name, request) in [
        ("blocking-part", "_HLS_msn=3&_HLS_part=1\npart3.1.m4s"),
        ("delta", "_HLS_skip=YES&token=abc\nseg2.m4s"),
        ("ts", "_HLS_skip=v2\nts/seg3.ts"),
        ("init", "_HLS_msn=0\ninit.mp4"),
        ("old-part", "_HLS_msn=18446744073709551615\npart0.0.m4s"),
    ] {
        seeds.add("hls_params", name, request);
    }
    let pattern: Vec<u8> = (0..1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    seeds.add("hls_packager", "pattern", &pattern);
    let steady: Vec<u8> = (0..200u32).flat_map(|i| [3, u8::from(i % 25 == 0), 40, 0]).collect();
    seeds.add("hls_packager", "steady-h264", steady);
}

fn write(seeds: &Seeds) -> Result<()> {
    let corpus = fuzz_dir().join("corpus");
    let mut total = 0;
    for (target, files) in &seeds.0 {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        for old in fs::read_dir(&dir)? {
            let path = old?.path();
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("seed-")) {
                fs::remove_file(&path)?;
            }
        }
        let mut bytes = 0;
        for (name, data) in files {
            fs::write(dir.join(format!("seed-{name}")), data)?;
            bytes += data.len();
        }
        println!("{target:>16}: {} seeds, {bytes} bytes", files.len());
        total += bytes;
    }
    println!("{:>16}: {total} bytes in fuzz/corpus", "total");
    Ok(())
}
