//! face-echo: a WebRTC echo media server for live vision work.
//!
//! A browser publishes a VP8 stream; the server sends the same RTP straight back
//! on its own track. See the README's Architecture section for the module map.
//!
//! The path of one packet: [`session::echo::forward`] reads it from the incoming
//! track and writes it, payload untouched, to the session's echo track.

pub mod agreement;
pub mod auth;
pub mod config;
pub mod detect;
pub mod frame;
pub mod framecode;
pub mod http;
pub mod keyframe_feedback;
pub mod limits;
pub mod listener;
pub mod loadgen;
pub mod loop_messages;
pub mod metrics;
pub mod nack_budget;
pub mod network;
pub mod peer;
pub mod process;
pub mod server;
pub mod session;
pub mod sessions;
pub mod signaling;
pub mod stats;
pub mod tap;
pub mod tls;
