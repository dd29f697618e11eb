//! The text a transfer meets: FTP reply lines (227, 229), Content-Range
//! headers, and the ACS URL in DHCP option 43.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dm_platform::acs_url_from_vendor_options(data);
    if let Ok(text) = std::str::from_utf8(data) {
        dm_cwmp_tokio::fuzzing::ftp_reply(text);
        if let Some((first, last, complete)) = dm_cwmp_tokio::fuzzing::content_range(text) {
            assert!(first <= last && complete.is_none_or(|c| last < c));
        }
    }
});
