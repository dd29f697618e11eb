//! The EventCodes an Inform carries (TR-069 §3.7.1.5, Table 7).

use serde::{Deserialize, Serialize};

/// One EventCode. Kept in the durable state as its text, so state files
/// written before this type existed read the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum EventCode {
    Bootstrap,
    Boot,
    Periodic,
    Scheduled,
    ValueChange,
    Kicked,
    ConnectionRequest,
    TransferComplete,
    DiagnosticsComplete,
    RequestDownload,
    AutonomousTransferComplete,
    DuStateChangeComplete,
    AutonomousDuStateChangeComplete,
    Wakeup,
    /// "M Reboot" and the other method events, one per CommandKey.
    MReboot,
    MScheduleInform,
    MDownload,
    MScheduleDownload,
    MUpload,
    MChangeDuState,
    /// A vendor event ("X <OUI> <name>") or one this version does not
    /// name, as it was written.
    Other(String),
}

const NAMED: [(EventCode, &str); 20] = [
    (EventCode::Bootstrap, "0 BOOTSTRAP"),
    (EventCode::Boot, "1 BOOT"),
    (EventCode::Periodic, "2 PERIODIC"),
    (EventCode::Scheduled, "3 SCHEDULED"),
    (EventCode::ValueChange, "4 VALUE CHANGE"),
    (EventCode::Kicked, "5 KICKED"),
    (EventCode::ConnectionRequest, "6 CONNECTION REQUEST"),
    (EventCode::TransferComplete, "7 TRANSFER COMPLETE"),
    (EventCode::DiagnosticsComplete, "8 DIAGNOSTICS COMPLETE"),
    (EventCode::RequestDownload, "9 REQUEST DOWNLOAD"),
    (
        EventCode::AutonomousTransferComplete,
        "10 AUTONOMOUS TRANSFER COMPLETE",
    ),
    (
        EventCode::DuStateChangeComplete,
        "11 DU STATE CHANGE COMPLETE",
    ),
    (
        EventCode::AutonomousDuStateChangeComplete,
        "12 AUTONOMOUS DU STATE CHANGE COMPLETE",
    ),
    (EventCode::Wakeup, "13 WAKEUP"),
    (EventCode::MReboot, "M Reboot"),
    (EventCode::MScheduleInform, "M ScheduleInform"),
    (EventCode::MDownload, "M Download"),
    (EventCode::MScheduleDownload, "M ScheduleDownload"),
    (EventCode::MUpload, "M Upload"),
    (EventCode::MChangeDuState, "M ChangeDUState"),
];

impl EventCode {
    /// The code as the Inform spells it.
    pub fn as_str(&self) -> &str {
        match self {
            EventCode::Other(text) => text,
            named => NAMED
                .iter()
                .find(|(code, _)| code == named)
                .map_or("", |(_, text)| text),
        }
    }

    /// The code a text spells.
    pub fn parse(text: &str) -> EventCode {
        NAMED.iter().find(|(_, t)| *t == text).map_or_else(
            || EventCode::Other(text.to_owned()),
            |(code, _)| code.clone(),
        )
    }

    /// Reported once whatever its count (TR-069 Table 7: single), as
    /// opposed to the `M` events, one per CommandKey.
    pub fn is_single(&self) -> bool {
        !self.as_str().starts_with("M ")
    }

    /// A vendor event, "X <OUI> <name>" (TR-069 §3.7.1.5).
    pub fn vendor(oui: &str, name: &str) -> EventCode {
        EventCode::Other(format!("X {oui} {name}"))
    }

    /// Whether it is a vendor event.
    pub fn is_vendor(&self) -> bool {
        matches!(self, EventCode::Other(text) if text.starts_with("X ") && text.split(' ').count() >= 3)
    }
}

impl std::fmt::Display for EventCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for EventCode {
    fn from(text: String) -> EventCode {
        EventCode::parse(&text)
    }
}

impl From<EventCode> for String {
    fn from(code: EventCode) -> String {
        code.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_text() {
        for (code, text) in NAMED {
            assert_eq!(code.as_str(), text);
            assert_eq!(EventCode::parse(text), code);
        }
        let vendor = EventCode::vendor("00D09E", "GetRPCMethods");
        assert_eq!(vendor.as_str(), "X 00D09E GetRPCMethods");
        assert!(vendor.is_vendor() && vendor.is_single());
        assert_eq!(EventCode::parse("X 00D09E GetRPCMethods"), vendor);
        assert!(!EventCode::MDownload.is_single());
        // The durable form is the text.
        let json = serde_json::to_string(&(EventCode::MReboot, "k")).unwrap();
        assert_eq!(json, r#"["M Reboot","k"]"#);
        let back: (EventCode, String) = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, EventCode::MReboot);
    }
}
