//! Media: every RTP and RTCP packet of every session, read, answered and echoed on
//! the media plane.

pub mod feedback;
pub mod plane;
pub(crate) mod rtcp;
pub(crate) mod rtp;
