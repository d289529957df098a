//! Seeing: what the server makes of the video beside the echo.
//!
//! The decode tap ([`tap`]: assemble, admit, decode with libvpx, snapshot), the
//! decoded picture ([`frame`]), the page's frame number read from the pixels
//! ([`framecode`]), server-side face detection ([`detect`]: BlazeFace via ONNX
//! Runtime, its input letterboxed from I420), the agreement of the page's and the
//! server's detections (`agreement`), the data channel's result messages
//! (`loop_messages`) and timing percentiles (`stats`). It is fed through bounded
//! queues and never holds up a packet. May use: `metrics`. Nothing of media,
//! sessions or control.

pub(crate) mod agreement;
pub mod detect;
pub mod frame;
pub mod framecode;
pub(crate) mod loop_messages;
pub(crate) mod stats;
pub mod tap;
