//! The registry: every message kind the system uses, defined once.
//!
//! One line of [`registry!`] gives a kind its `type` string, its family and its payload
//! type. Everything else — [`Kind`], name lookup, the typed payload binding
//! [`KindPayload`], and `docs/rmp-registry.md` (see [`markdown`]) — is generated from it.
//! To add a kind: write its payload type (with a [`PayloadExample`]) in [`crate::payloads`],
//! add one line below, and run `UPDATE_DOCS=1 cargo test -p runloop-proto` to regenerate the
//! documentation (a test fails while the committed file is stale).

use std::fmt::Write as _;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ids::Family;
use crate::json::msgpack_to_json;
use crate::payloads::*;

/// A payload type bound to exactly one registered kind.
pub trait KindPayload: Serialize + DeserializeOwned {
    /// The kind whose frames carry this payload.
    const KIND: Kind;
}

/// A representative value of a payload type, used to document its shape.
pub trait PayloadExample {
    fn example() -> Self;
}

macro_rules! registry {
    ($( $(#[doc = $doc:literal])+ $variant:ident => $type_name:literal, $family:ident, $payload:ty; )+) => {
        /// A registered message kind (closed: unknown `type` strings never become a `Kind`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $($variant),+ }

        impl Kind {
            /// Every registered kind, in registry order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];

            /// The body's `type` string, `<family>.<kind>.v<N>`.
            pub const fn type_name(self) -> &'static str {
                match self { $(Kind::$variant => $type_name),+ }
            }

            /// The family, selected in the header by `schema_id`.
            pub const fn family(self) -> Family {
                match self { $(Kind::$variant => Family::$family),+ }
            }

            /// The Rust payload type's name.
            pub const fn payload_type(self) -> &'static str {
                match self { $(Kind::$variant => stringify!($payload)),+ }
            }

            /// What the kind is for.
            pub fn doc(self) -> &'static str {
                match self { $(Kind::$variant => concat!($($doc),+).trim_ascii()),+ }
            }

            /// The kind with this `type` string, if registered.
            pub fn from_type_name(type_name: &str) -> Option<Kind> {
                match type_name { $($type_name => Some(Kind::$variant),)+ _ => None }
            }

            /// An example payload, encoded as the wire would carry it.
            pub fn example_payload(self) -> rmpv::Value {
                match self { $(Kind::$variant => to_value(&<$payload as PayloadExample>::example())),+ }
            }
        }

        $(impl KindPayload for $payload { const KIND: Kind = Kind::$variant; })+
    };
}

fn to_value<T: Serialize>(payload: &T) -> rmpv::Value {
    let bytes = rmp_serde::to_vec_named(payload).expect("payload types serialize");
    rmpv::decode::read_value(&mut bytes.as_slice()).expect("rmp-serde output decodes")
}

registry! {
    /// A failure reported to the peer instead of a result.
    ErrorReport => "error.report.v1", Error, ErrorReport;
    /// A dropped frame, published on `rlp/sys/drops` (rate-limited).
    DropNotice => "event.drop.v1", Event, DropNotice;
    /// Liveness probe; the peer answers `control.pong.v1` with the same `seq`.
    Ping => "control.ping.v1", Control, Ping;
    /// Answer to `control.ping.v1`.
    Pong => "control.pong.v1", Control, Pong;
    /// A request to `runloopd` over its control socket, idempotent by `request_id`.
    ControlRequest => "control.request.v1", Control, ControlRequest;
    /// `runloopd`'s answer to `control.request.v1`, echoing its `request_id`.
    ControlReply => "control.reply.v1", Control, ControlReply;
    /// `runloopd` → a `subscribe` client: one whole status snapshot, typed per actor.
    StatusSnapshot => "event.status.v1", Event, StatusSnapshot;
    /// `runloopd` → a `subscribe` client: the next status snapshot, as the edits of the
    /// one sent before it (the client rebuilds the whole snapshot).
    StatusDelta => "event.status_delta.v1", Event, StatusDelta;
    /// `runloopd` → a `subscribe` client: one change in what the kernel runs.
    RunEvent => "event.run.v1", Event, RunEvent;
    /// `runloopd` → a `subscribe` client: one run's progress (a run or node started,
    /// retrying, waiting for a person, decided, skipped or finished), as `--events` writes it.
    RunProgress => "event.progress.v1", Event, RunProgress;
    /// Kernel → sandbox-host: protocol version, agent, module and limits (handshake).
    SandboxHello => "control.hello.v1", Control, SandboxHello;
    /// Sandbox-host → kernel: module loaded, confinement in force, ready for invokes.
    SandboxReady => "control.ready.v1", Control, SandboxReady;
    /// Kernel → sandbox-host: exit cleanly now.
    Shutdown => "control.shutdown.v1", Control, Shutdown;
    /// Kernel → sandbox-host: handle one message.
    Invoke => "intent.invoke.v1", Intent, Invoke;
    /// Sandbox-host → kernel: one output of an invoke, streamed as the guest emits it.
    InvokeOutput => "artifact.output.v1", Artifact, InvokeOutput;
    /// Sandbox-host → kernel: a guest host call; the guest waits for the answer.
    HostCallRequest => "toolcall.hostcall.v1", Toolcall, HostCallRequest;
    /// Kernel → sandbox-host: the answer to one host call.
    HostCallResponse => "toolresult.hostcall.v1", Toolresult, HostCallResponse;
    /// Sandbox-host → kernel: how an invoke ended, with its typed error if any.
    InvokeOutcome => "toolresult.invoke.v1", Toolresult, InvokeOutcome;
    /// Kernel bus: a message to an agent, on its inbox topic.
    AgentDelivery => "intent.agent_message.v1", Intent, AgentDelivery;
    /// Kernel bus: an agent's answer (outputs or failure), on the sender's reply topic.
    AgentAnswer => "artifact.agent_answer.v1", Artifact, AgentAnswer;
}

