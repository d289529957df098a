//! face-echo: a WebRTC echo media server for live vision work.
//!
//! A browser publishes a VP8 stream; the server sends the same RTP straight back,
//! payload untouched, and on the side decodes it, finds faces, and sends what it
//! found back to the clients per frame. The README is for users (set-up, flags,
//! limits, protocol); this is the map for people changing the code.
//!
//! # The path of one packet
//!
//! ```text
//! UDP → webrtc-rs driver (ICE, DTLS-SRTP, NACK generator, RTCP; nack_budget in front
//!       of the NACK responder) → the incoming track's RtpForwarder, on the driver
//!   session::echo::EchoPath            ← does nothing slow: it runs in the driver's loop
//!     ├─ echo: readdress, write into the core, out in the same pass  (first, always)
//!     ├─ viewers: session::fanout, each viewer's bounded queue       (try_send)
//!     ├─ recorder (--record): record::RecorderInput::offer, bounded  (try_send)
//!     │    recorder thread: assemble → DIR/<session>.ivf and .jsonl (+ detections)
//!     └─ tap: tap::TapInput::offer, a bounded queue                  (try_send)
//!          tap thread: assemble → admission (VP8 header, pixel budget) → libvpx
//!            ├─ metrics, snapshot; the page's frame code (framecode)
//!            └─ detect: newest frame wins → letterbox from I420 → BlazeFace (ort) → Detection
//!                 └─ session::results: `detections` on every `face-echo` data
//!                    channel of the publisher and its viewers; agreement with the
//!                    page's own detections (agreement); `stats` each second
//! ```
//!
//! With `--udp-port PORT` (one shared UDP port) the first hop is shared, and a
//! publisher's media skips webrtc-rs:
//!
//! ```text
//! UDP → udp_mux reader thread (poll + recvmmsg; by remote address, learned from
//!       authenticated STUN)
//!   ├─ RTP of an attached track, and the client's RTCP → the session's
//!   │    session::plane::MediaPlane, on the same thread: SRTP (DTLS's keys, vendored
//!   │    rtc patch), the feedback interceptors (NACK both ways with nack_budget,
//!   │    reports, transport-cc), then session::echo::EchoPath as above, the echo
//!   │    protected and sent from there
//!   └─ everything else (STUN, DTLS, data channels, a track's first packets) → the
//!        session's inbox → its webrtc-rs driver, which then reads memory, not a socket
//! ```
//!
//! RTCP flows the other way: PLI/FIR from the echo's receiver, the viewers and the
//! tap become wishes for one scheduler per publisher (session::keyframes).
//!
//! # Modules
//!
//! - Start-up and HTTP: [`config`] (every flag), [`server`] (bind, serve, shut down),
//!   [`http`] (router, Host check, signaling WebSocket, WHIP/WHEP, assets), `listener`
//!   and `limits` (file-descriptor budget, per-IP caps, pending eviction), `auth`
//!   (tokens), `tls`, [`signaling`] (wire types), [`sessions`] (the table and its
//!   slots), [`metrics`], [`process`].
//! - One PeerConnection: [`peer`] (the recipe every PeerConnection is built from;
//!   webrtc-rs itself is vendored, with the few changes listed in vendor/PATCHES.md),
//!   [`session`] (negotiate, echo, the media plane, fan-out, viewers, keyframes,
//!   results),
//!   [`network`] (which addresses media binds), [`udp_mux`] (`--udp-port PORT`:
//!   every session on one socket per address; its reader also runs the media
//!   planes' timers, one tick for all), `srtp` (SRTP contexts from DTLS's keys, for
//!   the plane and the load generator), [`nack_budget`] and `keyframe_feedback`
//!   (interceptors).
//! - Seeing: [`tap`] (assemble, admit, decode, snapshot), [`frame`] (the decoded
//!   picture), [`framecode`] (the page's frame number in the pixels), [`detect`]
//!   (BlazeFace; `detect::letterbox` samples its input from I420), `agreement` (page vs server, per frame), `loop_messages` (the
//!   data channel's wire types), `stats` (percentiles), `token_bucket` (rate limits).
//! - Several nodes: [`cluster`] (`--cluster`: the session directory in Redis,
//!   heartbeat, redirects to the node that holds a session).
//! - On disk: [`record`] (`--record`: IVF and JSONL per publisher; `face-echo
//!   replay` and `record-stats` read them back).
//! - Apart from the server: [`loadgen`] (`face-echo loadgen`, and the webrtc-rs client
//!   peer tests use; the load generator's publishers send and receive their media on
//!   a socket and SRTP contexts of their own, `loadgen::media`, so that they cost
//!   less than the server they measure).

pub(crate) mod agreement;
pub(crate) mod auth;
pub mod cluster;
pub mod config;
pub mod detect;
pub mod frame;
pub mod framecode;
pub mod http;
pub(crate) mod keyframe_feedback;
pub(crate) mod limits;
pub(crate) mod listener;
pub mod loadgen;
pub(crate) mod loop_messages;
pub mod media;
pub mod metrics;
pub mod network;
pub mod peer;
pub mod process;
pub mod record;
pub mod server;
pub mod session;
pub mod sessions;
pub mod signaling;
pub(crate) mod srtp;
pub(crate) mod stats;
pub mod tap;
pub(crate) mod tls;
pub(crate) mod token_bucket;
pub mod udp_mux;
