//! Reading command input: a file, stdin (`-`), or text given on the command line.

use std::io::Read;
use std::path::Path;

use crate::failure::Failure;

/// Most bytes any single input may hold: the largest RMP frame in hex, with slack.
pub const INPUT_BYTES_MAX: u64 = 2 * (8 * 1024 * 1024 + 68) + 4096;

/// Reads `path` (or stdin when it is `-` or absent), refusing more than
/// [`INPUT_BYTES_MAX`] bytes.
pub fn read_input(path: Option<&Path>) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let (name, result) = match path {
        None => (
            "stdin".to_owned(),
            read_bounded(std::io::stdin().lock(), &mut bytes),
        ),
        Some(p) if p == Path::new("-") => (
            "stdin".to_owned(),
            read_bounded(std::io::stdin().lock(), &mut bytes),
        ),
        Some(p) => {
            let name = p.display().to_string();
            match std::fs::File::open(p) {
                Ok(file) => (name, read_bounded(file, &mut bytes)),
                Err(e) => return Err(Failure::io(format!("read {name}: {e}"))),
            }
        }
    };
    match result {
        Ok(()) => Ok(bytes),
        Err(ReadError::Io(e)) => Err(Failure::io(format!("read {name}: {e}"))),
        Err(ReadError::TooLarge) => Err(Failure::invalid(
            "InputTooLarge",
            format!("{name} holds more than INPUT_BYTES_MAX ({INPUT_BYTES_MAX} bytes)"),
        )),
    }
}

enum ReadError {
    Io(std::io::Error),
    TooLarge,
}

fn read_bounded(reader: impl Read, out: &mut Vec<u8>) -> Result<(), ReadError> {
    reader
        .take(INPUT_BYTES_MAX + 1)
        .read_to_end(out)
        .map_err(ReadError::Io)?;
    if out.len() as u64 > INPUT_BYTES_MAX {
        return Err(ReadError::TooLarge);
    }
    Ok(())
}

/// Whether `bytes` look like hex text rather than a raw frame: only hex digits and
/// whitespace. A raw frame within the 8 MiB cap starts with a 0x00 byte, which never
/// passes, so the two cannot be confused.
pub fn looks_like_hex(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
}

/// Hex text (whitespace ignored) to bytes, with the position of the first bad digit.
pub fn parse_hex(text: &[u8]) -> Result<Vec<u8>, Failure> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if let Some(at) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
        let shown = char::from(digits[at]).escape_default();
        return Err(Failure::invalid(
            "InvalidHex",
            format!("character '{shown}' at digit {at} is not a hex digit"),
        ));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(Failure::invalid(
            "InvalidHex",
            format!("odd number of hex digits ({})", digits.len()),
        ));
    }
    hex::decode(&digits).map_err(|e| Failure::invalid("InvalidHex", e.to_string()))
}
