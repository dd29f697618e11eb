//! ModemManager (`org.freedesktop.ModemManager1`), beside oFono: most Linux
//! gateways with an LTE modem run it with NetworkManager. Read only: the
//! radio (signal, technology, operator, cell), the identities (the modem's
//! IMEI, the SIM's IMSI and ICCID), the bearers as packet-data contexts,
//! and the GNSS fix where the modem offers one. Written against
//! ModemManager 1.20's D-Bus API reference (the `Modem`, `Modem3gpp`,
//! `Signal`, `Location`, `Sim` and `Bearer` interfaces).
//!
//! What is not done here: creating or changing bearers (Simple.Connect
//! connects as it creates), and `Signal.Setup` (the modem's extended
//! signal figures are read when someone else enabled them; without, the
//! signal comes from SignalQuality).

use std::collections::HashMap;

use zbus::{Connection, OwnedVariant};

use super::convert::{error, get_all, number, path, paths, text};
use super::proxies::Dict;
use crate::{ApnContext, GeoLocation, PlatformError, RadioState};

pub const SERVICE: &str = "org.freedesktop.ModemManager1";
const PATH: &str = "/org/freedesktop/ModemManager1";
const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
const MODEM_3GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
const SIGNAL: &str = "org.freedesktop.ModemManager1.Modem.Signal";
const LOCATION: &str = "org.freedesktop.ModemManager1.Modem.Location";
const SIM: &str = "org.freedesktop.ModemManager1.Sim";
const BEARER: &str = "org.freedesktop.ModemManager1.Bearer";

/// MMModemState: registered, and the connection states above it.
const STATE_REGISTERED: i32 = 8;
/// MMModemLocationSource: 3GPP location area and cell.
const SOURCE_3GPP_LAC_CI: u32 = 1;
/// MMModemLocationSource: GPS, as parsed coordinates.
const SOURCE_GPS_RAW: u32 = 2;

/// The radio facts and bearers of the first modem (registered ones
/// first); `None` when ModemManager has no modem.
pub async fn read(
    connection: &Connection,
) -> Result<Option<(RadioState, Vec<ApnContext>)>, PlatformError> {
    let failed = |e: zbus::Error| error(SERVICE, e);
    let manager = zbus::fdo::ObjectManagerProxy::builder(connection)
        .destination(SERVICE)
        .path(PATH)
        .build()
        .await
        .map_err(failed)?;
    let objects = manager
        .get_managed_objects()
        .await
        .map_err(|e| failed(zbus::Error::FDO(Box::new(e))))?;
    let mut modems: Vec<(String, HashMap<String, Dict>)> = objects
        .into_iter()
        .filter_map(|(object, interfaces)| {
            let interfaces: HashMap<String, Dict> = interfaces
                .into_iter()
                .map(|(name, properties)| (name.as_str().to_owned(), properties))
                .collect();
            interfaces
                .contains_key(MODEM)
                .then(|| (object.as_str().to_owned(), interfaces))
        })
        .collect();
    modems.sort_by_key(|(object, interfaces)| {
        let state = interfaces
            .get(MODEM)
            .and_then(|m| number::<i32>(m, "State"))
            .unwrap_or(0);
        (state < STATE_REGISTERED, object.clone())
    });
    let Some((object, interfaces)) = modems.into_iter().next() else {
        return Ok(None);
    };
    let empty = Dict::new();
    let modem = interfaces.get(MODEM).unwrap_or(&empty);
    let gpp = interfaces.get(MODEM_3GPP).unwrap_or(&empty);

    let quality = modem
        .get("SignalQuality")
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| <(u32, bool)>::try_from(v).ok())
        .and_then(|(percent, _recent)| u8::try_from(percent.min(100)).ok());
    let signal = interfaces
        .get(SIGNAL)
        .map(extended_signal)
        .unwrap_or_default();
    let (mcc, mnc) = text(gpp, "OperatorCode")
        .map(|code| operator_code(&code))
        .unwrap_or_default();
    let mut radio = RadioState {
        imei: text(gpp, "Imei")
            .or_else(|| text(modem, "EquipmentIdentifier"))
            .filter(|s| !s.is_empty()),
        link_quality: quality,
        // SignalQuality is a percentage of the CSQ scale, as oFono's
        // Strength: RSSI = -113 + 2 × CSQ dBm (3GPP TS 27.007 §8.5).
        signal_dbm: signal
            .rssi
            .or_else(|| quality.map(|q| -113 + 2 * (i32::from(q) * 31 / 100))),
        rsrp_dbm: signal.rsrp,
        rsrq_db: signal.rsrq,
        technology: number::<u32>(modem, "AccessTechnologies").and_then(technology),
        operator: text(gpp, "OperatorName").filter(|s| !s.is_empty()),
        mcc,
        mnc,
        ..RadioState::default()
    };
    if interfaces.contains_key(LOCATION) {
        let sources = match interfaces[LOCATION].get("Location") {
            Some(location) => location_sources(location),
            // Only signalled when the modem was set up to: asked for.
            None => get_location(connection, &object).await,
        };
        if let Some(cell) = sources
            .get(&SOURCE_3GPP_LAC_CI)
            .and_then(|v| <&str>::try_from(v).ok())
            .and_then(cell_location)
        {
            radio.mcc = radio.mcc.or(Some(cell.mcc));
            radio.mnc = radio.mnc.or(Some(cell.mnc));
            radio.lac = Some(cell.lac);
            radio.cell_id = Some(cell.cell_id);
        }
        radio.location = sources.get(&SOURCE_GPS_RAW).and_then(gps_fix);
    }
    if let Some(sim) = path(modem, "Sim")
        && let Ok(sim) = get_all(connection, SERVICE, &sim, SIM).await
    {
        radio.imsi = text(&sim, "Imsi").filter(|s| !s.is_empty());
        radio.iccid = text(&sim, "SimIdentifier").filter(|s| !s.is_empty());
    }
    let mut contexts = Vec::new();
    for bearer in paths(modem, "Bearers") {
        // A bearer that went between the listing and its read is left out.
        if let Ok(properties) = get_all(connection, SERVICE, &bearer, BEARER).await {
            contexts.extend(context(bearer, &properties));
        }
    }
    Ok(Some((radio, contexts)))
}

