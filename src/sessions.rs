//! The table of live sessions behind `/api/sessions`, `face_echo_sessions_active`
//! and `--max-sessions`.
//!
//! A place in the table is a [`Slot`]: taking one checks the limit, dropping it
//! frees the place and updates the gauge. Because freeing happens in `Drop`, every
//! way a connection can end (clean close, error, panic, shutdown) leaves no ghost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::metrics::Metrics;
use crate::session::SessionInfo;

pub struct Sessions {
    max: usize,
    metrics: Arc<Metrics>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Slots taken, including those still negotiating (not yet in `by_id`).
    taken: usize,
    by_id: HashMap<String, Arc<SessionInfo>>,
}

/// One taken place in the table; frees itself on drop.
pub struct Slot {
    sessions: Arc<Sessions>,
    id: Option<String>,
}

impl Sessions {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Sessions { max, metrics, table: Mutex::new(Table::default()) })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a new session, or `None` when `--max-sessions` are open.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let mut table = self.table();
        if table.taken >= self.max {
            return None;
        }
        table.taken += 1;
        Some(Slot { sessions: Arc::clone(self), id: None })
    }

    /// The JSON array `/api/sessions` returns, oldest first.
    pub fn to_json(&self) -> Value {
        let mut infos: Vec<Arc<SessionInfo>> = self.table().by_id.values().cloned().collect();
        infos.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Value::Array(infos.iter().map(|info| info.to_json()).collect())
    }

    /// A live session by id.
    pub fn get(&self, id: &str) -> Option<Arc<SessionInfo>> {
        self.table().by_id.get(id).cloned()
    }

    /// A live session by its watch token (the share link's secret).
    pub fn by_watch_token(&self, token: &str) -> Option<Arc<SessionInfo>> {
        self.table().by_id.values().find(|info| info.watch_token == token).cloned()
    }

    pub fn len(&self) -> usize {
        self.table().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Slot {
    /// Lists a negotiated session under its id.
    pub fn register(&mut self, info: Arc<SessionInfo>) {
        let id = info.id.clone();
        let mut table = self.sessions.table();
        table.by_id.insert(id.clone(), info);
        self.sessions.metrics.sessions_active.set(table.by_id.len() as i64);
        self.sessions.metrics.sessions_total.inc();
        self.id = Some(id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.sessions.table();
        table.taken -= 1;
        if let Some(id) = &self.id {
            table.by_id.remove(id);
        }
        self.sessions.metrics.sessions_active.set(table.by_id.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_enforce_the_limit_and_free_themselves() {
        let sessions = Sessions::new(2, Arc::new(Metrics::new()));
        let a = sessions.try_take().expect("first");
        let b = sessions.try_take().expect("second");
        assert!(sessions.try_take().is_none(), "limit of 2");
        drop(a);
        let c = sessions.try_take().expect("a place was freed");
        drop((b, c));
        assert!(sessions.is_empty());
    }
}