/// `docs/rmp-registry.md`, generated from the registry above and the family table.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "<!-- Generated from kernel/proto/src/registry.rs by \
         `UPDATE_DOCS=1 cargo test -p runloop-proto`. Do not edit. -->\n\
         # RMP v0 registry\n\n\
         Every message kind Runloop uses. The header's `schema_id` selects the family; the \
         body's `type` names the kind. A frame whose `type` is not listed here is rejected \
         with `BodyTypeMismatch`.\n\n## Families\n\n| schema_id | family |\n| ---: | --- |\n\
         | 0x0000 | reserved (`UnknownSchema`) |\n",
    );
    for family in Family::ALL {
        let _ = writeln!(out, "| {} | `{}` |", family.schema_id(), family.name());
    }
    out.push_str(
        "| 0x000B–0x0FFF | reserved for Runloop (`UnknownSchema`) |\n\
         | 0x1000– | third parties, after registration; none yet (`UnknownSchema`) |\n\n\
         ## Kinds\n\n| type | family | payload | what it is for |\n| --- | --- | --- | --- |\n",
    );
    for kind in Kind::ALL {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | `{}` | {} |",
            kind.type_name(),
            kind.family(),
            kind.payload_type(),
            kind.doc()
        );
    }
    out.push_str(
        "\n## Payload examples\n\nEach in the JSON form `rlp rmp decode --json` prints.\n",
    );
    for kind in Kind::ALL {
        let json = msgpack_to_json(&kind.example_payload());
        let pretty = serde_json::to_string_pretty(&json).expect("JSON values print");
        let _ = write!(
            out,
            "\n### `{}`\n\n```json\n{pretty}\n```\n",
            kind.type_name()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;

    #[test]
    fn every_type_name_is_well_formed_and_in_its_family() {
        for kind in Kind::ALL {
            let parts: Vec<&str> = kind.type_name().split('.').collect();
            assert_eq!(parts.len(), 3, "{}", kind.type_name());
            assert_eq!(parts[0], kind.family().name(), "{}", kind.type_name());
            assert!(!parts[1].is_empty());
            let version = parts[2].strip_prefix('v').expect("version segment");
            assert!(version.parse::<u32>().is_ok(), "{}", kind.type_name());
            assert_eq!(Kind::from_type_name(kind.type_name()), Some(*kind));
            assert!(!kind.doc().is_empty());
        }
    }

    #[test]
    fn type_names_are_unique() {
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.type_name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
    }

    #[test]
    fn example_payloads_round_trip_through_typed_bodies() {
        let body = Body::from_payload(&DropNotice::example());
        assert_eq!(
            body.payload_as::<DropNotice>().unwrap(),
            DropNotice::example()
        );
        let err = body.payload_as::<ErrorReport>().unwrap_err();
        assert_eq!(err.name(), "BodyTypeMismatch");
        for kind in Kind::ALL {
            Body::new(*kind, kind.example_payload(), None).unwrap();
        }
    }

    /// The committed `docs/rmp-registry.md` must equal what the code generates.
    #[test]
    fn generated_registry_doc_is_fresh() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rmp-registry.md");
        let want = markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).expect("write docs/rmp-registry.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/rmp-registry.md is stale: run `UPDATE_DOCS=1 cargo test -p runloop-proto`"
        );
    }
}
