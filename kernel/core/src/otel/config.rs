//! `observability.traces` of config v1, parsed once into closed types: whether to export,
//! where, over which OTLP protocol, and how to sample.

use serde_norway::Value;

use crate::config::Config;

/// Default interval between two metric exports, in milliseconds.
pub const METRICS_INTERVAL_MS: u64 = 10_000;
/// The OTLP/gRPC port the collector listens on by default.
const OTLP_GRPC_PORT: u16 = 4317;
/// The OTLP/HTTP port the collector listens on by default.
const OTLP_HTTP_PORT: u16 = 4318;
/// The path an OTLP/HTTP receiver takes spans on.
pub const HTTP_TRACES_PATH: &str = "/v1/traces";
/// The path an OTLP/HTTP receiver takes metrics on.
pub const HTTP_METRICS_PATH: &str = "/v1/metrics";

/// Why `observability.traces` is not usable.
#[derive(Debug, thiserror::Error)]
#[error("config observability.traces.{key}: {message}")]
pub struct OtelConfigError {
    pub key: &'static str,
    pub message: String,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (the collector's port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, `POST /v1/traces`, `/v1/metrics`).
    HttpProtobuf,
}

/// Which crossings become spans (config v1's `sampling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Follow the parent's decision; a run's root span has none, so every run is kept.
    Parent,
    /// Every run.
    AlwaysOn,
    /// This fraction of runs, decided by trace id (all of a run's spans or none).
    Ratio(f64),
}

/// Where and how to export.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    /// The receiver's base URL (`http://host:port`, without a signal path).
    pub endpoint: String,
    pub protocol: Protocol,
    pub sampling: Sampling,
    /// Interval between two metric exports, in milliseconds.
    pub metrics_interval_ms: u64,
}

impl OtelConfig {
    /// `observability.traces` of `config`: `None` when `enabled` is false or absent.
    pub fn from_config(config: &Config) -> Result<Option<OtelConfig>, OtelConfigError> {
        let traces = ["observability", "traces"]
            .iter()
            .try_fold(config.tree(), |value, key| value.get(*key));
        let Some(traces) = traces else {
            return Ok(None);
        };
        let get = |key: &str| traces.get(key);
        // Sampling is checked even when export is off: a bad value is bad input either way.
        let sampling = match get("sampling") {
            None => Sampling::Parent,
            Some(value) => parse_sampling(&scalar("sampling", value)?)?,
        };
        let enabled = match get("enabled") {
            None => false,
            Some(Value::Bool(on)) => *on,
            Some(value) => match scalar("enabled", value)?.as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(OtelConfigError {
                        key: "enabled",
                        message: format!("{other:?} is not true or false"),
                    });
                }
            },
        };
        let explicit = match get("protocol") {
            None => None,
            Some(value) => Some(parse_protocol(&scalar("protocol", value)?)?),
        };
        if !enabled {
            return Ok(None);
        }
        let endpoint = match get("otlp_endpoint") {
            Some(value) => scalar("otlp_endpoint", value)?,
            None => String::new(),
        };
        let (endpoint, protocol) = parse_endpoint(&endpoint, explicit)?;
        Ok(Some(OtelConfig {
            endpoint,
            protocol,
            sampling,
            metrics_interval_ms: METRICS_INTERVAL_MS,
        }))
    }

    /// Where spans go: the gRPC endpoint itself, or the HTTP base + `/v1/traces`.
    pub fn traces_url(&self) -> String {
        match self.protocol {
            Protocol::Grpc => self.endpoint.clone(),
            Protocol::HttpProtobuf => format!("{}{HTTP_TRACES_PATH}", self.endpoint),
        }
    }

    /// Where metrics go: the gRPC endpoint itself, or the HTTP base + `/v1/metrics`.
    pub fn metrics_url(&self) -> String {
        match self.protocol {
            Protocol::Grpc => self.endpoint.clone(),
            Protocol::HttpProtobuf => format!("{}{HTTP_METRICS_PATH}", self.endpoint),
        }
    }
}

fn scalar(key: &'static str, value: &Value) -> Result<String, OtelConfigError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(OtelConfigError {
            key,
            message: "expected a single value".into(),
        }),
    }
}

