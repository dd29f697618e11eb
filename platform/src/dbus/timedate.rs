//! systemd-timedated (`org.freedesktop.timedate1`): whether NTP is on,
//! whether the clock is synchronised, the time zone; and the calls that
//! change the first and the last (SetNTP, SetTimezone, not interactive:
//! the agent is not a user to ask).

use zbus::Connection;

use super::convert::{error, get_all, number, text};
use super::proxies::Dict;
use crate::linux::zone;
use crate::{PlatformError, TimeSync};

pub const SERVICE: &str = "org.freedesktop.timedate1";
const PATH: &str = "/org/freedesktop/timedate1";
const INTERFACE: &str = "org.freedesktop.timedate1";

/// What timedated says now, with the zone's POSIX rules read from tzdata.
/// timedated is started by the bus when asked and exits when idle (30
/// s): with `wake` false, a timedated that is not running is not started
/// (the answer is then "unavailable"), so that the platform's refreshes
/// do not keep it alive for nothing.
pub async fn read(connection: &Connection, wake: bool) -> Result<TimeSync, PlatformError> {
    let properties: Dict = if wake {
        get_all(connection, SERVICE, PATH, INTERFACE).await?
    } else {
        let proxy = zbus::Proxy::new(connection, SERVICE, PATH, "org.freedesktop.DBus.Properties")
            .await
            .map_err(|e| error(SERVICE, e))?;
        proxy
            .call_with_flags(
                "GetAll",
                zbus::proxy::MethodFlags::NO_AUTO_START,
                &(INTERFACE,),
            )
            .await
            .map_err(|e| error(SERVICE, e))?
            .ok_or_else(|| PlatformError::Failed(format!("{SERVICE}: no answer to GetAll")))?
    };
    let zone = text(&properties, "Timezone").unwrap_or_default();
    Ok(TimeSync {
        ntp: number::<bool>(&properties, "NTP").unwrap_or(false),
        synchronized: number::<bool>(&properties, "NTPSynchronized").unwrap_or(false),
        posix_zone: zone::posix_of(std::path::Path::new(zone::ZONEINFO), &zone),
        zone,
    })
}

async fn call<B>(connection: &Connection, method: &str, body: &B) -> Result<(), PlatformError>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    connection
        .call_method(Some(SERVICE), PATH, Some(INTERFACE), method, body)
        .await
        .map(|_| ())
        .map_err(|e| error(SERVICE, e))
}

pub async fn set_ntp(connection: &Connection, on: bool) -> Result<(), PlatformError> {
    call(connection, "SetNTP", &(on, false)).await
}

/// `zone` as a client wrote it: an IANA name, or POSIX rules that name
/// one of tzdata's zones.
pub async fn set_timezone(
    connection: &Connection,
    wanted: &str,
    current: Option<&str>,
) -> Result<(), PlatformError> {
    let zone = zone::zone_for(std::path::Path::new(zone::ZONEINFO), wanted, current)?;
    call(connection, "SetTimezone", &(zone.as_str(), false)).await
}
