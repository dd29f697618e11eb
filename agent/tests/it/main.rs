//! The integration tests of this crate, in one binary: each file a
//! module (one link of the workspace instead of one per file).

mod acsrs;
mod bulkdata;
mod cli;
mod control;
mod cross_protocol;
mod cwmp_download;
mod cwmp_ftp;
mod declared;
mod demo;
mod dhcp;
mod diagnostics;
mod host_services;
mod launch;
mod lwm2m;
mod lwm2m_certificates;
mod namespace;
mod nat;
mod operator;
mod package;
mod providers;
mod usp;
mod watchdog;
