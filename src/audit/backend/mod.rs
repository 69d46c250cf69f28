//! Where audit events go: a log file (or stdout) and a webhook. Both take events without ever
//! blocking the request that produced them.

use std::sync::Arc;

use super::event::Event;

/// A destination for audit events.
pub trait Backend: Send + Sync {
    /// Queues one event. Never blocks and never fails the request: an event that cannot be
    /// queued is dropped and counted.
    fn process(&self, event: Arc<Event>);
}
