//! Topic names: validated once, then carried as a cheap shared string.

use std::fmt;
use std::sync::Arc;

use super::TOPIC_BYTES_MAX;

/// A topic name: 1 to [`TOPIC_BYTES_MAX`] bytes of printable ASCII, `/`-separated
/// non-empty segments (e.g. `agent/writer/in`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// A bad topic name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "topic {topic:?} is invalid: it must be 1 to {TOPIC_BYTES_MAX} bytes of printable ASCII in non-empty '/'-separated segments"
)]
pub struct TopicError {
    topic: String,
}

impl Topic {
    pub fn new(topic: &str) -> Result<Self, TopicError> {
        let ok = !topic.is_empty()
            && topic.len() <= TOPIC_BYTES_MAX
            && topic.bytes().all(|b| b.is_ascii_graphic())
            && topic.split('/').all(|segment| !segment.is_empty());
        if !ok {
            return Err(TopicError {
                topic: topic.chars().take(TOPIC_BYTES_MAX).collect(),
            });
        }
        Ok(Self(topic.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
