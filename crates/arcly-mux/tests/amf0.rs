//! AMF0: known byte vectors, round trips and hostile input.

use arcly_core::ProtocolErrorKind;
use arcly_mux::amf0::{self, Amf0Value, MAX_DEPTH};
use bytes::BytesMut;
use proptest::prelude::*;

fn encoded(value: &Amf0Value) -> Vec<u8> {
    let mut out = BytesMut::new();
    amf0::encode(value, &mut out);
    out.to_vec()
}

fn decoded(mut data: &[u8]) -> Amf0Value {
    let value = amf0::decode(&mut data).expect("decodes");
    assert!(data.is_empty(), "{} bytes left over", data.len());
    value
}

/// Checks both directions against a byte vector from the specification.
fn known(value: Amf0Value, bytes: &[u8]) {
    assert_eq!(encoded(&value), bytes, "encoding of {value:?}");
    assert_eq!(decoded(bytes), value, "decoding of {bytes:02x?}");
}

#[test]
fn scalars() {
    known(Amf0Value::Number(0.0), &[0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
    known(Amf0Value::Number(1.5), &[0x00, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    known(Amf0Value::Number(-2.0), &[0x00, 0xc0, 0, 0, 0, 0, 0, 0, 0]);
    known(Amf0Value::Boolean(true), &[0x01, 0x01]);
    known(Amf0Value::Boolean(false), &[0x01, 0x00]);
    known(Amf0Value::Null, &[0x05]);
    known(Amf0Value::Undefined, &[0x06]);
    known(Amf0Value::Reference(0x0102), &[0x07, 0x01, 0x02]);
    known(Amf0Value::Unsupported, &[0x0d]);
    known(Amf0Value::Date { millis: 1.0, timezone: -60 }, &[0x0b, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xff, 0xc4]);
}

#[test]
fn strings() {
    known(Amf0Value::from("connect"), b"\x02\x00\x07connect");
    known(Amf0Value::from(""), &[0x02, 0x00, 0x00]);
    known(Amf0Value::from("é"), &[0x02, 0x00, 0x02, 0xc3, 0xa9]);
    known(Amf0Value::LongString("ab".into()), &[0x0c, 0, 0, 0, 2, b'a', b'b']);
    known(Amf0Value::XmlDocument("<a/>".into()), b"\x0f\x00\x00\x00\x04<a/>");
    // Any boolean byte other than 0 is true.
    assert_eq!(decoded(&[0x01, 0x7f]), Amf0Value::Boolean(true));
}

#[test]
fn a_string_over_65535_bytes_is_written_as_a_long_string() {
    let long = "x".repeat(70_000);
    let bytes = encoded(&Amf0Value::String(long.clone()));
    assert_eq!(&bytes[..5], &[0x0c, 0x00, 0x01, 0x11, 0x70]);
    assert_eq!(decoded(&bytes), Amf0Value::LongString(long));
}

#[test]
fn object_with_end_marker() {
    let obj =
        Amf0Value::Object(vec![("app".into(), Amf0Value::from("live")), ("fpad".into(), Amf0Value::Boolean(false))]);
    known(obj.clone(), b"\x03\x00\x03app\x02\x00\x04live\x00\x04fpad\x01\x00\x00\x00\x09");
    assert_eq!(obj.get("app").and_then(Amf0Value::as_str), Some("live"));
    assert_eq!(obj.get("fpad").and_then(Amf0Value::as_bool), Some(false));
    known(Amf0Value::Object(vec![]), &[0x03, 0x00, 0x00, 0x09]);
}

#[test]
fn ecma_array_with_count() {
    let arr = Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(160.0))]);
    known(arr, b"\x08\x00\x00\x00\x01\x00\x05width\x00\x40\x64\x00\x00\x00\x00\x00\x00\x00\x00\x09");
    // The count is a hint: a wrong one is ignored, the end marker decides.
    let wrong_count = b"\x08\x00\x00\x00\x07\x00\x01a\x05\x00\x00\x09";
    assert_eq!(decoded(wrong_count), Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Null)]));
    // Some encoders leave the end marker off at the end of the data.
    let no_end = b"\x08\x00\x00\x00\x01\x00\x01a\x05";
    assert_eq!(decoded(no_end), Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Null)]));
}

#[test]
fn strict_array_and_typed_object() {
    known(
        Amf0Value::StrictArray(vec![Amf0Value::Number(1.0), Amf0Value::Null]),
        &[0x0a, 0, 0, 0, 2, 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x05],
    );
    known(
        Amf0Value::TypedObject { class_name: "C".into(), properties: vec![("k".into(), Amf0Value::Undefined)] },
        b"\x10\x00\x01C\x00\x01k\x06\x00\x00\x09",
    );
}

#[test]
fn decode_all_reads_a_command() {
    let mut out = BytesMut::new();
    let cmd = [
        Amf0Value::from("_result"),
        Amf0Value::Number(1.0),
        Amf0Value::Null,
        Amf0Value::Object(vec![("code".into(), Amf0Value::from("NetConnection.Connect.Success"))]),
    ];
    amf0::encode_all(&cmd, &mut out);
    assert_eq!(amf0::decode_all(&out).unwrap(), cmd);
    assert_eq!(amf0::decode_all(&[]).unwrap(), vec![]);
}

