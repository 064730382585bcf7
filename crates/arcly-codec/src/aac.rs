//! AAC: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) and ADTS
//! framing (§1.A.2).
//!
//! On the bus an AAC frame is one raw access unit without an ADTS header,
//! and the `CONFIG` frame is an [`AudioSpecificConfig`].

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::Bytes;

use crate::bits::{BitReader, BitWriter};

const PROTOCOL: &str = "aac";

fn invalid(context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, ProtocolErrorKind::InvalidValue, context)
}

/// The MPEG-4 sampling frequency table: `samplingFrequencyIndex` 0–12.
pub const SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// Audio object types with special handling.
mod object_type {
    pub(super) const AAC_LC: u8 = 2;
    pub(super) const SBR: u8 = 5;
    pub(super) const PS: u8 = 29;
    pub(super) const ER_BSAC: u8 = 22;
}

/// The index of `rate` in [`SAMPLE_RATES`].
fn rate_index(rate: u32) -> Option<u8> {
    SAMPLE_RATES.iter().position(|&r| r == rate).map(|i| i as u8)
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8, ProtocolError> {
    match r.read_bits(5)? as u8 {
        31 => Ok(32 + r.read_bits(6)? as u8),
        t => Ok(t),
    }
}

fn write_object_type(w: &mut BitWriter, object_type: u8) {
    if object_type >= 31 {
        w.write_bits(31, 5);
        w.write_bits(u64::from(object_type.saturating_sub(32)), 6);
    } else {
        w.write_bits(u64::from(object_type), 5);
    }
}

fn read_sample_rate(r: &mut BitReader<'_>) -> Result<u32, ProtocolError> {
    match r.read_bits(4)? as usize {
        0xf => match r.read_u32(24)? {
            0 => Err(invalid("explicit sampling frequency 0")),
            rate => Ok(rate),
        },
        i => SAMPLE_RATES.get(i).copied().ok_or_else(|| invalid(format!("reserved samplingFrequencyIndex {i}"))),
    }
}

fn write_sample_rate(w: &mut BitWriter, rate: u32) {
    match rate_index(rate) {
        Some(i) => w.write_bits(u64::from(i), 4),
        None => {
            w.write_bits(0xf, 4);
            w.write_bits(u64::from(rate), 24);
        }
    }
}

/// Object types whose config is a GASpecificConfig (§1.6.2.1, Table 1.15).
fn is_general_audio(object_type: u8) -> bool {
    matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23)
}

/// Error-resilient object types, whose config ends with `epConfig`.
fn is_error_resilient(object_type: u8) -> bool {
    matches!(object_type, 17 | 19..=27 | 39)
}

