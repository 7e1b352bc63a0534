//! weir-ebpf's tests: the committed object matches its source, the program's verdicts and
//! rewrites under `BPF_PROG_TEST_RUN`, and the balancer on real interfaces in network
//! namespaces. Everything that needs root skips, saying why, unless `WEIR_REQUIRE_PRIVILEGED=1`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed test"
)]

mod cost;
mod fib;
mod object;
mod packet;
mod privileged;
mod test_run;
