//! Report parsing under arbitrary input: the whole input is the document, and its first byte's
//! parity picks the syntax (odd, as `{` is: JSON; even, as `<` is: XML), so seeds from real
//! reports keep their syntax. `api::report::parse` must return for every input (no
//! panic, no abort, no unbounded recursion or allocation), and what it returns stays within
//! its caps.
#![no_main]

use jbxd::api::report::{MAX_INDICATORS, MAX_SIGNATURES, MAX_STRING, ReportFormat, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let format = match data.first() {
        Some(first) if first % 2 == 0 => ReportFormat::Xml,
        _ => ReportFormat::Json,
    };
    match parse(data, format) {
        Ok(facts) => {
            assert!(facts.indicators.len() <= MAX_INDICATORS);
            assert!(facts.signatures.len() <= MAX_SIGNATURES);
            assert!(facts.indicators.iter().all(|i| i.value.len() <= MAX_STRING));
            assert!(facts.indicators.iter().all(|i| !i.value.is_empty()));
        }
        Err(error) => assert!(!error.to_string().contains('\n')),
    }
});
