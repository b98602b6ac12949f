//! `rlp rmp`: decode, encode and list RMP v0 frames — the protocol's debugging tool.
//!
//! The JSON form of a frame is `{"header": {...}, "body": {"type", "payload", "meta"}}`
//! with ids as fixed-width hex strings and MsgPack values in the lossless JSON form of
//! `runloop_proto::json`. `encode` reads that form and `decode --json` prints it, so
//! `rlp rmp encode | rlp rmp decode --json` gives back its input.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use rmpv::Value;
use runloop_proto::frame::BODY_BYTES_MAX_DEFAULT;
use runloop_proto::json::{json_to_msgpack, msgpack_to_json};
use runloop_proto::{
    Body, Clock, DecodeError, Family, Frame, Header, Kind, Limits, MsgId, SystemClock, TraceId,
    decode_frame, encode_frame,
};
use serde_json::{Map, Value as Json, json};

use crate::failure::Failure;
use crate::input::{looks_like_hex, parse_hex, read_input};

/// TTL given to frames whose JSON omits `ttl_ms`.
const TTL_MS_DEFAULT: u64 = 60_000;

#[derive(Debug, Subcommand)]
pub enum RmpCommand {
    /// Decode and validate one frame, printing its header and body.
    ///
    /// Input is raw frame bytes or hex text (as `rlp rmp encode` prints), from --hex, a
    /// FILE, or stdin (`-` or nothing). A frame that fails validation prints the RMP error
    /// name and exits 2; so do incomplete input and trailing bytes.
    Decode(DecodeArgs),
    /// Encode one frame from its JSON form (stdin or --file) and print it as hex.
    ///
    /// JSON: {"header": {"trace_id": "<hex>", "msg_id": "<hex>", "created_at_ms"?: N,
    /// "ttl_ms"?: N}, "body": {"type": "<registered type>", "payload": ..., "meta"?: {...}}}.
    /// created_at_ms defaults to now, ttl_ms to 60000. The derived fields decode prints
    /// (schema_id, family, body_len, expires_at_ms) are accepted; schema_id and family must
    /// agree with the type, body_len and expires_at_ms are recomputed.
    Encode(EncodeArgs),
    /// List the registered families and message kinds.
    Registry(RegistryArgs),
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The frame as hex digits (whitespace ignored).
    #[arg(long, value_name = "HEX", conflicts_with = "file")]
    hex: Option<String>,
    /// A file holding the frame (raw bytes or hex text); `-` reads stdin.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The receiver's clock for the TTL check, in Unix epoch milliseconds [default: now].
    #[arg(long, value_name = "N")]
    now_ms: Option<u64>,
    /// The receiver's body cap in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = BODY_BYTES_MAX_DEFAULT,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(u32::MAX - 64)))]
    max_body: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Read the JSON form from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Write the raw frame bytes instead of hex.
    #[arg(long)]
    raw: bool,
    /// The sender's clock for a missing created_at_ms, in Unix epoch milliseconds
    /// [default: now].
    #[arg(long, value_name = "N")]
    now_ms: Option<u64>,
    /// The body cap in bytes; a larger body is refused with BodyTooLarge.
    #[arg(long, value_name = "BYTES", default_value_t = BODY_BYTES_MAX_DEFAULT,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(u32::MAX - 64)))]
    max_body: u32,
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: RmpCommand) -> Result<(), Failure> {
    match command {
        RmpCommand::Decode(args) => {
            let json = args.json;
            decode(args).map_err(|f| f.json(json))
        }
        RmpCommand::Encode(args) => encode(args),
        RmpCommand::Registry(args) => registry(args),
    }
}

