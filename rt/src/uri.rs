//! URIs as `http::Uri` parses them (hyper's parser, already linked for
//! CWMP; it takes RFC 3986 URIs of any scheme: coap, coaps, http, ftp),
//! and the questions the agent asks of them. Not the `url` crate: it
//! would link IDNA tables (about 250 KiB) for nothing a device needs.

pub use http::Uri;
use percent_encoding::percent_decode_str;

/// A URI the agent cannot use, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri}: {reason}")]
pub struct UriError {
    pub uri: String,
    pub reason: String,
}

impl UriError {
    pub fn new(uri: &str, reason: impl std::fmt::Display) -> UriError {
        UriError {
            uri: uri.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Parses an absolute URI with a host ("scheme://host[:port]...").
pub fn parse(text: &str) -> Result<Uri, UriError> {
    let uri: Uri = text.parse().map_err(|e| UriError::new(text, e))?;
    if uri.scheme().is_none() || uri.host().is_none_or(str::is_empty) {
        return Err(UriError::new(text, "not scheme://host..."));
    }
    Ok(uri)
}

/// The host of a parsed URI as a name or an address, without the
/// brackets of an IPv6 literal; empty when it has none.
pub fn host(uri: &Uri) -> &str {
    let host = uri.host().unwrap_or("");
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The port a parsed URI names, if it names one; an error for one that is
/// not 1 to 65535 (`http::Uri` reads those as none, which must not become
/// the default).
pub fn port(uri: &Uri) -> Result<Option<u16>, UriError> {
    let Some(authority) = uri.authority() else {
        return Ok(None);
    };
    let host_port = authority.as_str().rsplit('@').next().unwrap_or("");
    let after_host = &host_port[host_port.rfind(']').map_or(0, |i| i + 1)..];
    match after_host.rsplit_once(':') {
        None | Some((_, "")) => Ok(None),
        Some((_, digits)) => match digits.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => Err(UriError::new(
                &uri.to_string(),
                format!("port {digits:?} is not 1 to 65535"),
            )),
        },
    }
}

/// Host and port of `text`, the port `default` when it names none.
pub fn host_port(text: &str, default: u16) -> Result<(String, u16), UriError> {
    let uri = parse(text)?;
    let port = port(&uri).map_err(|e| UriError::new(text, e.reason))?;
    Ok((host(&uri).to_owned(), port.unwrap_or(default)))
}

/// The path segments and query parameters of a URI, percent-decoded
/// (RFC 7252 §6.4 for CoAP: each is one Uri-Path or Uri-Query option).
pub fn path_and_query(text: &str) -> Result<(Vec<String>, Vec<String>), UriError> {
    let uri = parse(text)?;
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| UriError::new(text, "not UTF-8 once decoded"))
    };
    let segments = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect::<Result<_, _>>()?;
    let query = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect::<Result<_, _>>()?;
    Ok((segments, query))
}

/// A URI as it may be logged: a password in its user information
/// (`ftp://user:secret@host/...`, RFC 3986 §3.2.1) replaced by `***`.
/// Text that is not a URI is returned as it is.
pub fn redacted(text: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.into();
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..]).into()
        }
        None => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_of_every_form() {
        assert_eq!(
            host_port("coap://127.0.0.1:5690/rd", 5683).unwrap(),
            ("127.0.0.1".into(), 5690)
        );
        assert_eq!(
            host_port("coaps://[::1]", 5684).unwrap(),
            ("::1".into(), 5684)
        );
        assert_eq!(host_port("coap://h?x=1", 5683).unwrap(), ("h".into(), 5683));
        assert!(host_port("coap://h:0", 5683).is_err());
        assert!(host_port("coap://h:70000", 5683).is_err());
        assert!(host_port("coap://[::1/", 5683).is_err());
        assert!(host_port("coap:///path", 5683).is_err());
        assert!(host_port("not a uri", 5683).is_err());
    }

    #[test]
    fn coap_paths_and_queries_are_decoded() {
        assert_eq!(
            path_and_query("coap://h:5683/fw/a%20b.bin?v=1&x=%C3%A9#frag").unwrap(),
            (
                vec!["fw".to_owned(), "a b.bin".to_owned()],
                vec!["v=1".to_owned(), "x=é".to_owned()]
            )
        );
        assert_eq!(
            path_and_query("coap://h?x").unwrap(),
            (vec![], vec!["x".to_owned()])
        );
        assert_eq!(
            path_and_query("coap://[::1]:5683/fw/image%20v2.bin?ver=2&x").unwrap(),
            (
                vec!["fw".to_owned(), "image v2.bin".to_owned()],
                vec!["ver=2".to_owned(), "x".to_owned()]
            )
        );
        assert_eq!(
            path_and_query("coaps://example.net").unwrap(),
            (vec![], vec![])
        );
        assert!(path_and_query("coap://h/%FF").is_err());
        // A '%' not followed by two hex digits stays as it is (WHATWG).
        assert_eq!(
            path_and_query("coap://h/%zz").unwrap(),
            (vec!["%zz".to_owned()], vec![])
        );
    }

    #[test]
    fn passwords_in_urls_are_not_logged() {
        assert_eq!(
            redacted("ftp://dm:s3cret@127.0.0.1:2121/a/b.log"),
            "ftp://dm:***@127.0.0.1:2121/a/b.log"
        );
        assert_eq!(redacted("http://u@h/p?q=a@b"), "http://u:***@h/p?q=a@b");
        assert_eq!(redacted("http://h/p?q=a@b"), "http://h/p?q=a@b");
        assert_eq!(redacted("not a url"), "not a url");
    }
}
