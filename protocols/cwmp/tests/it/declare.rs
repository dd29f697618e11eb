//! Vendor objects declared from a Broadband Forum DM document: what they
//! become, and the errors a broken document gets.

use dm_core::schema::Constraint;
use dm_core::{Access, ObjectId, ValueType};
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
    let declared = declare::object(&text, &[]).unwrap();
    let schema = declared.schema;
    assert!(schema.multiple);
    assert_eq!(schema.name, "X_000000_Table");
    assert!(schema.id.0 >= declare::FIRST_ID);
    let by_name = |name: &str| schema.resources.iter().find(|r| r.name == name).unwrap();
    let mode = by_name("Mode");
    assert_eq!(
        (mode.name, mode.value_type, mode.access),
        ("Mode", ValueType::String, Access::ReadWrite)
    );
    assert_eq!(mode.constraint, Constraint::Enumeration(&["a", "b"]));
    let level = by_name("Level");
    assert_eq!(
        (level.value_type, level.access),
        (ValueType::Int, Access::Read)
    );
    assert_eq!(level.constraint, Constraint::Range { min: -5, max: 5 });
    // <default> is skipped; a range with one bound takes the type's other.
    let other = document(
        SINGLE,
        "<parameter name=\"Count\" access=\"readOnly\"><syntax><unsignedInt>\
         <range minInclusive=\"2\"/></unsignedInt><default type=\"object\" value=\"2\"/>\
         </syntax></parameter>\n",
    );
    let count = declare::object(&other, &[]).unwrap().schema.resources[0].constraint;
    assert_eq!(
        count,
        Constraint::Range {
            min: 2,
            max: u32::MAX.into()
        }
    );
    let bindings = declared.bindings();
    let binding = |path: &str| bindings.iter().find(|b| b.path == path).unwrap();
    let mode_binding = binding("Device.X_000000_Table.{i}.Mode");
    assert!(mode_binding.writable && mode_binding.resource == mode.id);
    let level_binding = binding("Device.X_000000_Table.{i}.Level");
    assert_eq!(level_binding.syntax, Syntax::Int);
    assert!(!level_binding.writable && level_binding.resource == level.id);
    // Read again: the same schema, not a new one.
    assert!(std::ptr::eq(
        schema,
        declare::object(&text, &[]).unwrap().schema
    ));
    // Ids come from names: the same object and parameters in another
    // order, beside another declaration, keep theirs; a taken id moves
    // it on.
    let reordered = text
        .replace("Mode", "TMP")
        .replace("Level", "Mode")
        .replace("TMP", "Level");
    let again = declare::object(&reordered, &[ObjectId(1)]).unwrap().schema;
    assert_eq!(again.id, schema.id);
    let find = |s: &dm_core::ObjectSchema, name: &str| {
        s.resources.iter().find(|r| r.name == name).unwrap().id
    };
    assert_eq!(find(again, "Mode"), mode.id);
    assert_eq!(find(again, "Level"), level.id);
    assert_ne!(
        declare::object(&text, &[schema.id]).unwrap().schema.id,
        schema.id
    );
}

#[test]
fn a_broken_document_is_refused_with_its_line() {
    let param = |syntax: &str| {
        format!(
            "<parameter name=\"P\" access=\"readOnly\">\n<syntax>{syntax}</syntax></parameter>\n"
        )
    };
    let cases: [(String, usize, &str); 18] = [
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
        (document(SINGLE, ""), 4, "has no parameter"),
        (
            document(SINGLE, "<parameter name=\"P\"/>\n"),
            5,
            "parameter P has no syntax",
        ),
        (
            document(
                SINGLE,
                &param("<string><range minInclusive=\"1\"/></string>"),
            ),
            6,
            "<range> on xsd:string",
        ),
        (
            document(
                SINGLE,
                &param("<int><range minInclusive=\"5\" maxInclusive=\"1\"/></int>"),
            ),
            6,
            "range 5..1 is empty",
        ),
        (
            document(SINGLE, &param("<list/>")),
            6,
            "list syntaxes are not supported",
        ),
        (
            document(SINGLE, "<component ref=\"C\"/>\n"),
            5,
            "components are not supported",
        ),
        (
            {
                let whole = document(SINGLE, &param("<string/>"));
                whole[..whole.find("</object>").unwrap()].to_owned()
            },
            7,
            "the document ends inside <object>",
        ),
        (
            document(
                SINGLE,
                "<parameter name=\"2nd\">\n<syntax><string/></syntax></parameter>\n",
            ),
            5,
            "parameter name \"2nd\"",
        ),
        (
            document(SINGLE, "<parameter name=\"P\">\n</parameter>\n"),
            6,
            "parameter P has no syntax",
        ),
        (
            document(SINGLE, &(param("<string/>") + "<command name=\"Go\"/>\n")),
            7,
            "command name \"Go\"",
        ),
        (
            document(
                SINGLE,
                &(param("<string/>") + "<command name=\"Go()\" async=\"1\"/>\n"),
            ),
            7,
            "asynchronous commands are not supported",
        ),
        (
            document(
                SINGLE,
                &(param("<string/>") + "<command name=\"Go()\">\n<output/></command>\n"),
            ),
            8,
            "output arguments are not supported",
        ),
        (
            document(
                SINGLE,
                &(param("<string/>") + "<command name=\"P()\"/>\n<command name=\"P()\"/>\n"),
            ),
            8,
            "command P() is defined twice",
        ),
    ];
    for (text, line, message) in cases {
        let e = declare::object(&text, &[]).unwrap_err();
        assert!(e.message.contains(message), "{e} (wanted {message:?})");
        assert_eq!(e.line, line, "{e}");
    }
}

