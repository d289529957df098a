//! Arbitrary text through the signaling parser: a typed error or a message, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = face_echo::session::signaling::parse(text);
    }
});