/// An AudioSpecificConfig: the `CONFIG` payload of AAC on the bus, and the
/// contents of MP4's `esds` decoder-specific info.
///
/// HE-AAC appears in two ways. With explicit signalling `object_type` is 5
/// (SBR) or 29 (SBR + PS), `sample_rate` is the core AAC-LC rate and
/// `extension_sample_rate` the output rate. With backward-compatible
/// signalling `object_type` is 2 and a sync extension at the end sets
/// `sbr`, `ps` and `extension_sample_rate`. `None` means "not signalled":
/// a decoder may still find SBR in the stream (implicit signalling).
///
/// ```
/// use arcly_codec::aac::AudioSpecificConfig;
/// let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap();
/// assert_eq!(asc, AudioSpecificConfig::new_lc(44100, 2));
/// assert_eq!(&asc.to_bytes()[..], &[0x12, 0x10]);
///
/// // HE-AAC v2, explicit: core 24 kHz, output 48 kHz, mono core with PS.
/// let he = AudioSpecificConfig::parse(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
/// assert_eq!((he.object_type, he.sample_rate, he.extension_sample_rate), (29, 24000, Some(48000)));
/// assert_eq!((he.sbr, he.ps, he.frame_samples()), (Some(true), Some(true), 2048));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type: 2 AAC-LC, 5 SBR (HE-AAC), 29 PS (HE-AAC v2), ...
    /// Types 32–95 use the escape code; 31 itself is the escape and is not
    /// a type ([`AudioSpecificConfig::to_bytes`] writes it as 32).
    pub object_type: u8,
    /// Sampling rate of the core decoder in Hz.
    pub sample_rate: u32,
    /// `channelConfiguration`: 1–7 for the standard layouts, 0 when a
    /// program config element defines them.
    pub channel_config: u8,
    /// Whether SBR is present, when signalled.
    pub sbr: Option<bool>,
    /// Whether parametric stereo is present, when signalled.
    pub ps: Option<bool>,
    /// The SBR output sampling rate in Hz, when signalled.
    pub extension_sample_rate: Option<u32>,
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig.
    ///
    /// Explicit HE-AAC (object types 5 and 29) must wrap AAC-LC; other core
    /// types are rejected as unsupported. The backward-compatible sync
    /// extension (`0x2b7`) is looked for after a GASpecificConfig; it
    /// cannot be located after a program config element, so with
    /// `channel_config` 0 the fields after it are not read. The
    /// `frameLengthFlag` (960-sample frames) is not kept.
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = BitReader::new(PROTOCOL, data);
        let mut object_type = read_object_type(&mut r)?;
        let sample_rate = read_sample_rate(&mut r)?;
        let channel_config = r.read_bits(4)? as u8;
        let mut asc = AudioSpecificConfig {
            object_type,
            sample_rate,
            channel_config,
            sbr: None,
            ps: None,
            extension_sample_rate: None,
        };
        let explicit = matches!(object_type, object_type::SBR | object_type::PS);
        if explicit {
            asc.sbr = Some(true);
            asc.ps = Some(object_type == object_type::PS);
            asc.extension_sample_rate = Some(read_sample_rate(&mut r)?);
            object_type = read_object_type(&mut r)?;
            if object_type != object_type::AAC_LC {
                return Err(ProtocolError::new(
                    PROTOCOL,
                    ProtocolErrorKind::Unsupported,
                    format!("HE-AAC over core object type {object_type} (only AAC-LC is supported)"),
                ));
            }
        }
        if !is_general_audio(object_type) {
            return Ok(asc);
        }
        if !read_ga_specific_config(&mut r, object_type, channel_config)? {
            return Ok(asc);
        }
        if is_error_resilient(object_type) {
            // epConfig 2 and 3 add an ErrorProtectionSpecificConfig, which
            // this parser does not walk.
            if r.read_bits(2)? >= 2 {
                return Ok(asc);
            }
        }
        if !explicit && r.remaining() >= 16 {
            read_sync_extension(&mut r, &mut asc)?;
        }
        Ok(asc)
    }

    /// Serializes the config.
    ///
    /// The rate is written as a table index when it is in [`SAMPLE_RATES`],
    /// else as an explicit 24-bit frequency. Object types 5 and 29 are
    /// written in the explicit hierarchical form over AAC-LC; other types
    /// with `sbr: Some(_)` get the backward-compatible sync extension (and
    /// the PS one when `ps` is set). The GASpecificConfig flags are zero
    /// (1024-sample frames, no core coder).
    pub fn to_bytes(&self) -> Bytes {
        let mut w = BitWriter::default();
        write_object_type(&mut w, self.object_type);
        write_sample_rate(&mut w, self.sample_rate);
        w.write_bits(u64::from(self.channel_config), 4);
        let explicit = matches!(self.object_type, object_type::SBR | object_type::PS);
        let core = if explicit {
            write_sample_rate(&mut w, self.extension_sample_rate.unwrap_or(self.sample_rate.saturating_mul(2)));
            write_object_type(&mut w, object_type::AAC_LC);
            object_type::AAC_LC
        } else {
            self.object_type
        };
        if is_general_audio(core) {
            w.write_bits(0, 3); // frameLengthFlag, dependsOnCoreCoder, extensionFlag
            if matches!(core, 6 | 20) {
                w.write_bits(0, 3); // layerNr
            }
            if is_error_resilient(core) {
                w.write_bits(0, 2); // epConfig
            }
            // After a program config element the extension could not be
            // found again, so it is only written with a channel config.
            if let Some(sbr) = self.sbr.filter(|_| !explicit && self.channel_config != 0) {
                w.write_bits(0x2b7, 11);
                write_object_type(&mut w, object_type::SBR);
                w.write_flag(sbr);
                if sbr {
                    write_sample_rate(&mut w, self.extension_sample_rate.unwrap_or(self.sample_rate.saturating_mul(2)));
                    if let Some(ps) = self.ps {
                        w.write_bits(0x548, 11);
                        w.write_flag(ps);
                    }
                }
            }
        }
        Bytes::from(w.finish())
    }

    /// An AAC-LC config for `channels` channels (1–7 map to the standard
    /// channel configurations).
    ///
    /// ```
    /// use arcly_codec::aac::AudioSpecificConfig;
    /// let asc = AudioSpecificConfig::new_lc(48000, 2);
    /// assert_eq!(&asc.to_bytes()[..], &[0x11, 0x90]);
    /// ```
    pub fn new_lc(sample_rate: u32, channels: u8) -> Self {
        AudioSpecificConfig {
            object_type: object_type::AAC_LC,
            sample_rate,
            channel_config: channels,
            sbr: None,
            ps: None,
            extension_sample_rate: None,
        }
    }

    /// Samples per channel that one access unit decodes to: 1024, or 2048
    /// when SBR is signalled (`sbr == Some(true)`, which includes object
    /// types 5 and 29). With SBR the 2048 samples are at
    /// `extension_sample_rate` (normally twice `sample_rate`), so one frame
    /// lasts 1024 ticks of `sample_rate` either way.
    ///
    /// ```
    /// use arcly_codec::aac::AudioSpecificConfig;
    /// assert_eq!(AudioSpecificConfig::new_lc(44100, 1).frame_samples(), 1024);
    /// ```
    pub fn frame_samples(&self) -> u32 {
        if self.sbr == Some(true) { 2048 } else { 1024 }
    }
}

