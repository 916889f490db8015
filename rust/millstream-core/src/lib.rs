//! Millstream's core: the per-event pipeline, in pure Rust (no Python here).
//!
//! One module per stage: `decode`, `validate`, `map`, `dedup`, `stale`, `route`; `pipeline`
//! strings them together; `plan` is the compiled configuration the control plane sends.

pub mod decode;
pub mod dedup;
pub mod error;
pub mod json;
pub mod map;
pub mod pipeline;
pub mod plan;
pub mod plane;
pub mod proto;
pub mod route;
pub mod stale;
pub mod template;
pub mod validate;

pub use error::{PlanError, Reason, Rejection};

/// A seeded xorshift generator for the randomised tests: the same sequence on every run, so
/// a failure can be reproduced.
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
pub use pipeline::{CeAttributes, Delivery, Outcome, Pipeline, Skip, Stats, Status};
pub use plan::{DeliveryMode, Lane};
