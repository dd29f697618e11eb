//! The private parsers, opened to the fuzz targets (`--cfg fuzzing`,
//! fuzz/ and scripts/fuzz.sh); not part of the API otherwise.

/// Checks an Authorization header the way a connection request is
/// checked, against a nonce just issued for `credentials`.
pub fn connection_request_authorized(header: &str, uri: &str, credentials: (&str, &str)) -> bool {
    crate::connreq::fuzz_verify(header, uri, credentials)
}

/// An FTP reply line, a 229 and a 227 reply.
pub fn ftp_reply(text: &str) {
    let _ = crate::ftp::reply_line(text);
    let _ = crate::ftp::epsv_port(text);
    let _ = crate::ftp::pasv_port(text);
}

/// A Content-Range header value.
pub fn content_range(text: &str) -> Option<(u64, u64, Option<u64>)> {
    crate::http::parse_content_range(text)
}
