//! Vendor objects declared from a Broadband Forum DM document: what they
//! become, and the errors a broken document gets.

use dm_core::schema::Constraint;
use dm_core::{Access, ObjectId, ResourceId, ValueType};
use dm_cwmp::declare::{self, is_document};
use dm_cwmp::mapping::Syntax;

fn document(object: &str, parameters: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<dm:document xmlns:dm=\"urn:broadband-forum-org:cwmp:datamodel-1-14\">\n\
         <model name=\"X:1.0\">\n{object}\n{parameters}</object>\n</model>\n</dm:document>\n"
    )
}

const SINGLE: &str = "<object name=\"Device.X_000000_T.\" access=\"readOnly\" maxEntries=\"1\">";

#[test]
fn a_document_becomes_a_schema_and_bindings() {
    let text = document(
        "<object name=\"Device.X_000000_Table.{i}.\" access=\"readWrite\" maxEntries=\"unbounded\">",
        "<parameter name=\"Mode\" access=\"readWrite\"><syntax><string>\
         <enumeration value=\"a\"/><enumeration value=\"b\"/></string></syntax></parameter>\n\
         <parameter name=\"Level\" access=\"readOnly\"><syntax><int>\
         <range minInclusive=\"-5\" maxInclusive=\"5\"/></int></syntax></parameter>\n",
    );
    assert!(is_document(&text));
    assert!(!is_document("<LWM2M><Object/></LWM2M>"));
    let declared = declare::object(&text, ObjectId(60007)).unwrap();
    let schema = declared.schema;
    assert!(schema.multiple);
    assert_eq!(schema.name, "X_000000_Table");
    let mode = schema.resource(ResourceId(1)).unwrap();
    assert_eq!(
        (mode.name, mode.value_type, mode.access),
        ("Mode", ValueType::String, Access::ReadWrite)
    );
    assert_eq!(mode.constraint, Constraint::Enumeration(&["a", "b"]));
    let level = schema.resource(ResourceId(2)).unwrap();
    assert_eq!(
        (level.value_type, level.access),
        (ValueType::Int, Access::Read)
    );
    assert_eq!(level.constraint, Constraint::Range { min: -5, max: 5 });
    let bindings = declared.bindings();
    assert_eq!(bindings[0].path, "Device.X_000000_Table.{i}.Mode");
    assert!(bindings[0].writable);
    assert_eq!(bindings[1].syntax, Syntax::Int);
    assert!(!bindings[1].writable);
    // Read again: the same schema, not a new one.
    assert!(std::ptr::eq(
        schema,
        declare::object(&text, ObjectId(60007)).unwrap().schema
    ));
}

#[test]
fn a_broken_document_is_refused_with_its_line() {
    let param = |syntax: &str| {
        format!(
            "<parameter name=\"P\" access=\"readOnly\">\n<syntax>{syntax}</syntax></parameter>\n"
        )
    };
    let cases: [(String, usize, &str); 7] = [
        (
            document(SINGLE, &param("<decimal/>")),
            6,
            "\"decimal\" is not a TR-106 base type",
        ),
        (
            document(SINGLE, &param("<dataType ref=\"Alias\"/>")),
            6,
            "dataType references",
        ),
        (
            document(SINGLE, &(param("<string/>") + &param("<string/>"))),
            7,
            "parameter P is defined twice",
        ),
        (
            document(
                "<object name=\"Device.X.{i}.\" maxEntries=\"1\">",
                &param("<string/>"),
            ),
            4,
            "is not a TR-181 object path",
        ),
        (
            document(
                "<object name=\"Device.X_T.\" maxEntries=\"9\">",
                &param("<string/>"),
            ),
            4,
            "a table (maxEntries) ends in .{i}.",
        ),
        (document(SINGLE, ""), 8, "has no parameter"),
        (
            document(SINGLE, "<parameter name=\"P\">\n</parameter>\n"),
            6,
            "parameter P has no syntax",
        ),
    ];
    for (text, line, message) in cases {
        let e = declare::object(&text, ObjectId(60001)).unwrap_err();
        assert!(e.message.contains(message), "{e} (wanted {message:?})");
        assert_eq!(e.line, line, "{e}");
    }
}
