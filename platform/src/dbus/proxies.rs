//! Typed proxies for the parts of NetworkManager and oFono the platform
//! uses, written against their introspection data (NetworkManager 1.42's
//! `org.freedesktop.NetworkManager*.xml`, oFono 1.31's doc/*-api.txt).
//! Properties are read in one `GetAll` per object rather than through
//! zbus's per-proxy property cache: the objects come and go, and a cache
//! per proxy costs a match rule and a task each.
//!
//! Each trait sits in its own module: zbus names the generated signal types
//! without the proxy's prefix.

use std::collections::HashMap;

/// `a{sv}` as received.
pub type Dict = HashMap<String, zbus::OwnedVariant>;
/// `a{sa{sv}}` as received (NetworkManager connection settings).
pub type Settings = HashMap<String, Dict>;

pub mod properties {
    use super::Dict;

    #[zbus::proxy(interface = "org.freedesktop.DBus.Properties")]
    pub trait Properties {
        fn get_all(&self, interface_name: &str) -> zbus::Result<Dict>;
    }
}

pub mod nm {
    use super::Settings;
    use std::collections::HashMap;
    use zbus::{OwnedObjectPath, Variant};

    pub const SERVICE: &str = "org.freedesktop.NetworkManager";
    pub const PATH: &str = "/org/freedesktop/NetworkManager";
    pub const INTERFACE: &str = "org.freedesktop.NetworkManager";
    pub const DEVICE: &str = "org.freedesktop.NetworkManager.Device";
    pub const ACTIVE: &str = "org.freedesktop.NetworkManager.Connection.Active";
    pub const IP4: &str = "org.freedesktop.NetworkManager.IP4Config";
    pub const IP6: &str = "org.freedesktop.NetworkManager.IP6Config";
    pub const DHCP4: &str = "org.freedesktop.NetworkManager.DHCP4Config";
    pub const DHCP6: &str = "org.freedesktop.NetworkManager.DHCP6Config";
    pub const WIRELESS: &str = "org.freedesktop.NetworkManager.Device.Wireless";
    pub const ACCESS_POINT: &str = "org.freedesktop.NetworkManager.AccessPoint";

    #[zbus::proxy(
        interface = "org.freedesktop.NetworkManager",
        default_service = "org.freedesktop.NetworkManager",
        default_path = "/org/freedesktop/NetworkManager"
    )]
    pub trait Nm {
        /// "/" as the connection: NetworkManager picks the best one for
        /// the device.
        fn activate_connection(
            &self,
            connection: &zbus::ObjectPath<'_>,
            device: &zbus::ObjectPath<'_>,
            specific_object: &zbus::ObjectPath<'_>,
        ) -> zbus::Result<OwnedObjectPath>;
    }

    #[zbus::proxy(
        interface = "org.freedesktop.NetworkManager.Settings",
        default_service = "org.freedesktop.NetworkManager",
        default_path = "/org/freedesktop/NetworkManager/Settings"
    )]
    pub trait NmSettings {
        fn list_connections(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
        fn get_connection_by_uuid(&self, uuid: &str) -> zbus::Result<OwnedObjectPath>;
        fn add_connection(
            &self,
            connection: HashMap<&str, HashMap<&str, Variant<'_>>>,
        ) -> zbus::Result<OwnedObjectPath>;
    }

    #[zbus::proxy(
        interface = "org.freedesktop.NetworkManager.Settings.Connection",
        default_service = "org.freedesktop.NetworkManager"
    )]
    pub trait NmConnection {
        fn get_settings(&self) -> zbus::Result<Settings>;
        fn get_secrets(&self, setting_name: &str) -> zbus::Result<Settings>;
        /// Replaces the whole profile: real NetworkManager drops every
        /// setting the dictionary leaves out.
        fn update(&self, properties: &Settings) -> zbus::Result<()>;
        fn delete(&self) -> zbus::Result<()>;
    }

    #[zbus::proxy(
        interface = "org.freedesktop.NetworkManager.Connection.Active",
        default_service = "org.freedesktop.NetworkManager"
    )]
    pub trait NmActive {
        /// NMActiveConnectionState and NMActiveConnectionStateReason.
        #[zbus(signal)]
        fn state_changed(&self, state: u32, reason: u32) -> zbus::Result<()>;
    }
}

pub mod ofono {
    use super::Dict;
    use zbus::OwnedObjectPath;

    pub const SERVICE: &str = "org.ofono";

    #[zbus::proxy(
        interface = "org.ofono.Manager",
        default_service = "org.ofono",
        default_path = "/"
    )]
    pub trait Manager {
        fn get_modems(&self) -> zbus::Result<Vec<(OwnedObjectPath, Dict)>>;
    }

    // oFono objects have no org.freedesktop.DBus.Properties: each
    // interface has its own GetProperties and SetProperty. The modem's own
    // properties come with GetModems.

    #[zbus::proxy(
        interface = "org.ofono.NetworkRegistration",
        default_service = "org.ofono"
    )]
    pub trait NetworkRegistration {
        fn get_properties(&self) -> zbus::Result<Dict>;
    }

    /// Each in its own module: zbus names their PropertyChanged signal
    /// types alike.
    pub mod connection_manager {
        use super::super::Dict;
        use zbus::{OwnedObjectPath, Variant};

        #[zbus::proxy(
            interface = "org.ofono.ConnectionManager",
            default_service = "org.ofono"
        )]
        pub trait ConnectionManager {
            fn get_properties(&self) -> zbus::Result<Dict>;
            fn set_property(&self, property: &str, value: &Variant<'_>) -> zbus::Result<()>;
            #[zbus(signal)]
            fn property_changed(&self, name: String, value: zbus::OwnedVariant)
            -> zbus::Result<()>;
            fn get_contexts(&self) -> zbus::Result<Vec<(OwnedObjectPath, Dict)>>;
            fn add_context(&self, kind: &str) -> zbus::Result<OwnedObjectPath>;
            fn remove_context(&self, path: &zbus::ObjectPath<'_>) -> zbus::Result<()>;
        }
    }
    pub use connection_manager::ConnectionManagerProxy;

    pub mod connection_context {
        use super::super::Dict;
        use zbus::Variant;

        #[zbus::proxy(
            interface = "org.ofono.ConnectionContext",
            default_service = "org.ofono"
        )]
        pub trait ConnectionContext {
            fn get_properties(&self) -> zbus::Result<Dict>;
            fn set_property(&self, property: &str, value: &Variant<'_>) -> zbus::Result<()>;
            #[zbus(signal)]
            fn property_changed(&self, name: String, value: zbus::OwnedVariant)
            -> zbus::Result<()>;
        }
    }
    pub use connection_context::ConnectionContextProxy;
}

pub mod login1 {
    pub const SERVICE: &str = "org.freedesktop.login1";

    #[zbus::proxy(
        interface = "org.freedesktop.login1.Manager",
        default_service = "org.freedesktop.login1",
        default_path = "/org/freedesktop/login1"
    )]
    pub trait Manager {
        fn reboot(&self, interactive: bool) -> zbus::Result<()>;
    }
}