/// Reads a GASpecificConfig (§4.4.1). Returns false when a program config
/// element follows, since the position after it is not tracked.
fn read_ga_specific_config(r: &mut BitReader<'_>, object_type: u8, channel_config: u8) -> Result<bool, ProtocolError> {
    let _frame_length_flag = r.read_flag()?;
    if r.read_flag()? {
        r.skip(14)?; // coreCoderDelay
    }
    let extension_flag = r.read_flag()?;
    if channel_config == 0 {
        return Ok(false);
    }
    if matches!(object_type, 6 | 20) {
        r.skip(3)?; // layerNr
    }
    if extension_flag {
        if object_type == object_type::ER_BSAC {
            r.skip(5 + 11)?; // numOfSubFrame, layer_length
        }
        if matches!(object_type, 17 | 19 | 20 | 23) {
            r.skip(3)?; // the three resilience flags
        }
        r.skip(1)?; // extensionFlag3
    }
    Ok(true)
}

/// Reads the backward-compatible SBR/PS signalling (§1.6.5.2) at the end
/// of a config, if present.
fn read_sync_extension(r: &mut BitReader<'_>, asc: &mut AudioSpecificConfig) -> Result<(), ProtocolError> {
    if r.read_bits(11)? != 0x2b7 {
        return Ok(());
    }
    // Other extension types (ER BSAC's 22) carry nothing this type keeps.
    if read_object_type(r)? != object_type::SBR {
        return Ok(());
    }
    let sbr = r.read_flag()?;
    asc.sbr = Some(sbr);
    if sbr {
        asc.extension_sample_rate = Some(read_sample_rate(r)?);
        if r.remaining() >= 12 && r.read_bits(11)? == 0x548 {
            asc.ps = Some(r.read_flag()?);
        }
    }
    Ok(())
}

