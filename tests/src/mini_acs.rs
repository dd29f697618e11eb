//! A minimal ACS for end-to-end tests: an HTTP/1.1 server on 127.0.0.1
//! that answers each POST from a script (a closure from the request body
//! to the response envelope, or `None` for 204) and records every body.
//! It answers an Inform with an InformResponse carrying the Inform's ID
//! unless the script says otherwise.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use dm_core::lock;
use std::time::Duration;

/// The script: the request body in, an envelope body (what goes inside
/// soap-env:Body) out, or `None` for an empty 204 response.
pub type Script = Box<dyn FnMut(&str) -> Option<String> + Send>;

/// A running ACS: where it listens and what it received.
pub struct MiniAcs {
    pub port: u16,
    pub posts: mpsc::Receiver<String>,
}

/// A SOAP envelope in cwmp-1-2 around `body`, with `id`.
pub fn envelope(id: &str, body: &str) -> String {
    format!(
        r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">{id}</cwmp:ID></soap-env:Header><soap-env:Body>{body}</soap-env:Body></soap-env:Envelope>"#
    )
}

fn inform_id(body: &str) -> String {
    body.split("<cwmp:ID")
        .nth(1)
        .and_then(|r| r.split('>').nth(1))
        .and_then(|r| r.split('<').next())
        .unwrap_or("1")
        .to_owned()
}

impl MiniAcs {
    /// Starts the ACS; `script` answers everything but Informs.
    pub fn start(script: Script) -> MiniAcs {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, posts) = mpsc::channel();
        let script = Arc::new(Mutex::new(script));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (tx, script) = (tx.clone(), Arc::clone(&script));
                std::thread::spawn(move || serve(stream, &tx, &script));
            }
        });
        MiniAcs { port, posts }
    }

    /// The URL the agent should use.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/acs", self.port)
    }

    /// Waits (at most 60 s, however many other POSTs come meanwhile) for
    /// a POST whose body contains `needle`.
    pub fn post_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(body) = self.posts.recv_timeout(left) else {
                panic!("no POST with {needle} within 60 s; the last one:\n{last}");
            };
            if body.contains(needle) {
                return body;
            }
            last = body;
        }
    }
}

fn serve(stream: std::net::TcpStream, tx: &mpsc::Sender<String>, script: &Mutex<Script>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        let reply = if body.contains("<cwmp:Inform>") {
            Some(envelope(
                &inform_id(&body),
                "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
            ))
        } else {
            let mut script = lock(script);
            (script)(&body).map(|inner| envelope(&inform_id(&body), &inner))
        };
        let _ = tx.send(body);
        let response = match reply {
            Some(envelope) => format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{envelope}",
                envelope.len()
            ),
            None => "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_owned(),
        };
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A SetParameterValues body: each parameter's name, `xsd:` type (without
/// the prefix) and value.
pub fn set_parameter_values(key: &str, values: &[(&str, &str, &str)]) -> String {
    let list: String = values
        .iter()
        .map(|(name, kind, value)| {
            format!(
                "<ParameterValueStruct><Name>{name}</Name>\
                 <Value xsi:type=\"xsd:{kind}\">{value}</Value></ParameterValueStruct>"
            )
        })
        .collect();
    format!(
        "<cwmp:SetParameterValues><ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[{}]\">\
         {list}</ParameterList><ParameterKey>{key}</ParameterKey></cwmp:SetParameterValues>",
        values.len()
    )
}

/// A GetParameterValues body for one name (a parameter or a partial
/// path).
pub fn get_parameter_values(name: &str) -> String {
    format!(
        "<cwmp:GetParameterValues><ParameterNames><string>{name}</string>\
         </ParameterNames></cwmp:GetParameterValues>"
    )
}

/// An AddObject body.
pub fn add_object(object: &str, key: &str) -> String {
    format!(
        "<cwmp:AddObject><ObjectName>{object}</ObjectName><ParameterKey>{key}</ParameterKey></cwmp:AddObject>"
    )
}

/// The name/value pairs of a GetParameterValuesResponse, by name.
pub fn parameter_values(body: &str) -> std::collections::HashMap<String, String> {
    body.split("<ParameterValueStruct>")
        .skip(1)
        .map(|p| {
            let name = p.split("<Name>").nth(1).unwrap().split('<').next().unwrap();
            let value = p
                .split("<Value")
                .nth(1)
                .and_then(|v| v.split_once('>'))
                .map_or("", |(_, v)| v.split('<').next().unwrap());
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The ACS's script: each session answers with the next list of
/// `sessions`, taken from the end, one request per POST.
pub fn scripted(mut sessions: Vec<Vec<String>>) -> Script {
    let mut current: Vec<String> = Vec::new();
    Box::new(move |body| {
        if body.is_empty() {
            current = sessions.pop().unwrap_or_default();
            current.reverse();
        }
        if body.is_empty() || body.contains("Response>") {
            return current.pop();
        }
        None
    })
}
