//! Declared objects: OMA definitions read at run time, and the errors a
//! broken definition gets.

use dm_core::catalog;
use dm_lwm2m::declare::{self, DeclareError};
use dm_lwm2m::object_xml;

fn model(file: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../model/lwm2m/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The run-time reader gives each built-in definition the schema the code
/// generator made of it: a declared object means what the same built-in
/// one would.
#[test]
fn every_built_in_definition_reads_at_run_time_as_generated() {
    let dir = format!("{}/../../model/lwm2m", env!("CARGO_MANIFEST_DIR"));
    let mut compared = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let def = object_xml::parse(&model(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let read = declare::from_definition(&def);
        let built = catalog::ALL
            .iter()
            .find(|s| s.id == read.id)
            .unwrap_or_else(|| panic!("{file}: not built in"));
        assert_eq!(
            (read.name, read.version, read.multiple, read.mandatory),
            (built.name, built.version, built.multiple, built.mandatory),
            "{file}"
        );
        // Built-in objects may carry TR-181 parameters too (ids 1000 up).
        let lwm2m_resources = built.resources.iter().filter(|r| r.id.0 < 1000).count();
        assert_eq!(read.resources.len(), lwm2m_resources, "{file}");
        for r in read.resources {
            let b = built.resource(r.id).unwrap();
            assert_eq!(
                (
                    r.name,
                    r.value_type,
                    r.access,
                    r.multiple,
                    r.mandatory,
                    r.units,
                    r.constraint
                ),
                (
                    b.name,
                    b.value_type,
                    b.access,
                    b.multiple,
                    b.mandatory,
                    b.units,
                    b.constraint
                ),
                "{file}: resource {}",
                r.id.0
            );
        }
        compared += 1;
    }
    assert!(compared >= 10, "{compared} definitions");
}

#[test]
fn a_built_in_object_cannot_be_declared() {
    assert_eq!(
        declare::schema(&model("3.xml")).unwrap_err(),
        DeclareError::BuiltIn(3, "Device")
    );
}

#[test]
fn ids_of_tr181_only_objects_cannot_be_declared() {
    let text = model("3.xml").replace("<ObjectID>3</ObjectID>", "<ObjectID>60000</ObjectID>");
    assert_eq!(
        declare::schema(&text).unwrap_err(),
        DeclareError::Reserved(60000)
    );
}

#[test]
fn the_same_definition_read_twice_is_one_schema() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/temperature/3303.xml"
    ))
    .unwrap();
    let first = declare::schema(&text).unwrap();
    let again = declare::schema(&text).unwrap();
    assert!(std::ptr::eq(first, again));
    assert_eq!(first.name, "Temperature");
    let value = first.resource(dm_core::ResourceId(5700)).unwrap();
    assert_eq!(value.value_type, dm_core::ValueType::Float);
    assert_eq!(value.access, dm_core::Access::Read);
}

/// A definition with `items` as its resources, for the error cases.
fn definition(id: &str, items: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<LWM2M>\n<Object ObjectType=\"MODefinition\">\n\
         <Name>Test</Name>\n<ObjectID>{id}</ObjectID>\n\
         <MultipleInstances>Multiple</MultipleInstances>\n<Mandatory>Optional</Mandatory>\n\
         <Resources>\n{items}</Resources>\n</Object>\n</LWM2M>\n"
    )
}

fn item(id: &str, operations: &str, value_type: &str) -> String {
    format!(
        "<Item ID=\"{id}\">\n<Name>R{id}</Name>\n<Operations>{operations}</Operations>\n\
         <MultipleInstances>Single</MultipleInstances>\n<Mandatory>Mandatory</Mandatory>\n\
         <Type>{value_type}</Type>\n<RangeEnumeration>0..10</RangeEnumeration>\n\
         <Units></Units>\n</Item>\n"
    )
}

#[test]
fn a_broken_definition_is_refused_with_its_line() {
    let good = definition("32769", &item("1", "RW", "Integer"));
    let def = object_xml::parse(&good).unwrap();
    assert_eq!(def.resources.len(), 1);
    assert_eq!(
        object_xml::range(&def.resources[0].range, def.resources[0].value_type),
        object_xml::Range::Values { min: 0, max: 10 }
    );

    let cases: [(String, usize, &str); 7] = [
        // The second Item with ID 1 opens on line 18.
        (
            definition(
                "32769",
                &(item("1", "R", "String") + &item("1", "R", "String")),
            ),
            18,
            "Item ID 1 is defined twice",
        ),
        (
            definition("32769", &item("2", "R", "Decimal")),
            9,
            "Item 2: Type \"Decimal\" is not an LwM2M data type",
        ),
        (
            definition("32769", &item("2", "RWX", "String")),
            9,
            "Item 2: Operations \"RWX\"",
        ),
        (
            definition("32769", &item("2", "E", "String")),
            9,
            "only an executable resource has no type",
        ),
        (
            definition("32769", &item("65535", "R", "String")),
            9,
            "Item ID \"65535\" is not 0 to 65534",
        ),
        (definition("65535", ""), 12, "ObjectID \"65535\""),
        (
            definition("32769", &item("1", "R", "String")).replace("</Type>", "</Typ>"),
            14,
            "not well-formed XML",
        ),
    ];
    for (text, line, message) in cases {
        let e = object_xml::parse(&text).unwrap_err();
        assert!(e.message.contains(message), "{e} (wanted {message:?})");
        assert_eq!(e.line, line, "{e}");
    }
    assert!(matches!(
        declare::schema(&" ".repeat(declare::MAX_DEFINITION + 1)),
        Err(DeclareError::TooLarge { .. })
    ));
    assert_eq!(
        object_xml::parse("<LWM2M></LWM2M>").unwrap_err().message,
        "0 <Object> elements; one is needed"
    );
    // Cut short after a whole Item: not a definition with one Item less.
    let cut = definition(
        "32769",
        &(item("1", "R", "String") + &item("2", "R", "String")),
    );
    let cut = &cut[..cut.rfind("<Item").unwrap()];
    assert!(
        object_xml::parse(cut)
            .unwrap_err()
            .message
            .starts_with("the file ends inside <"),
        "{cut}"
    );
}
