//! Reading the server name (SNI) of a TLS ClientHello without terminating TLS.
//!
//! A `tls_passthrough` listener forwards TLS untouched, yet must choose a cluster before the
//! first byte goes upstream. The only routing fact a client sends in the clear is the first
//! handshake message: the ClientHello (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2 for TLS 1.2), whose
//! `server_name` extension (RFC 6066 §3) carries the host name the client wants. So weir buffers
//! the client's first bytes until one whole ClientHello has arrived, takes the name from it, and
//! replays every buffered byte to the chosen endpoint, which then completes the handshake with
//! the client as if weir were not there.
//!
//! The ClientHello is parsed by rustls's server-side [`Acceptor`], not by hand. It is the code
//! path that real rustls servers expose to the internet, so it is fuzzed and hardened by others;
//! it reassembles a ClientHello split across several TLS records and records split across reads,
//! bounds what it buffers (64 KiB), and validates the SNI as RFC 6066 asks: a name that is not a
//! valid DNS name is refused, and a literal IP address (which clients must not send but some do)
//! counts as no SNI. Parsing needs no crypto provider: nothing is decrypted or signed.
//!
//! rustls checks a little more than the grammar. It refuses ClientHellos it could never answer
//! itself: SSLv2-compatible hellos, no `null` compression, or no `signature_algorithms`
//! extension. Every TLS 1.2 and 1.3 client in current use sends what it asks for.
//!
//! The bytes are kept where the caller can replay them: [`read_server_name`] appends each chunk
//! to the caller's buffer and feeds only that new chunk to the [`Acceptor`], so nothing is
//! parsed twice. [`parse_client_hello`] is the same parser as a pure function of a byte slice,
//! for the unit tests and the fuzz targets.

use std::io::Cursor;

use rustls::server::Acceptor;
use tokio::net::TcpStream;
use weir_core::{Error, ErrorKind};

/// What the bytes read so far say about the ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientHelloParse {
    /// A prefix of a ClientHello (possibly empty): more bytes are needed.
    Incomplete,
    /// A whole ClientHello; `server_name` is its SNI, `None` when it carries none (or carries a
    /// literal IP address, which RFC 6066 §3 forbids and which is therefore ignored).
    Complete { server_name: Option<String> },
    /// Not a ClientHello weir can route: why.
    Invalid(String),
}

/// An incremental ClientHello parser: feed it the client's bytes in order, each byte once.
#[derive(Default)]
pub(crate) struct ClientHelloReader {
    acceptor: Acceptor,
}

// === impl ClientHelloReader ===

impl ClientHelloReader {
    /// Feeds the next bytes the client sent (possibly none) and says where the parse stands.
    ///
    /// Once it has answered `Complete` or `Invalid`, feeding more bytes answers `Invalid`.
    pub(crate) fn feed(&mut self, new: &[u8]) -> ClientHelloParse {
        let mut cursor = Cursor::new(new);
        loop {
            // `read_tls` takes at most one buffer's worth per call, so a large chunk may need
            // several; process after each so rustls's buffer never holds more than a record.
            let read = match self.acceptor.read_tls(&mut cursor) {
                Ok(n) => n,
                Err(e) => return ClientHelloParse::Invalid(e.to_string()),
            };
            match self.acceptor.accept() {
                Ok(Some(accepted)) => {
                    return ClientHelloParse::Complete {
                        server_name: accepted.client_hello().server_name().map(str::to_owned),
                    };
                }
                Ok(None) => {}
                Err((e, _alert)) => return ClientHelloParse::Invalid(e.to_string()),
            }
            let rest = new
                .len()
                .saturating_sub(usize::try_from(cursor.position()).unwrap_or(0));
            if rest == 0 {
                return ClientHelloParse::Incomplete;
            }
            if read == 0 {
                // rustls reads nothing when a record's length is out of range for its buffer; it
                // would never read these bytes, so no later byte can complete the hello.
                return ClientHelloParse::Invalid("TLS record does not fit the buffer".into());
            }
        }
    }
}

/// Parses the ClientHello at the start of `bytes` (everything the client sent so far).
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "the one-shot form of `ClientHelloReader` for unit tests and the fuzz targets"
    )
)]
pub(crate) fn parse_client_hello(bytes: &[u8]) -> ClientHelloParse {
    ClientHelloReader::default().feed(bytes)
}

