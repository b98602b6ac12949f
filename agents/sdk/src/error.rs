//! The SDK's errors: a failed host call, a refused output, an agent's own failure.

use runloop_proto::payloads::HostErrorCode;

/// Why a host call did not give a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostCallError {
    /// The kernel answered `HostReply::Err`: denied, unavailable, invalid, over a limit,
    /// failed or declined.
    #[error("{op}: {code:?}: {message}")]
    Refused {
        op: &'static str,
        code: HostErrorCode,
        message: String,
    },
    /// The request could not be encoded (a bug in the SDK or a non-encodable value).
    #[error("{op}: encode request: {reason}")]
    Encode { op: &'static str, reason: String },
    /// The reply was not a `HostReply`, or its `ok` value had the wrong shape.
    #[error("{op}: decode reply: {reason}")]
    BadReply { op: &'static str, reason: String },
}

impl HostCallError {
    /// The kernel's error code, when the kernel refused the call.
    pub fn code(&self) -> Option<HostErrorCode> {
        match self {
            HostCallError::Refused { code, .. } => Some(*code),
            HostCallError::Encode { .. } | HostCallError::BadReply { .. } => None,
        }
    }

    /// The op that failed, as capabilities name it.
    pub fn op(&self) -> &'static str {
        match self {
            HostCallError::Refused { op, .. }
            | HostCallError::Encode { op, .. }
            | HostCallError::BadReply { op, .. } => op,
        }
    }
}

/// Why an output could not be emitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("emit: empty port name")]
    EmptyPort,
    #[error("emit: encode output: {0}")]
    Encode(String),
}

/// An agent's failure: ends the invoke with this message (sent through `runloop.fail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    message: String,
}

impl AgentError {
    /// An error with this message (lowercase, no final period, by convention).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// An error worth another attempt (a busy service, a transient condition): the
    /// opening engine retries the node while it has attempts left. The message is sent
    /// with [`RETRYABLE_PREFIX`](runloop_proto::payloads::RETRYABLE_PREFIX) in front.
    pub fn retryable(message: impl AsRef<str>) -> Self {
        Self {
            message: format!(
                "{}{}",
                runloop_proto::payloads::RETRYABLE_PREFIX,
                message.as_ref()
            ),
        }
    }

    /// The message the host will report.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<HostCallError> for AgentError {
    fn from(error: HostCallError) -> Self {
        AgentError::new(error.to_string())
    }
}

impl From<EmitError> for AgentError {
    fn from(error: EmitError) -> Self {
        AgentError::new(error.to_string())
    }
}
