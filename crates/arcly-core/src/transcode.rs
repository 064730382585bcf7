//! The transcoding contract: how a host plugs an encoder into the engine.
//!
//! The kernel ships no codec implementation; a host (or a later crate)
//! implements [`Transcoder`] on top of a library or hardware of its choice,
//! reading from one stream and publishing renditions as new streams.

use async_trait::async_trait;

use crate::bus::StreamPublisher;
use crate::bus::Subscriber;
use crate::frame::CodecId;

/// One output rendition of a transcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionSpec {
    /// Suffix for the rendition's stream key (`"720p"` makes `key_720p`).
    pub name: String,
    /// Output video codec.
    pub video_codec: CodecId,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Target video bitrate, bits per second.
    pub video_bitrate: u32,
    /// Output audio codec, or `None` to pass audio through.
    pub audio_codec: Option<CodecId>,
}

/// Turns one stream into one rendition.
#[async_trait]
pub trait Transcoder: Send + Sync + 'static {
    /// Reads `input` until it ends and publishes the rendition on `output`.
    async fn run(&self, spec: &RenditionSpec, input: Subscriber, output: StreamPublisher) -> crate::Result<()>;
}