#[test]
fn decode_advances_only_on_success() {
    let data = [0x02, 0x00, 0x05, b'a'];
    let mut input: &[u8] = &data;
    let err = amf0::decode(&mut input).unwrap_err();
    assert_eq!(err.kind, ProtocolErrorKind::Truncated);
    assert_eq!(err.protocol, "amf0");
    assert_eq!(input.len(), data.len());
}

#[test]
fn amf3_switch_is_refused_as_unsupported() {
    let err = amf0::decode_all(&[0x11, 0x02]).unwrap_err();
    assert_eq!(err.kind, ProtocolErrorKind::Unsupported);
    assert!(err.context.contains("AMF3"), "{err}");
}

#[test]
fn bad_input_is_an_error() {
    for (data, kind) in [
        (&[0x09][..], ProtocolErrorKind::InvalidValue), // object end outside an object
        (&[0x04][..], ProtocolErrorKind::Unsupported),  // movieclip
        (&[0x0e][..], ProtocolErrorKind::Unsupported),  // recordset
        (&[0x12][..], ProtocolErrorKind::InvalidValue), // unknown marker
        (&[0x00, 0x3f][..], ProtocolErrorKind::Truncated), // short number
        (&[0x02, 0x00, 0x02, 0xff, 0xfe][..], ProtocolErrorKind::InvalidValue), // not UTF-8
        (&[0x03, 0x00, 0x01, b'a'][..], ProtocolErrorKind::Truncated), // object without a value
    ] {
        let err = amf0::decode_all(data).unwrap_err();
        assert_eq!(err.kind, kind, "{data:02x?}: {err}");
    }
}

#[test]
fn a_claimed_4_gb_string_fails_without_allocating() {
    // If the decoder trusted the length it would reserve 4 GB here.
    for marker in [0x0c, 0x0f] {
        let err = amf0::decode_all(&[marker, 0xff, 0xff, 0xff, 0xff, b'a']).unwrap_err();
        assert_eq!(err.kind, ProtocolErrorKind::Truncated);
    }
    let err = amf0::decode_all(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]).unwrap_err();
    assert_eq!(err.kind, ProtocolErrorKind::Truncated);
}

#[test]
fn nesting_is_capped() {
    let nested = |depth: usize| {
        let mut data = vec![];
        for _ in 0..depth {
            data.extend([0x0a, 0, 0, 0, 1]);
        }
        data.push(0x05);
        data
    };
    // MAX_DEPTH levels of values (the innermost null is the last) decode.
    assert!(amf0::decode_all(&nested(MAX_DEPTH - 1)).is_ok());
    let err = amf0::decode_all(&nested(MAX_DEPTH)).unwrap_err();
    assert_eq!(err.kind, ProtocolErrorKind::TooLarge);
    // Far deeper input fails the same way instead of overflowing the stack.
    let mut deep = vec![];
    for _ in 0..100_000 {
        deep.extend([0x03, 0x00, 0x01, b'a']);
    }
    assert_eq!(amf0::decode_all(&deep).unwrap_err().kind, ProtocolErrorKind::TooLarge);
}

#[test]
fn fuzz_entry_point_accepts_nan() {
    amf0::fuzz(&[0x00, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1]);
    amf0::fuzz(&[0x0b, 0xff, 0xf8, 0, 0, 0, 0, 0, 1, 0, 0]);
}

fn key() -> impl Strategy<Value = String> + Clone {
    prop_oneof![Just(String::new()), "[a-zA-Z0-9_]{1,12}", any::<String>().prop_map(|s| s.chars().take(20).collect())]
}

fn number() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN is never equal to itself", |n| !n.is_nan())
}

fn value() -> impl Strategy<Value = Amf0Value> {
    let leaf = prop_oneof![
        number().prop_map(Amf0Value::Number),
        any::<bool>().prop_map(Amf0Value::Boolean),
        any::<String>().prop_map(Amf0Value::String),
        Just(Amf0Value::Null),
        Just(Amf0Value::Undefined),
        any::<u16>().prop_map(Amf0Value::Reference),
        (number(), any::<i16>()).prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
        any::<String>().prop_map(Amf0Value::LongString),
        Just(Amf0Value::Unsupported),
        any::<String>().prop_map(Amf0Value::XmlDocument),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        let props = prop::collection::vec((key(), inner.clone()), 0..8);
        prop_oneof![
            props.clone().prop_map(Amf0Value::Object),
            props.clone().prop_map(Amf0Value::EcmaArray),
            prop::collection::vec(inner, 0..8).prop_map(Amf0Value::StrictArray),
            (key(), props).prop_map(|(class_name, properties)| Amf0Value::TypedObject { class_name, properties }),
        ]
    })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(values in prop::collection::vec(value(), 0..4)) {
        let mut out = BytesMut::new();
        amf0::encode_all(&values, &mut out);
        prop_assert_eq!(amf0::decode_all(&out).unwrap(), values);
    }

    #[test]
    fn decoder_never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = amf0::decode_all(&data);
        amf0::fuzz(&data);
    }

    /// Valid encodings with bytes flipped: hostile input that gets further
    /// into the decoder than random bytes do.
    #[test]
    fn decoder_never_panics_on_corrupted_values(v in value(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut out = BytesMut::new();
        amf0::encode(&v, &mut out);
        let mut data = out.to_vec();
        for (at, byte) in flips {
            let len = data.len();
            data[at % len] = byte;
        }
        amf0::fuzz(&data);
        let mut cut: &[u8] = &data[..data.len() / 2];
        let _ = amf0::decode(&mut cut);
    }
}
