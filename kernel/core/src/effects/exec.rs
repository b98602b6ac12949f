//! The executors: one per [`EffectKind`], each in two steps. [`prepare`] checks the
//! payload and writes the human summary the confirmation prompt shows (the kernel's words,
//! never the agent's); [`perform`] acts and returns the receipt plus the POG events that
//! record what happened in the world (`email.sent`, `artifact.created`).

use std::io::Write;
use std::path::{Path, PathBuf};

use runloop_bundle::EffectKind;
use runloop_mail::{MailPayload, Mailbox, Maildir};
use runloop_pog::EventKind;
use serde_json::{Value, json};

use super::EffectsConfig;

/// Longest artifact name.
pub const ARTIFACT_NAME_BYTES_MAX: usize = 128;
/// Largest artifact one effect may save.
pub const ARTIFACT_BYTES_MAX: usize = 8 << 20;

/// A checked payload, ready to perform.
#[derive(Debug, Clone)]
pub enum Prepared {
    Mail(MailPayload),
    ArtifactSave {
        name: String,
        content: String,
        media_type: String,
    },
    ArtifactDelete {
        name: String,
    },
}

/// Where and for whom an effect runs.
#[derive(Debug)]
pub struct ExecCtx<'a> {
    pub config: &'a EffectsConfig,
    pub trace_id: &'a str,
    pub node_id: &'a str,
    pub idempotency_key: &'a str,
    pub now_ms: u64,
}

/// What an executor did: the receipt the agent gets and the events that record it.
#[derive(Debug)]
pub struct Performed {
    pub receipt: Value,
    pub events: Vec<(EventKind, Value)>,
}

fn artifact_name(payload: &Value) -> Result<String, String> {
    let name = payload
        .get("name")
        .and_then(Value::as_str)
        .ok_or("payload.name: a file name is required")?;
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if name.is_empty()
        || name.len() > ARTIFACT_NAME_BYTES_MAX
        || name.starts_with('.')
        || !name.chars().all(ok)
    {
        return Err(format!(
            "payload.name {name:?}: 1 to {ARTIFACT_NAME_BYTES_MAX} of A-Z a-z 0-9 . _ -, not \
             starting with a dot"
        ));
    }
    Ok(name.to_owned())
}

fn only_keys(payload: &Value, keys: &[&str]) -> Result<(), String> {
    let map = payload.as_object().ok_or("the payload must be a map")?;
    match map.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "payload.{k}: unknown field (known: {})",
            keys.join(", ")
        )),
        None => Ok(()),
    }
}

/// Checks `payload` for `kind`; returns it prepared and the summary a person is shown.
pub fn prepare(kind: EffectKind, payload: &Value) -> Result<(Prepared, String), String> {
    match kind {
        EffectKind::MailSend => {
            let mail: MailPayload = serde_json::from_value(payload.clone())
                .map_err(|e| format!("mail.send payload: {e}"))?;
            mail.validate()
                .map_err(|e| format!("mail.send payload: {e}"))?;
            let summary = format!("send an email {}", mail.summary());
            Ok((Prepared::Mail(mail), summary))
        }
        EffectKind::ArtifactSave => {
            only_keys(payload, &["name", "content", "media_type"])?;
            let name = artifact_name(payload)?;
            let content = payload
                .get("content")
                .and_then(Value::as_str)
                .ok_or("payload.content: the text to save is required")?
                .to_owned();
            if content.len() > ARTIFACT_BYTES_MAX {
                return Err(format!(
                    "payload.content: {} bytes, at most {ARTIFACT_BYTES_MAX}",
                    content.len()
                ));
            }
            let media_type = payload
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("text/plain")
                .to_owned();
            let summary = format!(
                "save artifact {name} ({} bytes, {media_type})",
                content.len()
            );
            Ok((
                Prepared::ArtifactSave {
                    name,
                    content,
                    media_type,
                },
                summary,
            ))
        }
        EffectKind::ArtifactDelete => {
            only_keys(payload, &["name"])?;
            let name = artifact_name(payload)?;
            let summary = format!("delete artifact {name}");
            Ok((Prepared::ArtifactDelete { name }, summary))
        }
    }
}

