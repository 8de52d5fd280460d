//! Reply parsing under arbitrary input: the first two bytes are the HTTP status, the rest the
//! body. `parse_reply_for_fuzzing` runs the client's reply parser and then the typed decoders
//! of `submission/info`, `analysis/search` and `account/info`, and renders any error; it must
//! return for every input (no panic, no abort, no unbounded recursion).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => (200, data),
    };
    if let Ok(decoded) = jbxd::api::parse_reply_for_fuzzing(status, body) {
        assert!(status < 400, "an error status was accepted");
        assert!(decoded <= 5);
    }
});
