//! The arcly-stream kernel.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bus;
pub mod error;
pub mod frame;
pub mod identity;
