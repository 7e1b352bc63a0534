//! Arbitrary bytes as a client's `Cookie` header and as an affinity cookie value: reading and
//! stripping must never panic, and no value weir did not sign may pass its HMAC check.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_proxy::fuzzing::affinity_cookie(data));
