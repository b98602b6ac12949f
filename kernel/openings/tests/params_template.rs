//! Run params (`bind`, each error naming the param, `to_json`) and template rendering
//! (a whole-string template keeps the value's type; inside text, JSON for non-strings).

mod common;

use common::{map, s};
use runloop_openings::params::{ParamError, bind};
use serde_json::json;

const PARAMS: &str = r#"version: 0
name: p
goals: ["{{params.count}}", "write {{params.count}} lines on {{params.topic}} {{params.tags}} {{params.opts}} {{params.none}}"]
params:
  topic: { type: string, required: true }
  count: { type: integer, default: 3 }
  ratio: { type: number }
  loud:  { type: boolean, default: false }
  opts:  { type: object, default: { a: 1 } }
  tags:  { type: array, default: [x, 2] }
  none:  { type: string }
nodes:
  - id: a
    use: agent:echo
    with:
      whole: "{{params.count}}"
      obj: "{{params.opts}}"
      text: "n={{params.count}} r={{params.ratio}}"
      nested: [{ deep: "{{params.loud}}" }, plain]
"#;

#[test]
fn binding_fills_defaults_in_declaration_order() {
    let o = common::opening(PARAMS);
    let bound = bind(&o, &json!({"topic": "rust", "ratio": 2})).unwrap();
    let names: Vec<&str> = bound.values.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["topic", "count", "ratio", "loud", "opts", "tags", "none"]
    );
    assert_eq!(bound.get("topic"), Some(&s("rust")));
    assert_eq!(bound.get("count"), Some(&rmpv::Value::from(3)));
    assert_eq!(
        bound.get("ratio"),
        Some(&rmpv::Value::from(2)),
        "an integer stays an integer"
    );
    assert_eq!(bound.get("none"), Some(&rmpv::Value::Nil));
    assert_eq!(bound.get("opts"), Some(&map(&[("a", 1.into())])));
    assert_eq!(
        bound.to_json(),
        json!({"topic": "rust", "count": 3, "ratio": 2, "loud": false,
               "opts": {"a": 1}, "tags": ["x", 2], "none": null})
    );
    let bound = bind(&o, &json!({"topic": "t", "ratio": 0.5, "count": -7})).unwrap();
    assert_eq!(bound.get("ratio"), Some(&rmpv::Value::F64(0.5)));
    assert_eq!(bound.get("count"), Some(&rmpv::Value::from(-7)));
}

#[test]
fn binding_errors_name_the_param() {
    let o = common::opening(PARAMS);
    let wrong = |name: &str, expected, got| ParamError::WrongType {
        name: name.into(),
        expected,
        got,
    };
    let cases = [
        (json!({}), ParamError::Missing("topic".into())),
        (
            json!({"topic": "t", "colour": 1}),
            ParamError::Undeclared("colour".into()),
        ),
        (json!({"topic": 1}), wrong("topic", "string", "integer")),
        (
            json!({"topic": "t", "count": 1.5}),
            wrong("count", "integer", "number"),
        ),
        (
            json!({"topic": "t", "count": "1"}),
            wrong("count", "integer", "string"),
        ),
        (
            json!({"topic": "t", "ratio": true}),
            wrong("ratio", "number", "boolean"),
        ),
        (
            json!({"topic": "t", "loud": "yes"}),
            wrong("loud", "boolean", "string"),
        ),
        (
            json!({"topic": "t", "opts": []}),
            wrong("opts", "object", "array"),
        ),
        (
            json!({"topic": "t", "tags": {}}),
            wrong("tags", "array", "object"),
        ),
        (
            json!({"topic": "t", "none": null}),
            wrong("none", "string", "null"),
        ),
        (
            json!({"topic": "t", "opts": {"$bin": "00"}}),
            wrong("opts", "object", "a $-tagged value"),
        ),
        (json!(["topic"]), ParamError::NotAnObject),
    ];
    for (given, want) in cases {
        assert_eq!(bind(&o, &given), Err(want), "{given}");
    }
    let err = bind(&o, &json!({"topic": "t", "opts": {"$bin": "zz"}})).unwrap_err();
    assert!(
        matches!(&err, ParamError::Malformed { name, .. } if name == "opts"),
        "{err:?}"
    );
    assert_eq!(
        ParamError::Missing("topic".into()).to_string(),
        "param topic: required but not given"
    );
    assert_eq!(
        wrong("count", "integer", "number").to_string(),
        "param count: expected integer, got number"
    );
}

#[test]
fn templates_keep_type_when_whole_and_render_text_inside_strings() {
    let o = common::opening(PARAMS);
    let bound = bind(
        &o,
        &json!({"topic": "rust", "ratio": 0.5, "opts": {"k": [1, "v"]}}),
    )
    .unwrap();
    let goals: Vec<rmpv::Value> = o.goals.iter().map(|g| g.render(&bound)).collect();
    assert_eq!(
        goals,
        vec![
            rmpv::Value::from(3),
            s(r#"write 3 lines on rust ["x",2] {"k":[1,"v"]} null"#),
        ]
    );
    let with = o.nodes[0].with.render(&bound);
    assert_eq!(
        with,
        map(&[
            ("whole", 3.into()),
            (
                "obj",
                map(&[("k", rmpv::Value::Array(vec![1.into(), s("v")]))])
            ),
            ("text", s("n=3 r=0.5")),
            (
                "nested",
                rmpv::Value::Array(vec![map(&[("deep", false.into())]), s("plain")])
            ),
        ])
    );
}