fn decode(args: DecodeArgs) -> Result<(), Failure> {
    let bytes = match &args.hex {
        Some(text) => parse_hex(text.as_bytes())?,
        None => {
            let input = read_input(args.file.as_deref())?;
            if looks_like_hex(&input) {
                parse_hex(&input)?
            } else {
                input
            }
        }
    };
    let now_ms = args.now_ms.unwrap_or_else(|| SystemClock.now_ms());
    let limits = Limits::new(args.max_body);
    let (frame, used) = decode_frame(&bytes, &limits, now_ms).map_err(|e| match e {
        DecodeError::Incomplete { .. } => Failure::invalid("Incomplete", e.to_string()),
        DecodeError::Frame(err) => Failure::from(err),
    })?;
    if used != bytes.len() {
        return Err(Failure::invalid(
            "TrailingBytes",
            format!("{} bytes after the {used}-byte frame", bytes.len() - used),
        ));
    }
    let body_len = used - 4 - runloop_proto::HEADER_LEN;
    let out = if args.json {
        format!("{}\n", frame_to_json(&frame, body_len))
    } else {
        frame_to_text(&frame, body_len)
    };
    print_stdout(out.as_bytes())
}

fn frame_to_json(frame: &Frame, body_len: usize) -> Json {
    let h = frame.header();
    let body = frame.body();
    let mut body_json = Map::new();
    body_json.insert("type".into(), json!(body.kind().type_name()));
    body_json.insert("payload".into(), msgpack_to_json(body.payload()));
    if let Some(meta) = body.meta() {
        body_json.insert("meta".into(), msgpack_to_json(&Value::Map(meta.to_vec())));
    }
    json!({
        "header": {
            "schema_id": h.schema_id().0,
            "family": h.family().name(),
            "body_len": body_len,
            "created_at_ms": h.created_at_ms(),
            "ttl_ms": h.ttl_ms(),
            "expires_at_ms": h.expires_at_ms(),
            "trace_id": h.trace_id().to_string(),
            "msg_id": h.msg_id().to_string(),
        },
        "body": body_json,
    })
}

fn frame_to_text(frame: &Frame, body_len: usize) -> String {
    let h = frame.header();
    let body = frame.body();
    let meta = body.meta().map_or("-".to_owned(), |m| {
        msgpack_to_json(&Value::Map(m.to_vec())).to_string()
    });
    format!(
        "frame_len      {} (header 64 + body {body_len})\n\
         schema_id      {} ({})\n\
         created_at_ms  {}\n\
         ttl_ms         {} (expires at {} ms)\n\
         trace_id       {}\n\
         msg_id         {}\n\
         type           {}\n\
         payload        {}\n\
         meta           {meta}\n",
        64 + body_len,
        h.schema_id(),
        h.family(),
        h.created_at_ms(),
        h.ttl_ms(),
        h.expires_at_ms(),
        h.trace_id(),
        h.msg_id(),
        body.kind().type_name(),
        msgpack_to_json(body.payload()),
    )
}

fn encode(args: EncodeArgs) -> Result<(), Failure> {
    let input = read_input(args.file.as_deref())?;
    let source = args
        .file
        .as_ref()
        .map_or("stdin".to_owned(), |p| p.display().to_string());
    let doc: Json = serde_json::from_slice(&input)
        .map_err(|e| Failure::invalid("InvalidJson", format!("{source}: {e}")))?;
    let now_ms = args.now_ms.unwrap_or_else(|| SystemClock.now_ms());
    let frame = frame_from_json(&doc, now_ms)?;
    let bytes = encode_frame(&frame, &Limits::new(args.max_body))?;
    if args.raw {
        print_stdout(&bytes)
    } else {
        print_stdout(format!("{}\n", hex::encode(bytes)).as_bytes())
    }
}

fn bad_field(path: &str, reason: impl std::fmt::Display) -> Failure {
    Failure::invalid("InvalidField", format!("{path}: {reason}"))
}

fn only_keys(object: &Map<String, Json>, path: &str, allowed: &[&str]) -> Result<(), Failure> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad_field(
            &format!("{path}.{k}"),
            format!("unknown field (allowed: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn object<'a>(json: &'a Json, path: &str) -> Result<&'a Map<String, Json>, Failure> {
    json.as_object()
        .ok_or_else(|| bad_field(path, "expected an object"))
}

fn u64_field(h: &Map<String, Json>, key: &str) -> Result<Option<u64>, Failure> {
    h.get(key)
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| bad_field(&format!("header.{key}"), "expected an integer 0..2^64"))
        })
        .transpose()
}

