//! Every LwM2M content format's decoder (text, opaque, plain CBOR, TLV,
//! SenML JSON and CBOR, LwM2M JSON and CBOR), composites and names too;
//! what decodes encodes again.
#![no_main]
use dm_lwm2m::format::{self, ContentFormat};
use dm_lwm2m::mapping::Lwm2mPath;
use libfuzzer_sys::fuzz_target;

const FORMATS: [ContentFormat; 9] = [
    ContentFormat::Text,
    ContentFormat::Opaque,
    ContentFormat::Cbor,
    ContentFormat::Tlv,
    ContentFormat::SenmlJson,
    ContentFormat::SenmlCbor,
    ContentFormat::LwM2mJson,
    ContentFormat::LwM2mCbor,
    ContentFormat::LinkFormat,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let bases = dmagent_fuzz::LWM2M_PATHS;
    let base = bases[usize::from(pick >> 4) % bases.len()];
    let Ok(base) = format!("/{base}").parse::<Lwm2mPath>() else {
        return;
    };
    let f = FORMATS[usize::from(pick & 0x0f) % FORMATS.len()];
    let type_of = |p: &Lwm2mPath| dm_lwm2m::client::type_of(p);
    if let Ok(items) = format::decode(f, &base, payload, &type_of) {
        let _ = format::encode(f, &base, &items);
    }
    if let Ok(items) = format::decode_composite(f, payload, &type_of) {
        let _ = format::encode_composite(f, &items);
    }
    let _ = format::decode_names(f, payload);
});
