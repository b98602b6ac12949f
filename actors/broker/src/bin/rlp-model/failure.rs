//! How a command fails: a name, a detail and an exit status, printed once at the edge.
//!
//! Copy of the `rlp` crate's `cli/src/failure.rs` (minus its RMP conversion) so that
//! `model.rs` moves into `cli/src/` unchanged.
//!
//! Exit status 2 means the input was bad (including every RMP validation error); 1 means
//! the world failed (a file could not be read, stdout closed). With `--json` the failure is
//! printed on stdout as `{"error": "<Name>", "detail": "..."}` so scripts get one shape.

use std::process::ExitCode;

/// Exit status for bad input and validation failures.
pub const EXIT_INVALID: u8 = 2;
/// Exit status for I/O and environment failures.
pub const EXIT_FAILURE: u8 = 1;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    /// A stable name: an RMP error name, or a CLI one such as `InvalidHex`.
    pub name: String,
    pub detail: String,
    pub status: u8,
    pub json: bool,
}

impl Failure {
    pub fn invalid(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            detail: detail.into(),
            status: EXIT_INVALID,
            json: false,
        }
    }

    pub fn io(detail: impl Into<String>) -> Self {
        Self {
            name: "Io".to_owned(),
            detail: detail.into(),
            status: EXIT_FAILURE,
            json: false,
        }
    }

    /// The same failure, printed as JSON when `json` is set.
    pub fn json(mut self, json: bool) -> Self {
        self.json = json;
        self
    }

    /// Prints the failure and returns the exit status.
    pub fn report(self) -> ExitCode {
        if self.json {
            let value = serde_json::json!({"error": self.name, "detail": self.detail});
            println!("{value}");
        } else {
            eprintln!("rlp: {}: {}", self.name, self.detail);
        }
        ExitCode::from(self.status)
    }
}