fn frame_from_json(doc: &Json, now_ms: u64) -> Result<Frame, Failure> {
    let top = object(doc, "$")?;
    only_keys(top, "$", &["header", "body"])?;
    let h = object(top.get("header").unwrap_or(&Json::Null), "header")?;
    only_keys(
        h,
        "header",
        &[
            "trace_id",
            "msg_id",
            "created_at_ms",
            "ttl_ms",
            "schema_id",
            "family",
            "body_len",
            "expires_at_ms",
        ],
    )?;
    let b = object(top.get("body").unwrap_or(&Json::Null), "body")?;
    only_keys(b, "body", &["type", "payload", "meta"])?;

    let type_name = b
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad_field("body.type", "expected a string"))?;
    let kind = Kind::from_type_name(type_name).ok_or_else(|| {
        Failure::invalid(
            "BodyTypeMismatch",
            format!("body.type {type_name:?} is not a registered kind (see `rlp rmp registry`)"),
        )
    })?;
    check_family_fields(h, kind.family())?;
    let payload = b
        .get("payload")
        .ok_or_else(|| bad_field("body.payload", "missing"))?;
    let payload = json_to_msgpack(payload, "body.payload")
        .map_err(|e| Failure::invalid("InvalidField", e.to_string()))?;
    let meta = match b.get("meta") {
        None => None,
        Some(m @ Json::Object(_)) => match json_to_msgpack(m, "body.meta") {
            Ok(Value::Map(entries)) => Some(entries),
            Ok(_) => return Err(bad_field("body.meta", "expected a map")),
            Err(e) => return Err(Failure::invalid("InvalidField", e.to_string())),
        },
        Some(_) => return Err(bad_field("body.meta", "expected an object")),
    };
    let body = Body::new(kind, payload, meta)?;

    let id = |key: &str| {
        h.get(key)
            .and_then(Json::as_str)
            .ok_or_else(|| bad_field(&format!("header.{key}"), "expected a hex string"))
    };
    let trace_id: TraceId = id("trace_id")?
        .parse()
        .map_err(|e| bad_field("header.trace_id", e))?;
    let msg_id: MsgId = id("msg_id")?
        .parse()
        .map_err(|e| bad_field("header.msg_id", e))?;
    let created_at_ms = u64_field(h, "created_at_ms")?.unwrap_or(now_ms);
    let ttl_ms = u64_field(h, "ttl_ms")?.unwrap_or(TTL_MS_DEFAULT);
    let header = Header::new(kind.family(), created_at_ms, ttl_ms, trace_id, msg_id)?;
    Ok(Frame::new(header, body)?)
}

/// `schema_id` and `family`, when given, must name the type's family.
fn check_family_fields(h: &Map<String, Json>, family: Family) -> Result<(), Failure> {
    if let Some(id) = u64_field(h, "schema_id")?
        && id != u64::from(family.schema_id().0)
    {
        return Err(Failure::invalid(
            "BodyTypeMismatch",
            format!(
                "header.schema_id {id:#06x} does not match the type's family {family} ({})",
                family.schema_id()
            ),
        ));
    }
    if let Some(name) = h.get("family")
        && name.as_str() != Some(family.name())
    {
        return Err(Failure::invalid(
            "BodyTypeMismatch",
            format!("header.family {name} does not match the type's family {family}"),
        ));
    }
    Ok(())
}

fn registry(args: RegistryArgs) -> Result<(), Failure> {
    let out = if args.json {
        let kinds: Vec<Json> = Kind::ALL
            .iter()
            .map(|k| {
                json!({
                    "type": k.type_name(),
                    "family": k.family().name(),
                    "schema_id": k.family().schema_id().0,
                    "payload": k.payload_type(),
                    "doc": k.doc(),
                    "example": msgpack_to_json(&k.example_payload()),
                })
            })
            .collect();
        format!("{}\n", json!({ "kinds": kinds }))
    } else {
        let mut text = format!(
            "{:<24} {:<12} {:<9} {}\n",
            "TYPE", "FAMILY", "SCHEMA", "PAYLOAD"
        );
        for k in Kind::ALL {
            text.push_str(&format!(
                "{:<24} {:<12} {:<9} {}\n",
                k.type_name(),
                k.family().name(),
                k.family().schema_id().to_string(),
                k.payload_type()
            ));
        }
        text
    };
    print_stdout(out.as_bytes())
}

fn print_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::io(format!("write stdout: {e}")))
}
