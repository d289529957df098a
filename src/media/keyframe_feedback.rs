//! An interceptor that lets keyframe requests reach the application, for the client
//! peers (the tests' and the load generator's, `session::peer::PeerMedia::Client`);
//! the server's media plane reads PLI and FIR itself.
//!
//! webrtc-rs ends every interceptor chain with a terminus that drops inbound RTCP
//! unless some interceptor marks it `DeliverToApplication`, and none of the default
//! ones marks PLI or FIR. A publisher that counts the keyframes asked of it needs
//! them, so this marks exactly those and passes everything else through untouched.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::shared::error::Error;

/// Where the marker sits in the chain: application-most, after the built-in slots.
pub const SLOT: usize = 9_500;

#[derive(Default)]
pub struct KeyframeRequestMarker {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

/// True if the compound RTCP packet asks for a keyframe.
pub fn asks_for_keyframe(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|packet| {
        let any = packet.as_any();
        any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
    })
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestMarker {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && asks_for_keyframe(packets)
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for KeyframeRequestMarker {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
