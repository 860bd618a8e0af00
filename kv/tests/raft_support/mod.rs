//! Shared helpers for the Raft tests: a toy state machine.
#![allow(dead_code)]

use std::time::Duration;

use keelson_kv::raft::StateMachine;

/// An append-only list of (index, payload); replies with the index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListSm {
    pub items: Vec<(u64, Vec<u8>)>,
}

impl StateMachine for ListSm {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        self.items.push((index, payload.to_vec()));
        index.to_string().into_bytes()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.items).unwrap_or_default()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.items = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Polls `f` until it returns true or the (generous) deadline passes.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
