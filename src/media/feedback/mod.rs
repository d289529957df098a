//! The RTP feedback the media plane sends and answers, each sans-IO: packets and
//! the clock in, RTCP out into a buffer the plane keeps.
//!
//! - [`nack`]: the missing packets of an incoming stream (NACKs we send), and the
//!   packets an outgoing stream keeps to answer NACKs within a budget;
//! - [`reports`]: receiver reports on incoming streams, sender reports on ours;
//! - [`twcc`]: transport-wide congestion control feedback on arrivals.

pub mod nack;
pub(crate) mod reports;
pub(crate) mod twcc;

/// How often NACKs and transport-cc feedback go out (webrtc-rs's and libwebrtc's
/// interval for both).
pub(crate) const FEEDBACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
