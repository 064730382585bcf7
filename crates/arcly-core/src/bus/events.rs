//! Lifecycle events: streams published and unpublished, subscribers joining,
//! leaving and being evicted.
//!
//! Events are for control planes (APIs, webhooks, metrics, relays), not for
//! media. Delivery is bounded: a listener that falls more than the channel's
//! capacity behind loses the oldest events and is told how many.

use std::net::SocketAddr;

use tokio::sync::broadcast;

use crate::identity::StreamId;

/// A subscriber's number, unique within its stream.
pub type SubscriberId = u64;

/// Something that happened to a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// A publisher started publishing.
    Published {
        /// The stream.
        stream: StreamId,
        /// The ingest protocol.
        protocol: &'static str,
        /// The publisher's address, when known.
        peer: Option<SocketAddr>,
    },
    /// A publish attempt was refused.
    PublishRejected {
        /// The stream.
        stream: StreamId,
        /// Why.
        reason: String,
    },
    /// The stream ended.
    Unpublished {
        /// The stream.
        stream: StreamId,
        /// Why (publisher left, idle timeout, shutdown).
        reason: String,
    },
    /// A subscriber joined.
    SubscriberJoined {
        /// The stream.
        stream: StreamId,
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// A subscriber left.
    SubscriberLeft {
        /// The stream.
        stream: StreamId,
        /// The subscriber.
        subscriber: SubscriberId,
    },
    /// A subscriber fell behind and skipped frames.
    SubscriberSkipped {
        /// The stream.
        stream: StreamId,
        /// The subscriber.
        subscriber: SubscriberId,
        /// Frames it did not receive.
        dropped: u64,
    },
    /// A subscriber was evicted.
    SubscriberEvicted {
        /// The stream.
        stream: StreamId,
        /// The subscriber.
        subscriber: SubscriberId,
        /// Why.
        reason: String,
    },
}

/// A bounded broadcast of [`StreamEvent`]s. Cloning shares the channel.
///
/// ```
/// # use arcly_core::bus::{EventBus, StreamEvent};
/// let bus = EventBus::new(64);
/// let mut rx = bus.subscribe();
/// let stream = "live/demo".parse().unwrap();
/// bus.emit(StreamEvent::Unpublished { stream, reason: "done".into() });
/// assert!(matches!(rx.try_recv(), Ok(StreamEvent::Unpublished { .. })));
/// ```
#[derive(Clone, Debug)]
pub struct EventBus {
    tx: broadcast::Sender<StreamEvent>,
}

impl EventBus {
    /// A bus holding at most `capacity` undelivered events per listener.
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity.max(1)).0 }
    }

    /// Sends an event to every listener. Never blocks; free with no listener.
    pub fn emit(&self, event: StreamEvent) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(event);
        }
    }

    /// A new listener, receiving events emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StreamEvent> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}
