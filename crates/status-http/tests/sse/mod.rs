//! Server-Sent Events as a client reads them: one frame (the text up to its blank line) into
//! its event. Shared by this crate's stream tests and the binary's replica test.
#![allow(dead_code, clippy::unwrap_used)]

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub id: Option<i64>,
    pub event: String,
    pub data: serde_json::Value,
}

/// The event of a frame; `None` for a frame without one (a comment, the `retry:` hint).
pub fn parse(frame: &str) -> Option<Ev> {
    let (mut id, mut event, mut data) = (None, None, Vec::new());
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v);
        }
    }
    let event = event?;
    let data = serde_json::from_str(&data.join("\n")).unwrap();
    Some(Ev { id, event, data })
}
