//! The cluster contract: relaying streams between an origin and its edges.
//!
//! A [`ClusterRelay`] pulls a stream that is not local from another node
//! (edge pull) or pushes a local one out (origin push). The `arcly-cluster`
//! crate implements it over RTMP; the engine only knows the trait.

use std::fmt;

use async_trait::async_trait;

use crate::bus::StreamPublisher;
use crate::identity::StreamId;

/// A cluster node's address: host and port, as given in configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl NodeAddr {
    /// A node address.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Moves streams between nodes.
#[async_trait]
pub trait ClusterRelay: Send + Sync + 'static {
    /// The nodes that may hold `stream`, in the order to try them.
    fn locate(&self, stream: &StreamId) -> Vec<NodeAddr>;

    /// Pulls `stream` from `node` and publishes it locally on `into` until
    /// the remote stream ends or the relay fails.
    async fn pull(&self, stream: &StreamId, node: &NodeAddr, into: StreamPublisher) -> crate::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addr_display_brackets_ipv6() {
        assert_eq!(NodeAddr::new("10.0.0.1", 1935).to_string(), "10.0.0.1:1935");
        assert_eq!(NodeAddr::new("::1", 1935).to_string(), "[::1]:1935");
    }
}