/// A bearer as a packet-data context: its settings are the `Properties`
/// dictionary it was created with.
fn context(id: String, bearer: &Dict) -> Option<ApnContext> {
    let settings = dict(bearer.get("Properties")?)?;
    let apn = text(&settings, "apn").unwrap_or_default();
    Some(ApnContext {
        id,
        // ModemManager names a bearer only when it comes from a stored
        // profile; otherwise its APN names it.
        name: text(&settings, "profile-name")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| apn.clone()),
        apn,
        username: text(&settings, "user").unwrap_or_default(),
        active: number::<bool>(bearer, "Connected").unwrap_or(false),
    })
}

fn dict(value: &OwnedVariant) -> Option<Dict> {
    Dict::try_from(value.try_clone().ok()?).ok()
}

/// RSSI, RSRP and RSRQ from the Signal interface's per-technology
/// dictionaries, the newest technology first.
#[derive(Default)]
struct Signal {
    rssi: Option<i32>,
    rsrp: Option<i32>,
    rsrq: Option<i32>,
}

fn extended_signal(signal: &Dict) -> Signal {
    let mut found = Signal::default();
    for technology in ["Nr5g", "Lte", "Umts", "Gsm"] {
        let Some(values) = signal.get(technology).and_then(dict) else {
            continue;
        };
        // Whole dB are what LwM2M and TR-181 carry; NaN or out of range
        // is no figure.
        let figure = |key: &str| {
            number::<f64>(&values, key)
                .filter(|v| v.is_finite() && v.abs() < 1000.0)
                .map(|v| v.round() as i32)
        };
        found.rssi = found.rssi.or(figure("rssi"));
        found.rsrp = found.rsrp.or(figure("rsrp"));
        found.rsrq = found.rsrq.or(figure("rsrq"));
    }
    found
}

/// The access technology as the platform names it (oFono's words), from
/// MMModemAccessTechnology's bits: the newest one set.
fn technology(bits: u32) -> Option<String> {
    let name = if bits & (1 << 15) != 0 {
        "nr"
    } else if bits & (1 << 17) != 0 {
        "nbiot"
    } else if bits & (1 << 14 | 1 << 16) != 0 {
        // LTE, LTE Cat-M.
        "lte"
    } else if bits & (0b1111 << 6) != 0 {
        // HSDPA, HSUPA, HSPA, HSPA+.
        "hspa"
    } else if bits & (1 << 5) != 0 {
        "umts"
    } else if bits & (1 << 4) != 0 {
        "edge"
    } else if bits & 0b1110 != 0 {
        // GSM, GSM Compact, GPRS.
        "gsm"
    } else {
        return None;
    };
    Some(name.to_owned())
}

