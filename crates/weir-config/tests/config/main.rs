//! Config loading and validation, one test binary: happy paths, parse errors and rule errors,
//! each naming the file, YAML path and line.

mod affinity;
mod balancing_and_l4;
mod common;
mod discovery;
mod health;
mod loading;
mod more_rule_errors;
mod observability;
mod parse_errors;
mod rate_limit;
mod retry;
mod rule_errors;
mod shutdown;
mod tls;
mod traffic;
mod xdp;
