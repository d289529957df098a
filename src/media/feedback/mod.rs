//! The RTP feedback the media plane sends and answers, each sans-IO: packets and
//! the clock in, RTCP out into a buffer the plane keeps.
//!
//! - [`nack`]: the missing packets of an incoming stream (NACKs we send), and the
//!   packets an outgoing stream keeps to answer NACKs within a budget;
//! - [`reports`]: receiver reports on incoming streams, sender reports on ours;
//! - [`twcc`]: transport-wide congestion control feedback on arrivals.

pub(crate) mod nack;
pub(crate) mod reports;
pub(crate) mod twcc;
