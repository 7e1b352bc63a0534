//! Entry points for the fuzz targets in `fuzz/`: each feeds arbitrary bytes to one parser of
//! untrusted input (a client's first bytes, the affinity cookie) and asserts the invariants the
//! data path relies on. The module exists only when built with `--cfg fuzzing`, which
//! cargo-fuzz sets.
//!
//! The two first-bytes parsers are called on a growing buffer, once per read from the socket, so
//! beyond "never panics" the property that matters is that a decision is final: for any prefix
//! of an input, the parser answers "incomplete" or exactly what it answers for the whole input. Otherwise a
//! connection could be refused, or routed, depending on how TCP happened to segment it.

pub use self::targets::{client_hello, proxy_header};

/// Fuzzes the session affinity cookie: reading and stripping it from `Cookie` header text, and
/// checking a value's signature (see `affinity::cookie::check_untrusted` for the assertions).
pub fn affinity_cookie(data: &[u8]) {
    crate::affinity::cookie::check_untrusted(data);
}

/// The fuzz targets' bodies.
mod targets {
    use crate::l4::proxy_protocol::{self, Parsed};
    use crate::l4::sni::{ClientHelloParse, ClientHelloReader, parse_client_hello};

    /// How many cut points of a long input are checked (all of them for inputs up to this length).
    const CUTS: usize = 16;

    /// A ClientHello parse with the reason of a refusal dropped (its wording may name whichever
    /// check failed first).
    #[derive(Debug, PartialEq, Eq)]
    enum Decision {
        Incomplete,
        Complete(Option<String>),
        Invalid,
    }

    /// Fuzzes the TLS ClientHello parser behind `tls_passthrough` listeners.
    ///
    /// Asserts: a decision (complete or invalid) on a prefix is the decision on the whole input;
    /// feeding the input in two pieces decides as feeding it at once; a server name is a non-empty,
    /// lowercase, printable ASCII name of at most 253 bytes.
    pub fn client_hello(data: &[u8]) {
        let whole = decision(parse_client_hello(data));
        if let Decision::Complete(Some(name)) = &whole {
            assert!(
                !name.is_empty()
                    && name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase()),
                "server name {name:?}"
            );
        }
        for cut in cuts(data.len()) {
            let (head, tail) = data.split_at(cut);
            let prefix = decision(parse_client_hello(head));
            assert!(
                prefix == Decision::Incomplete || prefix == whole,
                "prefix of {cut} bytes: {prefix:?}, whole input: {whole:?}"
            );
            let mut reader = ClientHelloReader::default();
            let first = decision(reader.feed(head));
            let pieces = if first == Decision::Incomplete {
                decision(reader.feed(tail))
            } else {
                first
            };
            assert_eq!(pieces, whole, "fed in two pieces cut at {cut}");
        }
    }

    /// Fuzzes the PROXY protocol (v1 and v2) header parser.
    ///
    /// Asserts: a decision on a prefix is the decision on the whole input (so any prefix of a `Done`
    /// input is `Incomplete` or the same `Done`); `Done` consumes between 1 and all of the bytes and
    /// the header alone parses the same; `Incomplete` means the bytes could still start a header
    /// and are fewer than the most weir buffers.
    pub fn proxy_header(data: &[u8]) {
        let whole = proxy_protocol::parse(data);
        match &whole {
            Parsed::Done { consumed, source } => {
                assert!(
                    *consumed > 0 && *consumed <= data.len(),
                    "consumed {consumed}"
                );
                let header = data.get(..*consumed).unwrap_or_default();
                assert_eq!(
                    proxy_protocol::parse(header),
                    Parsed::Done {
                        consumed: *consumed,
                        source: *source
                    },
                    "the header alone"
                );
            }
            Parsed::Incomplete => {
                assert!(proxy_protocol::could_be_header(data));
                assert!(data.len() < proxy_protocol::MAX_HEADER);
            }
            Parsed::Invalid(_) => {}
        }
        for cut in cuts(data.len()) {
            let prefix = proxy_protocol::parse(data.get(..cut).unwrap_or_default());
            let same = match (&prefix, &whole) {
                (Parsed::Incomplete, _) | (Parsed::Invalid(_), Parsed::Invalid(_)) => true,
                (done @ Parsed::Done { .. }, whole) => done == whole,
                _ => false,
            };
            assert!(
                same,
                "prefix of {cut} bytes: {prefix:?}, whole input: {whole:?}"
            );
        }
    }

    fn decision(parse: ClientHelloParse) -> Decision {
        match parse {
            ClientHelloParse::Incomplete => Decision::Incomplete,
            ClientHelloParse::Complete { server_name } => Decision::Complete(server_name),
            ClientHelloParse::Invalid(_) => Decision::Invalid,
        }
    }

    /// Strict-prefix lengths to check: all of them for short inputs, else `CUTS` spread evenly
    /// (always including the very first and last bytes, where off-by-one errors live).
    fn cuts(len: usize) -> impl Iterator<Item = usize> {
        let step = len.div_ceil(CUTS).max(1);
        (0..len)
            .step_by(step)
            .chain([1, len.saturating_sub(1)])
            .filter(move |&cut| cut < len)
    }
}