/// An ADTS frame header (ISO/IEC 13818-7 §6.2 / 14496-3 §1.A.2.2).
///
/// ```
/// use arcly_codec::aac::{AdtsHeader, AudioSpecificConfig};
/// let header = AdtsHeader::write(&AudioSpecificConfig::new_lc(44100, 1), 200).unwrap();
/// let parsed = AdtsHeader::parse(&header).unwrap();
/// assert_eq!((parsed.sample_rate, parsed.channel_config), (44100, 1));
/// assert_eq!((parsed.frame_length, parsed.header_length, parsed.raw_blocks), (207, 7, 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdtsHeader {
    /// Audio object type: the 2-bit `profile` plus one (2 for AAC-LC).
    pub object_type: u8,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// `channel_configuration` (0–7).
    pub channel_config: u8,
    /// The whole frame's length in bytes, header included.
    pub frame_length: usize,
    /// The header's length: 7, or 9 with a CRC.
    pub header_length: usize,
    /// Raw data blocks in the frame, 1–4 (the header field plus one).
    /// Only frames with one block hold a single access unit.
    pub raw_blocks: u8,
}

impl AdtsHeader {
    /// Parses the header at the start of `data` (which may hold more).
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        let Some(fixed) = data.get(..7) else {
            let context = format!("ADTS header needs 7 bytes, have {}", data.len());
            return Err(ProtocolError::new(PROTOCOL, ProtocolErrorKind::Truncated, context));
        };
        let mut r = BitReader::new(PROTOCOL, fixed);
        if r.read_bits(12)? != 0xfff {
            return Err(invalid("missing ADTS sync word 0xFFF"));
        }
        let _mpeg2 = r.read_flag()?;
        if r.read_bits(2)? != 0 {
            return Err(invalid("ADTS layer is not 0"));
        }
        let protection_absent = r.read_flag()?;
        let object_type = r.read_bits(2)? as u8 + 1;
        let index = r.read_bits(4)? as usize;
        let sample_rate = *SAMPLE_RATES
            .get(index)
            .ok_or_else(|| invalid(format!("reserved ADTS sampling_frequency_index {index}")))?;
        r.skip(1)?; // private_bit
        let channel_config = r.read_bits(3)? as u8;
        r.skip(4)?; // original_copy, home, copyright id bit and start
        let frame_length = r.read_bits(13)? as usize;
        r.skip(11)?; // adts_buffer_fullness
        let raw_blocks = r.read_bits(2)? as u8 + 1;
        let header_length = if protection_absent { 7 } else { 9 };
        if data.len() < header_length {
            let context = format!("ADTS header with CRC needs 9 bytes, have {}", data.len());
            return Err(ProtocolError::new(PROTOCOL, ProtocolErrorKind::Truncated, context));
        }
        if frame_length < header_length {
            return Err(invalid(format!("ADTS frame_length {frame_length} < header length {header_length}")));
        }
        Ok(AdtsHeader { object_type, sample_rate, channel_config, frame_length, header_length, raw_blocks })
    }

    /// The AudioSpecificConfig this header describes (SBR and PS are
    /// never signalled in ADTS).
    ///
    /// ```
    /// use arcly_codec::aac::{AdtsHeader, AudioSpecificConfig};
    /// let header = AdtsHeader::parse(&[0xff, 0xf1, 0x50, 0x40, 0x11, 0x9f, 0xfc]).unwrap();
    /// assert_eq!(header.to_audio_specific_config(), AudioSpecificConfig::new_lc(44100, 1));
    /// ```
    pub fn to_audio_specific_config(&self) -> AudioSpecificConfig {
        AudioSpecificConfig {
            object_type: self.object_type,
            sample_rate: self.sample_rate,
            channel_config: self.channel_config,
            sbr: None,
            ps: None,
            extension_sample_rate: None,
        }
    }

    /// A 7-byte ADTS header (MPEG-4, no CRC, one raw data block, VBR
    /// buffer fullness) for a raw AAC frame of `payload_len` bytes.
    ///
    /// HE-AAC configs (object types 5 and 29) are written as their AAC-LC
    /// core at the core `sample_rate`, as ADTS signals SBR implicitly. Fails
    /// when the object type has no ADTS profile (only 1–4 do), the rate is
    /// not in [`SAMPLE_RATES`], `channel_config` > 7, or the frame exceeds
    /// 8191 bytes.
    pub fn write(config: &AudioSpecificConfig, payload_len: usize) -> Result<[u8; 7], ProtocolError> {
        let object_type = match config.object_type {
            object_type::SBR | object_type::PS => object_type::AAC_LC,
            t @ 1..=4 => t,
            t => return Err(invalid(format!("object type {t} cannot be carried in ADTS"))),
        };
        let index = rate_index(config.sample_rate)
            .ok_or_else(|| invalid(format!("sample rate {} has no ADTS frequency index", config.sample_rate)))?;
        if config.channel_config > 7 {
            return Err(invalid(format!("channel configuration {} > 7", config.channel_config)));
        }
        let frame_length = payload_len.checked_add(7).filter(|&l| l < 1 << 13).ok_or_else(|| {
            ProtocolError::new(
                PROTOCOL,
                ProtocolErrorKind::TooLarge,
                format!("ADTS frame of {payload_len} + 7 bytes > 8191"),
            )
        })?;
        let mut w = BitWriter::default();
        w.write_bits(0xfff, 12);
        w.write_bits(0, 3); // MPEG-4, layer 0
        w.write_flag(true); // protection_absent
        w.write_bits(u64::from(object_type - 1), 2);
        w.write_bits(u64::from(index), 4);
        w.write_flag(false);
        w.write_bits(u64::from(config.channel_config), 3);
        w.write_bits(0, 4);
        w.write_bits(frame_length as u64, 13);
        w.write_bits(0x7ff, 11);
        w.write_bits(0, 2);
        let mut out = [0; 7];
        out.copy_from_slice(&w.finish());
        Ok(out)
    }
}