/// The Message-ID of a mail effect: derived from run, node and idempotency key, so a
/// message performed twice (it never is) would still be one message to every reader.
pub fn message_id(ctx: &ExecCtx<'_>) -> String {
    let mut h = blake3::Hasher::new();
    for part in [ctx.trace_id, ctx.node_id, ctx.idempotency_key] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    let hex = h.finalize().to_hex();
    format!("<{}@{}>", &hex[..32], ctx.config.mail_domain)
}

/// The run's artifacts directory.
pub fn artifacts_dir(config: &EffectsConfig, trace_id: &str) -> PathBuf {
    config.runs_dir.join(trace_id).join("artifacts")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("an artifact path has a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Performs a prepared effect.
pub fn perform(prepared: &Prepared, ctx: &ExecCtx<'_>) -> Result<Performed, String> {
    match prepared {
        Prepared::Mail(mail) => {
            let message_id = message_id(ctx);
            let from = &ctx.config.mail_from;
            let bytes = runloop_mail::render(mail, from, &message_id, ctx.now_ms)
                .map_err(|e| format!("render the message: {e}"))?;
            let receipt = match &ctx.config.smtp {
                None => {
                    let outbox = Maildir::open(&ctx.config.outbox)
                        .map_err(|e| format!("outbox {}: {e}", ctx.config.outbox.display()))?;
                    let path = outbox
                        .deliver(&message_id, &bytes)
                        .map_err(|e| format!("outbox {}: {e}", ctx.config.outbox.display()))?;
                    json!({"message_id": message_id, "path": path.display().to_string()})
                }
                Some(smtp) => {
                    let sent = runloop_mail::send_smtp(smtp, from, mail, &bytes)
                        .map_err(|e| format!("smtp {}:{}: {e}", smtp.host, smtp.port))?;
                    json!({"message_id": message_id, "smtp": {
                        "host": smtp.host, "port": smtp.port, "response": sent.response,
                    }})
                }
            };
            let to: Vec<&str> = mail
                .to
                .iter()
                .chain(&mail.cc)
                .map(|m| m.email.as_str())
                .collect();
            let email = json!({
                "message_id": message_id,
                "to": to,
                "subject": mail.subject,
                "body_digest": blake3::hash(mail.body.as_bytes()).to_hex().to_string(),
                "trace_id": ctx.trace_id,
            });
            Ok(Performed {
                receipt,
                events: vec![(EventKind::EmailSent, email)],
            })
        }
        Prepared::ArtifactSave {
            name,
            content,
            media_type,
        } => {
            let path = artifacts_dir(ctx.config, ctx.trace_id).join(name);
            write_atomic(&path, content.as_bytes())
                .map_err(|e| format!("save {}: {e}", path.display()))?;
            let digest = blake3::hash(content.as_bytes()).to_hex().to_string();
            let size = content.len() as u64;
            let receipt = json!({
                "path": path.display().to_string(), "digest": digest, "size_bytes": size,
            });
            let created = json!({
                "artifact_id": format!("{}/{name}", ctx.trace_id),
                "name": name,
                "media_type": media_type,
                "digest": digest,
                "size_bytes": size,
                "uri": format!("file://{}", path.display()),
                "trace_id": ctx.trace_id,
            });
            Ok(Performed {
                receipt,
                events: vec![(EventKind::ArtifactCreated, created)],
            })
        }
        Prepared::ArtifactDelete { name } => {
            let path = artifacts_dir(ctx.config, ctx.trace_id).join(name);
            let existed = match std::fs::remove_file(&path) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(format!("delete {}: {e}", path.display())),
            };
            Ok(Performed {
                receipt: json!({"path": path.display().to_string(), "existed": existed}),
                events: Vec::new(),
            })
        }
    }
}

/// A valid payload of each kind (docs, and the test that walks every kind).
pub fn example_payload(kind: EffectKind) -> Value {
    match kind {
        EffectKind::MailSend => json!({
            "to": [{"name": "John Smith", "email": "john.smith@example.com"}],
            "subject": "Q4 plan",
            "body": "Hi John,\n\nThe Q4 plan is attached [1].\n\nSources: [1] note:q4",
        }),
        EffectKind::ArtifactSave => json!({"name": "draft.txt", "content": "draft"}),
        EffectKind::ArtifactDelete => json!({"name": "draft.txt"}),
    }
}

/// The sender every mail effect uses (configured; never the agent's choice).
pub fn default_from() -> Mailbox {
    Mailbox {
        name: Some("Runloop".into()),
        email: "runloop@localhost".into(),
    }
}
