//! The health brain of weir, without I/O: when does a probe result change an endpoint's state,
//! and when does live traffic eject one.
//!
//! - [`Hysteresis`] turns a stream of active-check results into state changes with rise/fall
//!   thresholds, so one lost probe does not flip an endpoint.
//! - [`OutlierDetector`] watches the outcomes the data plane reports for a cluster's endpoints
//!   and ejects the ones that keep failing (consecutive 5xx, gateway errors, connect failures,
//!   failure percentage), for base × n time with jitter, never more than `max_ejection_percent`
//!   of the cluster at once.
//! - [`schedule`] spreads probes in time.
//!
//! Both write their verdicts into [`weir_core::EndpointState`] as separate
//! [`weir_core::Unhealthy`] reasons, so the balancers see one fused view. The clock and the
//! randomness are injected: every rule here is tested with simulated time. The probes that feed
//! [`Hysteresis`] live in `weir-probe`; the data plane calls [`OutlierDetector::record`].

mod hysteresis;
mod outlier;
pub mod schedule;

pub use hysteresis::{Hysteresis, Transition};
pub use outlier::{Ejection, EjectionReason, OutlierDetector, SweepReport};
