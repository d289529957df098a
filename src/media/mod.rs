//! Media: every RTP and RTCP packet of every session, read, answered and echoed.
//!
//! Owns the sockets ([`udp_mux`]: one shared UDP port, or a port per session, and
//! the ICE-TCP port), SRTP from DTLS's keys ([`srtp`]), and the sans-IO media plane
//! ([`plane`]) with its RTP/RTCP parsing and feedback (NACK both ways, reports,
//! transport-cc). It knows nothing of sessions, signaling or what is done with a
//! packet beside its echo: the plane hands that to a [`plane::Beside`] it is given.
//! May use: `metrics`. Nothing above it.

pub mod feedback;
pub(crate) mod keyframe_feedback;
pub mod plane;
pub(crate) mod rtcp;
pub(crate) mod rtp;
pub(crate) mod srtp;
pub(crate) mod token_bucket;
pub mod udp_mux;