/// MCC and MNC from a 5- or 6-digit operator code.
fn operator_code(code: &str) -> (Option<u16>, Option<u16>) {
    if !(5..=6).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return (None, None);
    }
    (code[..3].parse().ok(), code[3..].parse().ok())
}

struct Cell {
    mcc: u16,
    mnc: u16,
    lac: u16,
    cell_id: u32,
}

/// The 3GPP location source's text: `MCC,MNC,LAC,CI[,TAC]`, MCC and MNC
/// in decimal, LAC, CI and TAC in hexadecimal. On LTE the LAC is 0 and
/// the TAC is the area.
fn cell_location(text: &str) -> Option<Cell> {
    let fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let hex = |i: usize| fields.get(i).and_then(|f| u32::from_str_radix(f, 16).ok());
    let lac = match hex(2)? {
        0 => hex(4).unwrap_or(0),
        lac => lac,
    };
    Some(Cell {
        mcc: fields.first()?.parse().ok()?,
        mnc: fields.get(1)?.parse().ok()?,
        lac: u16::try_from(lac).ok()?,
        cell_id: hex(3)?,
    })
}

fn location_sources(value: &OwnedVariant) -> HashMap<u32, OwnedVariant> {
    value
        .try_clone()
        .ok()
        .and_then(|v| HashMap::<u32, OwnedVariant>::try_from(v).ok())
        .unwrap_or_default()
}

async fn get_location(connection: &Connection, object: &str) -> HashMap<u32, OwnedVariant> {
    let reply = connection
        .call_method(Some(SERVICE), object, Some(LOCATION), "GetLocation", &())
        .await;
    reply
        .ok()
        .and_then(|m| m.body().deserialize::<HashMap<u32, OwnedVariant>>().ok())
        .unwrap_or_default()
}

/// The GPS source's coordinates: latitude, longitude (degrees) and
/// altitude (metres).
fn gps_fix(value: &OwnedVariant) -> Option<GeoLocation> {
    let fix = dict(value)?;
    let degrees = |key: &str, limit: f64| {
        number::<f64>(&fix, key).filter(|v| v.is_finite() && v.abs() <= limit)
    };
    Some(GeoLocation {
        latitude: degrees("latitude", 90.0)?,
        longitude: degrees("longitude", 180.0)?,
        altitude: number::<f64>(&fix, "altitude").filter(|v| v.is_finite()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_technology_set_names_the_link() {
        assert_eq!(technology(1 << 14).as_deref(), Some("lte"));
        assert_eq!(technology(1 << 14 | 1 << 5).as_deref(), Some("lte"));
        assert_eq!(technology(1 << 15 | 1 << 14).as_deref(), Some("nr"));
        assert_eq!(technology(1 << 17).as_deref(), Some("nbiot"));
        assert_eq!(technology(1 << 9).as_deref(), Some("hspa"));
        assert_eq!(technology(1 << 3).as_deref(), Some("gsm"));
        assert_eq!(technology(0), None);
        assert_eq!(technology(1), None);
    }

    #[test]
    fn operator_codes_and_cells_are_read_as_modem_manager_writes_them() {
        assert_eq!(operator_code("26201"), (Some(262), Some(1)));
        assert_eq!(operator_code("310410"), (Some(310), Some(410)));
        assert_eq!(operator_code("2620"), (None, None));
        assert_eq!(operator_code("2620x"), (None, None));
        // 2G/3G: the LAC.
        let cell = cell_location("262,01,3E8,1A2B,0").unwrap();
        assert_eq!(
            (cell.mcc, cell.mnc, cell.lac, cell.cell_id),
            (262, 1, 0x3e8, 0x1a2b)
        );
        // LTE: no LAC, the TAC instead.
        let cell = cell_location("214,03,0000,05B1CE17,000C").unwrap();
        assert_eq!((cell.lac, cell.cell_id), (0xc, 0x05b1_ce17));
        assert!(cell_location("262,01").is_none());
        assert!(cell_location("262,01,zz,1").is_none());
        assert!(cell_location("").is_none());
        // A LAC wider than 16 bits is not one.
        assert!(cell_location("262,01,1FFFF,1").is_none());
    }
}
