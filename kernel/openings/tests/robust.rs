//! `validate` on hostile input: arbitrary text and damaged valid openings give errors,
//! never a panic, and every error has a 1-based position.

mod common;

use proptest::prelude::*;

const VALID: &str = r#"version: 0
name: robust
goals: ["go {{params.x}}"]
params: { x: { type: integer, default: 1 } }
nodes:
  - { id: a, use: "agent:echo", with: { n: "{{params.x}}" }, retry: { max_attempts: 2 } }
  - { id: b, use: "agent:echo" }
edges:
  - { from: a.out.ok == true, to: b.in }
success: { any_of: ["exists(b.out)", "a.out.n >= 1.5"] }
"#;

fn check(source: &str) {
    if let Err(errors) = runloop_openings::validate(source, &common::Catalog::new()) {
        assert!(!errors.0.is_empty());
        for e in &errors.0 {
            assert!(e.line >= 1 && e.col >= 1, "{e:?}");
        }
    }
}

#[test]
fn the_base_document_is_valid() {
    common::opening(VALID);
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(source in "\\PC{0,200}") {
        check(&source);
    }

    #[test]
    fn damaged_openings_never_panic(
        at in 0..VALID.len(),
        cut in 0_usize..8,
        insert in "[-:{}\\[\\]'\"=<>!.a-z0-9 \n#&*|]{0,6}",
    ) {
        let mut source = VALID.to_owned();
        let at = (0..=at).rev().find(|&i| source.is_char_boundary(i)).unwrap_or(0);
        let end = (at + cut).min(source.len());
        let end = (end..=source.len()).find(|&i| source.is_char_boundary(i)).unwrap_or(source.len());
        source.replace_range(at..end, &insert);
        check(&source);
    }
}