/// Reads from `down` into `buf` (which may already hold bytes) until a whole ClientHello is
/// buffered, and returns its server name. Every byte read stays in `buf` to be forwarded.
///
/// Fails, with a [`ErrorKind::DownstreamProtocol`] error, when the bytes are not a ClientHello,
/// when the client closes first, or when more than `max` bytes would be needed.
pub(crate) async fn read_server_name(
    down: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<String>, Error> {
    let mut hello = ClientHelloReader::default();
    let mut fed = 0;
    loop {
        let parsed = hello.feed(buf.get(fed..).unwrap_or_default());
        fed = buf.len();
        match parsed {
            ClientHelloParse::Complete { server_name } => return Ok(server_name),
            ClientHelloParse::Invalid(why) => {
                return Err(Error::new(
                    ErrorKind::DownstreamProtocol,
                    format!("invalid TLS ClientHello: {why}"),
                ));
            }
            ClientHelloParse::Incomplete => super::tcp::read_more(down, buf, max).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// The first flight of a real rustls client connecting to `name`: one TLS record holding the
    /// ClientHello.
    fn hello_for(name: ServerName<'static>) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        let mut client = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        out
    }

    fn hello(name: &str) -> Vec<u8> {
        hello_for(ServerName::try_from(name.to_owned()).unwrap())
    }

    fn complete(name: Option<&str>) -> ClientHelloParse {
        ClientHelloParse::Complete {
            server_name: name.map(str::to_owned),
        }
    }

    /// The same handshake bytes re-framed as two TLS records, split `at` bytes into the payload.
    fn split_into_two_records(single: &[u8], at: usize) -> Vec<u8> {
        // A record is a 5-byte header (type, legacy version, length) and its payload.
        let (header, payload) = single.split_at(5);
        assert_eq!(
            usize::from(u16::from_be_bytes([header[3], header[4]])),
            payload.len()
        );
        let mut out = Vec::new();
        for part in [&payload[..at], &payload[at..]] {
            out.extend_from_slice(&header[..3]);
            out.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn a_whole_client_hello_yields_its_server_name() {
        let bytes = hello("api.example.com");
        assert_eq!(bytes[0], 0x16, "a handshake record");
        assert_eq!(
            parse_client_hello(&bytes),
            complete(Some("api.example.com"))
        );
    }

    #[test]
    fn client_hellos_of_openssl_and_curl_parse() {
        // Captured from `openssl s_client` and `curl`; they double as fuzzing seeds.
        macro_rules! seed {
            ($name:literal) => {
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../fuzz/corpus/client_hello/",
                    $name
                ))
                .as_slice()
            };
        }
        for (bytes, name) in [
            (seed!("openssl-sni-a.test"), Some("a.test")),
            (seed!("openssl-tls12-no-sni"), None),
            (seed!("curl-sni-x.b.test"), Some("x.b.test")),
            (seed!("curl-tls13-alpn-h2"), Some("api.example.com")),
        ] {
            assert_eq!(parse_client_hello(bytes), complete(name), "{name:?}");
        }
    }

    #[test]
    fn the_name_is_lowercased() {
        assert_eq!(
            parse_client_hello(&hello("API.Example.COM")),
            complete(Some("api.example.com"))
        );
    }

    #[test]
    fn bytes_after_the_client_hello_do_not_matter() {
        let mut bytes = hello("a.test");
        bytes.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x01, 0xff]);
        assert_eq!(parse_client_hello(&bytes), complete(Some("a.test")));
    }

    #[test]
    fn every_prefix_is_incomplete_and_byte_by_byte_feeding_completes() {
        let bytes = hello("a.test");
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_client_hello(&bytes[..cut]),
                ClientHelloParse::Incomplete,
                "prefix of {cut} bytes"
            );
        }
        let mut reader = ClientHelloReader::default();
        let (last, init) = bytes.split_last().unwrap();
        for (i, byte) in init.iter().enumerate() {
            assert_eq!(
                reader.feed(std::slice::from_ref(byte)),
                ClientHelloParse::Incomplete,
                "byte {i}"
            );
        }
        assert_eq!(
            reader.feed(std::slice::from_ref(last)),
            complete(Some("a.test"))
        );
    }

    #[test]
    fn a_client_hello_split_across_records_is_reassembled() {
        let single = hello("x.b.test");
        let payload_len = single.len() - 5;
        for at in [1, 4, payload_len / 2, payload_len - 1] {
            let two = split_into_two_records(&single, at);
            assert_eq!(
                parse_client_hello(&two),
                complete(Some("x.b.test")),
                "at {at}"
            );
            // The second record's header is itself split across reads.
            let mut reader = ClientHelloReader::default();
            let (first, second) = two.split_at(5 + at + 2);
            assert_eq!(reader.feed(first), ClientHelloParse::Incomplete);
            assert_eq!(reader.feed(second), complete(Some("x.b.test")));
        }
    }

    #[test]
    fn no_sni_when_the_client_connects_by_ip_address() {
        let ip = ServerName::IpAddress(std::net::Ipv4Addr::new(192, 0, 2, 1).into());
        assert_eq!(parse_client_hello(&hello_for(ip)), complete(None));
    }

    #[test]
    fn an_ip_literal_inside_sni_counts_as_no_sni() {
        // Some clients wrongly put an address in SNI (RFC 6066 §3 forbids it): same length swap.
        let mut bytes = hello("a.b.c.dd");
        let at = bytes.windows(8).position(|w| w == b"a.b.c.dd").unwrap();
        bytes[at..at + 8].copy_from_slice(b"10.0.0.1");
        assert_eq!(parse_client_hello(&bytes), complete(None));
    }

    #[test]
    fn an_invalid_dns_name_in_sni_is_invalid() {
        let mut bytes = hello("a.b.c.dd");
        let at = bytes.windows(8).position(|w| w == b"a.b.c.dd").unwrap();
        bytes[at..at + 8].copy_from_slice(b"a b/c\0dd");
        assert!(matches!(
            parse_client_hello(&bytes),
            ClientHelloParse::Invalid(_)
        ));
    }

    #[test]
    fn garbage_is_invalid() {
        for garbage in [
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\n".as_slice(),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            // An alert record, then a handshake record that is not a ClientHello.
            &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
            &[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00],
            // A handshake record longer than TLS allows.
            &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01],
        ] {
            assert!(
                matches!(parse_client_hello(garbage), ClientHelloParse::Invalid(_)),
                "{garbage:?}"
            );
        }
        // A real hello relabelled as another handshake message (a Certificate).
        let mut bytes = hello("a.test");
        bytes[5] = 0x0b;
        assert!(matches!(
            parse_client_hello(&bytes),
            ClientHelloParse::Invalid(_)
        ));
    }

    #[test]
    fn feeding_after_the_end_is_invalid() {
        let bytes = hello("a.test");
        let mut reader = ClientHelloReader::default();
        assert_eq!(reader.feed(&bytes), complete(Some("a.test")));
        assert!(matches!(reader.feed(b"x"), ClientHelloParse::Invalid(_)));
        let mut reader = ClientHelloReader::default();
        assert!(matches!(
            reader.feed(b"GET /"),
            ClientHelloParse::Invalid(_)
        ));
        assert!(matches!(reader.feed(&bytes), ClientHelloParse::Invalid(_)));
    }

    /// A connected pair of loopback sockets: (client, server side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn reads_in_pieces_and_keeps_every_byte() {
        let bytes = split_into_two_records(&hello("a.test"), 100);
        let (mut client, mut server) = pair().await;
        // The first bytes were already read (e.g. after a PROXY header); the rest trickles in.
        let mut buf = bytes[..3].to_vec();
        let rest = bytes[3..].to_vec();
        let writer = tokio::spawn(async move {
            for chunk in rest.chunks(50) {
                client.write_all(chunk).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let name = read_server_name(&mut server, &mut buf, 64 * 1024)
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("a.test"));
        assert_eq!(buf, bytes, "every byte read is kept, in order");
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn truncated_then_eof_is_an_error() {
        let bytes = hello("a.test");
        let (mut client, mut server) = pair().await;
        client.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
        client.shutdown().await.unwrap();
        let mut buf = Vec::new();
        let e = read_server_name(&mut server, &mut buf, 64 * 1024)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DownstreamProtocol);
        assert_eq!(buf, bytes[..bytes.len() - 1]);
    }

    #[tokio::test]
    async fn more_than_max_is_an_error() {
        let bytes = hello("a.test");
        let (mut client, mut server) = pair().await;
        client.write_all(&bytes).await.unwrap();
        let mut buf = Vec::new();
        let e = read_server_name(&mut server, &mut buf, 64)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DownstreamProtocol);
        assert!(buf.len() <= 64, "read {} bytes", buf.len());
    }

    #[tokio::test]
    async fn garbage_is_an_error_without_waiting_for_more() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = Vec::new();
        let e = read_server_name(&mut server, &mut buf, 64 * 1024)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DownstreamProtocol);
        drop(client);
    }
}
