//! Media: every RTP and RTCP packet of every session, read, answered and echoed on
//! the media plane.

pub(crate) mod feedback;
pub(crate) mod rtcp;
pub(crate) mod rtp;
