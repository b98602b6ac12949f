//! `expr::compare`: numbers numerically (integers and floats mixed), strings by bytes,
//! booleans and nil by equality only, different types never equal.

use rmpv::Value as V;
use runloop_openings::expr::{Op, compare, lookup};

#[test]
fn compare_table() {
    use Op::*;
    let s = |t: &str| V::from(t);
    let rows: Vec<(V, Op, V, bool)> = vec![
        (V::from(1), Eq, V::from(1), true),
        (V::from(1), Eq, V::F64(1.0), true),
        (V::F32(1.5), Lt, V::from(2), true),
        (V::from(-1), Lt, V::from(u64::MAX), true),
        (V::from(u64::MAX), Gt, V::from(i64::MAX), true),
        (V::F64(0.5), Ge, V::F64(0.5), true),
        (V::F64(0.5), Gt, V::F64(0.5), false),
        (V::from(3), Ne, V::from(4), true),
        (V::from(3), Le, V::from(2), false),
        (V::F64(f64::NAN), Eq, V::F64(f64::NAN), false),
        (V::F64(f64::NAN), Ne, V::from(1), true),
        (s("abc"), Lt, s("abd"), true),
        (s("B"), Lt, s("a"), true), // bytes: uppercase sorts first
        (s("é"), Gt, s("z"), true), // bytes: UTF-8 lead byte 0xc3 > b'z'
        (s("x"), Eq, s("x"), true),
        (s("x"), Ge, s("x"), true),
        (V::Boolean(true), Eq, V::Boolean(true), true),
        (V::Boolean(true), Ne, V::Boolean(false), true),
        (V::Boolean(true), Gt, V::Boolean(false), false),
        (V::Nil, Eq, V::Nil, true),
        (V::Nil, Le, V::Nil, false),
        (V::from(1), Eq, s("1"), false),
        (V::from(1), Ne, s("1"), true),
        (V::from(1), Lt, s("2"), false),
        (V::Nil, Eq, V::Boolean(false), false),
        (V::Nil, Ne, V::from(0), true),
        (V::Boolean(true), Eq, V::from(1), false),
        (
            V::Array(vec![V::from(1)]),
            Eq,
            V::Array(vec![V::from(1)]),
            true,
        ),
        (V::Array(vec![]), Lt, V::Array(vec![V::from(1)]), false),
    ];
    for (value, op, literal, want) in rows {
        assert_eq!(
            compare(&value, op, &literal),
            want,
            "{value} {op} {literal}"
        );
    }
}

#[test]
fn lookup_follows_string_keys() {
    let payload = V::Map(vec![(
        V::from("a"),
        V::Map(vec![(V::from("b"), V::from(2))]),
    )]);
    let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(lookup(&payload, &fields(&["a", "b"])), Some(&V::from(2)));
    assert_eq!(lookup(&payload, &fields(&["b"])), None);
    assert_eq!(lookup(&V::from(1), &fields(&["a"])), None);
}
