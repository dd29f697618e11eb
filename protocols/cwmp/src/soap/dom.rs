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
        // Exactly the five published namespaces (cwmp-1-0 … cwmp-1-4):
        // `cwmp-1-00` or `cwmp-1-+4` are not a version, whatever an
        // integer parser makes of them.
        _ => match uri.strip_prefix(CWMP_PREFIX).map(str::as_bytes) {
            Some(&[minor @ b'0'..=b'4']) => Ns::Cwmp(minor - b'0'),
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
struct Attribute<'a> {
    ns: Ns,
    name: Cow<'a, str>,
    value: Cow<'a, str>,
}

const NONE: u32 = u32::MAX;

#[derive(Debug)]
struct Node<'a> {
    ns: Ns,
    name: Cow<'a, str>,
    text: Cow<'a, str>,
    first_child: u32,
    next_sibling: u32,
    attributes: std::ops::Range<u32>,
}

/// A parsed document: every element in one vector, linked by index, so a
/// message costs a handful of allocations however many elements it has.
#[derive(Debug)]
pub struct Document<'a> {
    nodes: Vec<Node<'a>>,
    attributes: Vec<Attribute<'a>>,
}

impl<'a> Document<'a> {
    pub fn root(&self) -> Element<'_, 'a> {
        Element {
            document: self,
            index: 0,
        }
    }
}

/// One element of a [`Document`].
#[derive(Clone, Copy, Debug)]
pub struct Element<'d, 'a> {
    document: &'d Document<'a>,
    index: u32,
}

impl<'d, 'a> Element<'d, 'a> {
    fn node(&self) -> &'d Node<'a> {
        &self.document.nodes[self.index as usize]
    }

    pub fn ns(&self) -> Ns {
        self.node().ns
    }

    /// The local name.
    pub fn name(&self) -> &'d str {
        &self.node().name
    }

    /// The text content, entities resolved.
    pub fn text(&self) -> &'d str {
        &self.node().text
    }

    /// The trimmed text.
    pub fn trimmed(&self) -> &'d str {
        self.text().trim()
    }

    pub fn children(&self) -> Children<'d, 'a> {
        Children {
            document: self.document,
            next: self.node().first_child,
        }
    }

    /// The first child with this local name (any namespace: CWMP's inner
    /// elements are unqualified, but some ACSs qualify them).
    pub fn child(&self, name: &str) -> Option<Element<'d, 'a>> {
        self.children().find(|c| c.name() == name)
    }

    pub fn attribute(&self, ns: Ns, name: &str) -> Option<&'d str> {
        let range = self.node().attributes.clone();
        self.document.attributes[range.start as usize..range.end as usize]
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_ref())
    }
}

/// The children of an element, in document order.
pub struct Children<'d, 'a> {
    document: &'d Document<'a>,
    next: u32,
}

impl<'d, 'a> Iterator for Children<'d, 'a> {
    type Item = Element<'d, 'a>;

    fn next(&mut self) -> Option<Element<'d, 'a>> {
        if self.next == NONE {
            return None;
        }
        let element = Element {
            document: self.document,
            index: self.next,
        };
        self.next = self.document.nodes[self.next as usize].next_sibling;
        Some(element)
    }
}

/// Why a document could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError(pub String);

const MAX_DEPTH: usize = 32;
const MAX_ELEMENTS: usize = 200_000;

