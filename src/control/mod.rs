//! Control: everything a client or operator talks to, and how the server admits them.
//!
//! Flags ([`config`]), the TCP listener that tells HTTP, TLS and ICE-TCP apart
//! (`listener`, `tls`), HTTP with the signaling WebSocket, WHIP/WHEP and the JSON
//! API ([`http`]), tokens (`auth`), caps per IP and the file-descriptor budget
//! (`limits`), the table of sessions ([`sessions`]), which sockets media binds
//! ([`network`]) and several nodes over Redis ([`cluster`]). It builds sessions and
//! hands them their network; it never touches a packet. May use: `session`,
//! `media`, `seeing`, `record`, `metrics`, `process`.

pub(crate) mod auth;
pub mod cluster;
pub mod config;
pub mod http;
pub(crate) mod limits;
pub(crate) mod listener;
pub mod network;
pub mod sessions;
pub(crate) mod tls;
