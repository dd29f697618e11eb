//! The USP engine under the fuzzer: a record (or a message wrapped in
//! one) received and, when it is a request, answered on the tree.

use dm_core::Origin;
use dm_usp::proto::usp_record;
use dm_usp::{Agent, Incoming, Step};
use prost::Message as _;

const AGENT: &str = "os::00D09E-SN1";

pub fn run(wrap: bool, bytes: &[u8]) {
    let agent = Agent::new(AGENT);
    let record = if wrap {
        usp_record::Record {
            version: "1.4".into(),
            to_id: AGENT.into(),
            from_id: "self::fuzz".into(),
            record_type: Some(usp_record::record::RecordType::NoSessionContext(
                usp_record::NoSessionContextRecord {
                    payload: bytes.to_vec(),
                },
            )),
            ..Default::default()
        }
        .encode_to_vec()
    } else {
        bytes.to_vec()
    };
    match agent.receive(&record) {
        Incoming::Request(request) => {
            let mut tree = crate::tree();
            // The sender is controller 1, with Full Access (every request
            // explored) or, by the input's first bit, Untrusted (the
            // refusals explored).
            let role = if bytes.first().is_some_and(|b| b & 1 == 1) {
                dm_objects::local_agent::ControllerRole::Untrusted
            } else {
                dm_objects::local_agent::ControllerRole::FullAccess
            };
            dm_objects::local_agent::provision(
                &mut tree,
                AGENT,
                &[("self::fuzz".to_owned(), role)],
                &dm_usp::permissions::BUILT_IN_ROLES,
            )
            .expect("provisioning USP");
            let _ = request.reads(&tree, Origin::Controller(1));
            let mut step = request.start(&mut tree, Origin::Controller(1));
            loop {
                match step {
                    Step::Done(msg) => {
                        let answer = agent.record("self::fuzz", &msg);
                        assert!(usp_record::Record::decode(answer.as_slice()).is_ok());
                        break;
                    }
                    Step::Command(_) => break,
                    Step::Host(mut pending) => {
                        let work = pending.take_work();
                        let outcome = work.run_within(dm_core::tree::HOST_WRITE_LIMIT);
                        step = pending.resume(&mut tree, outcome).0;
                    }
                }
            }
        }
        Incoming::Reply { record, .. } => {
            assert!(usp_record::Record::decode(record.as_slice()).is_ok());
        }
        Incoming::NotifyResp { .. } | Incoming::Nothing(_) => {}
    }
}
