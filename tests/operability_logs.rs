//! Logs an operator can run on (issue 11, item 4): one access event per completed request,
//! one completion or failure event per upload with its reason in words, refusals in words, the
//! same fields in the plain and the JSON format, and never a secret. The reference worker runs
//! with `NODEGATE_LOG_FORMAT` set; its stderr is parsed line by line into events.

// `per_runtime!` reads the file item by item.
#![recursion_limit = "512"]

mod common;

// Every test below runs once against each worker: `tokio::<test>` and `smol::<test>`.
crate::per_runtime! {

    use std::collections::HashMap;
    use std::io::Write as _;
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use common::TOKEN;

    /// Largest upload the worker takes in these tests.
    const LIMIT: u64 = 1024;

    /// One log event, whatever the format.
    #[derive(Debug, Clone)]
    struct Event {
        level: String,
        message: String,
        fields: HashMap<String, String>,
    }

    impl Event {
        fn field(&self, name: &str) -> &str {
            self.fields
                .get(name)
                .map_or_else(|| panic!("no field `{name}` in {self:?}"), String::as_str)
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Format {
        Plain,
        Json,
    }

    /// Parses one JSON line: `{"level":..,"fields":{"message":..,..},"target":..}`.
    fn parse_json(line: &str) -> Option<Event> {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = value.get("fields")?.as_object()?;
        let mut map: HashMap<String, String> = fields
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        let message = map.remove("message").unwrap_or_default();
        Some(Event {
            level: value.get("level")?.as_str()?.to_owned(),
            message,
            fields: map,
        })
    }

    /// Parses one plain line: `<time> <LEVEL> <target>: <message words> name=value name="quoted"`.
    fn parse_plain(line: &str) -> Option<Event> {
        let mut words = line.split_whitespace();
        let _time = words.next()?;
        let level = words.next()?.to_owned();
        let rest = line.split_once(": ")?.1;
        let mut message = Vec::new();
        let mut fields = HashMap::new();
        let mut chars = rest.chars().peekable();
        let mut token = String::new();
        while chars.peek().is_some() {
            token.clear();
            while let Some(&c) = chars.peek() {
                if c == ' ' || c == '=' {
                    break;
                }
                token.push(c);
                chars.next();
            }
            if chars.peek() == Some(&'=') && token.chars().all(|c| c.is_alphanumeric() || c == '_') {
                chars.next();
                let mut value = String::new();
                if chars.peek() == Some(&'"') {
                    chars.next();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => value.extend(chars.next()),
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                } else {
                    while let Some(&c) = chars.peek() {
                        if c == ' ' {
                            break;
                        }
                        value.push(c);
                        chars.next();
                    }
                }
                fields.insert(token.clone(), value);
            } else {
                while chars.peek().is_some_and(|c| *c != ' ') {
                    token.extend(chars.next());
                }
                if !token.is_empty() {
                    message.push(token.clone());
                }
            }
            while chars.peek() == Some(&' ') {
                chars.next();
            }
        }
        Some(Event {
            level,
            message: message.join(" "),
            fields,
        })
    }

    struct Worker {
        process: common::WorkerProcess,
        addr: SocketAddr,
        format: Format,
        _tmp: tempfile::TempDir,
    }

    impl Worker {
        fn start(format: Format) -> Self {
            let tmp = tempfile::tempdir().expect("tmp");
            let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
            let mut command = common::worker_command(&tmp.path().join("models"), &addr.to_string());
            command
                .env("LOCALAI_REGISTRATION_TOKEN", TOKEN)
                .env("LOCALAI_MAX_UPLOAD_SIZE", LIMIT.to_string())
                .env(
                    "NODEGATE_LOG_FORMAT",
                    match format {
                        Format::Plain => "plain",
                        Format::Json => "json",
                    },
                );
            let process = common::WorkerProcess::spawn(command);
            assert!(
                common::wait_healthy(addr, Duration::from_secs(20)),
                "worker not serving:\n{}",
                process.stderr()
            );
            Self {
                process,
                addr,
                format,
                _tmp: tmp,
            }
        }

        fn events(&self) -> Vec<Event> {
            let parse = match self.format {
                Format::Plain => parse_plain,
                Format::Json => parse_json,
            };
            self.process.stderr().lines().filter_map(parse).collect()
        }

        /// Waits until an event matches (events are written when a response body ends).
        fn wait_for(&self, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
            let start = Instant::now();
            loop {
                if let Some(event) = self.events().into_iter().find(&matches) {
                    return event;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "no {what} event ({:?}):\n{}",
                    self.format,
                    self.process.stderr()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        fn request(&self, method: &str, target: &str, extra: &[(&str, &str)], body: &[u8]) -> u16 {
            let mut head = format!(
                "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
                 Authorization: Bearer {TOKEN}\r\n",
                self.addr
            );
            for (name, value) in extra {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            if method == "PUT" {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            common::send_raw(self.addr, &bytes).status
        }
    }

    fn access<'a>(method: &'a str, key: &'a str, status: &'a str) -> impl Fn(&Event) -> bool + 'a {
        move |e: &Event| {
            e.message == "request"
                && e.fields.get("method").map(String::as_str) == Some(method)
                && e.fields.get("key").map(String::as_str) == Some(key)
                && e.fields.get("status").map(String::as_str) == Some(status)
        }
    }

    fn upload<'a>(message: &'a str, key: &'a str) -> impl Fn(&Event) -> bool + 'a {
        move |e: &Event| e.message == message && e.fields.get("key").map(String::as_str) == Some(key)
    }

    fn check_formats(run: impl Fn(&Worker)) {
        for format in [Format::Plain, Format::Json] {
            let worker = Worker::start(format);
            run(&worker);
            let log = worker.process.stderr();
            assert!(
                !log.contains(TOKEN),
                "the token reached the log ({format:?}):\n{log}"
            );
            assert!(
                !log.contains("Bearer"),
                "an Authorization value reached the log"
            );
        }
    }

    /// A download, a probe, an upload and a listing each leave their access event with every
    /// field; an upload also leaves one completion event; probes stay out of the INFO log.
    #[test]
    fn access_and_upload_events_carry_their_fields_in_both_formats() {
        check_formats(|worker| {
            let body = b"hello, nodegate";
            let hash = common::sha256_hex(body);
            let put = worker.request(
                "PUT",
                "/v1/files/models/a.bin?token=leak",
                &[("X-Content-SHA256", &hash)],
                body,
            );
            assert_eq!(put, 200);
            assert_eq!(
                worker.request("GET", "/v1/files/models/a.bin", &[], b""),
                200
            );
            assert_eq!(
                worker.request("HEAD", "/v1/files/models/a.bin", &[], b""),
                200
            );
            assert_eq!(
                worker.request("GET", "/v1/files-list/models/", &[], b""),
                200
            );
            assert_eq!(worker.request("GET", "/healthz", &[], b""), 200);

            let get = worker.wait_for("GET access", access("GET", "models/a.bin", "200"));
            assert_eq!(get.level, "INFO");
            assert_eq!(get.field("bytes"), body.len().to_string());
            assert!(get.field("duration_ms").parse::<f64>().is_ok(), "{get:?}");
            assert!(get.field("remote").starts_with("127.0.0.1:"), "{get:?}");
            let head = worker.wait_for("HEAD access", access("HEAD", "models/a.bin", "200"));
            assert_eq!(head.field("bytes"), "0");
            let put = worker.wait_for("PUT access", access("PUT", "models/a.bin", "200"));
            assert_eq!(put.field("bytes"), body.len().to_string(), "bytes received");
            worker.wait_for("listing access", access("GET", "models/", "200"));

            let done = worker.wait_for("upload complete", upload("upload complete", "models/a.bin"));
            assert_eq!(done.field("bytes"), body.len().to_string());
            assert_eq!(done.field("hash"), "verified");
            assert_eq!(done.field("sha256"), hash);
            assert!(
                done.field("published").ends_with("/models/a.bin"),
                "{done:?}"
            );
            assert!(done.field("rate_mib_s").parse::<f64>().is_ok());
            assert!(done.field("duration_ms").parse::<f64>().is_ok());

            let events = worker.events();
            assert!(
                !events
                    .iter()
                    .any(|e| e.fields.values().any(|v| v.contains("leak"))),
                "a query string reached the log"
            );
            assert!(
                !events
                    .iter()
                    .any(|e| e.fields.get("path").is_some_and(|p| p == "/healthz")),
                "probes are logged at debug only"
            );
        });
    }

    /// A resumable chunk is logged as partial, with the bytes the partial holds.
    #[test]
    fn a_partial_upload_is_logged_as_partial() {
        check_formats(|worker| {
            let status = worker.request(
                "PUT",
                "/v1/files/models/p.bin",
                &[("Content-Range", "bytes 0-9/20")],
                b"0123456789",
            );
            assert_eq!(status, 308);
            let event = worker.wait_for(
                "partial upload",
                upload("upload chunk stored; the upload is partial", "models/p.bin"),
            );
            assert_eq!(event.field("partial"), "10");
            assert_eq!(event.field("total"), "20");
            worker.wait_for("308 access", access("PUT", "models/p.bin", "308"));
        });
    }

    /// A wrong `X-Content-SHA256` is a 400 with the two hashes in words.
    #[test]
    fn a_wrong_hash_is_logged_as_a_hash_mismatch() {
        check_formats(|worker| {
            let declared = common::sha256_hex(b"something else");
            let status = worker.request(
                "PUT",
                "/v1/files/models/h.bin",
                &[("X-Content-SHA256", &declared)],
                b"the bytes sent",
            );
            assert_eq!(status, 400);
            let event = worker.wait_for("upload failed", upload("upload failed", "models/h.bin"));
            assert_eq!(event.level, "WARN");
            assert_eq!(event.field("status"), "400");
            let computed = common::sha256_hex(b"the bytes sent");
            assert_eq!(
                event.field("reason"),
                format!("hash mismatch: declared {declared} computed {computed}")
            );
            worker.wait_for("400 access", access("PUT", "models/h.bin", "400"));
        });
    }

    /// A chunked upload that goes over the limit while streaming is a 413, logged in words.
    #[test]
    fn a_streamed_upload_over_the_limit_is_logged_as_413() {
        check_formats(|worker| {
            let mut stream = TcpStream::connect(worker.addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let head = format!(
                "PUT /v1/files/models/big.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                worker.addr
            );
            stream.write_all(head.as_bytes()).expect("head");
            let chunk = vec![b'x'; 512];
            for _ in 0..4 {
                let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
                let _ = stream.write_all(&chunk);
                let _ = stream.write_all(b"\r\n");
            }
            let _ = stream.write_all(b"0\r\n\r\n");
            let response = common::read_response(&mut stream, false).expect("an answer");
            assert_eq!(response.status, 413);
            let event = worker.wait_for("upload failed", upload("upload failed", "models/big.bin"));
            assert_eq!(event.field("status"), "413");
            assert!(
                event
                    .field("reason")
                    .contains(&format!("upload limit of {LIMIT} bytes")),
                "{event:?}"
            );
            assert!(event.field("bytes").parse::<u64>().expect("bytes") > LIMIT);
        });
    }

    /// A client that goes away mid-body leaves one failure event saying so.
    #[test]
    fn a_body_cut_off_mid_way_is_logged() {
        check_formats(|worker| {
            let mut stream = TcpStream::connect(worker.addr).expect("connect");
            let head = format!(
                "PUT /v1/files/models/cut.bin HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Length: 1000\r\n\r\n",
                worker.addr
            );
            stream.write_all(head.as_bytes()).expect("head");
            stream.write_all(&[b'x'; 100]).expect("some of the body");
            stream.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(200));
            drop(stream);
            let event = worker.wait_for("upload failed", upload("upload failed", "models/cut.bin"));
            assert_eq!(
                event.field("reason"),
                "client cut off mid-body: the connection ended after 100 of 1000 bytes"
            );
            assert_eq!(event.field("bytes"), "100");
        });
    }

    /// Refusals read as words, never as Rust `Debug` text, and carry no secret.
    #[test]
    fn refusals_are_logged_in_words() {
        check_formats(|worker| {
            assert_eq!(
                worker.request("GET", "/v1/files/models/a/%2e%2e/b", &[], b""),
                400
            );
            let event = worker.wait_for("refusal", |e| e.message == "request refused");
            assert_eq!(event.field("reason"), "bad key: the key has a `..` segment");
            assert_eq!(event.field("status"), "400");
            let log = worker.process.stderr();
            assert!(!log.contains("DotSegment"), "Debug text in the log:\n{log}");
            assert!(!log.contains("BadKey"), "Debug text in the log:\n{log}");
        });
    }
}
