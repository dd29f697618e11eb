//! The LwM2M adapter of dmagent, sans-IO: the mapping between LwM2M
//! `/obj/inst/res` paths and core resources ([`mapping`]), the content
//! formats ([`format`]), the CoAP message layer ([`coap`]), DTLS PSK
//! ([`dtls`]), the client engine ([`client`], [`bootstrap`]) and block-wise
//! pulls for firmware delivery ([`fetch`]). Datagrams and time go in;
//! datagrams and events come out; `dm_lwm2m_tokio` drives them.

pub mod access;
pub mod bootstrap;
pub mod client;
pub mod coap;
pub mod declare;
pub mod dtls;
pub mod fetch;
pub mod format;
pub mod mapping;
pub mod object_xml;