/// Parses a document.
pub fn parse(input: &str) -> Result<Document<'_>, XmlError> {
    let mut reader = NsReader::from_str(input);
    reader.config_mut().check_end_names = true;
    // About one element per 40 bytes in CWMP messages: sized once rather
    // than regrown (and copied) a dozen times for a large message.
    let mut document = Document {
        nodes: Vec::with_capacity((input.len() / 40).min(MAX_ELEMENTS)),
        attributes: Vec::new(),
    };
    // Open elements: (index, last child so far).
    let mut stack: Vec<(u32, u32)> = Vec::new();
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
                if document.nodes.len() >= MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(XmlError("document too large or too deep".into()));
                }
                if stack.is_empty() && !document.nodes.is_empty() {
                    return Err(err(&reader, &"a second root element"));
                }
                let index = document.nodes.len() as u32;
                let first_attribute = document.attributes.len() as u32;
                read_attributes(input, &reader, start, &mut document.attributes)
                    .map_err(|e| err(&reader, &e))?;
                document.nodes.push(Node {
                    ns,
                    name: borrowed(input, start.local_name().as_ref()),
                    text: Cow::Borrowed(""),
                    first_child: NONE,
                    next_sibling: NONE,
                    attributes: first_attribute..document.attributes.len() as u32,
                });
                if let Some((parent, last)) = stack.last_mut() {
                    if *last == NONE {
                        document.nodes[*parent as usize].first_child = index;
                    } else {
                        document.nodes[*last as usize].next_sibling = index;
                    }
                    *last = index;
                }
                if matches!(event, Event::Start(_)) {
                    stack.push((index, NONE));
                } else if stack.is_empty() {
                    return Ok(document);
                }
            }
            Event::End(_) => {
                if stack.pop().is_none() {
                    return Err(err(&reader, &"unexpected end tag"));
                }
                if stack.is_empty() {
                    return Ok(document);
                }
            }
            Event::Text(text) => match stack.last() {
                Some((current, _)) => append(
                    &mut document.nodes[*current as usize].text,
                    // Borrowed from the input as it is, unless line ends
                    // need normalising (XML 1.0 §2.11).
                    match slice_of(input, &text) {
                        Some(slice) if !slice.contains('\r') => Cow::Borrowed(slice),
                        _ => text.xml10_content(),
                    },
                ),
                None if !text.trim().is_empty() => {
                    return Err(err(&reader, &"text outside the root element"));
                }
                None => {}
            },
            Event::CData(data) => {
                if let Some((current, _)) = stack.last() {
                    append(
                        &mut document.nodes[*current as usize].text,
                        data.xml10_content(),
                    );
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
                if let Some((current, _)) = stack.last() {
                    append(
                        &mut document.nodes[*current as usize].text,
                        Cow::Owned(resolved),
                    );
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

/// The bytes `part` as the slice of `input` they were read from, when
/// they point into it (the text of a reader over a string does).
fn slice_of<'a>(input: &'a str, part: &str) -> Option<&'a str> {
    let base = input.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    if start >= base && start + part.len() <= base + input.len() {
        let offset = start - base;
        return input.get(offset..offset + part.len());
    }
    None
}

/// `part` as a slice of `input` when it points into it (quick-xml reading
/// from a string borrows names and raw values from it), so that element
/// and attribute names cost no allocation. Safe: only addresses are
/// compared, and the slice is taken from `input` by index.
fn borrowed<'a>(input: &'a str, part: &str) -> Cow<'a, str> {
    let base = input.as_ptr() as usize;
    let start = part.as_ptr() as usize;
    if start >= base && start + part.len() <= base + input.len() {
        let offset = start - base;
        if let Some(slice) = input.get(offset..offset + part.len()) {
            return Cow::Borrowed(slice);
        }
    }
    Cow::Owned(part.to_owned())
}

fn read_attributes<'a>(
    input: &'a str,
    reader: &NsReader<&'a [u8]>,
    start: &BytesStart<'a>,
    out: &mut Vec<Attribute<'a>>,
) -> Result<(), String> {
    if start.attributes_raw().trim().is_empty() {
        return Ok(());
    }
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| e.to_string())?;
        let key = attribute.key;
        if key.as_ref().starts_with("xmlns") {
            continue;
        }
        let (ns, local) = reader.resolver().resolve_attribute(key);
        let value = if attribute.value.contains(['&', '\t', '\n', '\r']) {
            Cow::Owned(
                attribute
                    .normalized_value(quick_xml::XmlVersion::Explicit1_0)
                    .map_err(|e| e.to_string())?
                    .into_owned(),
            )
        } else {
            borrowed(input, &attribute.value)
        };
        out.push(Attribute {
            ns: resolved(&ns),
            name: borrowed(input, local.as_ref()),
            value,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_text_and_entities() {
        let doc = r#"<a:Envelope xmlns:a="http://schemas.xmlsoap.org/soap/envelope/" xmlns:c="urn:dslforum-org:cwmp-1-0"><a:Body><c:X><Name>x &amp; y&#33;</Name><V xmlns:i="http://www.w3.org/2001/XMLSchema-instance" i:type="xsd:int">5</V></c:X></a:Body></a:Envelope>"#;
        let document = parse(doc).unwrap();
        let root = document.root();
        assert_eq!((root.ns(), root.name()), (Ns::Soap, "Envelope"));
        let x = root.children().next().unwrap().children().next().unwrap();
        assert_eq!((x.ns(), x.name()), (Ns::Cwmp(0), "X"));
        assert_eq!(x.child("Name").unwrap().text(), "x & y!");
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
    fn text_is_borrowed_and_line_ends_normalised() {
        let doc = "<a><b>plain</b><c>x\r\ny\rz</c></a>";
        let document = parse(doc).unwrap();
        let root = document.root();
        let b = root.child("b").unwrap();
        assert!(matches!(
            document.nodes[b.index as usize].text,
            Cow::Borrowed("plain")
        ));
        assert_eq!(root.child("c").unwrap().text(), "x\ny\nz");
    }

    #[test]
    fn depth_is_bounded() {
        let doc = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(&doc).is_err());
    }
}