/// `parent | always_on | ratio:R` with R in 0..=1.
pub fn parse_sampling(text: &str) -> Result<Sampling, OtelConfigError> {
    let bad = |message: String| OtelConfigError {
        key: "sampling",
        message,
    };
    match text.trim() {
        "parent" => Ok(Sampling::Parent),
        "always_on" => Ok(Sampling::AlwaysOn),
        other => {
            let Some(ratio) = other.strip_prefix("ratio:") else {
                return Err(bad(format!(
                    "{other:?} is not parent, always_on or ratio:R (R from 0 to 1)"
                )));
            };
            match ratio.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(Sampling::Ratio(r)),
                _ => Err(bad(format!(
                    "ratio {ratio:?} is not a number from 0 to 1 (e.g. ratio:0.1)"
                ))),
            }
        }
    }
}

fn parse_protocol(text: &str) -> Result<Protocol, OtelConfigError> {
    match text.trim() {
        "grpc" => Ok(Protocol::Grpc),
        "http" | "http/protobuf" => Ok(Protocol::HttpProtobuf),
        other => Err(OtelConfigError {
            key: "protocol",
            message: format!("{other:?} is not grpc or http"),
        }),
    }
}

/// The base URL and protocol: `protocol` when given; else HTTP for port 4318 or a
/// `/v1/traces` path, gRPC otherwise. Empty: the collector's default, `localhost:4317`.
fn parse_endpoint(
    text: &str,
    explicit: Option<Protocol>,
) -> Result<(String, Protocol), OtelConfigError> {
    let bad = |message: String| OtelConfigError {
        key: "otlp_endpoint",
        message,
    };
    let text = text.trim();
    if text.is_empty() {
        let protocol = explicit.unwrap_or(Protocol::Grpc);
        let port = match protocol {
            Protocol::Grpc => OTLP_GRPC_PORT,
            Protocol::HttpProtobuf => OTLP_HTTP_PORT,
        };
        return Ok((format!("http://localhost:{port}"), protocol));
    }
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| bad(format!("{text:?} is not an http:// or https:// URL")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad(format!("{text:?} names no host")));
    }
    let port = match authority.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => Some(
            port.parse::<u16>()
                .map_err(|_| bad(format!("{text:?}: port {port:?} is not a number")))?,
        ),
        _ => None,
    };
    let path = path.trim_end_matches('/');
    let signal_path = path.strip_suffix(HTTP_TRACES_PATH);
    let protocol = explicit.unwrap_or(if port == Some(OTLP_HTTP_PORT) || signal_path.is_some() {
        Protocol::HttpProtobuf
    } else {
        Protocol::Grpc
    });
    let base_path = signal_path.unwrap_or(path);
    let scheme_len = text.len() - rest.len();
    Ok((
        format!("{}{authority}{base_path}", &text[..scheme_len]),
        protocol,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_values() {
        assert_eq!(parse_sampling("parent").unwrap(), Sampling::Parent);
        assert_eq!(parse_sampling("always_on").unwrap(), Sampling::AlwaysOn);
        assert_eq!(parse_sampling("ratio:0.1").unwrap(), Sampling::Ratio(0.1));
        assert_eq!(parse_sampling("ratio:0").unwrap(), Sampling::Ratio(0.0));
        for bad in ["", "always", "ratio:", "ratio:2", "ratio:-0.1", "ratio:x"] {
            let e = parse_sampling(bad).unwrap_err();
            assert_eq!(e.key, "sampling", "{bad}");
            assert!(
                e.to_string()
                    .starts_with("config observability.traces.sampling: ")
            );
        }
    }

    #[test]
    fn endpoints_and_protocols() {
        let cases = [
            ("", None, "http://localhost:4317", Protocol::Grpc),
            (
                "http://localhost:4317",
                None,
                "http://localhost:4317",
                Protocol::Grpc,
            ),
            (
                "http://h:4318",
                None,
                "http://h:4318",
                Protocol::HttpProtobuf,
            ),
            (
                "http://h:9/v1/traces",
                None,
                "http://h:9",
                Protocol::HttpProtobuf,
            ),
            (
                "http://h:9/",
                Some(Protocol::HttpProtobuf),
                "http://h:9",
                Protocol::HttpProtobuf,
            ),
            (
                "https://h/otlp/v1/traces",
                None,
                "https://h/otlp",
                Protocol::HttpProtobuf,
            ),
            (
                "http://h:4318",
                Some(Protocol::Grpc),
                "http://h:4318",
                Protocol::Grpc,
            ),
        ];
        for (text, explicit, base, protocol) in cases {
            assert_eq!(
                parse_endpoint(text, explicit).unwrap(),
                (base.to_owned(), protocol),
                "{text}"
            );
        }
        for bad in ["localhost:4317", "http://", "http://h:port"] {
            assert_eq!(parse_endpoint(bad, None).unwrap_err().key, "otlp_endpoint");
        }
    }
}
