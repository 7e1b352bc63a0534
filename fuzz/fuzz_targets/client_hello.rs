//! Arbitrary bytes as the first bytes of a `tls_passthrough` connection: the ClientHello parser
//! must never panic and must decide the same whatever the TCP segmentation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_proxy::fuzzing::client_hello(data));
