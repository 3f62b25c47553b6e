//! The wire of the AWS JSON 1.1 APIs our stand-ins serve (ECS): one operation per POST,
//! named by `X-Amz-Target`, a JSON body each way, errors as `{"__type", "message"}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use serde_json::{json, Value};

/// An operation's answer: the JSON body, or (HTTP status, error type, message). Status 0
/// drops the connection without answering, as a reset would.
pub type Reply = Result<Value, (u16, &'static str, String)>;

/// Serves `handle(operation, request)` on `listener`, a thread per connection, until the
/// process ends.
pub fn serve(
    listener: TcpListener,
    handle: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || connection(stream, &*handle));
        }
    });
}

fn connection(stream: TcpStream, handle: &dyn Fn(&str, &Value) -> Reply) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut target = String::new();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "x-amz-target" => target = v.trim().to_string(),
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let op = target.rsplit('.').next().unwrap_or_default().to_string();
        let result = handle(&op, &request);
        if matches!(result, Err((0, _, _))) {
            return;
        }
        let (status, text) = match result {
            Ok(v) => (200, v.to_string()),
            Err((status, kind, message)) => (
                status,
                json!({"__type": kind, "message": message}).to_string(),
            ),
        };
        let response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\nContent-Length: {}\r\n\r\n{text}",
            if status == 200 { "OK" } else { "Bad Request" },
            text.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
