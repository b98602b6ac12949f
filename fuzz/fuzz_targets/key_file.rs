//! Fuzzes the key-file parsers (`PublicKey::parse`, `SecretKey::parse`): what `rlp trust
//! add`, `rlp agent sign` and config's `security.trust_roots` read from untrusted text.
//!
//! Oracles: nothing panics; no text is both a public and a secret key; an accepted key
//! prints to text that parses back to the same key, and its id is 16 lowercase hex digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runloop_bundle::{PublicKey, SecretKey};

fuzz_target!(|data: &[u8]| {
    // Key files are read as UTF-8 text; other bytes are refused before any parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let public = PublicKey::parse(text, "fuzz");
    let secret = SecretKey::parse(text, "fuzz");
    assert!(
        public.is_err() || secret.is_err(),
        "both a public and a secret key: {text:?}"
    );
    if let Ok(key) = public {
        let again = PublicKey::parse(&key.to_text(), "again").expect("a printed key parses");
        assert_eq!(again, key);
        let id = key.id();
        assert_eq!(id.as_str().len(), 16);
        assert!(
            id.as_str()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }
    if let Ok(key) = secret {
        let again = SecretKey::parse(&key.to_text(), "again").expect("a printed key parses");
        assert_eq!(again.public(), key.public());
    }
});
