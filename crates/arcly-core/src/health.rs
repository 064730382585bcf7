//! Health checks: what `/healthz` and `/readyz` report.

use std::fmt;
use std::sync::{Arc, RwLock};

/// A component's health, ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    /// Working normally.
    Healthy,
    /// Working, but near a limit or losing data (e.g. dropping audit events).
    Degraded,
    /// Not working.
    Unhealthy,
}

impl HealthStatus {
    /// `"healthy"`, `"degraded"` or `"unhealthy"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// The check's name.
    pub name: String,
    /// Its status.
    pub status: HealthStatus,
    /// A human-readable detail.
    pub detail: String,
}

impl HealthReport {
    /// A report.
    pub fn new(name: impl Into<String>, status: HealthStatus, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status, detail: detail.into() }
    }
}

/// Something that can say how it is. Checks must be cheap and must not block.
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the check.
    fn check(&self) -> HealthReport;
}

impl<F> HealthCheck for F
where
    F: Fn() -> HealthReport + Send + Sync + 'static,
{
    fn check(&self) -> HealthReport {
        self()
    }
}

/// The set of checks; its overall status is the worst of them.
///
/// ```
/// use arcly_core::health::{HealthRegistry, HealthReport, HealthStatus};
/// let reg = HealthRegistry::default();
/// reg.register(|| HealthReport::new("disk", HealthStatus::Degraded, "92% full"));
/// let (status, reports) = reg.report();
/// assert_eq!(status, HealthStatus::Degraded);
/// assert_eq!(reports[0].detail, "92% full");
/// ```
#[derive(Clone, Default)]
pub struct HealthRegistry {
    checks: Arc<RwLock<Vec<Arc<dyn HealthCheck>>>>,
}

impl HealthRegistry {
    /// Adds a check.
    pub fn register(&self, check: impl HealthCheck) {
        self.checks.write().unwrap_or_else(|e| e.into_inner()).push(Arc::new(check));
    }

    /// Runs every check: the worst status and each report.
    pub fn report(&self) -> (HealthStatus, Vec<HealthReport>) {
        let checks = self.checks.read().unwrap_or_else(|e| e.into_inner()).clone();
        let reports: Vec<HealthReport> = checks.iter().map(|c| c.check()).collect();
        let worst = reports.iter().map(|r| r.status).max().unwrap_or(HealthStatus::Healthy);
        (worst, reports)
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.checks.read().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("HealthRegistry").field("checks", &n).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_registry_is_healthy_and_worst_wins() {
        let reg = HealthRegistry::default();
        assert_eq!(reg.report().0, HealthStatus::Healthy);
        reg.register(|| HealthReport::new("a", HealthStatus::Healthy, ""));
        reg.register(|| HealthReport::new("b", HealthStatus::Unhealthy, "down"));
        reg.register(|| HealthReport::new("c", HealthStatus::Degraded, ""));
        let (status, reports) = reg.report();
        assert_eq!(status, HealthStatus::Unhealthy);
        assert_eq!(reports.len(), 3);
    }
}
