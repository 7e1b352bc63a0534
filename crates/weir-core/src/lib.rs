//! The shared vocabulary of weir: endpoints, their live state and the data-path error.
//!
//! This crate sits at the bottom of the layer cake (see `docs/architecture.md`): it does no I/O and
//! depends on nothing async, so every other crate — the sans-io balancers and router as much as
//! the hyper data plane — can name the same types.

mod calendar;
mod clock;
mod endpoint;
mod endpoint_stats;
mod error;
mod health;

pub use calendar::civil_from_days;
pub use clock::{Clock, ManualClock, Nanos, SystemClock, nanos};
pub use endpoint::{Endpoint, EndpointState, InFlightGuard, LatencyEstimate, health_generation};
pub use endpoint_stats::{EndpointError, ErrorCounts, ResponseLatency};
pub use error::{Error, ErrorKind, Side};
pub use health::{
    CheckRecord, CheckResult, HealthChange, HealthFlags, PassiveOutcome, PassiveStats, Streaks,
    Unhealthy, WindowCounts,
};

/// A boxed error that can cross threads; the `cause` of a data-path [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
