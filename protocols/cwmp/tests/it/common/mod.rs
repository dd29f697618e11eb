//! Shared test helpers: offline schema validation with xmllint.

use std::path::PathBuf;
use std::process::Command;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../model")
}

/// Validates a document with xmllint against cwmp-1-4.xsd, offline.
pub fn validate(document: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("message.xml");
    std::fs::write(&file, document).unwrap();
    let model = model_dir();
    let output = Command::new("xmllint")
        .args(["--nonet", "--noout", "--schema"])
        .arg(model.join("cwmp/cwmp-1-4.xsd"))
        .arg(&file)
        .env("XML_CATALOG_FILES", model.join("catalog.xml"))
        .output()
        .expect("xmllint is missing: run scripts/install-deps.sh");
    assert!(
        output.status.success(),
        "{what} does not validate:\n{}\n{document}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The Body's child as its own document, with the envelope's namespace
/// declarations: the XSD's Body is `xs:any lax`, so only this checks the
/// RPC itself (see the standards README).
pub fn body_document(envelope: &str) -> String {
    let start = envelope.find("<soap-env:Body>").unwrap() + "<soap-env:Body>".len();
    let end = envelope.rfind("</soap-env:Body>").unwrap();
    let body = &envelope[start..end];
    let declarations_start =
        envelope.find("<soap-env:Envelope ").unwrap() + "<soap-env:Envelope ".len();
    let declarations_end = envelope[declarations_start..].find('>').unwrap() + declarations_start;
    let declarations = &envelope[declarations_start..declarations_end];
    let name_end = body.find([' ', '>', '/']).unwrap();
    format!(
        "<?xml version=\"1.0\"?>\n{} {}{}",
        &body[..name_end],
        declarations,
        &body[name_end..]
    )
}

/// Validates an envelope and, unless it carries a SOAP Fault, its Body
/// child standalone.
#[allow(dead_code)]
pub fn validate_message(envelope: &str, what: &str) {
    validate(envelope, what);
    if !envelope.contains("<soap-env:Fault>") {
        validate(&body_document(envelope), &format!("{what} body"));
    }
}
