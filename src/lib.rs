//! face-echo: a WebRTC echo media server for live vision work.
//!
//! A browser publishes a VP8 stream; the server sends the same RTP straight back,
//! payload untouched, and on the side decodes it, finds faces, and sends what it
//! found back to the clients per frame. The README and `docs/` are for users; this
//! is the map for people changing the code.
//!
//! # The path of one packet
//!
//! ```text
//! UDP (one shared port) or ICE-TCP → media::udp_mux reader thread (poll + recvmmsg;
//!       by remote address, learned from authenticated STUN; TCP frames by the
//!       connection an authenticated binding request bound)
//!   ├─ SRTP and SRTCP of a connected session → its media::plane::MediaPlane, on the
//!   │    same thread: unprotect (DTLS's keys), feedback (NACK both ways with a
//!   │    retransmission budget, reports, transport-cc), then
//!   │      ├─ echo: readdress, protect, send in the same buffer      (first, always)
//!   │      └─ session::echo::EchoPath (the plane's `Beside`), after the echo:
//!   │           ├─ viewers: session::fanout, each viewer's bounded queue   (try_send)
//!   │           ├─ recorder (--record): record::RecorderInput, bounded     (try_send)
//!   │           └─ tap: seeing::tap::TapInput, bounded                     (try_send)
//!   │                tap thread: assemble → admission (VP8 header, pixel budget)
//!   │                → libvpx → snapshot, frame code; detect: newest frame wins →
//!   │                letterbox from I420 → BlazeFace (ort) → session::results:
//!   │                `detections` on every `face-echo` data channel
//!   ├─ a connected session's consent checks on the pair in use → answered right
//!   │    there (media::udp_mux::consent: verified, answered on the stack)
//!   └─ other STUN, DTLS, SCTP (data channels) → the session's webrtc-rs driver, which
//!        reads memory, not a socket
//! ```
//!
//! PLI and FIR from the echo's receiver, the viewers and the tap become wishes for
//! one keyframe scheduler per publisher (`session::keyframes`).
//!
//! # Layout, by layer (each may use only the layers below it)
//!
//! - [`server`]: start-up and shut-down; puts the layers together. `main.rs` is
//!   the binary.
//! - [`control`]: flags, listener, HTTP (page, signaling WebSocket, WHIP/WHEP, JSON
//!   API), tokens, per-IP limits, the table of sessions, which sockets media binds,
//!   several nodes over Redis.
//! - [`session`]: one client's PeerConnection (negotiation, its media plane, viewers,
//!   results), the recipe every PeerConnection is built from, the wire types.
//! - [`record`]: each publisher's VP8 and detections to disk; `replay` and
//!   `record-stats` read them back.
//! - [`seeing`]: decode tap, face detection, frame codes, agreement.
//! - [`media`]: sockets (UDP mux, ICE-TCP), SRTP, the sans-IO media plane.
//! - [`metrics`] and [`process`]: counters and the process's own CPU and memory,
//!   used by every layer.
//! - Apart: [`loadgen`] (`face-echo loadgen`, and the webrtc-rs client peer the
//!   tests use; its publishers send and receive on sockets and SRTP of their own,
//!   `loadgen::media`, so that they cost less than the server they measure).
//!
//! webrtc-rs is vendored, with the changes listed in `vendor/PATCHES.md`.

pub mod control;
pub mod loadgen;
pub mod media;
pub mod metrics;
pub mod process;
pub mod record;
pub mod seeing;
pub mod server;
pub mod session;