/// A `<command>` is an executable resource USP sees and CWMP does not: no
/// binding, a command binding with its inputs.
#[test]
fn a_command_is_an_executable_resource_with_its_inputs() {
    let text = document(
        "<object name=\"Device.X_000000_Table.{i}.\" access=\"readWrite\" maxEntries=\"unbounded\">",
        "<parameter name=\"Mode\" access=\"readWrite\"><syntax><string/></syntax></parameter>\n\
         <command name=\"Reset()\"><description>d</description><input>\
         <parameter name=\"Delay\"><syntax><unsignedInt><range maxInclusive=\"9\"/></unsignedInt></syntax></parameter>\
         <parameter name=\"Mode\"><syntax><string/></syntax></parameter>\
         </input></command>\n",
    );
    let declared = declare::object(&text, &[]).unwrap();
    let reset = declared
        .schema
        .resources
        .iter()
        .find(|r| r.name == "Reset()")
        .unwrap();
    assert_eq!(
        (reset.value_type, reset.access),
        (ValueType::None, Access::Execute)
    );
    let bindings: Vec<String> = declared.bindings().into_iter().map(|b| b.path).collect();
    assert_eq!(bindings, ["Device.X_000000_Table.{i}.Mode"]);
    let [command] = declared.commands() else {
        panic!("{:?}", declared.commands())
    };
    assert_eq!(command.path, "Device.X_000000_Table.{i}.Reset()");
    assert_eq!(
        (command.object, command.resource),
        (declared.schema.id, reset.id)
    );
    assert_eq!(command.inputs, ["Delay", "Mode"]);
    assert_eq!(
        command.instance_of("Device.X_000000_Table.3.Reset()"),
        Some(dm_core::InstanceId(3))
    );
    assert_eq!(command.instance_of("Device.X_000000_Table.x.Reset()"), None);
    // Bounded: 256 commands, 64 inputs to one.
    let many = |commands: usize, inputs: usize| {
        let input: String = (0..inputs)
            .map(|n| format!("<parameter name=\"I{n}\"><syntax><string/></syntax></parameter>"))
            .collect();
        let commands: String = (0..commands)
            .map(|n| format!("<command name=\"C{n}()\"><input>{input}</input></command>\n"))
            .collect();
        document(
            SINGLE,
            &format!("<parameter name=\"P\"><syntax><string/></syntax></parameter>\n{commands}"),
        )
    };
    assert_eq!(
        declare::object(&many(256, 64), &[])
            .unwrap()
            .commands()
            .len(),
        256
    );
    let e = declare::object(&many(257, 0), &[]).unwrap_err();
    assert!(e.message.contains("more than 256 commands"), "{e}");
    let e = declare::object(&many(1, 65), &[]).unwrap_err();
    assert!(e.message.contains("more than 64 inputs"), "{e}");
    // A secured parameter is refused however its boolean is written.
    let secured = document(
        SINGLE,
        "<parameter name=\"K\"><syntax secured=\"1\"><string/></syntax></parameter>\n",
    );
    let e = declare::object(&secured, &[]).unwrap_err();
    assert!(
        e.message.contains("secured parameters are not supported"),
        "{e}"
    );
    assert_eq!(command.instance_of("Device.X_000000_Table.3.Mode"), None);
}
