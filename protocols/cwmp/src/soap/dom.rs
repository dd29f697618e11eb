//! A small, bounded element tree over an XML document, with namespaces
//! resolved.
//!
//! CWMP messages are small documents whose element order is loose in
//! practice (ACSs differ), so decoding works on a tree rather than a fixed
//! event sequence. Text borrows from the input where it can. Limits on
//! depth and element count keep a hostile envelope from exhausting memory.

use std::borrow::Cow;

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

/// Namespaces the codec cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    /// `http://schemas.xmlsoap.org/soap/envelope/`
    Soap,
    /// `urn:dslforum-org:cwmp-1-N`, with N.
    Cwmp(u8),
    /// `http://www.w3.org/2001/XMLSchema-instance`
    Xsi,
    /// No namespace (CWMP's unqualified child elements).
    None,
    Other,
}

pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const CWMP_PREFIX: &str = "urn:dslforum-org:cwmp-1-";

fn classify(uri: &str) -> Ns {
    match uri {
        SOAP_ENV => Ns::Soap,
        XSI => Ns::Xsi,
        _ => match uri
            .strip_prefix(CWMP_PREFIX)
            .and_then(|v| v.parse::<u8>().ok())
        {
            Some(minor) if minor <= 4 => Ns::Cwmp(minor),
            _ => Ns::Other,
        },
    }
}

fn resolved(result: &ResolveResult<'_>) -> Ns {
    match result {
        ResolveResult::Bound(ns) => classify(ns.as_ref()),
        ResolveResult::Unbound => Ns::None,
        ResolveResult::Unknown(_) => Ns::Other,
    }
}

#[derive(Debug)]
pub struct Attribute<'a> {
    pub ns: Ns,
    pub name: String,
    pub value: Cow<'a, str>,
}

#[derive(Debug)]
pub struct Element<'a> {
    pub ns: Ns,
    pub name: String,
    pub attributes: Vec<Attribute<'a>>,
    pub text: Cow<'a, str>,
    pub children: Vec<Element<'a>>,
}

impl<'a> Element<'a> {
    /// The first child with this local name (any namespace: CWMP's inner
    /// elements are unqualified, but some ACSs qualify them).
    pub fn child(&self, name: &str) -> Option<&Element<'a>> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn attribute(&self, ns: Ns, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_ref())
    }

    /// The trimmed text.
    pub fn trimmed(&self) -> &str {
        self.text.trim()
    }
}

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError(pub String);

const MAX_DEPTH: usize = 32;
const MAX_ELEMENTS: usize = 200_000;

/// Parses a document into its root element.
pub fn parse(input: &str) -> Result<Element<'_>, XmlError> {
    let mut reader = NsReader::from_str(input);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element<'_>> = Vec::new();
    let mut count = 0usize;
    let err = |reader: &NsReader<&[u8]>, e: &dyn std::fmt::Display| {
        XmlError(format!("at byte {}: {e}", reader.buffer_position()))
    };
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (resolved(&ns), event),
            Err(e) => return Err(err(&reader, &e)),
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(XmlError("document too large or too deep".into()));
                }
                let element = element(&reader, ns, start).map_err(|e| err(&reader, &e))?;
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => return Ok(element),
                    }
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(err(&reader, &"unexpected end tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Text(text) => {
                if let Some(current) = stack.last_mut() {
                    append(&mut current.text, text.xml10_content());
                } else if !text.trim().is_empty() {
                    return Err(err(&reader, &"text outside the root element"));
                }
            }
            Event::CData(data) => {
                if let Some(current) = stack.last_mut() {
                    append(&mut current.text, data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&reference)
                        .ok_or_else(|| err(&reader, &format!("unknown entity &{};", &*reference)))?
                        .to_owned(),
                    Err(e) => return Err(err(&reader, &e)),
                };
                if let Some(current) = stack.last_mut() {
                    append(&mut current.text, Cow::Owned(resolved));
                }
            }
            Event::DocType(_) => {
                // No DTDs: they enable entity expansion attacks and CWMP
                // never uses them.
                return Err(err(&reader, &"DOCTYPE is not allowed"));
            }
            Event::Eof => return Err(err(&reader, &"unexpected end of document")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
}

fn append<'a>(text: &mut Cow<'a, str>, more: Cow<'a, str>) {
    if text.is_empty() {
        *text = more;
    } else {
        text.to_mut().push_str(&more);
    }
}

fn element<'a>(
    reader: &NsReader<&'a [u8]>,
    ns: Ns,
    start: &BytesStart<'a>,
) -> Result<Element<'a>, String> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| e.to_string())?;
        let key = attribute.key;
        if key.as_ref().starts_with("xmlns") {
            continue;
        }
        let (ns, local) = reader.resolver().resolve_attribute(key);
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Explicit1_0)
            .map_err(|e| e.to_string())?
            .into_owned();
        attributes.push(Attribute {
            ns: resolved(&ns),
            name: local.as_ref().to_owned(),
            value: Cow::Owned(value),
        });
    }
    Ok(Element {
        ns,
        name: start.local_name().as_ref().to_owned(),
        attributes,
        text: Cow::Borrowed(""),
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_text_and_entities() {
        let doc = r#"<a:Envelope xmlns:a="http://schemas.xmlsoap.org/soap/envelope/" xmlns:c="urn:dslforum-org:cwmp-1-0"><a:Body><c:X><Name>x &amp; y&#33;</Name><V xmlns:i="http://www.w3.org/2001/XMLSchema-instance" i:type="xsd:int">5</V></c:X></a:Body></a:Envelope>"#;
        let root = parse(doc).unwrap();
        assert_eq!((root.ns, root.name.as_str()), (Ns::Soap, "Envelope"));
        let x = &root.children[0].children[0];
        assert_eq!((x.ns, x.name.as_str()), (Ns::Cwmp(0), "X"));
        assert_eq!(x.child("Name").unwrap().text, "x & y!");
        assert_eq!(
            x.child("V").unwrap().attribute(Ns::Xsi, "type"),
            Some("xsd:int")
        );
    }

    #[test]
    fn broken_documents_are_errors_not_panics() {
        for doc in [
            "",
            "<a>",
            "<a></b>",
            "</a>",
            "<a>&bogus;</a>",
            "<!DOCTYPE a [<!ENTITY x \"y\">]><a/>",
            "text",
            "<a x='1' x='2'/>",
            "<p:a/>",
        ] {
            let _ = parse(doc);
        }
        assert!(parse("<a></b>").is_err());
        assert!(parse("<a>&bogus;</a>").is_err());
        assert!(parse("<!DOCTYPE a><a/>").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let doc = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(&doc).is_err());
    }
}