/// Iterator over the frames of an ADTS stream.
struct AdtsFrames<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for AdtsFrames<'a> {
    type Item = Result<(AdtsHeader, &'a [u8]), ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..).filter(|rest| !rest.is_empty() && !self.failed)?;
        let at = self.pos as u64;
        let result = AdtsHeader::parse(rest).map_err(|e| e.at(at)).and_then(|header| {
            let payload = rest.get(header.header_length..header.frame_length).ok_or_else(|| {
                let context = format!("ADTS frame of {} bytes, {} left", header.frame_length, rest.len());
                ProtocolError::new(PROTOCOL, ProtocolErrorKind::Truncated, context).at(at)
            })?;
            Ok((header, payload))
        });
        match &result {
            Ok((header, _)) => self.pos += header.frame_length,
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

/// The frames of an ADTS stream: each header and its raw payload (after the
/// header and CRC). Stops after the first error, which is yielded with its
/// byte offset; bytes that are not ADTS are an error, not skipped.
///
/// ```
/// use arcly_codec::aac::{AdtsHeader, AudioSpecificConfig, split_adts};
/// let mut stream = AdtsHeader::write(&AudioSpecificConfig::new_lc(48000, 2), 3).unwrap().to_vec();
/// stream.extend_from_slice(&[1, 2, 3]);
/// let frames: Vec<_> = split_adts(&stream).collect::<Result<_, _>>().unwrap();
/// assert_eq!(frames.len(), 1);
/// assert_eq!(frames[0].1, &[1, 2, 3]);
/// assert!(split_adts(&stream[..9]).next().unwrap().is_err());
/// ```
pub fn split_adts(data: &[u8]) -> impl Iterator<Item = Result<(AdtsHeader, &[u8]), ProtocolError>> {
    AdtsFrames { data, pos: 0, failed: false }
}

/// Fuzz entry point: parsers must return, and accepted configs must
/// round-trip.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    if let Ok(asc) = AudioSpecificConfig::parse(data) {
        let again = AudioSpecificConfig::parse(&asc.to_bytes());
        assert_eq!(again.as_ref(), Ok(&asc), "AudioSpecificConfig round trip");
        let _ = asc.frame_samples();
    }
    let mut end = 0;
    for frame in split_adts(data) {
        let Ok((header, payload)) = frame else { break };
        assert!(payload.len() + header.header_length == header.frame_length);
        end += header.frame_length;
        if let Ok(h) = AdtsHeader::write(&header.to_audio_specific_config(), payload.len()) {
            let back = AdtsHeader::parse(&h).expect("written ADTS header parses");
            assert_eq!((back.sample_rate, back.channel_config), (header.sample_rate, header.channel_config));
        }
    }
    assert!(end <= data.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn he(object_type: u8, sample_rate: u32, ext: u32, ps: bool) -> AudioSpecificConfig {
        AudioSpecificConfig {
            object_type,
            sample_rate,
            channel_config: 2,
            sbr: Some(true),
            ps: Some(ps),
            extension_sample_rate: Some(ext),
        }
    }

    #[test]
    fn known_configs() {
        // AAC-LC 48 kHz stereo, as every encoder writes it.
        assert_eq!(AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap(), AudioSpecificConfig::new_lc(48000, 2));
        // HE-AAC explicit: object type 5, 22.05 kHz core, 44.1 kHz out, stereo, over LC.
        let asc = AudioSpecificConfig::parse(&[0x2b, 0x92, 0x08, 0x00]).unwrap();
        assert_eq!(
            asc,
            AudioSpecificConfig {
                object_type: 5,
                sample_rate: 22050,
                channel_config: 2,
                sbr: Some(true),
                ps: Some(false),
                extension_sample_rate: Some(44100),
            }
        );
        assert_eq!(&asc.to_bytes()[..], &[0x2b, 0x92, 0x08, 0x00]);
        // Backward-compatible HE-AAC v2: LC 24 kHz mono + 0x2b7 SBR 48 kHz + 0x548 PS.
        let bytes = [0x13, 0x08, 0x56, 0xe5, 0x9d, 0x48, 0x80];
        let asc = AudioSpecificConfig::parse(&bytes).unwrap();
        assert_eq!(
            asc,
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 24000,
                channel_config: 1,
                sbr: Some(true),
                ps: Some(true),
                extension_sample_rate: Some(48000),
            }
        );
        assert_eq!(&asc.to_bytes()[..], &bytes[..]);
        assert_eq!(asc.frame_samples(), 2048);
    }

    #[test]
    fn explicit_frequency() {
        let asc = AudioSpecificConfig::new_lc(44000, 1);
        let bytes = asc.to_bytes();
        // 5 + 4 + 24 + 4 + 3 bits.
        assert_eq!(bytes.len(), 5);
        assert_eq!(bytes[0] >> 3, 2);
        assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
        // An explicit frequency that is in the table parses to the same rate.
        let mut w = BitWriter::default();
        w.write_bits(2, 5);
        w.write_bits(0xf, 4);
        w.write_bits(48000, 24);
        w.write_bits(2, 4);
        w.write_bits(0, 3);
        assert_eq!(AudioSpecificConfig::parse(&w.finish()).unwrap(), AudioSpecificConfig::new_lc(48000, 2));
    }

    #[test]
    fn escaped_object_type() {
        // Object type 42 (USAC) needs the 31 escape.
        let asc = AudioSpecificConfig { object_type: 42, ..AudioSpecificConfig::new_lc(48000, 2) };
        let bytes = asc.to_bytes();
        assert_eq!(bytes[0] >> 3, 31);
        assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
    }

    #[test]
    fn invalid_configs() {
        assert_eq!(AudioSpecificConfig::parse(&[]).unwrap_err().kind, ProtocolErrorKind::Truncated);
        assert!(AudioSpecificConfig::parse(&[0x11]).is_err(), "truncated");
        assert!(AudioSpecificConfig::parse(&[0x16, 0x90]).is_err(), "reserved index 13");
        assert!(AudioSpecificConfig::parse(&[0x17, 0x80, 0, 0, 0x10]).is_err(), "explicit rate 0");
        // SBR over AAC Main (object type 1) is not supported.
        let bad = AudioSpecificConfig::parse(&[0x2b, 0x92, 0x04, 0x00]).unwrap_err();
        assert_eq!(bad.kind, ProtocolErrorKind::Unsupported);
    }

    #[test]
    fn sbr_absent_extension() {
        // LC 44.1 kHz stereo + 0x2b7, SBR object type, sbrPresentFlag 0.
        let asc = AudioSpecificConfig { sbr: Some(false), ..AudioSpecificConfig::new_lc(44100, 2) };
        let bytes = asc.to_bytes();
        assert_eq!(&bytes[..], &[0x12, 0x10, 0x56, 0xe5, 0x00]);
        assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
        assert_eq!(asc.frame_samples(), 1024);
    }

    #[test]
    fn adts_known_header() {
        // The first header of testdata/aac_44100_mono.aac style: LC, 44.1 kHz, mono.
        let h = AdtsHeader::parse(&[0xff, 0xf1, 0x50, 0x40, 0x11, 0x9f, 0xfc]).unwrap();
        assert_eq!(
            h,
            AdtsHeader {
                object_type: 2,
                sample_rate: 44100,
                channel_config: 1,
                frame_length: 140,
                header_length: 7,
                raw_blocks: 1
            }
        );
        // With CRC (protection_absent 0): 9 bytes.
        let crc = AdtsHeader::parse(&[0xff, 0xf0, 0x50, 0x40, 0x11, 0x9f, 0xfc, 0xab, 0xcd]).unwrap();
        assert_eq!(crc.header_length, 9);
        assert!(AdtsHeader::parse(&[0xff, 0xf0, 0x50, 0x40, 0x11, 0x9f, 0xfc, 0xab]).is_err(), "CRC cut");
        assert!(AdtsHeader::parse(&[0xff, 0xf1, 0x50, 0x40, 0x11, 0x9f]).is_err(), "6 bytes");
        assert!(AdtsHeader::parse(&[0xff, 0xe1, 0x50, 0x40, 0x11, 0x9f, 0xfc]).is_err(), "no sync");
        assert!(AdtsHeader::parse(&[0xff, 0xf3, 0x50, 0x40, 0x11, 0x9f, 0xfc]).is_err(), "layer 1");
        assert!(AdtsHeader::parse(&[0xff, 0xf1, 0x74, 0x40, 0x11, 0x9f, 0xfc]).is_err(), "index 13");
        // frame_length 6 < 7.
        assert!(AdtsHeader::parse(&[0xff, 0xf1, 0x50, 0x40, 0x00, 0xdf, 0xfc]).is_err());
    }

    #[test]
    fn adts_write_errors() {
        let lc = AudioSpecificConfig::new_lc(44100, 2);
        assert!(AdtsHeader::write(&lc, 8184).is_ok());
        assert_eq!(AdtsHeader::write(&lc, 8185).unwrap_err().kind, ProtocolErrorKind::TooLarge);
        assert!(AdtsHeader::write(&lc, usize::MAX).is_err());
        assert!(AdtsHeader::write(&AudioSpecificConfig::new_lc(44000, 2), 10).is_err());
        assert!(AdtsHeader::write(&AudioSpecificConfig::new_lc(44100, 8), 10).is_err());
        assert!(AdtsHeader::write(&AudioSpecificConfig { object_type: 42, ..lc.clone() }, 10).is_err());
        // HE-AAC goes out as its LC core.
        let header = AdtsHeader::write(&he(5, 24000, 48000, false), 10).unwrap();
        let parsed = AdtsHeader::parse(&header).unwrap();
        assert_eq!((parsed.object_type, parsed.sample_rate), (2, 24000));
    }

    #[test]
    fn split_adts_stops_after_an_error() {
        let lc = AudioSpecificConfig::new_lc(44100, 1);
        let mut stream = Vec::new();
        for len in [0, 5, 100] {
            stream.extend_from_slice(&AdtsHeader::write(&lc, len).unwrap());
            stream.extend((0..len).map(|i| i as u8));
        }
        let frames: Vec<_> = split_adts(&stream).map(Result::unwrap).collect();
        assert_eq!(frames.iter().map(|(_, p)| p.len()).collect::<Vec<_>>(), [0, 5, 100]);
        stream.extend_from_slice(&[0xff, 0xf1, 0x50]);
        stream.extend_from_slice(&AdtsHeader::write(&lc, 1).unwrap());
        let results: Vec<_> = split_adts(&stream).collect();
        assert_eq!(results.len(), 4);
        let err = results[3].as_ref().unwrap_err();
        assert_eq!(err.offset, Some(7 + 12 + 107));
    }

    fn any_rate() -> impl Strategy<Value = u32> {
        prop_oneof![prop::sample::select(SAMPLE_RATES.to_vec()), 1u32..(1 << 24)]
    }

    prop_compose! {
        fn any_asc()(
            object_type in prop_oneof![Just(2u8), Just(5), Just(29), 1u8..=4, 6u8..=30, 32u8..=95],
            sample_rate in any_rate(),
            ext_rate in any_rate(),
            channel_config in 0u8..16,
            sbr in prop::option::of(any::<bool>()),
            ps in prop::option::of(any::<bool>()),
        ) -> AudioSpecificConfig {
            // Only the combinations the format can express.
            let explicit = object_type == 5 || object_type == 29;
            let ga = is_general_audio(object_type) && channel_config != 0;
            let sbr = if explicit { Some(true) } else if ga { sbr } else { None };
            let ps = if explicit { Some(object_type == 29) } else if sbr == Some(true) { ps } else { None };
            let extension_sample_rate = (sbr == Some(true)).then_some(ext_rate);
            AudioSpecificConfig { object_type, sample_rate, channel_config, sbr, ps, extension_sample_rate }
        }
    }

    proptest! {
        #[test]
        fn asc_round_trip(asc in any_asc()) {
            prop_assert_eq!(AudioSpecificConfig::parse(&asc.to_bytes()).unwrap(), asc);
        }

        #[test]
        fn adts_write_parse_round_trip(
            object_type in 1u8..=4,
            index in 0usize..13,
            channel_config in 0u8..8,
            payload_len in 0usize..=8184,
        ) {
            let asc = AudioSpecificConfig { object_type, ..AudioSpecificConfig::new_lc(SAMPLE_RATES[index], channel_config) };
            let header = AdtsHeader::write(&asc, payload_len).unwrap();
            let parsed = AdtsHeader::parse(&header).unwrap();
            prop_assert_eq!(parsed.to_audio_specific_config(), asc);
            prop_assert_eq!(parsed.frame_length, payload_len + 7);
            prop_assert_eq!((parsed.header_length, parsed.raw_blocks), (7, 1));
        }

        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
            fuzz(&data);
        }

        /// Streams that start with a valid header reach the length checks.
        #[test]
        fn adts_like_streams_never_panic(tail in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut data = vec![0xff, 0xf1];
            data.extend(tail);
            fuzz(&data);
        }
    }
}
