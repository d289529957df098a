//! What parsing a packet costs is bounded by the packet's size: a 40-byte
//! transport-cc packet claiming 65 535 received packets makes nothing for them.
//! Counted (bytes a global allocator handed out), not timed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rtc_rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use shared::marshal::Unmarshal;

struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_transport_cc_packet_claiming_65535_statuses_costs_what_its_40_bytes_do() {
    let mut packet = vec![0x8f, 205, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
    for _ in 0..10 {
        packet.extend_from_slice(&0x3fffu16.to_be_bytes()); // run-length: 8191 received, small deltas
    }
    let before = BYTES.load(Ordering::Relaxed);
    for _ in 0..1000 {
        assert!(TransportLayerCc::unmarshal(&mut &packet[..]).is_err());
    }
    let per_packet = (BYTES.load(Ordering::Relaxed) - before) / 1000;
    assert!(per_packet < 256, "{per_packet} bytes allocated to parse 40");
}
