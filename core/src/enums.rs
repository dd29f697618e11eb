//! The values of enumerated resources the agent acts on, named once.
//! (The schemas in [`crate::catalog`] are generated from the OMA XML,
//! whose enumerations are prose.)

/// Firmware Update (/5, LwM2M Core Appendix E.6).
pub mod firmware {
    /// State (/5/0/3).
    pub const IDLE: i64 = 0;
    pub const DOWNLOADING: i64 = 1;
    pub const DOWNLOADED: i64 = 2;
    pub const UPDATING: i64 = 3;

    /// Update Result (/5/0/5).
    pub mod result {
        pub const INITIAL: i64 = 0;
        pub const SUCCESS: i64 = 1;
        pub const NO_SPACE: i64 = 2;
        pub const OUT_OF_MEMORY: i64 = 3;
        pub const CONNECTION_LOST: i64 = 4;
        pub const INTEGRITY: i64 = 5;
        pub const UNSUPPORTED_TYPE: i64 = 6;
        pub const INVALID_URI: i64 = 7;
        pub const FAILED: i64 = 8;
        pub const UNSUPPORTED_PROTOCOL: i64 = 9;
        /// LwM2M 1.2: the update was cancelled (/5/0/10).
        pub const CANCELLED: i64 = 10;

        /// An Update Result for people.
        pub fn describe(result: i64) -> &'static str {
            match result {
                INITIAL => "none yet",
                SUCCESS => "success",
                NO_SPACE => "not enough storage",
                OUT_OF_MEMORY => "out of memory",
                CONNECTION_LOST => "connection lost",
                INTEGRITY => "integrity check failed",
                UNSUPPORTED_TYPE => "unsupported package type",
                INVALID_URI => "invalid URI",
                FAILED => "update failed",
                UNSUPPORTED_PROTOCOL => "unsupported protocol",
                CANCELLED => "cancelled",
                _ => "unknown",
            }
        }
    }
}

/// Software Management (/9, OMA object 9 1.1).
pub mod software {
    /// Update State (/9/x/7).
    pub const INITIAL: i64 = 0;
    pub const DOWNLOAD_STARTED: i64 = 1;
    pub const DOWNLOADED: i64 = 2;
    pub const DELIVERED: i64 = 3;
    pub const INSTALLED: i64 = 4;

    /// Update Result (/9/x/9).
    pub mod result {
        pub const INITIAL: i64 = 0;
        pub const DOWNLOADING: i64 = 1;
        pub const INSTALLED: i64 = 2;
        pub const DELIVERED: i64 = 3;
        pub const NO_SPACE: i64 = 50;
        pub const CONNECTION_LOST: i64 = 52;
        pub const INVALID_URI: i64 = 56;
        pub const INSTALL_FAILED: i64 = 58;
        pub const UNINSTALL_FAILED: i64 = 59;
    }
}
