//! Arbitrary bytes as the first bytes from a peer trusted to send a PROXY header (v1 or v2): the
//! parser must never panic and must decide the same whatever the TCP segmentation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_proxy::fuzzing::proxy_header(data));
