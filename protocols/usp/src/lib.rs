//! USP (TR-369) on dmagent's tree: the agent's engine, sans-IO.
//!
//! - [`proto`]: the USP 1.4 Record and Msg, generated from the official
//!   .proto files (`model/usp/`) by `cargo xtask codegen` with prost.
//! - [`path`]: path expressions (instance numbers, `*`, search
//!   expressions) resolved on the tree through the TR-181 mapping that
//!   CWMP uses: USP and CWMP name the same TR-181 parameters.
//! - [`engine`]: records in, requests answered (Get, GetInstances,
//!   GetSupportedProtocol, Set, Add, Delete, Operate of `Device.Reboot()`,
//!   `Device.FactoryReset()`, the firmware image's Download() and
//!   Activate(), `InstallDU()` and a deployment unit's Update() and
//!   Uninstall(), `Request.{i}.Cancel()`, `SendOnBoardRequest()`),
//!   records out; writes go
//!   through the same transactions, and the same host boundary, as the
//!   other protocols'.
//! - [`commands`]: asynchronous commands (the IP diagnostics), carried
//!   out through their TR-181 objects, ended by an OperationComplete.
//! - [`notify`]: the tree's changes, whoever made them, as Notify
//!   messages for the subscriptions in `Device.LocalAgent.Subscription.`.
//! - [`supported`]: GetSupportedDM, from the same mapping's templates.
//! - [`permissions`]: what a controller's role lets it do, checked on
//!   every request of a controller.
//! - [`error`]: TR-369's error codes.
//!
//! The MTPs (MQTT, WebSocket) are the driver's, in the agent.

pub mod commands;
pub mod engine;
pub mod error;
pub mod notify;
pub mod path;
pub mod permissions;
pub mod supported;
#[rustfmt::skip]
pub mod proto;

pub use engine::{Action, Agent, Command, Incoming, Pending, Request, Step};
pub use error::{Code, UspError};
pub use notify::{Notifier, Outgoing};
pub use permissions::Permissions;
