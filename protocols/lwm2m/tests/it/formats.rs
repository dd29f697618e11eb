//! Content formats: the LwM2M specification's examples, round trips for
//! every format, and decoders that never panic.

use dm_core::catalog;
use dm_core::{ObjectId, ObjectLink, Value, ValueType};
use dm_lwm2m::format::{self, ContentFormat, FormatError, Item};
use dm_lwm2m::mapping::{self, Lwm2mPath};
use proptest::prelude::*;

fn path(text: &str) -> Lwm2mPath {
    text.parse().unwrap()
}

/// Types from the generated catalog, as the engine will look them up.
fn type_of(p: &Lwm2mPath) -> Option<ValueType> {
    let core = mapping::to_core(&Lwm2mPath { index: None, ..*p }).ok()?;
    let schema = catalog::ALL.iter().find(|o| o.id == core.object_id())?;
    Some(schema.resource(core.resource_id()?)?.value_type)
}

fn item(p: &str, value: Value) -> Item {
    Item {
        path: path(p),
        value,
    }
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

/// The Device object instance of the LwM2M Core specification's TLV
/// example (Appendix C, "Device Object" single instance).
fn device_items() -> Vec<Item> {
    vec![
        item("/3/0/0", s("Open Mobile Alliance")),
        item("/3/0/1", s("Lightweight M2M Client")),
        item("/3/0/2", s("345000123")),
        item("/3/0/3", s("1.0")),
        item("/3/0/6/0", Value::Integer(1)),
        item("/3/0/6/1", Value::Integer(5)),
        item("/3/0/7/0", Value::Integer(3800)),
        item("/3/0/7/1", Value::Integer(5000)),
        item("/3/0/8/0", Value::Integer(125)),
        item("/3/0/8/1", Value::Integer(900)),
        item("/3/0/9", Value::Integer(100)),
        item("/3/0/10", Value::Integer(15)),
        item("/3/0/11/0", Value::Integer(0)),
        item("/3/0/13", Value::DateTime(1_367_491_215)),
        item("/3/0/14", s("+02:00")),
        item("/3/0/16", s("U")),
    ]
}

const DEVICE_TLV: &str = "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65 \
    C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74 \
    C8 02 09 33 34 35 30 30 30 31 32 33 \
    C3 03 31 2E 30 \
    86 06 41 00 01 41 01 05 \
    88 07 08 42 00 0E D8 42 01 13 88 \
    87 08 41 00 7D 42 01 03 84 \
    C1 09 64 \
    C1 0A 0F \
    83 0B 41 00 00 \
    C4 0D 51 82 42 8F \
    C6 0E 2B 30 32 3A 30 30 \
    C1 10 55";

fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn tlv_matches_the_specification_example() {
    let base = path("/3/0");
    let bytes = format::encode(ContentFormat::Tlv, &base, &device_items()).unwrap();
    assert_eq!(bytes, hex(DEVICE_TLV));
    let decoded = format::decode(ContentFormat::Tlv, &base, &bytes, &type_of).unwrap();
    assert_eq!(decoded, device_items());
}

#[test]
fn tlv_object_level_and_wide_ids_and_lengths() {
    let items = vec![
        item("/12/1/5", s("home")),
        item("/12/1/1", Value::Boolean(true)),
        item("/12/300/5", s(&"x".repeat(300))),
    ];
    let base = path("/12");
    let bytes = format::encode(ContentFormat::Tlv, &base, &items).unwrap();
    // Instance 300 needs a 16-bit identifier and its SSID a 16-bit length.
    let decoded = format::decode(ContentFormat::Tlv, &base, &bytes, &type_of).unwrap();
    assert_eq!(decoded, items);
}

#[test]
fn tlv_typed_values() {
    let cases = vec![
        item("/1/0/1", Value::Integer(-70000)),
        item("/3/0/13", Value::DateTime(-5)),
        item("/0/0/15", Value::Unsigned(200)),
        item("/1/0/6", Value::Boolean(false)),
        item("/0/0/3", Value::Opaque(vec![0, 1, 2, 255])),
        item(
            "/1/0/10",
            Value::ObjectLink(ObjectLink {
                object: ObjectId(11),
                instance: 1,
            }),
        ),
    ];
    for case in cases {
        let base = Lwm2mPath {
            index: None,
            ..case.path
        };
        let bytes = format::encode(ContentFormat::Tlv, &base, std::slice::from_ref(&case)).unwrap();
        let decoded = format::decode(ContentFormat::Tlv, &base, &bytes, &type_of).unwrap();
        assert_eq!(decoded, std::slice::from_ref(&case), "{}", case.path);
    }
}

#[test]
fn senml_json_as_the_specification_writes_it() {
    let base = path("/3/0/0");
    let one = format::encode(
        ContentFormat::SenmlJson,
        &base,
        &[item("/3/0/0", s("Open Mobile Alliance"))],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(one).unwrap(),
        r#"[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]"#
    );
    let base = path("/3/0");
    let bytes = format::encode(ContentFormat::SenmlJson, &base, &device_items()).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with(r#"[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},{"n":"1""#),
        "{text}"
    );
    assert!(text.contains(r#"{"n":"6/1","v":5}"#), "{text}");
    let decoded = format::decode(ContentFormat::SenmlJson, &base, &bytes, &type_of).unwrap();
    assert_eq!(decoded, device_items());
    // Written by a server with the base name on every record and padded
    // base64.
    let written = br#"[{"bn":"/0/0/","n":"3","vd":"AAEC/w=="},{"bn":"/0/0/","n":"1","vb":true}]"#;
    let decoded =
        format::decode(ContentFormat::SenmlJson, &path("/0/0"), written, &type_of).unwrap();
    assert_eq!(
        decoded,
        [
            item("/0/0/3", Value::Opaque(vec![0, 1, 2, 255])),
            item("/0/0/1", Value::Boolean(true))
        ]
    );
}

#[test]
fn text_and_opaque_single_values() {
    let cases = [
        ("/1/0/1", "300", Value::Integer(300)),
        ("/1/0/6", "1", Value::Boolean(true)),
        ("/3/0/13", "1367491215", Value::DateTime(1_367_491_215)),
        ("/1/0/7", "UQ", s("UQ")),
        (
            "/1/0/10",
            "11:2",
            Value::ObjectLink(ObjectLink {
                object: ObjectId(11),
                instance: 2,
            }),
        ),
    ];
    for (p, text, value) in cases {
        let base = path(p);
        let decoded =
            format::decode(ContentFormat::Text, &base, text.as_bytes(), &type_of).unwrap();
        assert_eq!(decoded, [item(p, value.clone())]);
        let encoded = format::encode(ContentFormat::Text, &base, &decoded).unwrap();
        assert_eq!(encoded, text.as_bytes());
    }
    assert!(matches!(
        format::decode(ContentFormat::Text, &path("/1/0/1"), b"abc", &type_of),
        Err(FormatError::Malformed(_))
    ));
    assert!(matches!(
        format::encode(ContentFormat::Text, &path("/3/0"), &device_items()),
        Err(FormatError::NotAcceptable(_))
    ));
    let package =
        format::decode(ContentFormat::Opaque, &path("/5/0/0"), &[1, 2, 3], &type_of).unwrap();
    assert_eq!(package, [item("/5/0/0", Value::Opaque(vec![1, 2, 3]))]);
    assert!(format::decode(ContentFormat::Opaque, &path("/3/0/0"), &[1], &type_of).is_err());
}

#[test]
fn malformed_tlv_is_an_error() {
    for bytes in [
        &[0xC8][..],
        &[0xC8, 0x00],
        &[0xC8, 0x00, 0x14, 0x41],
        &[0xE8, 0x00],
        &[0xC1, 0x09],
        &[0x08, 0x00, 0x02, 0xC1],
    ] {
        assert!(
            format::decode(ContentFormat::Tlv, &path("/3/0"), bytes, &type_of).is_err(),
            "{bytes:02x?}"
        );
    }
    // A one-byte float or a 3-byte integer is not a TLV value.
    assert!(
        format::decode(
            ContentFormat::Tlv,
            &path("/3/0"),
            &[0xC3, 0x09, 1, 2, 3],
            &type_of
        )
        .is_err()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), pick in 0usize..4) {
        let base = [path("/3"), path("/3/0"), path("/3/0/7"), path("/12/1/5")][pick];
        for f in [ContentFormat::Tlv, ContentFormat::SenmlJson, ContentFormat::SenmlCbor, ContentFormat::LwM2mCbor, ContentFormat::LwM2mJson, ContentFormat::Cbor, ContentFormat::Text, ContentFormat::Opaque] {
            let _ = format::decode(f, &base, &bytes, &type_of);
            let _ = format::decode_composite(f, &bytes, &type_of);
            let _ = format::decode_names(f, &bytes);
        }
    }

    #[test]
    fn every_format_round_trips_the_device_object(text in ".{0,100}", number in any::<i64>()) {
        let mut items = device_items();
        items[0].value = s(&text);
        for i in items.iter_mut().filter(|i| i.path.resource == Some(9)) {
            i.value = Value::Integer(number);
        }
        for f in [ContentFormat::Tlv, ContentFormat::SenmlJson, ContentFormat::SenmlCbor, ContentFormat::LwM2mCbor, ContentFormat::LwM2mJson] {
            let bytes = format::encode(f, &path("/3/0"), &items).unwrap();
            prop_assert_eq!(format::decode(f, &path("/3/0"), &bytes, &type_of).unwrap(), items.clone(), "{:?}", f);
        }
        for f in [ContentFormat::SenmlJson, ContentFormat::SenmlCbor, ContentFormat::LwM2mCbor] {
            let bytes = format::encode_composite(f, &items).unwrap();
            prop_assert_eq!(format::decode_composite(f, &bytes, &type_of).unwrap(), items.clone(), "{:?}", f);
        }
    }

    #[test]
    fn tlv_round_trips_any_string_and_integer(text in ".{0,400}", number in any::<i64>()) {
        let items = vec![item("/3/0/0", s(&text)), item("/3/0/9", Value::Integer(number))];
        let bytes = format::encode(ContentFormat::Tlv, &path("/3/0"), &items).unwrap();
        prop_assert_eq!(format::decode(ContentFormat::Tlv, &path("/3/0"), &bytes, &type_of).unwrap(), items.clone());
        let json = format::encode(ContentFormat::SenmlJson, &path("/3/0"), &items).unwrap();
        prop_assert_eq!(format::decode(ContentFormat::SenmlJson, &path("/3/0"), &json, &type_of).unwrap(), items.clone());
        for item in &items {
            let cbor = format::encode(ContentFormat::Cbor, &item.path, std::slice::from_ref(item)).unwrap();
            prop_assert_eq!(format::decode(ContentFormat::Cbor, &item.path, &cbor, &type_of).unwrap(), vec![item.clone()]);
        }
    }
}

#[test]
fn senml_cbor_round_trips_and_matches_rfc_8428_labels() {
    let base = path("/3/0");
    let bytes = format::encode(ContentFormat::SenmlCbor, &base, &device_items()).unwrap();
    // An array of 16 records; the first map holds bn (-2 = 0x21), n (0)
    // and vs (3): a3 21 64 "/3/0/" ...
    assert_eq!(bytes[0], 0x90);
    assert_eq!(&bytes[1..4], &[0xa3, 0x21, 0x65]);
    let decoded = format::decode(ContentFormat::SenmlCbor, &base, &bytes, &type_of).unwrap();
    assert_eq!(decoded, device_items());
    let link = vec![
        item(
            "/1/0/10",
            Value::ObjectLink(ObjectLink {
                object: ObjectId(11),
                instance: 1,
            }),
        ),
        item("/1/0/6", Value::Boolean(true)),
    ];
    let bytes = format::encode(ContentFormat::SenmlCbor, &path("/1/0"), &link).unwrap();
    assert_eq!(
        format::decode(ContentFormat::SenmlCbor, &path("/1/0"), &bytes, &type_of).unwrap(),
        link
    );
    let opaque = vec![item("/0/0/3", Value::Opaque(vec![0, 1, 2, 255]))];
    let bytes = format::encode(ContentFormat::SenmlCbor, &path("/0/0/3"), &opaque).unwrap();
    assert_eq!(
        format::decode(ContentFormat::SenmlCbor, &path("/0/0/3"), &bytes, &type_of).unwrap(),
        opaque
    );
    // A record count beyond the payload is refused, not allocated.
    assert!(
        format::decode(
            ContentFormat::SenmlCbor,
            &base,
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &type_of
        )
        .is_err()
    );
}

/// Found by fuzzing (lwm2m_formats): a path-key array whose length is
/// near u64::MAX overflowed the depth check (a panic with overflow
/// checks, a wrong answer without). Now a clean error.
#[test]
fn lwm2m_cbor_path_array_of_absurd_length_is_refused() {
    let bytes = [
        &[0xd7, 0xa1, 0x04, 0xa1, 0x9b][..],
        &[0xff; 43],
        &[0xfe, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00],
    ]
    .concat();
    let decoded = format::decode(ContentFormat::LwM2mCbor, &path("/4"), &bytes, &type_of);
    assert!(decoded.is_err(), "{decoded:?}");
}
